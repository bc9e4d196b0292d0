"""LabelMe: one JSON file per image, with `imagePath` (relative to the JSON file) and
`shapes`. Rectangles are boxes; polygons become their bounding box (and a mask with
`--include-masks`); circles their bounding square; LabelMe 5's mask shapes their box (and
their bitmap as a mask). Points and lines have no box.

A file may also carry its image, base64-encoded in `imageData`; as in LabelMe, that image is
used when the file at `imagePath` is not a readable image.
"""

from __future__ import annotations

import base64
import binascii
import math
import posixpath
from typing import BinaryIO

from transforms.masks import cropped_png_pixels, placed_rle
from transforms.paths import UnsafePathError, file_key, image_key_under
from transforms.readers.base import (
    Parsed,
    ReaderOptions,
    file_boundary,
    file_format,
    guarded,
    parse_each,
    read_file,
    split_of_folder,
)
from transforms.readers.values import json_list, json_object, load_json, number, undecodable
from transforms.records import (
    INT64_MAX,
    STAGE_READ,
    Box,
    ErrorRecord,
    ImageAnnotation,
    Mask,
    excerpt,
)


def _points(shape: dict) -> list[tuple[float, float]]:
    points = json_list(shape.get("points"), "points")
    if not all(isinstance(point, list) and len(point) == 2 for point in points):
        raise ValueError("points are not [x, y] pairs")
    return [(number(x, "point x"), number(y, "point y")) for x, y in points]


def _mask_box(
    shape: dict,
    label: str,
    points: list[tuple[float, float]],
    source: str,
    size: tuple[int, int] | None,
    options: ReaderOptions,
) -> Box:
    """A LabelMe >= 5.3 mask shape: its two points are the top-left and bottom-right pixels of
    its box, both inside it (labelme's `shapes_to_label` pastes the bitmap at
    `[y1 : y2 + 1, x1 : x2 + 1]`), and `mask` is a base64 PNG of the bitmap cropped to that
    box. The box therefore ends one pixel past the second point, and the bitmap becomes a
    full-image RLE, which needs the file's `imageWidth` and `imageHeight`."""
    (x1, y1), (x2, y2) = ((int(x), int(y)) for x, y in points)  # As labelme truncates.
    left, top, right, bottom = min(x1, x2), min(y1, y2), max(x1, x2) + 1, max(y1, y2) + 1
    mask = None
    if options.extras.masks:
        if size is None:
            raise ValueError("mask shape needs the file's imageWidth and imageHeight")
        encoded = shape.get("mask")
        if not isinstance(encoded, str) or not encoded:
            raise ValueError("mask shape has no base64 mask")
        try:
            data = base64.b64decode(encoded)
        except binascii.Error as error:
            raise ValueError(f"mask is not base64: {error}") from None
        pixels = cropped_png_pixels(data, right - left, bottom - top)
        width, height = size
        counts = placed_rle(pixels, left, top, width, height)
        mask = Mask(rle_size=(height, width), rle_counts=counts)
    return Box(label, left, top, right, bottom, source, mask=mask)


def _box(shape: object, source: str, size: tuple[int, int] | None, options: ReaderOptions) -> Box:
    shape = json_object(shape, "shape")
    label = shape.get("label")
    if not isinstance(label, str) or not label:
        raise ValueError("shape has no label")
    kind = shape.get("shape_type") or "polygon"
    if not isinstance(kind, str):
        raise ValueError(f"shape_type {excerpt(kind)} is not text")
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
    if kind == "mask" and len(points) == 2:
        return _mask_box(shape, label, points, source, size, options)
    raise ValueError(f"{excerpt(kind)} shape with {len(points)} points has no box")


def _names_itself(image_path: str, path: str) -> bool:
    """Whether `imagePath` names the annotation file itself (LabelMe writes that when the
    image lives only in `imageData`)."""
    joined = posixpath.join(posixpath.dirname(path), image_path.strip().replace("\\", "/"))
    return posixpath.normpath(joined) == posixpath.normpath(path)


def _image(document: dict, path: str, root: str) -> tuple[str, str | None]:
    """The image's key, and the annotation file when it embeds the image (else None).

    The key comes from `imagePath` when that is a safe name of another file (the loader
    falls back to `imageData` if that file is not a readable image). An image only the
    annotation file holds (`imagePath` unsafe, absent or naming the file itself) is named
    after that file, which keeps keys unique. Raises UnsafePathError when there is neither.
    """
    data = document.get("imageData")
    embedded_in = path if isinstance(data, str) and data else None
    image_path = document.get("imagePath")
    if undecodable(image_path):
        raise UnsafePathError("imagePath holds bytes that are not UTF-8 text")
    if isinstance(image_path, str) and not _names_itself(image_path, path):
        try:
            return image_key_under(image_path, root, posixpath.dirname(path)), embedded_in
        except UnsafePathError:
            if embedded_in is None:
                raise
    if embedded_in is None:
        raise UnsafePathError("imagePath names the annotation file, which has no imageData")
    return file_key(path, root), embedded_in


def _declared_size(document: dict) -> tuple[int, int] | None:
    """(imageWidth, imageHeight) when both are positive integers within int64."""
    size = document.get("imageWidth"), document.get("imageHeight")
    valid = all(isinstance(v, int) and not isinstance(v, bool) and 0 < v <= INT64_MAX for v in size)
    return size if valid else None


def _annotation(document: dict, shapes: list, path: str, options: ReaderOptions) -> Parsed:
    try:
        key, embedded_in = _image(document, path, options.images)
    except UnsafePathError as error:
        image_path = document.get("imagePath")
        image = excerpt(image_path) if isinstance(image_path, str) else None
        yield ErrorRecord(path, image, STAGE_READ, str(error), len(shapes))
        return
    size = _declared_size(document)
    boxes, errors = parse_each(
        ((f"{path}#shape[{index}]", shape) for index, shape in enumerate(shapes, start=1)),
        lambda shape, source: _box(shape, source, size, options),
        key,
    )
    yield from errors
    yield ImageAnnotation(key, (path,), boxes, *(size or (None, None)), embedded_in=embedded_in)


@file_boundary
def parse_labelme(data: bytes, path: str, options: ReaderOptions) -> Parsed:
    """The file's image annotation, each shape its own error boundary."""
    try:
        document = load_json(data.decode("utf-8-sig", errors="replace"))
    except ValueError as error:
        yield ErrorRecord(path, None, STAGE_READ, f"malformed JSON: {excerpt(str(error))}")
        return
    shapes = document.get("shapes") if isinstance(document, dict) else None
    if not isinstance(shapes, list) or not (
        isinstance(document.get("imagePath"), str) or document.get("imageData")
    ):
        lost = len(shapes) if isinstance(shapes, list) else 0
        reason = "not a LabelMe file (no imagePath and shapes)"
        yield ErrorRecord(path, None, STAGE_READ, reason, lost)
        return
    yield from guarded(_annotation(document, shapes, path, options), path, None, len(shapes))


def _parse_file(handle: BinaryIO, path: str, options: ReaderOptions) -> Parsed:
    return parse_labelme(handle.read(), path, options)


def embedded_image(path: str) -> bytes:
    """The image a LabelMe file carries in `imageData`, decoded; raises ValueError.

    Called by the image loader, after the shuffle, with the path the reader put in
    `ImageAnnotation.embedded_in`; the loader applies its limits to the bytes.
    """
    try:
        document = load_json(read_file(path).decode("utf-8-sig", errors="replace"))
    except RecursionError:
        raise ValueError("malformed JSON: nested too deeply") from None
    except ValueError as error:
        raise ValueError(f"malformed JSON: {excerpt(str(error))}") from None
    except Exception as error:  # Each filesystem raises its own error types.
        raise ValueError(f"cannot read {path}: {excerpt(str(error))}") from None
    encoded = document.get("imageData") if isinstance(document, dict) else None
    if not isinstance(encoded, str) or not encoded:
        raise ValueError("no imageData")
    try:
        return base64.b64decode(encoded)
    except binascii.Error as error:
        raise ValueError(f"imageData is not base64: {error}") from None


FORMAT = file_format("labelme", "*.json", _parse_file, split_of_folder)
