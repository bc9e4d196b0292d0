"""Labelbox exports: the NDJSON export (v2) and the older JSON export.

NDJSON v2 has one data row per line: `data_row.external_id`, `media_attributes` and
`projects.<id>.labels[].annotations.objects[]` with `bounding_box {top, left, height, width}`.
The older JSON export is a list of rows with `External ID` and `Label.objects[].bbox`. Images
are found under the images root by their external id; nothing is downloaded from the URLs
the exports carry.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from apache_beam.io import fileio

from transforms.paths import UnsafePathError
from transforms.readers.base import Parsed, ReaderOptions, file_format, image_key_for
from transforms.records import STAGE_READ, Box, ErrorRecord, ImageAnnotation, Mask


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{value!r} is not a number")
    return float(value)


def _box(obj: dict, label: str, source: str, options: ReaderOptions) -> Box:
    """A Labelbox object with a `bbox`/`bounding_box` or a `polygon` as a Box."""
    rectangle = obj.get("bounding_box") or obj.get("bbox")
    if isinstance(rectangle, dict):
        left, top = _number(rectangle.get("left")), _number(rectangle.get("top"))
        width, height = _number(rectangle.get("width")), _number(rectangle.get("height"))
        return Box(label, left, top, left + width, top + height, source)
    polygon = obj.get("polygon")
    if isinstance(polygon, list) and len(polygon) >= 3:
        xs = [_number(point.get("x")) for point in polygon]
        ys = [_number(point.get("y")) for point in polygon]
        flat = tuple(v for point in zip(xs, ys, strict=True) for v in point)
        mask = Mask(polygons=(flat,)) if options.extras.masks else None
        return Box(label, min(xs), min(ys), max(xs), max(ys), source, mask=mask)
    kind = obj.get("annotation_kind") or next(iter(set(obj) - {"name", "title", "value"}), "?")
    raise ValueError(f"object of kind {kind!r} has no bounding box or polygon")


def _image(
    external_id: Any,
    objects: list,
    source: str,
    path: str,
    options: ReaderOptions,
    size=(None, None),
) -> Parsed:
    if not isinstance(external_id, str):
        yield ErrorRecord(source, None, STAGE_READ, "row has no external id", len(objects))
        return
    try:
        key = image_key_for(external_id, path, options)
    except UnsafePathError as error:
        yield ErrorRecord(source, external_id, STAGE_READ, str(error), len(objects))
        return
    boxes = []
    for number, obj in enumerate(objects, start=1):
        object_source = f"{source}#object[{number}]"
        try:
            if not isinstance(obj, dict):
                raise ValueError("object is not a JSON object")
            label = obj.get("name") or obj.get("title") or obj.get("value")
            if not isinstance(label, str) or not label:
                raise ValueError("object has no name")
            boxes.append(_box(obj, label, object_source, options))
        except ValueError as error:
            yield ErrorRecord(object_source, key, STAGE_READ, str(error), 1)
    yield ImageAnnotation(key, (source,), tuple(boxes), size[0], size[1])


def _ndjson_row(row: dict, source: str, path: str, options: ReaderOptions) -> Parsed:
    data_row = row.get("data_row") or {}
    media = row.get("media_attributes") or {}
    objects = [
        obj
        for project in (row.get("projects") or {}).values()
        for label in (project.get("labels") or [])
        for obj in ((label.get("annotations") or {}).get("objects") or [])
    ]
    size = (media.get("width"), media.get("height"))
    size = size if all(isinstance(v, int) for v in size) else (None, None)
    yield from _image(data_row.get("external_id"), objects, source, path, options, size)


def _json_row(row: dict, source: str, path: str, options: ReaderOptions) -> Parsed:
    label = row.get("Label")
    objects = label.get("objects", []) if isinstance(label, dict) else []  # "Skip" rows
    yield from _image(row.get("External ID"), objects, source, path, options)


def parse_labelbox(data: bytes, path: str, options: ReaderOptions) -> Iterator:
    """Either export: a JSON list (old) or one JSON object per line (NDJSON v2)."""
    text = data.decode("utf-8-sig")
    if text.lstrip().startswith("["):
        try:
            rows = json.loads(text)
        except ValueError as error:
            yield ErrorRecord(path, None, STAGE_READ, f"malformed JSON: {error}")
            return
        for number, row in enumerate(rows, start=1):
            source = f"{path}#row[{number}]"
            if not isinstance(row, dict):
                yield ErrorRecord(source, None, STAGE_READ, "row is not a JSON object")
                continue
            yield from _json_row(row, source, path, options)
        return
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        source = f"{path}:{number}"
        try:
            row = json.loads(line)
        except ValueError as error:
            yield ErrorRecord(source, None, STAGE_READ, f"malformed JSON line: {error}")
            continue
        if not isinstance(row, dict):
            yield ErrorRecord(source, None, STAGE_READ, "line is not a JSON object")
            continue
        yield from _ndjson_row(row, source, path, options)


def parse_labelbox_file(file: fileio.ReadableFile, options: ReaderOptions) -> Parsed:
    return parse_labelbox(file.read(), file.metadata.path, options)


FORMAT = file_format("labelbox", "*json", parse_labelbox_file)  # .ndjson and .json exports
