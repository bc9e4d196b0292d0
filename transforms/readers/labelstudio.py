"""Label Studio JSON exports: the full export (`JSON`) and `JSON-MIN`.

The full export is a list of tasks, each with `data` (the image under `image`), `annotations`
(each a `result` list of regions, with `was_cancelled` and `created_at`) and `predictions`,
a model's guesses, which are not read. A region has a `type`, an `id`, `original_width` and
`original_height` (the image's pixels) and its `value`: `x`, `y`, `width`, `height` and
`rotation` for a rectangle, `points` for a polygon, both in percent of the image size, or
`rle` for a brush mask; its labels are under the type's name (`rectanglelabels`) or `labels`.
JSON-MIN (label-studio-converter's `convert_to_json_min`) is a list of flat records, one per
annotation, a task's newest first: the task's data keys (`image`), its `id`, and for each
control tag the list of its regions' values, `original_width` and `original_height` beside
each.

Of a task's annotations the latest (by `created_at`; of equal ones the last listed) that was
not cancelled is read. A task without one was never labeled and gives no example; one whose
annotation has no regions is an image without objects. Of the JSON-MIN records of one task
id the first, the newest, is read. Boxes are fractions of the image, as the percentages
are: a rectangle's box is the extent of its corners turned by `rotation` degrees about its
top-left corner; a polygon's and a brush mask's are their extent, and with --include-masks
they are the object's mask. A region with several labels takes the first, as Label Studio's
own converters do; regions that are no objects (choices, text) are passed over, while
shapes odrecords has no box for (key points, ellipses, lines) are error records.

Files are streamed one task at a time (see `json_stream.py`): memory holds one task, and
the ids of the JSON-MIN tasks read.
"""

from __future__ import annotations

import math
import posixpath
import re
from collections.abc import Iterator
from dataclasses import replace
from typing import Any, BinaryIO

import numpy as np

from transforms.masks import pixels_to_rle
from transforms.paths import UnsafePathError, open_regular
from transforms.readers.base import (
    Format,
    Parsed,
    ReaderOptions,
    Request,
    Source,
    file_format,
    guarded,
    locate_files,
    matching_files,
    parse_each,
)
from transforms.readers.json_stream import NotUtf8, iter_elements
from transforms.readers.labelstudio_brush import decode_brush
from transforms.readers.labelstudio_images import image_key, is_url
from transforms.readers.values import declared_size, json_list, json_object, kind, number
from transforms.records import (
    INT64_MAX,
    STAGE_READ,
    Box,
    ErrorRecord,
    ImageAnnotation,
    Mask,
    excerpt,
)

# The label keys of the shapes read, and the shape each stands for.
_SHAPES = {"rectanglelabels": "rectangle", "polygonlabels": "polygon", "brushlabels": "brush"}
# `labels` is a Labels tag's: its region carries the shape it labels.
_LABEL_KEYS = (*_SHAPES, "labels")
# A region's shape: what tells JSON-MIN's regions, which have no ids, apart.
_GEOMETRY = ("x", "y", "width", "height", "rotation", "points", "rle")
# JSON-MIN keys that are the annotation's, not the task's data.
_METADATA = frozenset(
    {"id", "annotator", "annotation_id", "created_at", "updated_at", "lead_time", "agreement"}
)
_IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".jfif"}
)
# Files whose start is read for image URLs, to say that they are not downloaded.
_SNIFF_FILES, _SNIFF_BYTES = 20, 1 << 16
_IMAGE_URL = re.compile(r'"image"\s*:\s*"[A-Za-z][A-Za-z0-9+.-]*://')


def _other_labels(region: dict) -> str | None:
    """A label key of a shape without a box (`keypointlabels`, `ellipselabels`, ...)."""
    return next(
        (k for k in region if isinstance(k, str) and k.endswith("labels") and k not in _LABEL_KEYS),
        None,
    )


def _shape(region: dict) -> str | None:
    """rectangle, polygon or brush, by the region's label key or else its geometry; None for
    a region without a shape (a choice, a text)."""
    for key, shape in _SHAPES.items():
        if key in region:
            return shape
    if "rle" in region:
        return "brush"
    if "points" in region:
        return "polygon"
    if all(key in region for key in ("x", "y", "width", "height")):
        return "rectangle"
    return None


def _labeled(region: dict) -> bool:
    return any(key in region for key in _LABEL_KEYS)


def _label(region: dict) -> str:
    key = next((key for key in _LABEL_KEYS if key in region), None)
    if key is None:
        raise ValueError("region has no label")
    labels = json_list(region[key], key)
    if not labels or not isinstance(labels[0], str) or not labels[0]:
        raise ValueError(f"region has no label: {key} is {excerpt(labels)}")
    return labels[0]


def _size(region: dict, what: str) -> tuple[int, int]:
    """The region's (original_width, original_height); raises ValueError naming `what`
    needs them when they are not whole numbers from 1 to int64's largest."""
    width = declared_size(region.get("original_width"))
    height = declared_size(region.get("original_height"))
    if not (width and height and 0 < width <= INT64_MAX and 0 < height <= INT64_MAX):
        raise ValueError(f"{what} needs the region's original_width and original_height")
    return width, height


def _rectangle(region: dict, label: str, source: str) -> Box:
    x, y, width, height = (number(region.get(k), k) for k in ("x", "y", "width", "height"))
    if width < 0 or height < 0:
        raise ValueError(f"rectangle has a negative width or height: {width}, {height}")
    rotation = number(region.get("rotation") or 0, "rotation")
    if rotation % 360 == 0:
        return Box(
            label, x / 100, y / 100, (x + width) / 100, (y + height) / 100, source, normalized=True
        )
    # Turning happens on the pixels, so the image's aspect ratio matters.
    image_width, image_height = _size(region, "a rotated rectangle")
    left, top = x * image_width / 100, y * image_height / 100
    along, down = width * image_width / 100, height * image_height / 100
    cos, sin = math.cos(math.radians(rotation)), math.sin(math.radians(rotation))
    xs = (left, left + along * cos, left + along * cos - down * sin, left - down * sin)
    ys = (top, top + along * sin, top + along * sin + down * cos, top + down * cos)
    return Box(
        label,
        min(xs) / image_width,
        min(ys) / image_height,
        max(xs) / image_width,
        max(ys) / image_height,
        source,
        normalized=True,
    )


def _polygon(region: dict, label: str, source: str, options: ReaderOptions) -> Box:
    points = json_list(region.get("points"), "points")
    if len(points) < 3:
        raise ValueError(f"polygon has {len(points)} points, fewer than 3")
    if not all(isinstance(point, list) and len(point) == 2 for point in points):
        raise ValueError("polygon points are not [x, y] pairs")
    pairs = [(number(x, "point x"), number(y, "point y")) for x, y in points]
    xs, ys = [x for x, _ in pairs], [y for _, y in pairs]
    mask = None
    if options.extras.masks:  # In fractions of the image, as the box (see `Mask`).
        mask = Mask(polygons=(tuple(v / 100 for pair in pairs for v in pair),))
    return Box(
        label,
        min(xs) / 100,
        min(ys) / 100,
        max(xs) / 100,
        max(ys) / 100,
        source,
        normalized=True,
        mask=mask,
    )


def _brush(region: dict, label: str, source: str, options: ReaderOptions) -> Box:
    width, height = _size(region, "a brush mask")
    if region.get("format", "rle") != "rle":
        raise ValueError(f"brush format {excerpt(region.get('format'))} is not rle")
    pixels = decode_brush(region.get("rle"), width, height)
    rows, columns = np.flatnonzero(pixels.any(axis=1)), np.flatnonzero(pixels.any(axis=0))
    if not rows.size:
        raise ValueError("brush mask paints no pixel")
    mask = None
    if options.extras.masks:
        mask = Mask(rle_size=(height, width), rle_counts=pixels_to_rle(pixels)["counts"])
    return Box(
        label,
        int(columns[0]) / width,
        int(rows[0]) / height,
        (int(columns[-1]) + 1) / width,
        (int(rows[-1]) + 1) / height,
        source,
        normalized=True,
        mask=mask,
    )


def _box(region: dict, source: str, options: ReaderOptions) -> Box:
    """A region as a Box in fractions of the image; raises ValueError saying why not."""
    other = _other_labels(region)
    if other:
        raise ValueError(f"a {excerpt(other)} region is no rectangle, polygon or brush mask")
    if number(region.get("image_rotation") or 0, "image_rotation") % 360:
        raise ValueError("region was drawn on the image turned in the editor (image_rotation)")
    shape, label = _shape(region), _label(region)
    if shape == "rectangle":
        return _rectangle(region, label, source)
    if shape == "polygon":
        return _polygon(region, label, source, options)
    return _brush(region, label, source, options)


def _latest(task: dict) -> dict | None:
    """The annotation read of a task's: the latest that was not cancelled (see above)."""
    annotations = task.get("annotations")
    if annotations is None:
        annotations = task.get("completions")  # Label Studio before 1.0.
    chosen, chosen_order = None, None
    for position, annotation in enumerate(json_list(annotations, "annotations")):
        annotation = json_object(annotation, "annotation")
        if annotation.get("was_cancelled") is True or annotation.get("skipped") is True:
            continue
        created = annotation.get("created_at")
        order = (created if isinstance(created, str) else "", position)
        if chosen_order is None or order > chosen_order:
            chosen, chosen_order = annotation, order
    return chosen


def _identity(region: dict, region_id: object) -> str:
    """What tells regions apart: the result's id, or in JSON-MIN, which has none, its shape.
    A shape a Labels tag labels comes twice, unlabeled and labeled, with one identity."""
    if isinstance(region_id, str) and region_id:
        return region_id
    return repr([region.get(key) for key in _GEOMETRY])


def _full_regions(annotation: dict, source: str) -> Iterator[tuple[str, object, str]]:
    """(source, region, identity) of each result of a full export's annotation: its value,
    with the result's sizes beside it. A result that is not an object is yielded as it is,
    for the caller to reject as one object."""
    for index, result in enumerate(json_list(annotation.get("result"), "result"), start=1):
        result_source = f"{source}#result[{index}]"
        value = result.get("value") if isinstance(result, dict) else None
        if not isinstance(value, dict):
            if not isinstance(result, dict):
                yield result_source, result, ""
            continue  # Relations and the like have no value.
        region = dict(value)
        for key in ("original_width", "original_height", "image_rotation"):
            if key in result:
                region.setdefault(key, result[key])
        yield result_source, region, _identity(region, result.get("id"))


def _min_regions(record: dict, source: str) -> Iterator[tuple[str, object, str]]:
    """(source, region, identity) of each region of a JSON-MIN record: the dicts in its lists."""
    index = 0
    for key, value in record.items():
        if key in _METADATA or not isinstance(value, list):
            continue
        for region in value:
            if isinstance(region, dict):
                index += 1
                yield f"{source}#region[{index}]", region, _identity(region, None)


def _objects(regions: list[tuple[str, object, str]]) -> list[tuple[str, object]]:
    """The regions that are objects: shapes, labeled, or unlabeled without a labeled twin
    (those are errors), and shapes without a box, which are errors too."""
    labeled = {
        identity for _, region, identity in regions if isinstance(region, dict) and _labeled(region)
    }
    return [
        (source, region)
        for source, region, identity in regions
        if not isinstance(region, dict)
        or _other_labels(region)
        or (_shape(region) and (_labeled(region) or identity not in labeled))
    ]


def _looks_like_image(value: object) -> bool:
    if not isinstance(value, str):
        return False
    text = value.strip()
    if text.startswith(("/data/upload/", "/data/local-files")) or is_url(text):
        return True
    return posixpath.splitext(text.split("?", 1)[0])[1].lower() in _IMAGE_EXTENSIONS


def _reference(data: dict) -> object:
    """What a task's data names its image by: `image`, which Label Studio's templates use,
    else the one value that looks like an image reference."""
    if "image" in data:
        return data["image"]
    found = [v for k, v in data.items() if k not in _METADATA and _looks_like_image(v)]
    if len(found) != 1:
        raise ValueError(
            "task names no image (data.image)"
            + (f", and {len(found)} values that may be images" if found else "")
        )
    return found[0]


def _declared(objects: list[tuple[str, object]]) -> tuple[int | None, int | None]:
    """The image size the first region that has one declares."""
    for _, region in objects:
        if isinstance(region, dict):
            width = declared_size(region.get("original_width"))
            height = declared_size(region.get("original_height"))
            if width is not None and height is not None:
                return width, height
    return None, None


def _annotation(
    data: object,
    objects: list[tuple[str, object]],
    task_id: object,
    source: str,
    path: str,
    options: ReaderOptions,
) -> Parsed:
    reference = _reference(json_object(data, "task data"))
    try:
        key = image_key(reference, path, options)
    except UnsafePathError as error:
        shown = excerpt(reference) if isinstance(reference, str) else None
        yield ErrorRecord(source, shown, STAGE_READ, str(error), len(objects))
        return

    def box(region: object, region_source: str) -> Box:
        return _box(json_object(region, "region"), region_source, options)

    boxes, errors = parse_each(objects, box, key)
    yield from errors
    whole_id = isinstance(task_id, int) and not isinstance(task_id, bool)
    yield ImageAnnotation(
        key, (source,), boxes, *_declared(objects), source_id=task_id if whole_id else None
    )


def _unlabeled(element: dict) -> bool:
    """A task with its `data` but without annotations, as tasks are imported: not yet
    labeled. (A JSON-MIN record has its data keys at the top.)"""
    return isinstance(element.get("data"), dict) and "image" not in element


def _task(element: Any, source: str, path: str, options: ReaderOptions, seen: set) -> Parsed:
    """One element of the file: a full export's task or a JSON-MIN record."""
    if isinstance(element, NotUtf8):
        yield ErrorRecord(source, None, STAGE_READ, "task holds bytes that are not UTF-8 text")
        return
    if not isinstance(element, dict):
        yield ErrorRecord(source, None, STAGE_READ, f"task is {kind(element)}, not an object")
        return
    task_id = element.get("id")
    if "annotations" in element or "completions" in element or _unlabeled(element):
        annotation = _latest(element)
        if annotation is None:
            return  # Never labeled, or every annotation cancelled.
        data = element.get("data")
        regions = list(_full_regions(annotation, source))
    else:
        if isinstance(task_id, (int, str)) and task_id in seen:
            return  # An older annotation of a task already read.
        if isinstance(task_id, (int, str)):
            seen.add(task_id)
        data = element
        regions = list(_min_regions(element, source))
    objects = _objects(regions)
    yield from guarded(
        _annotation(data, objects, task_id, source, path, options), source, None, len(objects)
    )


def parse_labelstudio(handle: BinaryIO, path: str, options: ReaderOptions) -> Parsed:
    """Either export, streamed; each task is its own error boundary, and each region."""
    seen: set = set()
    for index, element in enumerate(iter_elements(handle), start=1):
        source = f"{path}#task[{index}]"
        yield from guarded(_task(element, source, path, options, seen), source)


def _names_urls(path: str) -> bool:
    """Whether the start of a file has a task naming its image by URL."""
    try:
        with open_regular(path) as handle:
            head = handle.read(_SNIFF_BYTES).decode("utf-8", errors="replace")
    except OSError:
        return False
    return bool(_IMAGE_URL.search(head))


def _locate(request: Request, fmt: Format) -> Source:
    """As other file formats are found, saying so when images are named by URL."""
    source = locate_files(request, fmt)
    if any(_names_urls(path) for path in matching_files(source.pattern)[:_SNIFF_FILES]):
        notice = (
            "these Label Studio tasks name images by URL; nothing is downloaded: each image "
            f"is looked for under {source.options.images} by the URL's file name"
        )
        source = replace(source, notices=(*source.notices, notice))
    return source


FORMAT = file_format("labelstudio", "*.json", parse_labelstudio, locate=_locate)
