"""TF Object Detection CSV: `filename,width,height,class,xmin,ymin,xmax,ymax`, one row per box.

This is the format of Dat Tran's `xml_to_csv.py` and of Roboflow's "Tensorflow Object Detection
CSV" export. A row whose class and corners are all empty names an image without objects.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from typing import BinaryIO

from transforms.paths import UnsafePathError
from transforms.readers.base import (
    Format,
    Parsed,
    ReaderOptions,
    Request,
    Source,
    file_boundary,
    file_format,
    guarded,
    image_key_for,
    locate_files,
    matching_files,
)
from transforms.readers.csv_rows import refuse_unless_one_reads, shown_row, text_of
from transforms.readers.values import declared_size, parse_number, undecodable
from transforms.records import STAGE_READ, Box, ErrorRecord, ImageAnnotation, excerpt

HEADER = ("filename", "width", "height", "class", "xmin", "ymin", "xmax", "ymax")
REQUIRED_COLUMNS = ("filename", "class", "xmin", "ymin", "xmax", "ymax")
_BOX_COLUMNS = ("class", "xmin", "ymin", "xmax", "ymax")
_NUMBER_OR_EMPTY = re.compile(r"^\s*(-?\d+(\.\d*)?([eE][-+]?\d+)?)?\s*$")
# The columns of Open Images' box files that tell them apart.
_OPEN_IMAGES_COLUMNS = ("ImageID", "LabelName", "XMin", "XMax", "YMin", "YMax")


def other_format(header: Sequence[str]) -> str:
    """The format a CSV that is not a TF Object Detection CSV may be in, as a hint: Open Images
    boxes by their header, RetinaNet CSV by a first row of six columns with corners that are
    numbers (or empty, for an image without objects)."""
    if all(column in header for column in _OPEN_IMAGES_COLUMNS):
        return "; it is Open Images boxes: --format open-images"
    if len(header) == 6 and all(_NUMBER_OR_EMPTY.match(cell) for cell in header[1:5]):
        return "; with no header and 6 columns it may be RetinaNet CSV: --format retinanet-csv"
    return ""


def header_problem(header: Sequence[str]) -> str | None:
    """Why a first row is not a TF Object Detection CSV's header, or None."""
    missing = [column for column in REQUIRED_COLUMNS if column not in header]
    if not missing:
        return None
    found = shown_row(list(header))[:50]
    return f"missing CSV columns: {', '.join(missing)}; found {found}{other_format(header)}"


def _parse_row(
    cells: dict[str, str], has_box: bool, source: str, path: str, options: ReaderOptions
) -> Parsed:
    try:
        key = image_key_for(cells.get("filename", ""), path, options)
    except UnsafePathError as error:
        name = excerpt(cells.get("filename", "")) or None
        yield ErrorRecord(source, name, STAGE_READ, str(error), int(has_box))
        return
    boxes: tuple[Box, ...] = ()
    if has_box:
        try:
            if not cells.get("class"):
                raise ValueError("the class is empty")
            corners = {
                column: parse_number(cells.get(column, ""), column)
                for column in ("xmin", "ymin", "xmax", "ymax")
            }
            boxes = (Box(label=cells["class"], source=source, **corners),)
        except ValueError as error:
            yield ErrorRecord(source, key, STAGE_READ, str(error), 1)
    yield ImageAnnotation(
        image=key,
        sources=(source,),
        boxes=boxes,
        width=declared_size(cells.get("width")),
        height=declared_size(cells.get("height")),
    )


def _rows(source: str, reader: csv.DictReader, header: list[str], options: ReaderOptions) -> Parsed:
    """One annotation per row, each row its own error boundary; a row the csv module cannot
    read costs that row alone."""
    while True:
        first = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            reason = f"unreadable CSV row: {excerpt(str(error))}; row skipped"
            yield ErrorRecord(f"{source}:{first}", None, STAGE_READ, reason)
            continue
        row_source = f"{source}:{first}"
        lines = f" (lines {first}-{reader.line_num})" if reader.line_num > first else ""
        cells = {column: (row.get(column) or "").strip() for column in row if column}
        has_box = any(cells.get(column) for column in _BOX_COLUMNS)
        if None in row or any(value is None for value in row.values()):
            reason = f"row{lines} does not have the header's {len(header)} columns"
            yield ErrorRecord(row_source, None, STAGE_READ, reason, int(has_box))
        elif undecodable(row):
            reason = f"row{lines} holds bytes that are not UTF-8 text"
            yield ErrorRecord(row_source, None, STAGE_READ, reason, int(has_box))
        else:
            rows = _parse_row(cells, has_box, row_source, source, options)
            yield from guarded(rows, row_source, objects=int(has_box))


@file_boundary
def parse_tf_csv(stream: BinaryIO, source: str, options: ReaderOptions | None = None) -> Parsed:
    """Yields one annotation per row, streaming, so a CSV of any size needs constant memory."""
    reader = csv.DictReader(text_of(stream))
    header = reader.fieldnames or []
    problem = header_problem(header)
    if problem:
        yield ErrorRecord(source, None, STAGE_READ, problem)
        return
    yield from _rows(source, reader, list(header), options or ReaderOptions())


def _parse_file(handle: BinaryIO, path: str, options: ReaderOptions) -> Parsed:
    return parse_tf_csv(handle, path, options)


def _locate(request: Request, fmt: Format) -> Source:
    """The CSV files, refused before the job starts when none has the header: the columns
    expected and those found, and the format the file may be in instead."""
    source = locate_files(request, fmt)

    def problem(row: list[str]) -> str | None:
        if header_problem(row) is None:
            return None
        return (
            f"not a TF Object Detection CSV: its header must name {','.join(HEADER)}; found "
            f"{shown_row(row)}{other_format(row)}"
        )

    files = matching_files(source.pattern)
    refuse_unless_one_reads(files, source.pattern, source.options.annotations_root, problem)
    return source


FORMAT = file_format("csv", "*.csv", _parse_file, locate=_locate)
