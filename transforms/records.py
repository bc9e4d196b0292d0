"""The canonical records every reader produces and every writer consumes.

Readers turn their format into `ImageAnnotation`s; everything downstream (grouping, image
checks, splits, encoding, reports) works on these and never on a source format, so adding a
format means adding a reader, not another converter.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

    from transforms.images.orientation import Orientation

# Stages named in error records, in the order a record passes them.
STAGE_READ = "read"
STAGE_IMAGE = "image"
STAGE_BOX = "box"

# The range of a tf.train.Example int64 feature, which every integer odrecords writes must fit.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

# Tag of the dead-letter output of every DoFn that can reject input.
ERRORS = "errors"

# A source that is a line of a file: `labels.csv:12`.
_LINE_SOURCE = re.compile(r"^(.+):(\d+)$")

# The most characters of input an error reason quotes.
EXCERPT_CHARS = 80


def excerpt(value: object, limit: int = EXCERPT_CHARS) -> str:
    """`value` as an error reason quotes it: a string as it is, anything else by its repr,
    cut to `limit` characters and always writable as UTF-8.

    Reasons name the offending input so it can be found, but never echo a whole file (a
    label file that turns out to be someone's secrets, a megabyte-long class name) into
    `errors.jsonl`. Integers too long to print are described by their size.
    """
    if isinstance(value, int) and value.bit_length() > 4 * limit:
        text = f"<an integer of {value.bit_length()} bits>"
    else:
        text = value if isinstance(value, str) else repr(value)
    if len(text) > limit:
        text = f"{text[: limit - 1]}…"
    return utf8_safe(text)


def writable_text(value: object) -> bool:
    """Whether `value` is a string UTF-8 can encode: JSON escapes and non-UTF-8 file names
    can give Python strings with lone surrogates, which no output file can hold."""
    if not isinstance(value, str):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def utf8_safe(text: str) -> str:
    """`text` with what UTF-8 cannot encode (lone surrogates, as JSON escapes and non-UTF-8
    file names produce) shown as backslash escapes, so output files can always be written."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


@dataclass(frozen=True)
class Extras:
    """What objects carry beyond their boxes, read and written alike: instance masks and
    keypoints, off by default because they multiply the output size."""

    masks: bool = False
    keypoints: bool = False


@dataclass(frozen=True)
class Mask:
    """An instance mask as the source gives it: polygons (flat x, y lists, in the units of
    its box's corners: pixels, or fractions of the image size when the box is `normalized`)
    or a COCO run-length encoding (`rle_counts` as a list of runs or COCO's compressed
    string)."""

    polygons: tuple[tuple[float, ...], ...] = ()
    rle_size: tuple[int, int] | None = None
    rle_counts: tuple[int, ...] | str | None = None


@dataclass(frozen=True)
class Keypoint:
    """A named keypoint in pixels; visibility as COCO defines it (0 unlabeled, 1, 2)."""

    name: str
    x: float
    y: float
    visibility: int


@dataclass(frozen=True)
class Box:
    """One object: a class name and corners as the annotation gives them.

    Corners are pixels, or fractions of the image size when `normalized` (YOLO): such
    sources do not know the pixel size, and converting them with a guessed size would lose
    precision.
    """

    label: str
    xmin: float
    ymin: float
    xmax: float
    ymax: float
    source: str
    difficult: bool = False
    truncated: bool = False
    view: str = ""
    normalized: bool = False
    is_crowd: bool | None = None
    area: float | None = None
    mask: Mask | None = None
    keypoints: tuple[Keypoint, ...] = ()


@dataclass(frozen=True)
class ClassDeclaration:
    """A class a source declares, with the id it gives it (COCO category id, YOLO index + 1).

    Declared ids are kept in the label map when they are valid, so predictions map back to
    the source's own ids.
    """

    name: str
    source_id: int
    source: str


@dataclass(frozen=True)
class ImageAnnotation:
    """An image, named relative to the images root, with the boxes drawn on it.

    `width` and `height` are what the annotation claims; the pipeline measures the pixels
    itself and only reports a disagreement. `split` is the split the source puts the image
    in, if it has one (used with `--splits source`); `other_splits` are further splits the
    source puts the same annotation in (coco128 lists its train folder as `val` too): it is
    read and counted once, and written once in each split. `embedded_in` is the annotation
    file that also carries the image's bytes (LabelMe's `imageData`), used when the file
    `image` names is not a readable image: a path, so image bytes never travel through a
    shuffle. `source_id` is the image's number, written as `image/source_id`: the source's
    own id where it has one (COCO's image id), so evaluation results map back to it; the
    create graph gives every image one (`transforms.source_ids`).
    """

    image: str
    sources: tuple[str, ...]
    boxes: tuple[Box, ...] = ()
    width: int | None = None
    height: int | None = None
    split: str | None = None
    embedded_in: str | None = None
    other_splits: tuple[str, ...] = ()
    source_id: int | None = None


@dataclass(frozen=True)
class LoadedImage:
    """An annotated image whose bytes decode with TensorFlow to `width` x `height`;
    `orientation` is what was made of its EXIF orientation tag, if it has one; `preview`,
    the scaled pixels verification decoded, when it did (`transforms.images.verify.Decoded`)."""

    annotation: ImageAnnotation
    encoded: bytes
    format: str
    width: int
    height: int
    converted_from: str | None = None
    orientation: Orientation | None = None
    preview: np.ndarray | None = field(default=None, compare=False, repr=False)

    @functools.cached_property
    def sha256(self) -> str:
        """The hex sha256 of the bytes written, computed once: the example holds it, and
        duplicates are found by it."""
        return hashlib.sha256(self.encoded).hexdigest()


@dataclass(frozen=True)
class LabeledObject:
    """A validated object: normalized corners in [0, 1], its label map id, and the source's
    optional extras (crowd flag, area, mask, keypoints) carried to the encoder."""

    label: str
    label_id: int
    xmin: float
    ymin: float
    xmax: float
    ymax: float
    box: Box
    mask_png: bytes | None = None


@dataclass(frozen=True)
class ExampleInput:
    """Everything one tf.train.Example is built from."""

    image: LoadedImage
    objects: tuple[LabeledObject, ...]
    clipped: int = 0


@dataclass(frozen=True)
class ErrorRecord:
    """One rejected input: where it came from, how far it got, why, and what it took along.

    `objects` counts the objects lost with it (all of an image's boxes when the image is
    rejected), which is what lets the manifest's accounting add up. `split` and `classes`
    say, where the step that rejected it knew them, the split the objects were to be written
    in and the class of each (of some, or none, when the rest is unknown): the manifest
    counts lost objects per split and per class from them. `path` is the file an image was
    looked for at, when one was: the key alone does not tell where a wrong --images led, and
    it stays out of the reason, which reports group errors by.
    """

    source: str
    image: str | None
    stage: str
    reason: str
    objects: int = 0
    split: str | None = None
    classes: tuple[str, ...] = ()
    path: str | None = None

    def to_json(self) -> dict:
        """The errors-file line; every text UTF-8-writable, whatever the input held. `path`
        only where a file was looked at."""
        line = {
            "source": utf8_safe(self.source),
            "image": None if self.image is None else utf8_safe(self.image),
            "stage": self.stage,
            "reason": utf8_safe(self.reason),
            "objects": self.objects,
        }
        if self.path is not None:
            line["path"] = utf8_safe(self.path)
        return line

    @classmethod
    def for_image(cls, image: ImageAnnotation, reason: str, path: str | None = None) -> ErrorRecord:
        """A rejected image: named by all its sources, and taking all its boxes along;
        `path`: the file it was looked for at."""
        return cls(
            compact_sources(image.sources),
            image.image,
            STAGE_IMAGE,
            reason,
            len(image.boxes),
            image.split,
            tuple(box.label for box in image.boxes),
            path,
        )


def _line_ranges(numbers: Iterable[int]) -> str:
    """1, 2, 4, 5, 6, 7 → `1,2,4-7`: runs of three or more lines as `first-last`."""
    runs: list[list[int]] = []
    for number in sorted(set(numbers)):
        if runs and number == runs[-1][1] + 1:
            runs[-1][1] = number
        else:
            runs.append([number, number])
    return ",".join(
        f"{first}-{last}" if last - first >= 2 else ",".join(map(str, range(first, last + 1)))
        for first, last in runs
    )


def compact_sources(sources: Iterable[str]) -> str:
    """An image's sources as one short, deterministic string: `a.csv:2,3,5-9;b.xml`.

    An image named by 40 rows of a CSV file would otherwise repeat the file's name 40 times in
    its error record. Line numbers of one file (`FILE:LINE`) are gathered after the file's
    name; files and other sources are sorted and separated by `;`.
    """
    lines: dict[str, list[int]] = {}
    parts: set[str] = set()
    for source in sources:
        match = _LINE_SOURCE.match(source)
        if match:
            lines.setdefault(match[1], []).append(int(match[2]))
        else:
            parts.add(source)
    parts.update(f"{file}:{_line_ranges(numbers)}" for file, numbers in lines.items())
    return ";".join(sorted(parts))


_WITHIN_FILE = re.compile(r"(:\d+)?(#[^/#]*)?$")


def annotation_file(source: str) -> str:
    """The annotation file a source names: `a.csv:12` → `a.csv`, `c.json#image[3]` →
    `c.json`."""
    return _WITHIN_FILE.sub("", source)
