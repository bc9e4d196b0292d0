"""YOLO labels: Darknet / Ultralytics (`--format yolo`) and keras-yolo3 (`--format yolo-keras`).

Darknet and Ultralytics keep one `.txt` per image with `class x_center y_center width height`
lines, normalized to [0, 1]. Ultralytics finds an image's labels by replacing the last
`/images/` of its path with `/labels/` (and the extension with `.txt`); Darknet keeps them
beside the image. Class names come from `data.yaml` (`names` as a list or a dict),
`classes.txt` or `obj.names`. A missing label file means an image without objects.

keras-yolo3 keeps one annotation file with a line per image:
`path x_min,y_min,x_max,y_max,class_id ...` in pixels, and a classes file.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator
from dataclasses import dataclass

import apache_beam as beam
import yaml
from apache_beam.io import fileio
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from transforms.paths import UnsafePathError, image_key_under
from transforms.readers.base import ANNOTATIONS, CLASSES, Parsed, ReaderOptions, route
from transforms.records import (
    ERRORS,
    STAGE_READ,
    Box,
    ClassDeclaration,
    ErrorRecord,
    ImageAnnotation,
)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
NAMES_FILES = ("classes.txt", "obj.names", "_darknet.labels")
SPLIT_KEYS = ("train", "val", "test")


@dataclass(frozen=True)
class YoloDataset:
    """Where a YOLO dataset's images are, per split, and its class names."""

    root: str
    names: tuple[str, ...]
    sources: tuple[tuple[str | None, str], ...]  # (split or None, folder or list file)


def _read_text(path: str) -> str:
    with FileSystems.open(path) as handle:
        return handle.read().decode("utf-8-sig")


def read_names(path: str) -> tuple[str, ...]:
    """Class names, one per line, as in `classes.txt` and `obj.names`."""
    return tuple(line.strip() for line in _read_text(path).splitlines() if line.strip())


def _yaml_names(names) -> tuple[str, ...]:
    if isinstance(names, list):
        return tuple(str(name) for name in names)
    if isinstance(names, dict) and all(isinstance(k, int) for k in names):
        if sorted(names) != list(range(len(names))):
            raise ValueError("data.yaml names must be numbered 0, 1, 2, ...")
        return tuple(str(names[index]) for index in range(len(names)))
    raise ValueError("data.yaml names must be a list or a mapping of index to name")


def _local_normpath(path: str) -> str:
    return posixpath.normpath(path) if FileSystems.get_scheme(path) is None else path


def _split_source(root: str, entry: str) -> str:
    """A data.yaml split entry as Ultralytics resolves it: relative to `path`, and without a
    leading `../` when that is what exists (Roboflow's exports)."""
    if FileSystems.get_scheme(entry) is not None or posixpath.isabs(entry):
        return entry
    candidate = _local_normpath(FileSystems.join(root, entry))
    if not FileSystems.exists(candidate) and entry.startswith("../"):
        return _split_source(root, entry[3:])
    return candidate


def load_dataset(path: str, classes_file: str | None = None) -> YoloDataset:
    """Reads a dataset's `data.yaml` (a file, or one in the folder) or, without one, takes
    every image under the folder. Raises ValueError when the dataset cannot be used."""
    yaml_path = path
    if not path.endswith((".yaml", ".yml")):
        yaml_path = FileSystems.join(path, "data.yaml")
    if FileSystems.exists(yaml_path):
        config = yaml.safe_load(_read_text(yaml_path)) or {}
        if not isinstance(config, dict):
            raise ValueError(f"{yaml_path} is not a mapping")
        base = posixpath.dirname(yaml_path)
        root = str(config.get("path") or base)
        if FileSystems.get_scheme(root) is None and not posixpath.isabs(root):
            root = _local_normpath(posixpath.join(base, root))
        sources = []
        for split in SPLIT_KEYS:
            entries = config.get(split)
            for entry in entries if isinstance(entries, list) else [entries] if entries else []:
                sources.append((split, _split_source(root, str(entry))))
        if not sources:
            raise ValueError(f"{yaml_path} names no train, val or test images")
        names = read_names(classes_file) if classes_file else _yaml_names(config.get("names"))
        return YoloDataset(root, names, tuple(sources))
    names_file = classes_file or next(
        (
            FileSystems.join(path, name)
            for name in NAMES_FILES
            if FileSystems.exists(FileSystems.join(path, name))
        ),
        None,
    )
    if names_file is None:
        raise ValueError(
            f"{path} has no data.yaml nor {', '.join(NAMES_FILES)}; "
            "give the class names with --classes"
        )
    return YoloDataset(path, read_names(names_file), ((None, path),))


def label_path(image_path: str) -> str:
    """Where Ultralytics and Darknet keep an image's label file."""
    head, marker, tail = image_path.rpartition("/images/")
    stem = posixpath.splitext(tail if marker else image_path)[0]
    return f"{head}/labels/{stem}.txt" if marker else f"{stem}.txt"


def parse_yolo_labels(
    text: str, source: str, key: str, names: tuple[str, ...], split: str | None
) -> Parsed:
    """One image's label lines → its annotation, and an error per unusable line."""
    boxes = []
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        line_source = f"{source}:{number}"
        try:
            if len(fields) != 5:
                raise ValueError(
                    f"line has {len(fields)} fields; "
                    "expected 5 (class x_center y_center width height)"
                )
            try:
                index = int(fields[0])
                cx, cy, width, height = (float(field) for field in fields[1:])
            except ValueError:
                raise ValueError(f"line {line.strip()!r} is not numbers") from None
            if not 0 <= index < len(names):
                raise ValueError(f"class index {index} is not one of the {len(names)} names")
            if not all(0 <= value <= 1 for value in (cx, cy, width, height)):
                raise ValueError(f"values {fields[1:]} are outside [0, 1]")
        except ValueError as error:
            yield ErrorRecord(line_source, key, STAGE_READ, str(error), 1)
            continue
        boxes.append(
            Box(
                label=names[index],
                xmin=cx - width / 2,
                ymin=cy - height / 2,
                xmax=cx + width / 2,
                ymax=cy + height / 2,
                source=line_source,
                normalized=True,
            )
        )
    yield ImageAnnotation(image=key, sources=(source,), boxes=tuple(boxes), split=split)


class _ListImages(beam.DoFn):
    """(split, folder or list file) → (split, image path) for every image in it; paths in
    list files are taken as written (relative ones resolve against the dataset root)."""

    def process(self, element: tuple[str | None, str]) -> Iterator[tuple[str | None, str]]:
        split, source = element
        if source.endswith(".txt"):
            for line in _read_text(source).splitlines():
                if line.strip():
                    yield split, line.strip()
            return
        pattern = FileSystems.join(source, "**")
        for metadata in FileSystems.match([pattern])[0].metadata_list:
            if metadata.path.lower().endswith(IMAGE_EXTENSIONS):
                yield split, metadata.path


class _ReadLabels(beam.DoFn):
    """(split, image path) → the image's annotation from its label file."""

    def __init__(self, dataset: YoloDataset, options: ReaderOptions):
        self._dataset = dataset
        self._options = options
        self._files = Metrics.counter("odrecords", "annotation_files")

    def process(self, element: tuple[str | None, str]) -> Iterator:
        split, path = element
        split = split if self._options.source_splits else None
        try:
            key = image_key_under(path, self._options.images, self._dataset.root)
        except UnsafePathError as error:
            yield beam.pvalue.TaggedOutput(ERRORS, ErrorRecord(path, path, STAGE_READ, str(error)))
            return
        labels = label_path(FileSystems.join(self._options.images, *key.split("/")))
        try:
            text = _read_text(labels)
        except FileNotFoundError:
            yield ImageAnnotation(image=key, sources=(labels,), split=split)
            return
        except (OSError, UnicodeDecodeError) as error:
            yield beam.pvalue.TaggedOutput(
                ERRORS, ErrorRecord(labels, key, STAGE_READ, f"unreadable label file: {error}")
            )
            return
        self._files.inc()
        for record in parse_yolo_labels(text, labels, key, self._dataset.names, split):
            yield route(record)


class ReadYolo(beam.PTransform):
    """A Darknet / Ultralytics dataset → annotations, errors and its declared classes."""

    def __init__(self, dataset: YoloDataset, options: ReaderOptions):
        super().__init__()
        self._dataset = dataset
        self._options = options

    def expand(self, pbegin: beam.pvalue.PBegin) -> dict[str, beam.PCollection]:
        read = (
            pbegin
            | "Sources" >> beam.Create(self._dataset.sources)
            | "ListImages" >> beam.ParDo(_ListImages())
            | "Spread" >> beam.Reshuffle()
            | "ReadLabels"
            >> beam.ParDo(_ReadLabels(self._dataset, self._options)).with_outputs(
                ERRORS, main=ANNOTATIONS
            )
        )
        classes = pbegin | "Names" >> beam.Create(declarations(self._dataset.names, "names"))
        return {ANNOTATIONS: read[ANNOTATIONS], ERRORS: read[ERRORS], CLASSES: classes}


def declarations(names: tuple[str, ...], source: str) -> list[ClassDeclaration]:
    """YOLO class index i is label map id i + 1."""
    return [ClassDeclaration(name, index + 1, source) for index, name in enumerate(names)]


def parse_keras_line(line: str, source: str, options: ReaderOptions, base: str) -> Parsed:
    """`path x_min,y_min,x_max,y_max,class_id ...` → the image's annotation and errors."""
    fields = line.split()
    if not fields:
        return
    try:
        key = image_key_under(fields[0], options.images, base)
    except UnsafePathError as error:
        yield ErrorRecord(source, fields[0], STAGE_READ, str(error), len(fields) - 1)
        return
    boxes = []
    for number, field in enumerate(fields[1:], start=1):
        box_source = f"{source}#box[{number}]"
        parts = field.split(",")
        try:
            if len(parts) != 5:
                raise ValueError(f"box {field!r} is not x_min,y_min,x_max,y_max,class_id")
            try:
                corners = [float(part) for part in parts[:4]]
                index = int(parts[4])
            except ValueError:
                raise ValueError(f"box {field!r} is not numbers") from None
            if not 0 <= index < len(options.class_names):
                raise ValueError(f"class index {index} is not in the classes file")
        except ValueError as error:
            yield ErrorRecord(box_source, key, STAGE_READ, str(error), 1)
            continue
        boxes.append(Box(options.class_names[index], *corners, source=box_source))
    yield ImageAnnotation(image=key, sources=(source,), boxes=tuple(boxes))


def parse_keras_file(file: fileio.ReadableFile, options: ReaderOptions) -> Parsed:
    path = file.metadata.path
    base = posixpath.dirname(path)
    with file.open() as stream:
        for number, raw in enumerate(stream, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                yield ErrorRecord(f"{path}:{number}", None, STAGE_READ, "line is not UTF-8")
                continue
            yield from parse_keras_line(line, f"{path}:{number}", options, base)
