"""COCO JSON: `images`, `annotations` and `categories`, at COCO scale.

Each file is streamed (see `json_stream.py`): images, annotations and categories leave the
parser one by one, and annotations are joined to their images in the graph by a CoGroupByKey
on (file, image id), so no process ever holds a whole annotation file. Several files (one per
split, as COCO and Roboflow ship them) can be read at once; ids are scoped to their file.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.metrics import Metrics

from transforms.paths import UnsafePathError
from transforms.readers.base import (
    ANNOTATIONS,
    CLASSES,
    Format,
    OpenFiles,
    ReaderOptions,
    image_key_for,
    split_of_file,
)
from transforms.readers.json_stream import iter_arrays
from transforms.records import (
    ERRORS,
    STAGE_READ,
    Box,
    ClassDeclaration,
    ErrorRecord,
    ImageAnnotation,
    Keypoint,
    Mask,
)

IMAGES = "coco_images"
OBJECTS = "coco_annotations"
CATEGORIES = "coco_categories"


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


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{value!r} is not a number")
    return float(value)


def _optional_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _mask(segmentation: Any) -> Mask | None:
    """Polygons (list of flat x, y lists) or RLE ({"counts", "size": [h, w]})."""
    if segmentation in (None, [], {}):
        return None
    if isinstance(segmentation, dict):
        size, counts = segmentation.get("size"), segmentation.get("counts")
        if not (isinstance(size, list) and len(size) == 2 and all(_optional_int(s) for s in size)):
            raise ValueError("RLE segmentation has no valid size [height, width]")
        if isinstance(counts, list) and all(_optional_int(c) is not None for c in counts):
            return Mask(rle_size=(size[0], size[1]), rle_counts=tuple(counts))
        if isinstance(counts, str):
            return Mask(rle_size=(size[0], size[1]), rle_counts=counts)
        raise ValueError("RLE segmentation has no valid counts")
    if isinstance(segmentation, list) and all(isinstance(p, list) for p in segmentation):
        return Mask(polygons=tuple(tuple(_number(v) for v in polygon) for polygon in segmentation))
    raise ValueError("segmentation is neither polygons nor RLE")


def _keypoints(values: Any, names: tuple[str, ...], count: int) -> tuple[Keypoint, ...]:
    """An object's keypoints, padded to `count` as TF Models' COCO script pads them: an
    object without keypoints gets its category's points unlabeled (visibility 0), and objects
    of categories with fewer points get unnamed ones, so every object of the dataset carries
    the same number, which the OD API's decoder (`num_keypoints`) needs."""
    if values in (None, []):
        points = [Keypoint(name, 0.0, 0.0, 0) for name in names]
    elif not isinstance(values, list) or len(values) != 3 * len(names):
        raise ValueError(f"keypoints must hold 3 numbers for each of the category's {len(names)}")
    else:
        numbers = [_number(v) for v in values]
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
        raise ValueError(f"bbox {bbox!r} is not [x, y, width, height]")
    x, y, width, height = (_number(v) for v in bbox)
    area = annotation.get("area")
    return Box(
        label=category.name,
        xmin=x,
        ymin=y,
        xmax=x + width,
        ymax=y + height,
        source=source,
        is_crowd=bool(annotation.get("iscrowd", 0)),
        area=_number(area) if area is not None else None,
        mask=_mask(annotation.get("segmentation")) if options.extras.masks else None,
        keypoints=(
            _keypoints(annotation.get("keypoints"), category.keypoints, keypoint_count)
            if options.extras.keypoints
            else ()
        ),
    )


class _StreamCocoFile(beam.DoFn):
    """One COCO file → keyed images, annotations and categories, streaming.

    Duplicate image ids and file names are found here, where one process sees the whole
    images array; a set of ids and names is all it keeps."""

    def __init__(self, options: ReaderOptions):
        self._options = options
        self._files = Metrics.counter("odrecords", "annotation_files")

    def _image(self, element: Any, path: str, ids: set, names: set) -> Iterator:
        if not isinstance(element, dict) or _optional_int(element.get("id")) is None:
            raise ValueError("image without an integer id")
        image_id, name = element["id"], element.get("file_name")
        source = f"{path}#image[{image_id}]"
        if not isinstance(name, str):
            raise ValueError(f"image {image_id} has no file_name")
        try:
            key = image_key_for(name, path, self._options)
        except UnsafePathError as error:
            yield beam.pvalue.TaggedOutput(
                ERRORS, ErrorRecord(source, name, STAGE_READ, str(error))
            )
            return
        duplicate = (
            f"duplicate image id {image_id}"
            if image_id in ids
            else f"duplicate file_name {name!r}"
            if key in names
            else None
        )
        if duplicate:
            yield beam.pvalue.TaggedOutput(ERRORS, ErrorRecord(source, key, STAGE_READ, duplicate))
            return
        ids.add(image_id)
        names.add(key)
        width, height = _optional_int(element.get("width")), _optional_int(element.get("height"))
        yield beam.pvalue.TaggedOutput(
            IMAGES, ((path, image_id), CocoImage(key, source, width, height))
        )

    def _annotation(self, element: Any, path: str) -> Iterator:
        if not isinstance(element, dict):
            raise ValueError("annotation is not an object")
        source = f"{path}#annotation[{element.get('id')}]"
        image_id = element.get("image_id")
        if _optional_int(image_id) is None:
            yield beam.pvalue.TaggedOutput(
                ERRORS, ErrorRecord(source, None, STAGE_READ, "annotation has no image_id", 1)
            )
            return
        keep = {"id", "category_id", "bbox", "iscrowd", "area"}
        if self._options.extras.masks:
            keep.add("segmentation")
        if self._options.extras.keypoints:
            keep.add("keypoints")
        trimmed = {k: v for k, v in element.items() if k in keep}
        yield beam.pvalue.TaggedOutput(OBJECTS, ((path, image_id), trimmed))

    def _category(self, element: Any, path: str) -> Iterator:
        if not isinstance(element, dict) or _optional_int(element.get("id")) is None:
            raise ValueError("category without an integer id")
        name = element.get("name")
        if not isinstance(name, str) or not name:
            raise ValueError(f"category {element['id']} has no name")
        keypoints = element.get("keypoints") or []
        category = CocoCategory(name, tuple(str(k) for k in keypoints))
        yield beam.pvalue.TaggedOutput(CATEGORIES, ((path, element["id"]), category))
        yield beam.pvalue.TaggedOutput(
            CLASSES, ClassDeclaration(name, element["id"], f"{path}#category[{element['id']}]")
        )

    def process(self, file: fileio.ReadableFile) -> Iterator:
        path = file.metadata.path
        self._files.inc()
        ids: set = set()
        names: set = set()
        index = {"images": 0, "annotations": 0, "categories": 0}
        handlers = {
            "images": lambda element: self._image(element, path, ids, names),
            "annotations": lambda element: self._annotation(element, path),
            "categories": lambda element: self._category(element, path),
        }
        try:
            with file.open() as stream:
                for key, element in iter_arrays(stream, set(handlers)):
                    index[key] += 1
                    try:
                        yield from handlers[key](element)
                    except ValueError as error:
                        source = f"{path}#{key}[{index[key] - 1}]"
                        objects = int(key == "annotations")
                        yield beam.pvalue.TaggedOutput(
                            ERRORS, ErrorRecord(source, None, STAGE_READ, str(error), objects)
                        )
        except (ValueError, OSError) as error:
            yield beam.pvalue.TaggedOutput(
                ERRORS,
                ErrorRecord(path, None, STAGE_READ, f"unreadable JSON, rest skipped: {error}"),
            )


class _JoinImage(beam.DoFn):
    """((file, image id), {images, annotations}) → ImageAnnotation, or errors for
    annotations whose image or category is unknown."""

    def __init__(self, options: ReaderOptions):
        self._options = options

    def process(
        self,
        element: tuple[tuple[str, int], dict[str, Iterable]],
        categories: dict[tuple[str, int], CocoCategory],
    ) -> Iterator:
        (path, image_id), grouped = element
        images = list(grouped["images"])
        annotations = sorted(grouped["annotations"], key=lambda a: str(a.get("id")))
        if not images:
            for annotation in annotations:
                yield beam.pvalue.TaggedOutput(
                    ERRORS,
                    ErrorRecord(
                        f"{path}#annotation[{annotation.get('id')}]",
                        None,
                        STAGE_READ,
                        f"annotation names unknown image id {image_id}",
                        1,
                    ),
                )
            return
        (image,) = images  # The streaming parser lets one image per id through.
        keypoint_count = max((len(c.keypoints) for c in categories.values()), default=0)
        boxes = []
        for annotation in annotations:
            source = f"{path}#annotation[{annotation.get('id')}]"
            category = categories.get((path, annotation.get("category_id")))
            try:
                if category is None:
                    raise ValueError(
                        f"annotation names unknown category id {annotation.get('category_id')!r}"
                    )
                boxes.append(
                    annotation_box(annotation, category, source, self._options, keypoint_count)
                )
            except ValueError as error:
                yield beam.pvalue.TaggedOutput(
                    ERRORS, ErrorRecord(source, image.image, STAGE_READ, str(error), 1)
                )
        yield ImageAnnotation(
            image=image.image,
            sources=(image.source,),
            boxes=tuple(boxes),
            width=image.width,
            height=image.height,
            split=(
                split_of_file(path, self._options.annotations_root)
                if self._options.source_splits
                else None
            ),
            source_id=image_id,
        )


class ReadCoco(beam.PTransform):
    """COCO files matching a pattern → `annotations`, `errors` and `classes` outputs."""

    def __init__(self, pattern: str, options: ReaderOptions):
        super().__init__()
        self._pattern = pattern
        self._options = options

    def expand(self, pbegin: beam.pvalue.PBegin) -> dict[str, beam.PCollection]:
        parsed = (
            pbegin
            | "Files" >> OpenFiles(self._pattern)
            | "Stream"
            >> beam.ParDo(_StreamCocoFile(self._options)).with_outputs(
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
