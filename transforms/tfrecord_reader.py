"""Reading TFRecord files record by record, checking every CRC, GZIP detected from the bytes.

TFRecord files written by other tools are untrusted input like any annotation file: a
flipped byte or a truncated file must become a problem report naming the record, not an
exception that ends the job. Beam's own reader stops the whole job at the first bad CRC.
"""

from __future__ import annotations

import gzip
import struct
from collections.abc import Iterator
from typing import BinaryIO

import google_crc32c
from apache_beam.io.filesystems import CompressionTypes, FileSystems

_GZIP_MAGIC = b"\x1f\x8b"


def _masked_crc(data: bytes) -> int:
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def open_records(path: str) -> BinaryIO:
    """Opens a TFRecord file, decompressing it when its first bytes are GZIP's magic."""
    handle = FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)
    head = handle.read(2)
    handle.seek(0)
    return gzip.GzipFile(fileobj=handle) if head == _GZIP_MAGIC else handle


def iter_records(stream: BinaryIO) -> Iterator[tuple[int, bytes | None, str | None]]:
    """Yields (index, record, None) per record, or (index, None, problem).

    A record whose data CRC fails is reported and skipped; a bad length header or a truncated
    file ends the file, since nothing after it can be located."""
    index = 0
    while True:
        try:
            header = stream.read(12)
        except (OSError, EOFError) as error:
            yield index, None, f"unreadable: {error}"
            return
        if not header:
            return
        if len(header) < 12:
            yield index, None, "file ends inside a record header (truncated)"
            return
        length, length_crc = struct.unpack("<QI", header)
        if _masked_crc(header[:8]) != length_crc:
            yield index, None, "record length fails its CRC check; rest of file skipped"
            return
        try:
            data = stream.read(length)
            footer = stream.read(4)
        except (OSError, EOFError) as error:
            yield index, None, f"unreadable: {error}"
            return
        if len(data) < length or len(footer) < 4:
            yield index, None, "file ends inside a record (truncated)"
            return
        if _masked_crc(data) != struct.unpack("<I", footer)[0]:
            yield index, None, "record data fails its CRC check"
        else:
            yield index, data, None
        index += 1
