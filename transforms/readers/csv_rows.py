"""What the CSV formats share: reading rows of any length as text, each row its own error
boundary, and peeking at a file's first row before the job starts."""

from __future__ import annotations

import csv
import io
import sys
from collections.abc import Callable, Iterator
from typing import BinaryIO

from transforms.readers.base import UnusableSource, open_annotations
from transforms.records import STAGE_READ, ErrorRecord, excerpt

# The most of a file read to find its first row.
_HEAD_BYTES = 1 << 16


def allow_fields_of(stream: BinaryIO) -> None:
    """Raises the csv module's field size limit (128 KiB, process-wide) to the file's size:
    a longer field would raise in the middle of the file. No field is longer than its
    file, so memory stays bounded by the input."""
    size = sys.maxsize
    if stream.seekable():
        here = stream.tell()
        size = stream.seek(0, io.SEEK_END)
        stream.seek(here)
    csv.field_size_limit(max(csv.field_size_limit(), min(size + 1, sys.maxsize)))


def text_of(stream: BinaryIO) -> io.TextIOWrapper:
    """The file as text for the csv module. Bytes that are not UTF-8 become U+FFFD, so one bad
    row is rejected (see `values.undecodable`), not the whole file."""
    allow_fields_of(stream)
    return io.TextIOWrapper(stream, encoding="utf-8-sig", errors="replace", newline="")


def numbered_rows(
    reader: Iterator[list[str]], source: str
) -> Iterator[tuple[str, str, list[str]] | ErrorRecord]:
    """(`FILE:LINE` of the row's first line, " (lines A-B)" when it spans several or "", the
    row) for each row of a `csv.reader`; a row the csv module cannot read is an error record
    and costs that row alone. Blank lines are passed over."""
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
        if not any(cell.strip() for cell in row):
            continue
        lines = f" (lines {first}-{reader.line_num})" if reader.line_num > first else ""
        yield f"{source}:{first}", lines, row


def first_row(handle: BinaryIO) -> list[str]:
    """The first row of an open CSV file, [] for an empty one; only its start is read, so a
    file of any size is peeked at in constant time."""
    text = handle.read(_HEAD_BYTES).decode("utf-8-sig", errors="replace")
    try:
        for row in csv.reader(io.StringIO(text, newline="")):
            if any(cell.strip() for cell in row):
                return row
    except csv.Error:  # A first row longer than what was read.
        pass
    return []


def shown_row(row: list[str]) -> str:
    """A row as a reason quotes it: its cells joined by commas, cut short."""
    return excerpt(",".join(row)) if row else "nothing (an empty file)"


def refuse_unless_one_reads(
    files: list[str], pattern: str, root: str, problem: Callable[[list[str]], str | None]
) -> None:
    """Raises UnusableSource, naming the first file and what is wrong with its first row,
    when no file `pattern` matched starts as the format's files do (`problem(first row)` is
    None for one that does): nothing could be read, and the job would only say so at its
    end. Files that cannot be opened (a FIFO, a link out of the folder) are left to the job
    to report, and the first usable file ends the look."""
    found: list[tuple[str, str]] = []
    for path in files:
        try:
            with open_annotations(path, pattern, root) as handle:
                row = first_row(handle)
        except (OSError, ValueError):
            continue
        wrong = problem(row)
        if wrong is None:
            return
        found.append((path, wrong))
    if found:
        path, wrong = found[0]
        others = f" (and {len(found) - 1} more files alike)" if len(found) > 1 else ""
        raise UnusableSource(f"{path}{others}: {wrong}")
