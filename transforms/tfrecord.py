"""TFRecord framing, both ways: each record is its length (uint64, little-endian), the masked
CRC32C of the length, the data, and the masked CRC32C of the data.

Writing: shards are framed here instead of through `tf.io.TFRecordWriter` so that a worker
streams examples into any Beam filesystem (`gs://`, `s3://`) without TensorFlow's own file
layer. Reading: TFRecord files written by other tools are untrusted input like any annotation
file, so a flipped byte or a truncated file becomes a problem report naming the record, not
an exception that ends the job; Beam's own reader stops the whole job at the first bad CRC.
GZIP-compressed files are recognised from their first bytes. A length header is untrusted too:
data is read in bounded chunks, so a header claiming 2^63 bytes costs no more memory than the
file holds, and ends as a truncated record.
"""

from __future__ import annotations

import gzip
import os
import stat
import struct
import zlib
from collections.abc import Iterator
from typing import BinaryIO

import google_crc32c
from apache_beam.io.filesystems import CompressionTypes, FileSystems

_GZIP_MAGIC = b"\x1f\x8b"
_HEADER = 12  # Length (8 bytes) and its masked CRC (4 bytes).
_CHUNK = 1 << 20
# What reading a damaged file raises: OSError (and gzip's BadGzipFile), EOFError for a GZIP
# stream cut short, zlib.error for corrupted compressed bytes.
_UNREADABLE = (OSError, EOFError, zlib.error)


def masked_crc(data: bytes) -> int:
    """TFRecord's CRC: CRC32C rotated right by 15 bits plus a constant, so that the CRC of
    data that itself holds CRCs is not degenerate."""
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def frame(data: bytes) -> bytes:
    """One record in TFRecord framing, ready to append to a file."""
    length = struct.pack("<Q", len(data))
    return (
        length + struct.pack("<I", masked_crc(length)) + data + struct.pack("<I", masked_crc(data))
    )


def is_framed(record: bytes) -> bool:
    """Whether `record` is exactly one record in TFRecord framing whose two CRCs hold."""
    if len(record) < _HEADER + 4:
        return False
    length, length_crc = struct.unpack("<QI", record[:_HEADER])
    return (
        length == len(record) - _HEADER - 4
        and masked_crc(record[:8]) == length_crc
        and masked_crc(record[_HEADER:-4]) == struct.unpack("<I", record[-4:])[0]
    )


def payload(record: bytes) -> bytes:
    """The data of one record in TFRecord framing (whose framing `is_framed` checked)."""
    return record[_HEADER:-4]


def open_records(path: str) -> BinaryIO:
    """Opens a TFRecord file, decompressing it when its first bytes are GZIP's magic. A local
    path must be a regular file: a FIFO would block forever, a device never end."""
    if FileSystems.get_scheme(path) is None and not stat.S_ISREG(os.stat(path).st_mode):
        raise OSError(f"{path} is not a regular file")
    handle = FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)
    head = handle.read(2)
    handle.seek(0)
    return gzip.GzipFile(fileobj=handle) if head == _GZIP_MAGIC else handle


def _read(stream: BinaryIO, length: int) -> bytes:
    """Up to `length` bytes, fewer only at the end of the stream, read in bounded chunks."""
    chunks = []
    while length > 0:
        chunk = stream.read(min(length, _CHUNK))
        if not chunk:
            break
        chunks.append(chunk)
        length -= len(chunk)
    return b"".join(chunks)


def iter_records(stream: BinaryIO) -> Iterator[tuple[int, bytes | None, str | None]]:
    """Yields (index, record, None) per record, or (index, None, problem); never raises for
    damaged or hostile bytes (see `iter_framed_records`)."""
    for index, _, _, data, problem in iter_framed_records(stream):
        yield index, data, problem


def iter_framed_records(
    stream: BinaryIO,
) -> Iterator[tuple[int, int, int, bytes | None, str | None]]:
    """Yields (index, offset, length, record, None) per record, or (index, offset, length,
    None, problem); never raises for damaged or hostile bytes. `offset` and `length` locate
    the framed record in the stream (decompressed, for a GZIP file), so that it can be read
    again on its own.

    A record whose data CRC fails is reported and skipped; a bad length header, a truncated
    file or an unreadable (corrupt GZIP) stream ends the file, since nothing after it can be
    located."""
    index, offset = 0, 0
    while True:
        try:
            header = _read(stream, _HEADER)
        except _UNREADABLE as error:
            yield index, offset, 0, None, f"unreadable: {str(error)[:80]}; rest of file skipped"
            return
        if not header:
            return
        if len(header) < _HEADER:
            yield index, offset, 0, None, "file ends inside a record header (truncated)"
            return
        length, length_crc = struct.unpack("<QI", header)
        if masked_crc(header[:8]) != length_crc:
            yield index, offset, 0, None, "record length fails its CRC check; rest of file skipped"
            return
        try:
            data = _read(stream, length)
            footer = _read(stream, 4)
        except _UNREADABLE as error:
            yield index, offset, 0, None, f"unreadable: {str(error)[:80]}; rest of file skipped"
            return
        if len(data) < length or len(footer) < 4:
            yield index, offset, 0, None, "file ends inside a record (truncated)"
            return
        framed = _HEADER + length + 4
        if masked_crc(data) != struct.unpack("<I", footer)[0]:
            yield index, offset, framed, None, "record data fails its CRC check"
        else:
            yield index, offset, framed, data, None
        index += 1
        offset += framed
