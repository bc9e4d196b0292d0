"""Labelbox exports: the NDJSON export (v2) and the older JSON export.

NDJSON v2 has one data row per line: `data_row.external_id`, `media_attributes` and
`projects.<id>.labels[].annotations.objects[]` with `bounding_box {top, left, height, width}`.
The older JSON export is a list of rows with `External ID` and `Label.objects[].bbox`. Images
are found under the images root by their external id; nothing is downloaded from the URLs
the exports carry.
"""

from __future__ import annotations

from typing import Any, BinaryIO

from transforms.paths import UnsafePathError
from transforms.readers.base import (
    Parsed,
    ReaderOptions,
    file_boundary,
    file_format,
    guarded,
    image_key_for,
    parse_each,
)
from transforms.readers.values import (
    declared_size,
    json_list,
    json_object,
    kind,
    load_json,
    number,
    undecodable,
)
from transforms.records import STAGE_READ, Box, ErrorRecord, ImageAnnotation, Mask, excerpt

_UNDECODABLE_KEYS = "row has keys holding bytes that are not UTF-8 text; row skipped"


def _point(point: object) -> tuple[float, float]:
    point = json_object(point, "polygon point")
    return number(point.get("x"), "polygon x"), number(point.get("y"), "polygon y")


def _box(obj: object, source: str, options: ReaderOptions) -> Box:
    """A Labelbox object with a `bbox`/`bounding_box` or a `polygon` as a Box."""
    obj = json_object(obj, "object")
    label = obj.get("name") or obj.get("title") or obj.get("value")
    if not isinstance(label, str) or not label:
        raise ValueError("object has no name")
    rectangle = obj.get("bounding_box") or obj.get("bbox")
    if isinstance(rectangle, dict):
        left, top = number(rectangle.get("left"), "left"), number(rectangle.get("top"), "top")
        width = number(rectangle.get("width"), "width")
        height = number(rectangle.get("height"), "height")
        return Box(label, left, top, left + width, top + height, source)
    polygon = obj.get("polygon")
    if isinstance(polygon, list) and len(polygon) >= 3:
        points = [_point(point) for point in polygon]
        xs, ys = [x for x, _ in points], [y for _, y in points]
        flat = tuple(v for point in points for v in point)
        mask = Mask(polygons=(flat,)) if options.extras.masks else None
        return Box(label, min(xs), min(ys), max(xs), max(ys), source, mask=mask)
    shape = obj.get("annotation_kind") or next(
        (key for key in obj if key not in ("name", "title", "value")), "?"
    )
    raise ValueError(f"object of kind {excerpt(shape)} has no bounding box or polygon")


def _image(
    external_id: Any,
    objects: list,
    source: str,
    path: str,
    options: ReaderOptions,
    size: tuple[Any, Any] = (None, None),
) -> Parsed:
    if not isinstance(external_id, str):
        yield ErrorRecord(source, None, STAGE_READ, "row has no external id", len(objects))
        return
    try:
        key = image_key_for(external_id, path, options)
    except UnsafePathError as error:
        yield ErrorRecord(source, excerpt(external_id), STAGE_READ, str(error), len(objects))
        return
    boxes, errors = parse_each(
        ((f"{source}#object[{index}]", obj) for index, obj in enumerate(objects, start=1)),
        lambda obj, object_source: _box(obj, object_source, options),
        key,
    )
    yield from errors
    yield ImageAnnotation(key, (source,), boxes, declared_size(size[0]), declared_size(size[1]))


def _ndjson_objects(row: dict) -> list:
    """The objects of all labels of all projects of an NDJSON data row."""
    objects = []
    projects = json_object(row.get("projects") or {}, "projects")
    for project in projects.values():
        labels = json_object(project, "project").get("labels")
        for label in json_list(labels, "labels"):
            annotations = json_object(
                json_object(label, "label").get("annotations") or {}, "annotations"
            )
            objects += json_list(annotations.get("objects"), "objects")
    return objects


def _ndjson_image(
    row: dict, objects: list, source: str, path: str, options: ReaderOptions
) -> Parsed:
    data_row = json_object(row.get("data_row") or {}, "data_row")
    media = row.get("media_attributes")
    size = (media.get("width"), media.get("height")) if isinstance(media, dict) else (None, None)
    yield from _image(data_row.get("external_id"), objects, source, path, options, size)


def _ndjson_row(row: dict, source: str, path: str, options: ReaderOptions) -> Parsed:
    objects = _ndjson_objects(row)
    if undecodable(row, keys_only=True):
        yield ErrorRecord(source, None, STAGE_READ, _UNDECODABLE_KEYS, len(objects))
        return
    image = _ndjson_image(row, objects, source, path, options)
    yield from guarded(image, source, None, len(objects))


def _json_row(row: dict, source: str, path: str, options: ReaderOptions) -> Parsed:
    label = row.get("Label")
    # "Skip" rows have a text label and no objects.
    objects = json_list(label.get("objects"), "objects") if isinstance(label, dict) else []
    if undecodable(row, keys_only=True):
        yield ErrorRecord(source, None, STAGE_READ, _UNDECODABLE_KEYS, len(objects))
        return
    image = _image(row.get("External ID"), objects, source, path, options)
    yield from guarded(image, source, None, len(objects))


def _ndjson_line(line: str, source: str, path: str, options: ReaderOptions) -> Parsed:
    try:
        row = load_json(line)
    except ValueError as error:
        yield ErrorRecord(source, None, STAGE_READ, f"malformed JSON line: {excerpt(str(error))}")
        return
    if not isinstance(row, dict):
        yield ErrorRecord(source, None, STAGE_READ, f"line is {kind(row)}, not a JSON object")
        return
    yield from _ndjson_row(row, source, path, options)


@file_boundary
def parse_labelbox(data: bytes, path: str, options: ReaderOptions) -> Parsed:
    """Either export: a JSON list (old) or one JSON object per line (NDJSON v2). Each row is
    its own error boundary; bytes that are not UTF-8 cost the row or object holding them."""
    text = data.decode("utf-8-sig", errors="replace")
    if text.lstrip().startswith("["):
        try:
            rows = load_json(text)
        except ValueError as error:
            yield ErrorRecord(path, None, STAGE_READ, f"malformed JSON: {excerpt(str(error))}")
            return
        for index, row in enumerate(rows, start=1):
            source = f"{path}#row[{index}]"
            if isinstance(row, dict):
                yield from guarded(_json_row(row, source, path, options), source)
            else:
                yield ErrorRecord(source, None, STAGE_READ, f"row is {kind(row)}, not an object")
        return
    for line_number, line in enumerate(text.split("\n"), start=1):
        if line.strip():
            source = f"{path}:{line_number}"
            yield from guarded(_ndjson_line(line, source, path, options), source)


def _parse_file(handle: BinaryIO, path: str, options: ReaderOptions) -> Parsed:
    return parse_labelbox(handle.read(), path, options)


FORMAT = file_format("labelbox", "*json", _parse_file)  # .ndjson and .json exports
