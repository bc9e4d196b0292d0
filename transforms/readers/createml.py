"""Apple CreateML JSON: a list of `{"image", "annotations": [{"label", "coordinates":
{"x", "y", "width", "height"}}]}` with the box centre and size in pixels."""

from __future__ import annotations

from typing import BinaryIO

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
    json_list,
    json_object,
    kind,
    load_json,
    number,
    undecodable,
)
from transforms.records import STAGE_READ, Box, ErrorRecord, ImageAnnotation, excerpt


def _box(annotation: object, source: str) -> Box:
    annotation = json_object(annotation, "annotation")
    label = annotation.get("label")
    if not isinstance(label, str) or not label:
        raise ValueError("annotation has no label")
    coordinates = json_object(annotation.get("coordinates"), "coordinates")
    x, y, width, height = (number(coordinates.get(k), k) for k in ("x", "y", "width", "height"))
    return Box(label, x - width / 2, y - height / 2, x + width / 2, y + height / 2, source)


def _entry(row: dict, source: str, path: str, options: ReaderOptions) -> Parsed:
    annotations = json_list(row.get("annotations"), "annotations")
    if undecodable(row, keys_only=True):
        reason = "entry has keys holding bytes that are not UTF-8 text; entry skipped"
        yield ErrorRecord(source, None, STAGE_READ, reason, len(annotations))
        return
    try:
        key = image_key_for(row.get("image"), path, options)
    except UnsafePathError as error:
        yield ErrorRecord(source, None, STAGE_READ, str(error), len(annotations))
        return
    boxes, errors = parse_each(
        ((f"{source}#annotation[{index}]", a) for index, a in enumerate(annotations, start=1)),
        _box,
        key,
    )
    yield from errors
    yield ImageAnnotation(key, (source,), boxes)


@file_boundary
def parse_createml(data: bytes, path: str, options: ReaderOptions | None = None) -> Parsed:
    """Each entry is its own error boundary; bytes that are not UTF-8 cost the entry or
    annotation holding them."""
    try:
        rows = load_json(data.decode("utf-8-sig", errors="replace"))
    except ValueError as error:
        yield ErrorRecord(path, None, STAGE_READ, f"malformed JSON: {excerpt(str(error))}")
        return
    if not isinstance(rows, list):
        reason = f"a CreateML file is a JSON list of images, not {kind(rows)}"
        yield ErrorRecord(path, None, STAGE_READ, reason)
        return
    for index, row in enumerate(rows, start=1):
        source = f"{path}#image[{index}]"
        if isinstance(row, dict):
            yield from guarded(_entry(row, source, path, options or ReaderOptions()), source)
        else:
            yield ErrorRecord(source, None, STAGE_READ, f"entry is {kind(row)}, not an object")


def _parse_file(handle: BinaryIO, path: str, options: ReaderOptions) -> Parsed:
    return parse_createml(handle.read(), path, options)


FORMAT = file_format("createml", "*.json", _parse_file)
