"""LabelMe: one JSON file per image, with `imagePath` (relative to the JSON file) and
`shapes`. Rectangles are boxes; polygons become their bounding box (and a mask with
`--include-masks`); circles their bounding square. Points and lines have no box."""

from __future__ import annotations

import json
import math
import posixpath

from apache_beam.io import fileio

from transforms.paths import UnsafePathError, image_key_under
from transforms.readers.base import Parsed, ReaderOptions, file_format, split_of_folder
from transforms.records import STAGE_READ, Box, ErrorRecord, ImageAnnotation, Mask


def _points(shape: dict) -> list[tuple[float, float]]:
    points = shape.get("points")
    try:
        return [(float(x), float(y)) for x, y in points]
    except (TypeError, ValueError):
        raise ValueError("points are not [x, y] pairs") from None


def _box(shape, source: str, options: ReaderOptions) -> Box:
    if not isinstance(shape, dict):
        raise ValueError("shape is not a JSON object")
    label = shape.get("label")
    if not isinstance(label, str) or not label:
        raise ValueError("shape has no label")
    kind = shape.get("shape_type") or "polygon"
    points = _points(shape)
    xs, ys = [x for x, _ in points], [y for _, y in points]
    if kind == "rectangle" and len(points) == 2:
        return Box(label, min(xs), min(ys), max(xs), max(ys), source)
    if kind == "polygon" and len(points) >= 3:
        flat = tuple(v for point in points for v in point)
        mask = Mask(polygons=(flat,)) if options.extras.masks else None
        return Box(label, min(xs), min(ys), max(xs), max(ys), source, mask=mask)
    if kind == "circle" and len(points) == 2:
        (cx, cy), (px, py) = points
        radius = math.hypot(px - cx, py - cy)
        return Box(label, cx - radius, cy - radius, cx + radius, cy + radius, source)
    raise ValueError(f"{kind} shape with {len(points)} points has no box")


def parse_labelme(data: bytes, path: str, options: ReaderOptions) -> Parsed:
    try:
        document = json.loads(data.decode("utf-8-sig"))
    except ValueError as error:
        yield ErrorRecord(path, None, STAGE_READ, f"malformed JSON: {error}")
        return
    shapes = document.get("shapes") if isinstance(document, dict) else None
    if not isinstance(shapes, list) or not isinstance(document.get("imagePath"), str):
        yield ErrorRecord(path, None, STAGE_READ, "not a LabelMe file (no imagePath and shapes)")
        return
    try:
        key = image_key_under(document["imagePath"], options.images, posixpath.dirname(path))
    except UnsafePathError as error:
        yield ErrorRecord(path, document["imagePath"], STAGE_READ, str(error), len(shapes))
        return
    boxes = []
    for number, shape in enumerate(shapes, start=1):
        source = f"{path}#shape[{number}]"
        try:
            boxes.append(_box(shape, source, options))
        except ValueError as error:
            yield ErrorRecord(source, key, STAGE_READ, str(error), 1)
    width, height = document.get("imageWidth"), document.get("imageHeight")
    size = (width, height) if isinstance(width, int) and isinstance(height, int) else (None, None)
    yield ImageAnnotation(key, (path,), tuple(boxes), *size)


def parse_labelme_file(file: fileio.ReadableFile, options: ReaderOptions) -> Parsed:
    return parse_labelme(file.read(), file.metadata.path, options)


FORMAT = file_format("labelme", "*.json", parse_labelme_file, split_of_folder)
