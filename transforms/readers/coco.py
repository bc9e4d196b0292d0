"""COCO JSON: `images`, `annotations` and `categories`, at COCO scale.

Each file is streamed (see `json_stream.py`): images, annotations and categories leave the
parser one by one, and annotations are joined to their images in the graph by a CoGroupByKey
on (file, image id), so no process ever holds a whole annotation file. Several files (one per
split, as COCO and Roboflow ship them) can be read at once; ids are scoped to their file.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics

from transforms.paths import UnsafePathError
from transforms.readers.base import (
    ANNOTATIONS,
    CLASSES,
    Format,
    MatchPaths,
    Reader,
    ReaderOptions,
    guarded,
    image_key_for,
    open_annotations,
    parse_each,
    route,
    split_of_file,
)
from transforms.readers.json_stream import NotUtf8, SkippedValue, iter_arrays
from transforms.readers.values import (
    declared_size,
    flag,
    json_list,
    json_object,
    number,
    whole,
)
from transforms.records import (
    ERRORS,
    STAGE_READ,
    Box,
    ClassDeclaration,
    ErrorRecord,
    ImageAnnotation,
    Keypoint,
    Mask,
    excerpt,
)

IMAGES = "coco_images"
OBJECTS = "coco_annotations"
CATEGORIES = "coco_categories"
# The top-level arrays read, streaming.
_ARRAYS = ("images", "annotations", "categories")


@dataclass(frozen=True)
class CocoImage:
    image: str
    source: str
    width: int | None
    height: int | None


@dataclass(frozen=True)
class CocoCategory:
    name: str
    keypoints: tuple[str, ...]


def _mask(segmentation: Any) -> Mask | None:
    """Polygons (list of flat x, y lists) or RLE ({"counts", "size": [h, w]})."""
    if segmentation in (None, [], {}):
        return None
    if isinstance(segmentation, dict):
        size, counts = segmentation.get("size"), segmentation.get("counts")
        if not (isinstance(size, list) and len(size) == 2):
            raise ValueError("RLE segmentation has no size [height, width]")
        height, width = (whole(value, "RLE size") for value in size)
        if isinstance(counts, str):
            return Mask(rle_size=(height, width), rle_counts=counts)
        runs = tuple(whole(value, "RLE count") for value in json_list(counts, "RLE counts"))
        return Mask(rle_size=(height, width), rle_counts=runs)
    polygons = json_list(segmentation, "segmentation")
    return Mask(
        polygons=tuple(
            tuple(number(v, "polygon coordinate") for v in json_list(polygon, "polygon"))
            for polygon in polygons
        )
    )


def _keypoints(values: Any, names: tuple[str, ...], count: int) -> tuple[Keypoint, ...]:
    """An object's keypoints, padded to `count` as TF Models' COCO script pads them: an
    object without keypoints gets its category's points unlabeled (visibility 0), and objects
    of categories with fewer points get unnamed ones, so every object of the dataset carries
    the same number, which the OD API's decoder (`num_keypoints`) needs."""
    values = json_list(values, "keypoints")
    if not values:
        points = [Keypoint(name, 0.0, 0.0, 0) for name in names]
    elif len(values) != 3 * len(names):
        raise ValueError(f"keypoints must hold 3 numbers for each of the category's {len(names)}")
    else:
        numbers = [number(v, "keypoint value") for v in values]
        points = [
            Keypoint(name, numbers[3 * i], numbers[3 * i + 1], int(numbers[3 * i + 2]))
            for i, name in enumerate(names)
        ]
    return (*points, *[Keypoint("", 0.0, 0.0, 0)] * (count - len(points)))


def annotation_box(
    annotation: dict,
    category: CocoCategory,
    source: str,
    options: ReaderOptions,
    keypoint_count: int = 0,
) -> Box:
    """One COCO annotation as a Box, with keypoints padded to `keypoint_count`; raises
    ValueError naming what is wrong with it."""
    bbox = annotation.get("bbox")
    if not isinstance(bbox, list) or len(bbox) != 4:
        raise ValueError(f"bbox {excerpt(bbox)} is not [x, y, width, height]")
    x, y, width, height = (number(v, "bbox value") for v in bbox)
    area = annotation.get("area")
    return Box(
        label=category.name,
        xmin=x,
        ymin=y,
        xmax=x + width,
        ymax=y + height,
        source=source,
        is_crowd=flag(annotation.get("iscrowd", 0), "iscrowd"),
        area=number(area, "area") if area is not None else None,
        mask=_mask(annotation.get("segmentation")) if options.extras.masks else None,
        keypoints=(
            _keypoints(annotation.get("keypoints"), category.keypoints, keypoint_count)
            if options.extras.keypoints
            else ()
        ),
    )


def _annotation_source(path: str, annotation: dict) -> str:
    return f"{path}#annotation[{excerpt(annotation.get('id'), 24)}]"


def _skipped(path: str, key: str, value: SkippedValue) -> ErrorRecord:
    """The error for a top-level value that was not read: what it was, how many entries it
    had and, for annotations, the objects they were."""
    entries = f" of {value.entries} entries" if value.entries else ""
    if key in _ARRAYS:
        reason = f'"{key}" is {value.kind}{entries}, not a list: all skipped'
    else:
        reason = (
            "a top-level key holds bytes that are not UTF-8 text: its value, "
            f"{value.kind}{entries}, was skipped"
        )
    lost = value.entries if key == "annotations" else 0
    return ErrorRecord(path, None, STAGE_READ, reason, lost)


class _StreamCocoFile(beam.DoFn):
    """One COCO file → keyed images, annotations and categories, streaming.

    The file and each element of it are error boundaries: an element that cannot be used
    (wrong types, ids beyond int64, bytes that are not UTF-8) costs that element; a
    document malformed from some point on costs the rest, from the character named. Ids
    are checked here, as they become keys of the join. Duplicate image ids and file names
    are found here, where one process sees the whole images array; a set of ids and names
    is all it keeps."""

    def __init__(self, pattern: str, options: ReaderOptions):
        self._pattern = pattern
        self._options = options
        self._files = Metrics.counter("odrecords", "annotation_files")

    def _image(self, element: Any, path: str, ids: set, names: set) -> Iterator:
        image_id = whole(json_object(element, "image").get("id"), "image id")
        name = element.get("file_name")
        source = f"{path}#image[{image_id}]"
        if not isinstance(name, str):
            raise ValueError(f"image {image_id} has no file_name")
        try:
            key = image_key_for(name, path, self._options)
        except UnsafePathError as error:
            yield ErrorRecord(source, excerpt(name), STAGE_READ, str(error))
            return
        duplicate = (
            f"duplicate image id {image_id}"
            if image_id in ids
            else f"duplicate file_name {excerpt(repr(name))}"
            if key in names
            else None
        )
        if duplicate:
            yield ErrorRecord(source, key, STAGE_READ, duplicate)
            return
        ids.add(image_id)
        names.add(key)
        width, height = declared_size(element.get("width")), declared_size(element.get("height"))
        yield beam.pvalue.TaggedOutput(
            IMAGES, ((path, image_id), CocoImage(key, source, width, height))
        )

    def _annotation(self, element: Any, path: str) -> Iterator:
        source = _annotation_source(path, json_object(element, "annotation"))
        if element.get("image_id") is None:
            yield ErrorRecord(source, None, STAGE_READ, "annotation has no image_id", 1)
            return
        image_id = whole(element["image_id"], "image_id")
        category_id = whole(element.get("category_id"), "category_id")
        keep = {"id", "bbox", "iscrowd", "area"}
        if self._options.extras.masks:
            keep.add("segmentation")
        if self._options.extras.keypoints:
            keep.add("keypoints")
        trimmed = {k: v for k, v in element.items() if k in keep}
        trimmed["category_id"] = category_id
        yield beam.pvalue.TaggedOutput(OBJECTS, ((path, image_id), trimmed))

    def _category(self, element: Any, path: str) -> Iterator:
        category_id = whole(json_object(element, "category").get("id"), "category id")
        name = element.get("name")
        if not isinstance(name, str) or not name:
            raise ValueError(f"category {category_id} has no name")
        keypoints = json_list(element.get("keypoints"), f"category {category_id} keypoints")
        if not all(isinstance(k, str) for k in keypoints):
            raise ValueError(f"category {category_id} has keypoint names that are not text")
        category = CocoCategory(name, tuple(keypoints))
        yield beam.pvalue.TaggedOutput(CATEGORIES, ((path, category_id), category))
        yield beam.pvalue.TaggedOutput(
            CLASSES, ClassDeclaration(name, category_id, f"{path}#category[{category_id}]")
        )

    def _elements(self, path: str) -> Iterator:
        ids: set = set()
        names: set = set()
        index = dict.fromkeys(_ARRAYS, 0)
        handlers = {
            "images": lambda element: self._image(element, path, ids, names),
            "annotations": lambda element: self._annotation(element, path),
            "categories": lambda element: self._category(element, path),
        }
        with open_annotations(path, self._pattern, self._options.annotations_root) as stream:
            for key, element in iter_arrays(stream, set(_ARRAYS)):
                objects = int(key == "annotations")
                if isinstance(element, SkippedValue):
                    yield _skipped(path, key, element)
                    continue
                source = f"{path}#{key}[{index[key]}]"
                index[key] += 1
                if isinstance(element, NotUtf8):
                    reason = f"{key[:-1]} holds bytes that are not UTF-8 text"
                    yield ErrorRecord(source, None, STAGE_READ, reason, objects)
                    continue
                yield from guarded(handlers[key](element), source, None, objects)

    def process(self, path: str) -> Iterator:
        self._files.inc()
        for item in guarded(self._elements(path), path, whole_file=True):
            yield route(item)


class _JoinImage(beam.DoFn):
    """((file, image id), {images, annotations}) → ImageAnnotation, or errors for
    annotations whose image or category is unknown; each annotation is its own error
    boundary, and the image one for all of them."""

    def __init__(self, options: ReaderOptions):
        self._options = options

    def _joined(
        self,
        path: str,
        image_id: int,
        images: list[CocoImage],
        annotations: list[dict],
        categories: dict[tuple[str, int], CocoCategory],
    ) -> Iterator:
        if not images:
            for annotation in annotations:
                yield ErrorRecord(
                    _annotation_source(path, annotation),
                    None,
                    STAGE_READ,
                    f"annotation names unknown image id {image_id}",
                    1,
                )
            return
        (image,) = images  # The streaming parser lets one image per id through.
        keypoint_count = max((len(c.keypoints) for c in categories.values()), default=0)

        def box(annotation: dict, source: str) -> Box:
            category = categories.get((path, annotation["category_id"]))
            if category is None:
                raise ValueError(
                    f"annotation names unknown category id {annotation['category_id']}"
                )
            return annotation_box(annotation, category, source, self._options, keypoint_count)

        boxes, errors = parse_each(
            ((_annotation_source(path, a), a) for a in annotations), box, image.image
        )
        yield from errors
        yield ImageAnnotation(
            image=image.image,
            sources=(image.source,),
            boxes=boxes,
            width=image.width,
            height=image.height,
            split=(
                split_of_file(path, self._options.annotations_root)
                if self._options.source_splits
                else None
            ),
            source_id=image_id,
        )

    def process(
        self,
        element: tuple[tuple[str, int], dict[str, Iterable]],
        categories: dict[tuple[str, int], CocoCategory],
    ) -> Iterator:
        (path, image_id), grouped = element
        images = list(grouped["images"])
        annotations = sorted(grouped["annotations"], key=lambda a: str(a.get("id")))
        source = images[0].source if images else f"{path}#image[{image_id}]"
        joined = self._joined(path, image_id, images, annotations, categories)
        for record in guarded(joined, source, None, len(annotations)):
            yield route(record)


class ReadCoco(Reader):
    """COCO files matching a pattern → `annotations`, `errors` and `classes` outputs."""

    def expand(self, pbegin: beam.pvalue.PBegin) -> dict[str, beam.PCollection]:
        parsed = (
            pbegin
            | "Files" >> MatchPaths(self._pattern)
            | "Stream"
            >> beam.ParDo(_StreamCocoFile(self._pattern, self._options)).with_outputs(
                IMAGES, OBJECTS, CATEGORIES, CLASSES, ERRORS
            )
        )
        joined = (
            {"images": parsed[IMAGES], "annotations": parsed[OBJECTS]}
            | "JoinByImageId" >> beam.CoGroupByKey()
            | "ToAnnotations"
            >> beam.ParDo(
                _JoinImage(self._options),
                beam.pvalue.AsDict(parsed[CATEGORIES]),
            ).with_outputs(ERRORS, main=ANNOTATIONS)
        )
        errors = (parsed[ERRORS], joined[ERRORS]) | "Errors" >> beam.Flatten()
        return {ANNOTATIONS: joined[ANNOTATIONS], ERRORS: errors, CLASSES: parsed[CLASSES]}


FORMAT = Format(name="coco", folder_glob="*.json", reader=ReadCoco)
