"""TF Object Detection CSV: `filename,width,height,class,xmin,ymin,xmax,ymax`, one row per box.

This is the format of Dat Tran's `xml_to_csv.py` and of Roboflow's "Tensorflow Object Detection
CSV" export. A row whose class and corners are all empty names an image without objects.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import BinaryIO

from apache_beam.io import fileio

from transforms.paths import UnsafePathError
from transforms.readers.base import Parsed, ReaderOptions, file_format, image_key_for
from transforms.records import STAGE_READ, Box, ErrorRecord, ImageAnnotation

REQUIRED_COLUMNS = ("filename", "class", "xmin", "ymin", "xmax", "ymax")
_BOX_COLUMNS = ("class", "xmin", "ymin", "xmax", "ymax")


def _optional_int(value: str | None) -> int | None:
    try:
        return int(float(value or ""))
    except ValueError:
        return None


def _parse_row(
    row: dict[str, str], source: str, path: str, options: ReaderOptions
) -> Iterator[ImageAnnotation | ErrorRecord]:
    cells = {column: (row.get(column) or "").strip() for column in row if column}
    has_box = any(cells.get(column) for column in _BOX_COLUMNS)
    try:
        key = image_key_for(cells.get("filename", ""), path, options)
    except UnsafePathError as error:
        yield ErrorRecord(
            source, cells.get("filename") or None, STAGE_READ, str(error), int(has_box)
        )
        return
    boxes: tuple[Box, ...] = ()
    if has_box:
        try:
            if not cells.get("class"):
                raise ValueError("the class is empty")
            corners = {}
            for column in ("xmin", "ymin", "xmax", "ymax"):
                try:
                    corners[column] = float(cells.get(column, ""))
                except ValueError:
                    raise ValueError(f"{column} {cells.get(column)!r} is not a number") from None
            boxes = (Box(label=cells["class"], source=source, **corners),)
        except ValueError as error:
            yield ErrorRecord(source, key, STAGE_READ, str(error), 1)
    yield ImageAnnotation(
        image=key,
        sources=(source,),
        boxes=boxes,
        width=_optional_int(cells.get("width")),
        height=_optional_int(cells.get("height")),
    )


def parse_tf_csv(
    stream: BinaryIO, source: str, options: ReaderOptions | None = None
) -> Iterator[ImageAnnotation | ErrorRecord]:
    """Yields one annotation per row, streaming, so a CSV of any size needs constant memory."""
    # Bytes that are not UTF-8 become U+FFFD, so one bad row is rejected, not the whole file.
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", errors="replace", newline="")
    reader = csv.DictReader(text)
    try:
        header = reader.fieldnames or []
        missing = [column for column in REQUIRED_COLUMNS if column not in header]
        if missing:
            yield ErrorRecord(
                source, None, STAGE_READ, f"missing CSV columns: {', '.join(missing)}"
            )
            return
        for row in reader:
            row_source = f"{source}:{reader.line_num}"
            if None in row or any(value is None for value in row.values()):
                yield ErrorRecord(
                    row_source,
                    None,
                    STAGE_READ,
                    f"row does not have the header's {len(header)} columns",
                )
                continue
            if any("\ufffd" in (value or "") for value in row.values()):
                yield ErrorRecord(row_source, None, STAGE_READ, "row is not valid UTF-8 text")
                continue
            yield from _parse_row(row, row_source, source, options or ReaderOptions())
    except csv.Error as error:
        yield ErrorRecord(
            f"{source}:{reader.line_num + 1}",
            None,
            STAGE_READ,
            f"unreadable CSV, rest of file skipped: {error}",
        )


def _parse_file(file: fileio.ReadableFile, options: ReaderOptions) -> Parsed:
    with file.open() as stream:
        yield from parse_tf_csv(stream, file.metadata.path, options)


FORMAT = file_format("csv", "*.csv", _parse_file)
