"""RetinaNet CSV (keras-retinanet's CSV dataset, Roboflow's "RetinaNet Keras CSV" export):
`path,x1,y1,x2,y2,class_name`, one row per box, in pixels, with no header; a row
`path,,,,,` names an image without objects. Columns after the sixth are not read, as
keras-retinanet reads none.

The classes file holds `class_name,id` rows, ids from 0: `--classes`, else a `_classes.csv`
(Roboflow) or `classes.csv` beside the annotation files. A class is declared with its id + 1
(id 0 is the label map's background), and a box of a class the file lacks is an error record,
as keras-retinanet refuses it. Without a classes file, classes are numbered from 1 in name
order, with a notice. Paths are relative to the annotation file's folder (keras-retinanet's
default) or to `--images`, or absolute inside it.
"""

from __future__ import annotations

import csv
import functools
import posixpath
from typing import BinaryIO

import apache_beam as beam

from transforms.paths import UnsafePathError
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
    annotation_pattern,
    annotations_root,
    contained,
    file_boundary,
    guarded,
    image_key_for,
    matching_files,
    read_file,
    source_split_names,
    split_of_file,
)
from transforms.readers.csv_rows import numbered_rows, refuse_unless_one_reads, shown_row, text_of
from transforms.readers.tf_csv import header_problem, other_format
from transforms.readers.values import parse_number, parse_whole, undecodable
from transforms.records import (
    STAGE_READ,
    Box,
    ClassDeclaration,
    ErrorRecord,
    ImageAnnotation,
    excerpt,
)

CLASSES_FILES = ("_classes.csv", "classes.csv")
COLUMNS = "path,x1,y1,x2,y2,class_name"
_CORNERS = ("x1", "y1", "x2", "y2")
# A first row naming the columns, which some tools add: passed over.
_HEADER_CORNERS = (_CORNERS, ("xmin", "ymin", "xmax", "ymax"))


def read_classes(path: str, root: str | None = None) -> dict[str, int]:
    """Class name → id from a `class_name,id` file, in its order. A classes file found in a
    dataset (not given with --classes) must lie inside its `root`. Raises UnusableSource,
    or OSError."""
    if root is not None and not contained(path, root):
        raise UnusableSource(f"{path} is a link that leads outside {root}; not read")
    try:
        text = read_file(path).decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UnusableSource(f"{path} is not UTF-8 text") from None
    classes: dict[str, int] = {}
    for number, row in enumerate(csv.reader(text.splitlines()), start=1):
        if not any(cell.strip() for cell in row):
            continue
        where = f"{path}:{number}"
        name = row[0].strip() if len(row) == 2 else ""
        if not name:
            raise UnusableSource(f"{where}: {shown_row(row)} is not class_name,id")
        try:
            class_id = parse_whole(row[1].strip(), "class id")
        except ValueError as error:
            raise UnusableSource(f"{where}: {error}") from None
        if class_id < 0:
            raise UnusableSource(f"{where}: class id {class_id} is negative; ids start at 0")
        if name in classes or class_id in classes.values():
            raise UnusableSource(f"{where}: class {excerpt(repr(name))} or id {class_id} twice")
        classes[name] = class_id
    return classes


def _row(
    row: list[str], source: str, lines: str, path: str, options: ReaderOptions, classes
) -> Parsed:
    has_box = any(cell.strip() for cell in row[1:6])
    if len(row) < 6:
        reason = f"row{lines} has {len(row)} columns, not {COLUMNS} or path,,,,,"
        yield ErrorRecord(source, None, STAGE_READ, reason, int(has_box))
        return
    if undecodable(row[:6]):
        reason = f"row{lines} holds bytes that are not UTF-8 text"
        yield ErrorRecord(source, None, STAGE_READ, reason, int(has_box))
        return
    try:
        key = image_key_for(row[0], path, options)
    except UnsafePathError as error:
        yield ErrorRecord(source, excerpt(row[0]) or None, STAGE_READ, str(error), int(has_box))
        return
    boxes: tuple[Box, ...] = ()
    if has_box:
        try:
            label = row[5].strip()
            if not label:
                raise ValueError("the class is empty")
            if classes and label not in classes:
                raise ValueError(f"class {excerpt(repr(label))} is not in the classes file")
            corners = [parse_number(row[i + 1], name) for i, name in enumerate(_CORNERS)]
            boxes = (Box(label, *corners, source=source),)
        except ValueError as error:
            yield ErrorRecord(source, key, STAGE_READ, str(error), 1)
    yield ImageAnnotation(key, (source,), boxes)


def _is_header(row: list[str]) -> bool:
    return tuple(cell.strip().lower() for cell in row[1:5]) in _HEADER_CORNERS


@file_boundary
def parse_retinanet(
    stream: BinaryIO, path: str, options: ReaderOptions, classes: dict[str, int] | None = None
) -> Parsed:
    """One annotation per row, streaming; each row is its own error boundary. `classes`:
    the classes file's (empty: any class)."""
    base = posixpath.basename(path)
    if base in CLASSES_FILES or path == options.classes_file:
        return  # The classes file, matched along with the annotation files.
    for index, item in enumerate(numbered_rows(csv.reader(text_of(stream)), path)):
        if isinstance(item, ErrorRecord):
            yield item
            continue
        source, lines, row = item
        if index == 0 and _is_header(row):
            continue
        objects = int(any(cell.strip() for cell in row[1:6]))
        rows = _row(row, source, lines, path, options, classes or {})
        yield from guarded(rows, source, None, objects)


def _parse_file(handle: BinaryIO, path: str, options: ReaderOptions, classes) -> Parsed:
    return parse_retinanet(handle, path, options, classes)


def _annotation_files(pattern: str, classes_file: str | None) -> list[str]:
    return [
        path
        for path in matching_files(pattern)
        if posixpath.basename(path) not in CLASSES_FILES and path != classes_file
    ]


def _classes_beside(files: list[str], root: str) -> str | None:
    """The classes file in the annotation files' folders; they must agree."""
    folders = sorted({posixpath.dirname(path) for path in files})
    for name in CLASSES_FILES:
        found = [p for folder in folders for p in matching_files(posixpath.join(folder, name))]
        if found:
            if len({tuple(read_classes(path, root).items()) for path in found}) > 1:
                raise UnusableSource(f"the {name} files disagree; give one with --classes")
            return found[0]
    return None


def _problem(row: list[str]) -> str | None:
    """Why a first row is not RetinaNet's (too few columns, or another format's header,
    which the hint names), or None."""
    if not row:
        return None
    hint = other_format(row)
    if header_problem(row) is None:
        hint = "; it is a TF Object Detection CSV: --format csv"
    elif len(row) >= 6 and "open-images" not in hint:
        return None
    return f"not RetinaNet CSV: rows are {COLUMNS} (or path,,,,,); found {shown_row(row)}{hint}"


def _locate(request: Request, fmt: Format) -> Source:
    """The annotation files (every CSV but the classes file), refused when none has rows of
    six columns, and the classes file: --classes, else one beside them, else none."""
    pattern = annotation_pattern(request.annotations, fmt.folder_glob)
    root = annotations_root(pattern)
    files = _annotation_files(pattern, request.classes_file)
    if not files:
        raise UnusableSource(f"no annotation files match {pattern} (besides classes files)")
    refuse_unless_one_reads(files, pattern, root, _problem)
    classes_file = request.classes_file or _classes_beside(files, root)
    if classes_file:
        read_classes(classes_file, None if request.classes_file else root)
    options = ReaderOptions(
        images=request.images or root,
        images_beside_annotations=request.images is None,
        annotations_root=root,
        extras=request.extras,
        source_splits=request.source_splits,
        classes_file=classes_file or "",
    )
    splits = source_split_names(fmt, files, root) if request.source_splits else ()
    notices = ()
    if not classes_file:
        notices = (
            f"found no {' or '.join(CLASSES_FILES)} beside the annotations; classes are "
            "numbered from 1 in name order (give --classes FILE for the ids of yours)",
        )
    return Source(pattern, options, splits, notices)


class ReadRetinaNet(Reader):
    """RetinaNet CSV files → annotations, errors, and the classes file's classes."""

    def expand(self, pbegin: beam.pvalue.PBegin) -> dict[str, beam.PCollection]:
        path = self._options.classes_file
        classes = read_classes(path) if path else {}
        parse = functools.partial(_parse_file, classes=classes)
        read = pbegin | "Files" >> ParseFiles(self._pattern, parse, self._options, split_of_file)
        declared = [ClassDeclaration(name, i + 1, path) for name, i in classes.items()]
        return {**read, CLASSES: pbegin | "ClassesFile" >> beam.Create(declared)}


FORMAT = Format(
    name="retinanet-csv",
    folder_glob="*.csv",
    reader=ReadRetinaNet,
    locate=_locate,
)
