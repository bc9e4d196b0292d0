"""keras-yolo3 (`--format yolo-keras`): one annotation file with a line per image,
`path x_min,y_min,x_max,y_max,class_id ...` in pixels, and a classes file.

Roboflow's "YOLO v3 Keras" export keeps `_annotations.txt` and `_classes.txt` in each split
folder; without `--classes`, a classes file beside the annotation files is used.
"""

from __future__ import annotations

import posixpath
from dataclasses import replace
from typing import BinaryIO

import apache_beam as beam

from transforms.paths import UnsafePathError, image_key_under
from transforms.readers.base import (
    CLASSES,
    Format,
    Parsed,
    ParseFiles,
    Reader,
    ReaderOptions,
    Request,
    Source,
    UnusableSource,
    file_boundary,
    guarded,
    locate_files,
    matching_files,
    parse_each,
)
from transforms.readers.values import parse_number, parse_whole
from transforms.readers.yolo import declarations, read_names
from transforms.records import STAGE_READ, Box, ErrorRecord, ImageAnnotation, excerpt

CLASSES_FILES = ("_classes.txt", "classes.txt")
_CORNERS = ("x_min", "y_min", "x_max", "y_max")


def _keras_box(field: str, source: str, names: tuple[str, ...]) -> Box:
    parts = field.split(",")
    if len(parts) != 5:
        raise ValueError(f"box {excerpt(field)} is not x_min,y_min,x_max,y_max,class_id")
    corners = [parse_number(part, corner) for part, corner in zip(parts[:4], _CORNERS, strict=True)]
    index = parse_whole(parts[4], "class_id")
    if not 0 <= index < len(names):
        raise ValueError(f"class index {index} is not in the classes file")
    return Box(names[index], *corners, source=source)


def parse_keras_line(line: str, source: str, options: ReaderOptions, base: str) -> Parsed:
    """`path x_min,y_min,x_max,y_max,class_id ...` → the image's annotation and errors."""
    fields = line.split()
    if not fields:
        return
    try:
        key = image_key_under(fields[0], options.images, base)
    except UnsafePathError as error:
        yield ErrorRecord(source, excerpt(fields[0]), STAGE_READ, str(error), len(fields) - 1)
        return
    boxes, errors = parse_each(
        ((f"{source}#box[{number}]", field) for number, field in enumerate(fields[1:], 1)),
        lambda field, where: _keras_box(field, where, options.class_names),
        key,
    )
    yield from errors
    yield ImageAnnotation(image=key, sources=(source,), boxes=boxes)


@file_boundary
def parse_keras_file(handle: BinaryIO, path: str, options: ReaderOptions) -> Parsed:
    """Each line is its own error boundary: a line that is not UTF-8, or fails in any way,
    costs that line's image and boxes."""
    base = posixpath.dirname(path)
    for number, raw in enumerate(handle, start=1):
        source = f"{path}:{number}"
        objects = max(len(raw.split()) - 1, 0)
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            yield ErrorRecord(source, None, STAGE_READ, "line is not UTF-8 text", objects)
            continue
        yield from guarded(parse_keras_line(line, source, options, base), source, None, objects)


def _classes_beside(files: list[str], root: str) -> tuple[str, ...]:
    """Class names from a classes file in the annotation files' folders; they must agree,
    and lie inside the annotations' `root`."""
    folders = sorted({posixpath.dirname(path) for path in files})
    for name in CLASSES_FILES:
        found = [p for folder in folders for p in matching_files(posixpath.join(folder, name))]
        if found:
            distinct = {read_names(path, root) for path in found}
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
    names = _classes_beside(matching_files(source.pattern), source.options.annotations_root)
    return replace(source, options=replace(source.options, class_names=names))


class ReadKeras(Reader):
    """keras-yolo3 files → annotations, errors, and the classes file's classes."""

    def expand(self, pbegin: beam.pvalue.PBegin) -> dict[str, beam.PCollection]:
        read = pbegin | "Files" >> ParseFiles(self._pattern, parse_keras_file, self._options)
        names = declarations(self._options.class_names, "classes file")
        return {**read, CLASSES: pbegin | "ClassesFile" >> beam.Create(names)}


# A folder means Roboflow's layout: its `_annotations.txt`, or one per split folder.
FORMAT = Format(name="yolo-keras", folder_glob="_annotations.txt", reader=ReadKeras, locate=_locate)
