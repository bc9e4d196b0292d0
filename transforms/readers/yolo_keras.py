"""keras-yolo3 (`--format yolo-keras`): one annotation file with a line per image,
`path x_min,y_min,x_max,y_max,class_id ...` in pixels, and a classes file.

Roboflow's "YOLO v3 Keras" export keeps `_annotations.txt` and `_classes.txt` in each split
folder; without `--classes`, a classes file beside the annotation files is used.
"""

from __future__ import annotations

import posixpath
from dataclasses import replace

import apache_beam as beam
from apache_beam.io import fileio

from transforms.paths import UnsafePathError, image_key_under
from transforms.readers.base import (
    CLASSES,
    Format,
    Parsed,
    ParseFiles,
    ReaderOptions,
    Request,
    Source,
    UnusableSource,
    locate_files,
    matching_files,
)
from transforms.readers.yolo import declarations, read_names
from transforms.records import STAGE_READ, Box, ErrorRecord, ImageAnnotation

CLASSES_FILES = ("_classes.txt", "classes.txt")


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


def _classes_beside(files: list[str]) -> tuple[str, ...]:
    """Class names from a classes file in the annotation files' folders; they must agree."""
    folders = sorted({posixpath.dirname(path) for path in files})
    for name in CLASSES_FILES:
        found = [p for folder in folders for p in matching_files(posixpath.join(folder, name))]
        if found:
            distinct = {read_names(path) for path in found}
            if len(distinct) > 1:
                raise UnusableSource(f"the {name} files disagree; give one with --classes")
            return distinct.pop()
    raise UnusableSource(
        "--format yolo-keras needs --classes FILE (keras-yolo3's classes file); "
        f"found no {' or '.join(CLASSES_FILES)} beside the annotations"
    )


def _locate(request: Request, fmt: Format) -> Source:
    source = locate_files(request, fmt)
    if request.class_names:
        return source
    names = _classes_beside(matching_files(source.pattern))
    return replace(source, options=replace(source.options, class_names=names))


class ReadKeras(beam.PTransform):
    """keras-yolo3 files → annotations, errors, and the classes file's classes."""

    def __init__(self, pattern: str, options: ReaderOptions):
        super().__init__()
        self._pattern = pattern
        self._options = options

    def expand(self, pbegin: beam.pvalue.PBegin) -> dict[str, beam.PCollection]:
        read = pbegin | "Files" >> ParseFiles(self._pattern, parse_keras_file, self._options)
        names = declarations(self._options.class_names, "classes file")
        return {**read, CLASSES: pbegin | "ClassesFile" >> beam.Create(names)}


# A folder means Roboflow's layout: its `_annotations.txt`, or one per split folder.
FORMAT = Format(name="yolo-keras", folder_glob="_annotations.txt", reader=ReadKeras, locate=_locate)
