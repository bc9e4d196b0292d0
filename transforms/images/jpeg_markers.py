"""A JPEG's marker segments, walked for the few header facts odrecords reads itself without
decoding the image: the frame's size (`transforms.images.verify`) and the Exif orientation
(`transforms.images.orientation`). The walk only finds the segments; each caller decides which
markers it accepts before the one it looks for."""

from __future__ import annotations

from collections.abc import Iterator

SOI = b"\xff\xd8"
# A fill byte before a marker: a marker of its own, without a length.
FILL = 0xFF
# Markers that stand alone, without a length: TEM and the restart markers.
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})


def markers(data: bytes) -> Iterator[tuple[int, int, int | None]]:
    """(marker, offset of its 0xFF, the segment's length or None for a marker without one)
    of each marker after SOI, while four bytes remain; the walk ends where a marker should
    start and none does."""
    if not data.startswith(SOI):
        return
    position = len(SOI)
    while position + 4 <= len(data):
        if data[position] != 0xFF:
            return
        marker = data[position + 1]
        if marker == FILL:
            yield marker, position, None
            position += 1
        elif marker in _STANDALONE:
            yield marker, position, None
            position += 2
        else:
            length = int.from_bytes(data[position + 2 : position + 4], "big")
            yield marker, position, length
            position += 2 + length
