"""Apple CreateML JSON: a list of `{"image", "annotations": [{"label", "coordinates":
{"x", "y", "width", "height"}}]}` with the box centre and size in pixels."""

from __future__ import annotations

import json

from apache_beam.io import fileio

from transforms.paths import UnsafePathError
from transforms.readers.base import Parsed, ReaderOptions, file_format, image_key_for
from transforms.records import STAGE_READ, Box, ErrorRecord, ImageAnnotation


def _box(annotation, source: str) -> Box:
    if not isinstance(annotation, dict):
        raise ValueError("annotation is not a JSON object")
    label = annotation.get("label")
    if not isinstance(label, str) or not label:
        raise ValueError("annotation has no label")
    coordinates = annotation.get("coordinates")
    try:
        x, y, width, height = (float(coordinates[k]) for k in ("x", "y", "width", "height"))
    except (TypeError, KeyError, ValueError):
        raise ValueError("coordinates are not {x, y, width, height} numbers") from None
    return Box(label, x - width / 2, y - height / 2, x + width / 2, y + height / 2, source)


def parse_createml(data: bytes, path: str, options: ReaderOptions | None = None) -> Parsed:
    try:
        rows = json.loads(data.decode("utf-8-sig"))
    except ValueError as error:
        yield ErrorRecord(path, None, STAGE_READ, f"malformed JSON: {error}")
        return
    if not isinstance(rows, list):
        yield ErrorRecord(path, None, STAGE_READ, "a CreateML file is a JSON list of images")
        return
    for number, row in enumerate(rows, start=1):
        source = f"{path}#image[{number}]"
        annotations = row.get("annotations") if isinstance(row, dict) else None
        annotations = annotations if isinstance(annotations, list) else []
        try:
            if not isinstance(row, dict) or not isinstance(row.get("image"), str):
                raise UnsafePathError("entry has no image name")
            key = image_key_for(row["image"], path, options or ReaderOptions())
        except UnsafePathError as error:
            yield ErrorRecord(source, None, STAGE_READ, str(error), len(annotations))
            continue
        boxes = []
        for index, annotation in enumerate(annotations, start=1):
            box_source = f"{source}#annotation[{index}]"
            try:
                boxes.append(_box(annotation, box_source))
            except ValueError as error:
                yield ErrorRecord(box_source, key, STAGE_READ, str(error), 1)
        yield ImageAnnotation(key, (source,), tuple(boxes))


def parse_createml_file(file: fileio.ReadableFile, options: ReaderOptions) -> Parsed:
    return parse_createml(file.read(), file.metadata.path, options)


FORMAT = file_format("createml", "*.json", parse_createml_file)
