"""Whether TensorFlow's training-time decoder decodes all of an image, and at what size,
answered faster than by asking it.

`tf.io.decode_image` (JPEG: libjpeg-turbo at full size, no recovery of truncated data) is
the oracle, and the verdict returned here is always its verdict. What is faster is only a
positive certificate for the common case: a baseline or progressive, Huffman-coded, 8-bit,
grey or three-component JPEG that libjpeg-turbo decodes through `simplejpeg` in strict mode,
where any warning is an error, at a small DCT scale (1/8 for most photos). Scaling skips most of the
inverse DCT and colour work but not entropy decoding, which still reads every byte, so a
truncated or corrupt stream fails as at full size. A strict success implies TensorFlow's:
TensorFlow stops only on libjpeg errors and on reading past the end of the data, which
strict mode turns into an error too. The converse does not hold, since TensorFlow accepts
data libjpeg only warns about (a bad Huffman code, extraneous bytes before a marker), so
every strict failure, and every image the certificate does not cover (CMYK, 12-bit,
arithmetic-coded, lossless and the rest), is decided by TensorFlow. A PNG gets a certificate
of its own (`transforms.images.verify_png`: its structure checked and its data inflated), and any
other format TensorFlow's verdict. `tests/test_verify.py` checks both verdicts are equal over
a corpus of damaged and unusual images. A certified JPEG's scaled pixels are kept for the
perceptual hash (`transforms.duplicates`), so it is decoded once. For an image Pillow cannot
read, the loader (`transforms.images.loader`) takes its format, declared size and pixels from here
too (`signature_format`, `declared_size`, `pixels`).
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field

import numpy as np
import simplejpeg

from transforms.images.jpeg_markers import markers
from transforms.images.verify_png import SIGNATURE, certified_size
from transforms.lazy_tensorflow import tensorflow

# Start-of-frame markers the certificate covers: baseline, extended and progressive
# Huffman. Lossless (C3) and arithmetic-coded frames (C9-CB) go to TensorFlow, whose
# libjpeg-turbo build may decode them differently from simplejpeg's: TensorFlow refuses
# lossless JPEGs that simplejpeg decodes, and simplejpeg 1.9 asked to scale a large lossless
# frame (which libjpeg-turbo cannot scale) writes past its buffer, so the frame is read
# here before simplejpeg sees the data.
_COVERED_FRAMES = {0xC0, 0xC1, 0xC2}
# Every other start-of-frame marker; C4 (DHT), C8 (JPG) and CC (DAC) are not frames.
_OTHER_FRAMES = {0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
# TensorFlow refuses an image of this many samples or more before decoding it.
_TF_MAX_SAMPLES = 1 << 29
# How `tf.io.decode_image` tells the formats it decodes (WebP aside: RIFF, then WEBP at 8),
# each named as Pillow names it; JPEG XL, which Pillow does not read, as JXL.
_SIGNATURES = (
    (b"\xff\xd8\xff", "JPEG"),
    (SIGNATURE, "PNG"),
    (b"GIF8", "GIF"),
    (b"BM", "BMP"),
    (b"\xff\x0a", "JXL"),
    (b"\x00\x00\x00\x0cJXL \r\n\x87\n", "JXL"),
)
# A JPEG is decoded at the smallest DCT scale that keeps both sides at least this long (or
# whole, when smaller), for the same cost as at 1/8 on photos of a few hundred pixels. The
# perceptual hash reduces it to 32 x 32; from twice that, copies of a picture hash as close
# to the original as when decoded whole (`transforms.duplicates`).
PREVIEW_SIDE = 64


@dataclass(frozen=True)
class Decoded:
    """The size TensorFlow decodes an image at, and, for a JPEG certified by the scaled
    decode, its pixels at that scale (`scaled_jpeg`; None otherwise)."""

    width: int
    height: int
    preview: np.ndarray | None = field(default=None, compare=False, repr=False)


def scaled_jpeg(data: bytes, strict: bool = False) -> np.ndarray:
    """A JPEG's RGB pixels at the smallest DCT scale that keeps `PREVIEW_SIDE`; raises
    ValueError when libjpeg-turbo cannot decode it (or, `strict`, warns about it)."""
    return simplejpeg.decode_jpeg(
        data, fastdct=True, min_height=PREVIEW_SIDE, min_width=PREVIEW_SIDE, strict=strict
    )


class Undecodable(Exception):
    """TensorFlow cannot decode the image; the message is its own."""


# What eager execution wraps an op's message in: the function it ran in, and the op's name.
_WRAPPING = re.compile(r"^\{\{function_node [^}]*\}\}\s*|\s*\[Op:\w+\]$")


def _message(error: Exception) -> str:
    """The message of TensorFlow's error `error`, without the wrapping eager execution adds,
    which would fill a reason cut to a short excerpt before the message began."""
    return _WRAPPING.sub("", error.message)


def jpeg_frame(data: bytes) -> tuple[int, int, int, int, int] | None:
    """(marker, precision, width, height, components) of a JPEG's start-of-frame segment,
    or None when the segments before it are not plainly well-formed (the decoder may then
    warn, and only TensorFlow knows whether it minds)."""
    for marker, position, length in markers(data):
        if marker in _COVERED_FRAMES or marker in _OTHER_FRAMES:
            if length < 8 or position + 10 > len(data):
                return None
            frame = data[position + 4 : position + 10]
            width = int.from_bytes(frame[3:5], "big")
            height = int.from_bytes(frame[1:3], "big")
            return marker, frame[0], width, height, frame[5]
        if not 0xE0 <= marker <= 0xFE and marker not in (0xC4, 0xCC, 0xDB, 0xDD):
            return None  # SOS, fill bytes, RSTn, EOI, SOI...: unusual before a frame.
        if length < 2:
            return None
    return None


def _certified(data: bytes) -> Decoded | None:
    """The size and scaled pixels when a strict scaled decode proves TensorFlow decodes
    `data`."""
    frame = jpeg_frame(data)
    if frame is None:
        return None
    marker, precision, width, height, components = frame
    if (
        marker not in _COVERED_FRAMES
        or precision != 8
        or components not in (1, 3)
        or width * height * 3 >= _TF_MAX_SAMPLES
    ):
        return None
    try:
        preview = scaled_jpeg(data, strict=True)
    except ValueError:
        return None
    return Decoded(width, height, preview)


def decode(data: bytes) -> Decoded:
    """The size `tf.io.decode_image(data, channels=3, expand_animations=False)` decodes
    `data` at; raises Undecodable with TensorFlow's message when it cannot. TensorFlow is
    imported only when an image first needs it: a dataset of certified JPEGs never pays
    for it."""
    certified = _certified(data)
    if certified is not None:
        return certified
    if data.startswith(SIGNATURE):
        size = certified_size(data, _TF_MAX_SAMPLES)
        if size is not None:
            return Decoded(*size)
    tf = tensorflow()
    try:
        shape = tf.io.decode_image(data, channels=3, expand_animations=False).shape
    except tf.errors.OpError as error:
        raise Undecodable(_message(error)) from None
    return Decoded(int(shape[1]), int(shape[0]))


def signature_format(data: bytes) -> str | None:
    """The format TensorFlow takes `data` for, from its first bytes, as Pillow names it; None
    for one it does not decode."""
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return "WEBP"
    return next((name for signature, name in _SIGNATURES if data.startswith(signature)), None)


def declared_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) the header of a JPEG (its frame), PNG (IHDR), GIF (its frames) or
    WebP (its canvas) declares, read before anything is decoded: the size TensorFlow would
    decode it at, so a limit on pixels can refuse a decompression bomb from a few bytes.
    None where the header does not plainly tell."""
    if data.startswith(SIGNATURE):
        if data[12:16] != b"IHDR" or len(data) < 24:
            return None
        width, height = struct.unpack_from(">II", data, 16)
        return width, height
    if data.startswith(b"GIF8"):
        return _gif_canvas(data)
    if signature_format(data) == "WEBP":
        return _webp_canvas(data)
    frame = jpeg_frame(data)
    return None if frame is None else (frame[2], frame[3])


def _gif_canvas(data: bytes) -> tuple[int, int] | None:
    """The widest and the tallest of a GIF's whole frames: TensorFlow decodes a GIF onto a
    canvas of that size, whatever its logical screen, from the frames giflib reads whole.
    The blocks are walked up to the trailer, or to where they stop making sense."""
    if len(data) < 13:
        return None
    position = 13 + _colour_table(data[10])
    width = height = 0
    while position < len(data) and data[position] != 0x3B:  # Trailer.
        frame = 0, 0
        if data[position] == 0x21:  # Extension: label, then sub-blocks.
            position += 2
        elif data[position] == 0x2C and position + 10 <= len(data):  # Image descriptor.
            frame = struct.unpack_from("<HH", data, position + 5)
            position += 11 + _colour_table(data[position + 9])  # And the LZW code size.
        else:
            break
        while position < len(data) and data[position]:  # Sub-blocks, to the empty one.
            position += 1 + data[position]
        if position < len(data):  # The frame is whole.
            width, height = max(width, frame[0]), max(height, frame[1])
        position += 1
    return (width, height) if width and height else None


def _webp_canvas(data: bytes) -> tuple[int, int] | None:
    """The canvas a WebP's first chunk declares, as libwebp reads it before decoding: an
    extended file's VP8X, a lossless VP8L's bitstream header, a lossy VP8's key frame."""
    kind = data[12:16]
    if kind == b"VP8X" and len(data) >= 30:
        return 1 + int.from_bytes(data[24:27], "little"), 1 + int.from_bytes(data[27:30], "little")
    if kind == b"VP8L" and len(data) >= 25 and data[20] == 0x2F:
        bits = int.from_bytes(data[21:25], "little")
        return 1 + (bits & 0x3FFF), 1 + (bits >> 14 & 0x3FFF)
    if kind == b"VP8 " and len(data) >= 30 and data[23:26] == b"\x9d\x01\x2a":
        width, height = struct.unpack_from("<HH", data, 26)
        return width & 0x3FFF, height & 0x3FFF
    return None


def _colour_table(flags: int) -> int:
    """The length of the colour table a GIF's screen or image descriptor flags announce."""
    return 3 * 2 ** ((flags & 7) + 1) if flags & 0x80 else 0


def pixels(data: bytes) -> np.ndarray:
    """The pixels `tf.io.decode_image` decodes of `data` (an animation's first frame), height
    x width x channels of 8 bits, with the channels the file holds: grey, grey and alpha, RGB
    or RGBA; a JPEG's grey or RGB (TensorFlow would give a CMYK JPEG's four channels as they
    are). For an image only TensorFlow reads; raises Undecodable with its message."""
    channels = 0
    if signature_format(data) == "JPEG":
        frame = jpeg_frame(data)
        channels = 1 if frame is not None and frame[4] == 1 else 3
    tf = tensorflow()
    try:
        return tf.io.decode_image(data, channels=channels, expand_animations=False).numpy()
    except tf.errors.OpError as error:
        raise Undecodable(_message(error)) from None
