"""The reading end of the graph: annotations in any supported format → canonical records.

`ReadAnnotations` runs the format's reader, then applies what all formats share: the checks
of every record a reader produced (`check_annotation`, `check_declaration`) and the class
map. Its outputs are `annotations`, `errors`, `classes` (classes declared with the source's
own ids) and `counts` (for the manifest: objects the class map or the reader dropped).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import replace

import apache_beam as beam

from transforms.encode import writable_float, writable_int
from transforms.label_map import usable_class_name
from transforms.readers.base import ANNOTATIONS, CLASSES, COUNTS, Format, ReaderOptions
from transforms.readers.class_map import DROPPED, ApplyClassMap, rename_declaration
from transforms.records import (
    ERRORS,
    INT64_MAX,
    STAGE_READ,
    Box,
    ClassDeclaration,
    ErrorRecord,
    ImageAnnotation,
    Keypoint,
    Mask,
    compact_sources,
    excerpt,
    utf8_safe,
    writable_text,
)

_VISIBILITIES = (0, 1, 2)  # COCO: unlabeled, labeled but hidden, visible.


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _flag(value: object) -> bool:
    return isinstance(value, int) and value in (0, 1)


def _finite(value: object) -> bool:
    """A real number that is finite as a float (an int beyond floats is not)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _text_problem(what: str, value: object, empty: bool = True) -> str | None:
    if not isinstance(value, str):
        return f"{what} {excerpt(value)} is not text"
    if not writable_text(value):
        return f"{what} {excerpt(repr(value))} is not valid UTF-8"
    if not value and not empty:
        return f"{what} is empty"
    return None


def _keypoint_problem(point: object) -> str | None:
    if not isinstance(point, Keypoint):
        return f"keypoint {excerpt(point)} is not a keypoint"
    problem = _text_problem("keypoint name", point.name)
    if problem:
        return problem
    if not (writable_float(point.x) and writable_float(point.y)):
        where = excerpt((point.x, point.y))
        return f"keypoint {excerpt(repr(point.name))} at {where} is not a finite float32"
    if not (_whole(point.visibility) and point.visibility in _VISIBILITIES):
        return (
            f"keypoint {excerpt(repr(point.name))} has visibility {excerpt(point.visibility)}, "
            "not 0, 1 or 2"
        )
    return None


def box_problem(box: Box) -> str | None:
    """Why a box a reader produced cannot be written, or None.

    A class name must be non-empty text (it ends up in `label_map.pbtxt`, which would not
    read back), corners finite, and every value one a tf.train.Example can hold: an area
    finite and >= 0, flags 0 or 1, keypoints finite with visibility 0, 1 or 2. Masks are
    checked where the image's measured size is known (`boxes.py`).
    """
    if not isinstance(box, Box):
        return f"{excerpt(box)} is not a box"
    problem = _text_problem("class name", box.label, empty=False) or _text_problem("view", box.view)
    if problem:
        return problem
    corners = (box.xmin, box.ymin, box.xmax, box.ymax)
    if not all(_finite(value) for value in corners):
        return f"box {excerpt(corners)} has a corner that is not a finite number"
    if box.area is not None and not (writable_float(box.area) and box.area >= 0):
        return f"area {excerpt(box.area)} is not a finite number >= 0"
    for name in ("difficult", "truncated", "normalized"):
        if not _flag(getattr(box, name)):
            return f"{name} flag {excerpt(getattr(box, name))} is not 0 or 1"
    if box.is_crowd is not None and not _flag(box.is_crowd):
        return f"is_crowd {excerpt(box.is_crowd)} is not 0 or 1"
    if box.mask is not None and not isinstance(box.mask, Mask):
        return f"mask {excerpt(box.mask)} is not a mask"
    if not isinstance(box.keypoints, (tuple, list)):
        return f"keypoints {excerpt(box.keypoints)} are not a list of keypoints"
    for point in box.keypoints:
        problem = _keypoint_problem(point)
        if problem:
            return problem
    return None


def _image_problem(mention: ImageAnnotation) -> str | None:
    """Why a mention cannot be used at all: its image name must be UTF-8 text (it is the
    example's key and seeds its split), its source split a plain folder name."""
    problem = _text_problem("image name", mention.image, empty=False)
    if problem:
        return problem
    if not isinstance(mention.boxes, (tuple, list)):
        return f"boxes {excerpt(mention.boxes)} are not a list of boxes"
    split = mention.split
    if split is not None:
        problem = _text_problem("split name", split, empty=False)
        if problem:
            return problem
        if split in (".", "..") or any(c in split for c in "/\\\x00"):
            return f"split name {excerpt(repr(split))} is not a plain folder name"
    return None


def _source(value: object) -> str:
    return utf8_safe(value) if isinstance(value, str) else excerpt(value)


def check_annotation(
    mention: ImageAnnotation,
) -> tuple[ImageAnnotation | None, list[ErrorRecord]]:
    """A reader's mention as the rest of the job can use it, and an error record for each
    thing taken out of it; never raises.

    A bad box is taken out on its own (one object lost); a declared size that is not a
    positive int64 pair is dropped (it is only compared with the measured size); a mention
    whose image name or split cannot be used is rejected with all its boxes. Sources are
    made UTF-8-writable, since they are only ever shown.
    """
    sources = mention.sources if isinstance(mention.sources, tuple) else (mention.sources,)
    sources = tuple(_source(source) for source in sources)
    where = compact_sources(sources)
    image = mention.image if isinstance(mention.image, str) else None
    problem = _image_problem(mention)
    if problem:
        lost = len(mention.boxes) if isinstance(mention.boxes, (tuple, list)) else 0
        return None, [ErrorRecord(where, image, STAGE_READ, problem, lost)]
    errors = []
    boxes = []
    for box in mention.boxes:
        problem = box_problem(box)
        source = _source(box.source) if isinstance(box, Box) else where
        if problem:
            errors.append(ErrorRecord(source, image, STAGE_READ, problem, 1))
        else:
            boxes.append(replace(box, source=source))
    width, height = mention.width, mention.height
    if (width is not None or height is not None) and not all(
        _whole(size) and 1 <= size <= INT64_MAX for size in (width, height)
    ):
        size = excerpt(f"{excerpt(width, 30)} x {excerpt(height, 30)}")
        errors.append(
            ErrorRecord(where, image, STAGE_READ, f"declared size {size} is not usable; ignored")
        )
        width, height = None, None
    checked = replace(mention, sources=sources, boxes=tuple(boxes), width=width, height=height)
    return checked, errors


def check_declaration(declaration: ClassDeclaration) -> ClassDeclaration | ErrorRecord:
    """A declared class as the label map can use it, or an error record: its name must be
    one a label map can hold, its id an int64 (ids a label map cannot hold are renumbered
    when the label map is derived)."""
    source = _source(declaration.source)
    if not usable_class_name(declaration.name):
        return ErrorRecord(
            source,
            None,
            STAGE_READ,
            f"declared class name {excerpt(repr(declaration.name))} is empty or not UTF-8 text",
        )
    if not (_whole(declaration.source_id) and writable_int(declaration.source_id)):
        return ErrorRecord(
            source,
            None,
            STAGE_READ,
            f"class {excerpt(repr(declaration.name))} has id {excerpt(declaration.source_id)}, "
            "not an int64",
        )
    return replace(declaration, source=source)


class CheckRecords(beam.DoFn):
    """The one place every record a reader produced is checked, whatever its format: mentions
    (`check_annotation`) and class declarations (`check_declaration`). Errors are tagged
    `errors`; a reader's mistake costs a box, a value or a mention, never the job."""

    def process(self, record: ImageAnnotation | ClassDeclaration) -> Iterator:
        if isinstance(record, ImageAnnotation):
            annotation, errors = check_annotation(record)
            records = [*errors, *([annotation] if annotation is not None else [])]
        elif isinstance(record, ClassDeclaration):
            records = [check_declaration(record)]
        else:
            problem = f"the reader produced {excerpt(record)}, not an annotation"
            records = [ErrorRecord("", None, STAGE_READ, problem)]
        for checked in records:
            yield (
                beam.pvalue.TaggedOutput(ERRORS, checked)
                if isinstance(checked, ErrorRecord)
                else checked
            )


class ReadAnnotations(beam.PTransform):
    """Reads annotations of `fmt` from `pattern`; `class_map` renames or drops classes (see
    `class_map.py`)."""

    def __init__(
        self,
        fmt: Format,
        pattern: str,
        options: ReaderOptions,
        class_map: dict[str, str | None] | None = None,
    ):
        super().__init__()
        self._format = fmt
        self._pattern = pattern
        self._options = options
        self._class_map = class_map

    def expand(self, pbegin: beam.pvalue.PBegin) -> dict[str, beam.PCollection]:
        read = pbegin | self._format.name.title() >> self._format.reader(
            self._pattern, self._options
        )
        annotations = read[ANNOTATIONS] | "CheckAnnotations" >> beam.ParDo(
            CheckRecords()
        ).with_outputs(ERRORS, main=ANNOTATIONS)
        classes = read[CLASSES] | "CheckClasses" >> beam.ParDo(CheckRecords()).with_outputs(
            ERRORS, main=CLASSES
        )
        errors = (read[ERRORS], annotations[ERRORS], classes[ERRORS]) | "ReadErrors" >> (
            beam.Flatten()
        )
        annotations, classes = annotations[ANNOTATIONS], classes[CLASSES]
        counts = [read[COUNTS]] if COUNTS in read else []
        if self._class_map:
            mapped = annotations | "ClassMap" >> beam.ParDo(
                ApplyClassMap(self._class_map)
            ).with_outputs(DROPPED, main=ANNOTATIONS)
            annotations = mapped[ANNOTATIONS]
            counts.append(mapped[DROPPED])
            classes = classes | "RenameClasses" >> beam.FlatMap(rename_declaration, self._class_map)
        if not counts:
            counts.append(pbegin | "NoCounts" >> beam.Create([]))
        counted = tuple(counts) | "ReadCounts" >> beam.Flatten()
        return {ANNOTATIONS: annotations, ERRORS: errors, CLASSES: classes, COUNTS: counted}
