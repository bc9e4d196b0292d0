"""Whether libpng, as TensorFlow runs it, decodes all of a PNG, answered by checking the
file's structure and inflating its data, without TensorFlow.

libpng fails a decode on a damaged structure (signature, chunk lengths and names, CRCs of
critical chunks, IHDR's values, chunk order, PLTE), on a zlib stream that is corrupt, reaches
back beyond its window, or ends before the rows do, and on a row filter type it does not
know. Nothing else can fail: undoing the filters is arithmetic, and TensorFlow turns any bit
depth and colour type into 8-bit RGB. So a PNG that is plainly well-formed (below) is decoded
by TensorFlow at IHDR's size, and `certified_size` says so. Anything else, including what
libpng only warns about (a bad ancillary CRC, extra data after the zlib stream or the file, a
suggested palette), gets TensorFlow's own verdict (`transforms.images.verify`).
`tests/test_verify_png.py` checks both verdicts agree over intact and damaged PNGs.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator

SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Bit depths allowed for each colour type, and its samples per pixel.
_DEPTHS = {0: {1, 2, 4, 8, 16}, 2: {8, 16}, 3: {1, 2, 4, 8}, 4: {8, 16}, 6: {8, 16}}
_SAMPLES = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
_PALETTE = 3
# libpng's default limit on either side (PNG_USER_WIDTH_MAX, PNG_USER_HEIGHT_MAX).
_MAX_SIDE = 1_000_000
# Adam7's passes: (first column, first row, column step, row step).
_ADAM7 = (
    (0, 0, 8, 8),
    (4, 0, 8, 8),
    (0, 4, 4, 8),
    (2, 0, 4, 4),
    (0, 2, 2, 4),
    (1, 0, 2, 2),
    (0, 1, 1, 2),
)
_LAST_FILTER = 4
# Inflated bytes held at a time: memory follows this, not the image's size.
_CHUNK = 1 << 20
# The largest zlib window, as far back as deflate can reach.
_FULL_WINDOW = 1 << 15


class _Refused(Exception):
    """The PNG is not plainly well-formed; TensorFlow decides it."""


def certified_size(data: bytes, max_samples: int) -> tuple[int, int] | None:
    """(width, height) when the PNG is plainly well-formed: every chunk's CRC right, no
    critical chunk but IHDR first, PLTE (palette images only, before the data, as long as
    the bit depth allows), IDAT (consecutive) and IEND last with nothing after it; IHDR's
    values valid, fewer than `max_samples` RGB samples; one zlib stream in the IDAT data,
    complete, with its checksum right and nothing after it, inflating to exactly the rows'
    size, each row's filter type known. None otherwise. One pass over the chunks, holding
    none of them: memory stays flat however many chunks a file has."""
    try:
        chunks = _chunks(data)
        width, height, depth, colour, interlaced = _header(*next(chunks), max_samples)
        rows = _Rows(width, height, depth * _SAMPLES[colour], interlaced)
        palette = data_seen = data_ended = False
        for kind, body in chunks:
            if kind == b"IDAT":
                if data_ended:
                    raise _Refused
                data_seen = True
                rows.feed(body)
                continue
            data_ended = data_seen
            if kind == b"PLTE":
                if colour != _PALETTE or palette or data_seen:
                    raise _Refused
                entries, extra = divmod(len(body), 3)
                if extra or not 0 < entries <= 1 << depth:
                    raise _Refused
                palette = True
            elif kind[0:1].isupper() and kind != b"IEND":  # IEND ends the chunks.
                raise _Refused
        if not data_seen or palette != (colour == _PALETTE):
            raise _Refused
        rows.finish()
    except (_Refused, zlib.error):
        return None
    return width, height


def _chunks(data: bytes) -> Iterator[tuple[bytes, memoryview]]:
    """(type, data) of each chunk, up to IEND, which must end the file."""
    if not data.startswith(SIGNATURE):
        raise _Refused
    view = memoryview(data)
    position = len(SIGNATURE)
    while True:
        if position + 12 > len(data):
            raise _Refused
        length, kind = struct.unpack_from(">I4s", data, position)
        end = position + 8 + length
        if length > 0x7FFFFFFF or end + 4 > len(data) or not kind.isalpha():
            raise _Refused
        (crc,) = struct.unpack_from(">I", data, end)
        if zlib.crc32(view[position + 8 : end], zlib.crc32(kind)) != crc:
            raise _Refused
        yield kind, view[position + 8 : end]
        position = end + 4
        if kind == b"IEND":
            if length or position != len(data):
                raise _Refused
            return


def _header(kind: bytes, body: memoryview, max_samples: int) -> tuple[int, int, int, int, bool]:
    if kind != b"IHDR" or len(body) != 13:
        raise _Refused
    width, height, depth, colour, compression, filtering, interlace = struct.unpack(
        ">IIBBBBB", body
    )
    if (
        not 0 < width <= _MAX_SIDE
        or not 0 < height <= _MAX_SIDE
        or width * height * 3 >= max_samples
        or depth not in _DEPTHS.get(colour, ())
        or (compression, filtering) != (0, 0)
        or interlace not in (0, 1)
    ):
        raise _Refused
    return width, height, depth, colour, interlace == 1


def _row_lengths(width: int, height: int, bits: int, interlaced: bool) -> Iterator[int]:
    """The length of each filtered row in the inflated data (filter byte included)."""
    for left, top, across, down in _ADAM7 if interlaced else ((0, 0, 1, 1),):
        columns = (width - left + across - 1) // across
        rows = (height - top + down - 1) // down
        if columns > 0:
            for _ in range(max(rows, 0)):
                yield 1 + (columns * bits + 7) // 8


class _Rows:
    """The IDAT data, inflated as it comes, a bounded chunk at a time: one zlib stream,
    nothing after its end, exactly the rows, each starting with a known filter type.

    A stream whose header declares a window smaller than 32 KB is certified only when all it
    inflates to fits that window. zlib refuses a distance beyond the window plus what the
    current call has written, and libpng inflates a row per call, so whether a reach beyond a
    small window fails depends on where the calls stop, which differs here; within the
    window, nothing can reach beyond it. (zlib's own deflate never reaches beyond the window
    it declares; libpng writes small windows for small images.)"""

    def __init__(self, width: int, height: int, bits: int, interlaced: bool):
        self._inflater = zlib.decompressobj(wbits=0)
        self._window: int | None = None  # The header's, once its first byte is seen.
        self._lengths = _row_lengths(width, height, bits, interlaced)
        self._length = next(self._lengths, None)  # Of the row whose filter byte is next.
        self._next_filter = 0  # Its offset in the inflated data.
        self._seen = 0

    def feed(self, piece: memoryview) -> None:
        pending = piece
        if self._window is None and pending:
            self._window = 1 << ((pending[0] >> 4) + 8)
        while pending and not self._inflater.eof:
            self._check(self._inflater.decompress(pending, _CHUNK))
            pending = self._inflater.unconsumed_tail
        if self._inflater.eof and (pending or self._inflater.unused_data):
            raise _Refused

    def finish(self) -> None:
        while not self._inflater.eof:
            more = self._inflater.decompress(b"", _CHUNK)
            if not more:
                raise _Refused
            self._check(more)
        if self._length is not None or self._seen != self._next_filter:
            raise _Refused
        if self._window < _FULL_WINDOW and self._seen > self._window:
            raise _Refused

    def _check(self, chunk: bytes) -> None:
        while self._length is not None and self._next_filter < self._seen + len(chunk):
            if chunk[self._next_filter - self._seen] > _LAST_FILTER:
                raise _Refused
            self._next_filter += self._length
            self._length = next(self._lengths, None)
        self._seen += len(chunk)
