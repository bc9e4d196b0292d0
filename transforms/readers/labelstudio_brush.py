"""Label Studio's brush masks: its run-length encoding (`"format": "rle"`) decoded.

Label Studio stores a brush region as the RGBA pixels of an `original_width` x
`original_height` canvas, packed by thi.ng's `rle-pack` (label-studio-converter's
`brush.py` decodes it the same way) into a list of bytes read as one bit stream, most
significant bit first:

- a header: the number of values (32 bits, width x height x 4), the word size minus one
  (5 bits) and four run-length field sizes, each minus one (4 bits each);
- then, until that many values are made, runs: a flag bit, 2 bits choosing one of the four
  field sizes, and a field of that size holding the run's length minus one. A flag of 1 is
  a repeat: one word follows, repeated that many times. A flag of 0 is that many words,
  each its own value.

A pixel is in the mask when its alpha value (every fourth value) is not 0. Only the alpha
values are kept, so memory is one byte a pixel, and the number of values is checked against
the declared size before anything is made: a stream claiming more than its region's image
holds is refused, however short it is.
"""

from __future__ import annotations

import numpy as np

from transforms.choices import DEFAULT_MAX_IMAGE_PIXELS

# The largest brush canvas decoded, in pixels: the largest image odrecords reads by default.
MAX_BRUSH_PIXELS = DEFAULT_MAX_IMAGE_PIXELS
_CHANNELS = 4  # Label Studio packs RGBA pixels.
_HEADER_BITS = 32 + 5 + 4 * 4


class _Bits:
    """A byte string read as bits, most significant first; running out is a ValueError."""

    def __init__(self, data: bytes):
        self._array = np.unpackbits(np.frombuffer(data, dtype=np.uint8))
        # The same bits as text: short fields are read with int(..., 2), which is fast.
        self._text = self._array.tobytes().translate(bytes.maketrans(b"\x00\x01", b"01")).decode()
        self.position = 0

    def read(self, count: int) -> int:
        end = self.position + count
        if end > len(self._text):
            raise ValueError("brush RLE ends before all its values are made")
        value = int(self._text[self.position : end], 2)
        self.position = end
        return value

    def words_set(self, count: int, size: int) -> np.ndarray:
        """Whether each of the next `count` words of `size` bits is not 0."""
        end = self.position + count * size
        if end > len(self._array):
            raise ValueError("brush RLE ends before all its values are made")
        words = self._array[self.position : end].reshape(count, size)
        self.position = end
        return words.any(axis=1)


def decode_brush(rle: object, width: int, height: int) -> np.ndarray:
    """A `height` x `width` uint8 array of 0 and 1: the pixels whose alpha is not 0. Raises
    ValueError for a list that is not bytes, a canvas larger than MAX_BRUSH_PIXELS, a value
    count other than width x height x 4, runs past that count, or a stream that ends early.
    Time is linear in the stream and the canvas."""
    if width * height > MAX_BRUSH_PIXELS:
        raise ValueError(f"brush canvas {width}x{height} has more than {MAX_BRUSH_PIXELS} pixels")
    if not isinstance(rle, list):
        raise ValueError("brush rle is not a list of bytes")
    try:
        data = bytes(rle)
    except (TypeError, ValueError):
        raise ValueError("brush rle is not a list of bytes (whole numbers 0 to 255)") from None
    if len(data) * 8 < _HEADER_BITS:
        raise ValueError("brush rle is shorter than its header")
    bits = _Bits(data)
    total = bits.read(32)
    if total != width * height * _CHANNELS:
        raise ValueError(
            f"brush rle holds {total} values, not {width}x{height}x{_CHANNELS} for its image"
        )
    word = bits.read(5) + 1
    sizes = [bits.read(4) + 1 for _ in range(4)]
    alpha = np.zeros(width * height, dtype=np.uint8)
    start = 0
    while start < total:
        repeat = bits.read(1)
        end = start + 1 + bits.read(sizes[bits.read(2)])
        if end > total:
            raise ValueError(f"brush rle has a run past its {total} values")
        if repeat:
            if bits.read(word):
                # The alpha values at start, ..., end - 1 are those of pixels start // 4 on.
                alpha[start // _CHANNELS : end // _CHANNELS] = 1
        else:
            values = bits.words_set(end - start, word)
            first = (_CHANNELS - 1 - start) % _CHANNELS  # The first alpha value's offset.
            chosen = values[first::_CHANNELS]
            pixel = (start + first) // _CHANNELS
            alpha[pixel : pixel + len(chosen)] = chosen
        start = end
    return alpha.reshape(height, width)
