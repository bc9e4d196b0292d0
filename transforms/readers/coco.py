"""COCO JSON: `images`, `annotations` and `categories`, at COCO scale.

Each file is streamed (see `json_stream.py`): images and categories leave the parser one by
one; annotations are gathered per image id, in file order, and leave as one list per image,
which a CoGroupByKey on (file, image id) joins to its image. COCO train2017 has 860,001
annotations for 118,287 images: as lists, six in seven of them are no element of their own,
and Beam's per-element work is spared for them.

No process ever holds a whole annotation file. Reading one holds the element being decoded,
the ids and names of the images (to find duplicates), and the annotations gathered, trimmed
to the fields used and pickled: bytes, whose size is known exactly and which Python's
garbage collector need not walk (held as dicts of lists, COCO's made its passes cost more
than the elements spared). Once those bytes pass `_StreamCocoFile.GATHER_BYTES` they leave
as gathered so far, an image's annotations in several lists, and gathering starts again; so
what is held never passes the budget by more than the one annotation just read, whatever
the annotations hold, and the join, which puts an image's lists back in file order, makes
the same example either way. Several files (one per split, as COCO and Roboflow ship them)
can be read at once; ids are scoped to their file.
"""

from __future__ import annotations

import operator
import pickle
import sys
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


class _Gathered:
    """A file's annotations read and not yet emitted, pickled, per image id in file order,
    and the memory they take. Each flush is a part, numbered, so the join can put an image's
    lists back in file order (see `_in_file_order`)."""

    # An image id's own cost: its list, its key and its place in the dict.
    _IMAGE_BYTES = 200

    def __init__(self, path: str):
        self._path = path
        self._images: dict[int, list[bytes]] = {}
        self._parts = 0
        self.size = 0

    def add(self, image_id: int, annotation: dict) -> None:
        annotations = self._images.get(image_id)
        if annotations is None:
            annotations = self._images[image_id] = []
            self.size += self._IMAGE_BYTES
        pickled = pickle.dumps(annotation, pickle.HIGHEST_PROTOCOL)
        annotations.append(pickled)
        self.size += sys.getsizeof(pickled) + 8  # And its slot in the list.

    def flush(self) -> list[beam.pvalue.TaggedOutput]:
        """((file, image id), (part, annotations)) for each image id gathered; starts over."""
        flushed = [
            beam.pvalue.TaggedOutput(OBJECTS, ((self._path, image_id), (self._parts, annotations)))
            for image_id, annotations in self._images.items()
        ]
        self._images = {}
        self._parts += 1
        self.size = 0
        return flushed


def _in_file_order(parts: Iterable[tuple[int, list[bytes]]]) -> list[dict]:
    """An image's annotations from the parts `_Gathered` emitted for it, in whatever order
    they come: unpickled (bytes this reader pickled itself), in file order."""
    return [
        pickle.loads(annotation)
        for _, annotations in sorted(parts, key=operator.itemgetter(0))
        for annotation in annotations
    ]


class _StreamCocoFile(beam.DoFn):
    """One COCO file → keyed images, annotation lists and categories, streaming.

    The file and each element of it are error boundaries: an element that cannot be used
    (wrong types, ids beyond int64, bytes that are not UTF-8) costs that element; a
    document malformed from some point on costs the rest, from the character named, and the
    annotations gathered before it still leave. Ids are checked here, as they become keys of
    the join. Duplicate image ids and file names are found here, where one process sees the
    whole images array; a set of ids and names is all it keeps of the images."""

    # What the annotations gathered may take before they leave. COCO train2017's without
    # masks take some 160 MB, so they leave at the end of the file, one list per image;
    # with their polygons (as `bench_coco.py` writes them) some 580 MB, in three lists at most.
    GATHER_BYTES = 256 << 20

    def __init__(self, pattern: str, options: ReaderOptions):
        self._pattern = pattern
        self._options = options
        self._files = Metrics.counter("odrecords", "annotation_files")
        # The fields of an annotation the join uses; the rest is dropped as it is read.
        kept = {"id", "bbox", "iscrowd", "area"}
        if options.extras.masks:
            kept.add("segmentation")
        if options.extras.keypoints:
            kept.add("keypoints")
        self._kept = frozenset(kept)

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

    def _annotation(self, element: Any, path: str, gathered: _Gathered) -> Iterator:
        source = _annotation_source(path, json_object(element, "annotation"))
        if element.get("image_id") is None:
            yield ErrorRecord(source, None, STAGE_READ, "annotation has no image_id", 1)
            return
        image_id = whole(element["image_id"], "image_id")
        category_id = whole(element.get("category_id"), "category_id")
        trimmed = {k: v for k, v in element.items() if k in self._kept}
        trimmed["category_id"] = category_id
        gathered.add(image_id, trimmed)

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
        gathered = _Gathered(path)
        try:
            yield from self._streamed(path, gathered)
        except Exception:
            yield from gathered.flush()
            raise
        yield from gathered.flush()

    def _streamed(self, path: str, gathered: _Gathered) -> Iterator:
        ids: set = set()
        names: set = set()
        index = dict.fromkeys(_ARRAYS, 0)
        handlers = {
            "images": lambda element: self._image(element, path, ids, names),
            "annotations": lambda element: self._annotation(element, path, gathered),
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
                if gathered.size > self.GATHER_BYTES:
                    yield from gathered.flush()

    def process(self, path: str) -> Iterator:
        self._files.inc()
        for item in guarded(self._elements(path), path, whole_file=True):
            yield route(item)


class _JoinImage(beam.DoFn):
    """((file, image id), {images, annotations}) → ImageAnnotation, or errors for
    annotations whose image or category is unknown; each annotation is its own error
    boundary, and the image one for all of them. The annotations come as numbered parts
    (see `_Gathered`), however many."""

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
        in_file_order = _in_file_order(grouped["annotations"])
        annotations = sorted(in_file_order, key=lambda a: str(a.get("id")))
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
