"""`odrecords inspect`: what is inside TFRecord files, and what is wrong with them.

Prints a summary a person can read at a glance (or JSON), checks every record against what
the TF Object Detection API's decoder expects, and exits 1 when any problem is found, so it
can guard a scheduled pipeline. `--render` draws examples with their boxes, because people
would rather look than read.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import statistics
import sys
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import BinaryIO

from PIL import Image

from pipelines.failures import check_writable, failure_line
from pipelines.flags import UsageError, inspect_parser
from pipelines.record_inputs import record_inputs
from transforms.builds.safe_write import UnsafeWrite
from transforms.choices import DEFAULT_MAX_IMAGE_PIXELS
from transforms.export.decode import RecordRejected, class_name
from transforms.export.render import check_folder, class_histogram, contact_sheets
from transforms.label_map import LabelMapError, read_label_names
from transforms.tfrecord import iter_records, open_records

# Keys the OD API decoder reads, with the kind of list it expects.
EXPECTED = {
    "image/encoded": "bytes_list",
    "image/format": "bytes_list",
    "image/height": "int64_list",
    "image/width": "int64_list",
    "image/object/bbox/xmin": "float_list",
    "image/object/bbox/ymin": "float_list",
    "image/object/bbox/xmax": "float_list",
    "image/object/bbox/ymax": "float_list",
}
# Objects need a class/label or a class/text: with a label map the OD API's decoder looks
# labels up from the text, as TF Models' own scripts expect.
OPTIONAL = {
    "image/source_id": "bytes_list",
    "image/object/class/label": "int64_list",
    "image/filename": "bytes_list",
    "image/key/sha256": "bytes_list",
    "image/object/class/text": "bytes_list",
    "image/object/difficult": "int64_list",
    "image/object/truncated": "int64_list",
    "image/object/view": "bytes_list",
    "image/object/is_crowd": "int64_list",
    "image/object/area": "float_list",
    "image/object/mask": "bytes_list",
    "image/object/keypoint/x": "float_list",
    "image/object/keypoint/y": "float_list",
    "image/object/keypoint/visibility": "int64_list",
    "image/object/keypoint/text": "bytes_list",
}
# Lists with one value per object (keypoint lists hold several per object).
OBJECT_LISTS = [
    k
    for k in {**EXPECTED, **OPTIONAL}
    if k.startswith("image/object/") and not k.startswith("image/object/keypoint/")
]
KINDS = {**EXPECTED, **OPTIONAL}
# COCO's size buckets, in pixels of box area.
SMALL, MEDIUM = 32**2, 96**2
# What records without a usable `image/source_id` are still good for: the OD API's decoder
# reads a missing one as empty and trains, but evaluators tell images apart by it.
NO_SOURCE_ID = (
    "no image/source_id: the OD API trains on these records, but its COCO evaluation tells "
    "images apart by source_id (records without one count as one image), and TF-Vision "
    "needs a number there (or regenerate_source_id: true)"
)
NOT_A_NUMBER = (
    "image/source_id is not a whole number from 0 to 2^63 - 1: the OD API takes any text, "
    "TF-Vision's decoder converts it to an int64 (or set regenerate_source_id: true)"
)
_WHOLE_NUMBER = re.compile(r"[0-9]{1,19}")


@dataclass
class Report:
    files: list[str] = field(default_factory=list)
    examples: int = 0
    objects: int = 0
    labelled_by_text: int = 0
    classes: Counter = field(default_factory=Counter)
    negatives: int = 0
    formats: Counter = field(default_factory=Counter)
    widths: list[int] = field(default_factory=list)
    heights: list[int] = field(default_factory=list)
    box_sizes: Counter = field(default_factory=Counter)
    keys: dict[str, Counter] = field(default_factory=dict)
    problems: list[dict] = field(default_factory=list)
    warnings: dict[str, dict] = field(default_factory=dict)

    def problem(self, path: str, index: int | None, message: str) -> None:
        self.problems.append({"file": path, "record": index, "problem": message})

    def warning(self, path: str, index: int, message: str) -> None:
        """Something another trainer than the OD API needs: counted per message, with the
        first record it was found in."""
        found = self.warnings.setdefault(message, {"records": 0, "file": path, "record": index})
        found["records"] += 1

    def as_json(self) -> dict:
        def spread(values: list[int]) -> dict:
            if not values:
                return {}
            return {"min": min(values), "median": statistics.median(values), "max": max(values)}

        return {
            "files": self.files,
            "examples": self.examples,
            "objects": self.objects,
            "objects_labelled_by_text": self.labelled_by_text,
            "classes": dict(self.classes.most_common()),
            "images_without_objects": self.negatives,
            "image_formats": dict(self.formats.most_common()),
            "image_width": spread(self.widths),
            "image_height": spread(self.heights),
            "box_sizes": {k: self.box_sizes.get(k, 0) for k in ("small", "medium", "large")},
            "keys": {key: dict(kinds) for key, kinds in sorted(self.keys.items())},
            "problems": self.problems,
            "warnings": [{"warning": text, **found} for text, found in self.warnings.items()],
        }


def _kind(feature) -> str:
    return feature.WhichOneof("kind") or "empty"


def _values(feature) -> list:
    kind = feature.WhichOneof("kind")
    return list(getattr(feature, kind).value) if kind else []


def _usable(features, key: str) -> list:
    """The values of a key when the record has it as the kind the decoder expects, else []:
    a missing or mistyped key is reported once, and every other check goes on without it."""
    if key not in features or _kind(features[key]) not in (KINDS[key], "empty"):
        return []
    return _values(features[key])


def _header_pixels(encoded: bytes) -> int:
    """The pixel count an image's header claims (0 when PIL cannot read it: TensorFlow's
    decoder then has its say), checked before decoding, which would allocate that much."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            width, height = Image.open(io.BytesIO(encoded)).size
    except Image.DecompressionBombError:
        return Image.MAX_IMAGE_PIXELS * 2 + 1
    except Exception:
        return 0
    return width * height


class Inspector:
    """Checks records one by one and gathers the summary."""

    def __init__(self, names: dict[int, str], ids: dict[str, int]):
        import tensorflow as tf

        self._tf = tf
        self._names = names
        self._ids = ids
        self._source_ids: dict[str, tuple[str, int]] = {}
        self._files_without_records: list[str] = []
        self.report = Report()

    def _check_keys(self, features, report_problem) -> None:
        for key in features:
            self.report.keys.setdefault(key, Counter())[_kind(features[key])] += 1
        for key in EXPECTED:
            if key not in features:
                report_problem(f"missing key {key}")
        for key, kind in KINDS.items():
            if key in features and _kind(features[key]) not in (kind, "empty"):
                report_problem(f"{key} is a {_kind(features[key])}, expected {kind}")

    def _check_source_id(self, features, path: str, index: int, report_problem) -> None:
        """A missing or empty source id, or one that is no number, is a warning: the OD API
        trains on such records. One that another record has is a problem: evaluation would
        merge the two images."""
        values = _usable(features, "image/source_id")
        source_id = values[0].decode(errors="replace") if values else ""
        if not source_id:
            if "image/source_id" not in features or _kind(features["image/source_id"]) in (
                "bytes_list",
                "empty",
            ):
                self.report.warning(path, index, NO_SOURCE_ID)
            return
        if not (_WHOLE_NUMBER.fullmatch(source_id) and int(source_id) < 2**63):
            self.report.warning(path, index, NOT_A_NUMBER)
        if source_id in self._source_ids:
            first = self._source_ids[source_id]
            report_problem(
                f"duplicate image/source_id {source_id[:80]!r} "
                f"(first in {first[0]} record {first[1]})"
            )
        else:
            self._source_ids[source_id] = (path, index)

    def _check_image(self, features, report_problem) -> tuple[int, int] | None:
        encoded = _usable(features, "image/encoded")
        fmt = _usable(features, "image/format")
        self.report.formats[fmt[0].decode(errors="replace") if fmt else "?"] += 1
        if not encoded:
            return None
        pixels = _header_pixels(encoded[0])
        if pixels > DEFAULT_MAX_IMAGE_PIXELS:
            report_problem(
                f"image has {pixels} pixels, more than {DEFAULT_MAX_IMAGE_PIXELS}: not decoded"
            )
            return None
        try:
            shape = self._tf.io.decode_image(encoded[0], channels=3, expand_animations=False).shape
        except self._tf.errors.OpError as error:
            message = getattr(error, "message", str(error)).splitlines()[0]
            report_problem(f"image does not decode: {message}")
            return None
        height, width = int(shape[0]), int(shape[1])
        recorded = (_usable(features, "image/width"), _usable(features, "image/height"))
        if all(recorded) and (recorded[0][0], recorded[1][0]) != (width, height):
            report_problem(
                f"image/width and height say {(recorded[0][0], recorded[1][0])}, the pixels "
                f"are {(width, height)}"
            )
        self.report.widths.append(width)
        self.report.heights.append(height)
        return width, height

    def _check_objects(self, features, size, report_problem) -> list[tuple]:
        corner_keys = [f"image/object/bbox/{k}" for k in ("xmin", "ymin", "xmax", "ymax")]
        lists = {key: _usable(features, key) for key in OBJECT_LISTS if key in features}
        lists |= {key: _usable(features, key) for key in corner_keys}
        count = len(lists["image/object/bbox/xmin"])
        unequal = {k: len(v) for k, v in lists.items() if len(v) != count}
        if unequal:
            report_problem(
                f"object lists differ in length: bbox/xmin has {count}, "
                + ", ".join(f"{k.split('image/object/')[1]} has {n}" for k, n in unequal.items())
            )
            return []
        for key in ("image/object/area", "image/object/keypoint/x", "image/object/keypoint/y"):
            if not all(math.isfinite(v) for v in _usable(features, key)):
                report_problem(f"{key} holds a value that is not a finite number")
        self.report.objects += count
        if not count:
            self.report.negatives += 1
        texts = [t.decode(errors="replace") for t in lists.get("image/object/class/text", [])]
        labels = lists.get("image/object/class/label", [])
        if count and not texts and not labels:
            report_problem("objects have neither image/object/class/label nor class/text")
        drawn = []
        for i in range(count):
            corners = [lists[f"image/object/bbox/{k}"][i] for k in ("xmin", "ymin", "xmax", "ymax")]
            where = f"object {i + 1}"
            if not all(0 <= c <= 1 for c in corners):
                report_problem(f"{where}: box {corners} has coordinates outside [0, 1]")
            if corners[0] >= corners[2] or corners[1] >= corners[3]:
                report_problem(f"{where}: box {corners} is inverted or empty")
            name = "?"
            if texts or labels:
                text, label = texts[i] if texts else "", labels[i] if labels else None
                name = self._class(where, text, label, report_problem)
                self.report.classes[name] += 1
            if size and all(math.isfinite(c) for c in corners):
                area = (corners[2] - corners[0]) * size[0] * (corners[3] - corners[1]) * size[1]
                bucket = "small" if area < SMALL else "medium" if area < MEDIUM else "large"
                self.report.box_sizes[bucket] += 1
            drawn.append((name, corners))
        return drawn

    def _class(self, where: str, text: str, label: int | None, report_problem) -> str:
        """The object's class name as `odrecords export` reads it (`class_name`), with the
        problems the OD API's decoder would trip on: labels below 1 or outside the label map,
        and text and label that the label map says differ."""
        if label is None and text:
            self.report.labelled_by_text += 1
        try:
            name = class_name(text, label, self._names, self._ids)
        except RecordRejected as error:
            report_problem(f"{where}: {error}")
            return text or str(label)
        if label is not None and label < 1:
            report_problem(f"{where}: label {label} is below 1")
        if self._names and label is not None and label >= 1 and label not in self._names:
            report_problem(f"{where}: label {label} is not in the label map")
        if self._names and text and label is not None and self._ids.get(text, label) != label:
            report_problem(
                f"{where}: class text {text!r} is id {self._ids[text]} in the label map, "
                f"but the label is {label}"
            )
        return name

    def _check_record(self, path: str, index: int, data: bytes, report_problem) -> Iterator:
        """Checks one record; yields (image bytes, [(class, corners)], image name) if it is
        readable. The name is the record's image/filename, else its source id, else where it
        is: what a person looking at a picture of it would search for."""
        try:
            example = self._tf.train.Example.FromString(data)
        except Exception:
            report_problem("record is not a tf.train.Example")
            return
        self.report.examples += 1
        features = example.features.feature
        # Each check takes what the record has: a missing key is one problem (or warning),
        # and the rest of the record is still checked and counted.
        self._check_keys(features, report_problem)
        self._check_source_id(features, path, index, report_problem)
        size = self._check_image(features, report_problem)
        drawn = self._check_objects(features, size, report_problem)
        if size:
            names = _usable(features, "image/filename") or _usable(features, "image/source_id")
            name = names[0].decode(errors="replace") if names and names[0] else ""
            yield (
                _usable(features, "image/encoded")[0],
                drawn,
                name or f"{os.path.basename(path)} record {index}",
            )

    def inspect_stream(self, path: str, stream: BinaryIO) -> Iterator[tuple[bytes, list, str]]:
        """Checks the records of an open file; yields (image bytes, [(class, corners)], image
        name) of readable examples. A record that trips a check in an unforeseen way is a problem
        too: one record never stops the inspection."""
        has_records = False
        for index, data, problem in iter_records(stream):
            has_records = True
            report_problem = lambda message, i=index: self.report.problem(path, i, message)  # noqa: E731
            if problem:
                report_problem(problem)
                continue
            try:
                yield from self._check_record(path, index, data, report_problem)
            except Exception as error:
                report_problem(f"cannot be checked: {type(error).__name__}: {str(error)[:80]}")
        if not has_records:
            self._files_without_records.append(path)

    def inspect(self, path: str) -> Iterator[tuple[bytes, list, str]]:
        """Checks one file; yields (image bytes, [(class, corners)], image name) of readable
        examples."""
        self.report.files.append(path)
        try:
            stream = open_records(path)
        except OSError as error:
            self.report.problem(path, None, f"unreadable: {str(error)[:120]}")
            return
        with stream:
            yield from self.inspect_stream(path, stream)

    def check_not_empty(self) -> None:
        """Files without records are a problem when no file holds an example: an empty input
        is no dataset. (Beside files with examples they are not: some writers make empty
        shards.)"""
        if not self.report.examples:
            for path in self._files_without_records:
                self.report.problem(path, None, "holds no records")


def print_report(report: Report, label_map: bool) -> None:
    data = report.as_json()
    print(f"files: {len(report.files)}")
    print(f"examples: {report.examples}   objects: {report.objects}   "
          f"images without objects: {report.negatives}")  # fmt: skip
    source = "label map" if label_map else "records"
    print(f"classes (names from the {source}):")
    for name, count in report.classes.most_common():
        print(f"  {count:>8}  {name}")
    if report.labelled_by_text:
        check = "checked against the label map" if label_map else "give --label-map to check it"
        print(f"labels: from class text for {report.labelled_by_text} objects without "
              f"image/object/class/label ({check})")  # fmt: skip
    print("image formats: " + ", ".join(f"{k} {v}" for k, v in report.formats.most_common()))
    if report.widths:
        w, h = data["image_width"], data["image_height"]
        print(f"image size: width {w['min']}-{w['max']} (median {w['median']}), "
              f"height {h['min']}-{h['max']} (median {h['median']})")  # fmt: skip
    sizes = data["box_sizes"]
    print(f"boxes: {sizes['small']} small (< 32x32 px), {sizes['medium']} medium, "
          f"{sizes['large']} large (>= 96x96 px)")  # fmt: skip
    print("keys:")
    for key, kinds in data["keys"].items():
        print(f"  {key}: " + ", ".join(f"{kind} in {n}" for kind, n in kinds.items()))
    for text, found in report.warnings.items():
        print(f"warning: {found['records']} records: {text} (first: {found['file']} record "
              f"{found['record']})")  # fmt: skip
    if report.problems:
        print(f"{len(report.problems)} problems:")
        for problem in report.problems:
            where = problem["file"] + (
                f" record {problem['record']}" if problem["record"] is not None else ""
            )
            print(f"  {where}: {problem['problem']}")
    else:
        print("no problems found")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: 0 when the records are sound, 1 when problems were found, 2 for bad use."""
    try:
        args = inspect_parser().parse_args(sys.argv[1:] if argv is None else argv)
        paths = [path for _, path in record_inputs(args.pattern)]
        names, ids = read_label_names(args.label_map) if args.label_map else ({}, {})
        if args.render and os.path.exists(args.render) and not os.path.isdir(args.render):
            raise UsageError(f"--render {args.render} is a file, not a folder")
        if args.render:
            check_folder(args.render)
            check_writable(args.render)
    except UnsafeWrite as error:
        print(f"odrecords inspect: error: --render {args.render}: {error}", file=sys.stderr)
        return 2
    except (UsageError, OSError, LabelMapError) as error:
        print(f"odrecords inspect: error: {error}", file=sys.stderr)
        return 2
    inspector = Inspector(names, ids)
    samples = []
    for path in paths:
        for sample in inspector.inspect(path):
            if args.render and len(samples) < args.limit:
                samples.append(sample)
    inspector.check_not_empty()
    report = inspector.report
    if args.render:
        try:
            written = contact_sheets(samples, args.render) + [
                class_histogram(report.classes, args.render)
            ]
        except UnsafeWrite as error:  # Placed there since the check.
            print(f"odrecords inspect: error: --render {args.render}: {error}", file=sys.stderr)
            return 2
        except OSError as error:  # The disk filled up since the check.
            reason = failure_line(error, args.render)
            print(f"odrecords inspect: error: --render failed: {reason}", file=sys.stderr)
            return 1
        print(f"rendered {len(samples)} examples: {', '.join(written)}", file=sys.stderr)
    if args.json:
        print(json.dumps(report.as_json(), indent=2, ensure_ascii=False))
    else:
        print_report(report, bool(names))
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
