"""Differential test of `transforms.images.verify`: over a corpus of damaged and unusual images, the
fast verdict (accepted at a size, or rejected) equals `tf.io.decode_image`'s, item by item.

The corpus: JPEGs Pillow writes in every layout it knows (4:2:0, 4:2:2, 4:4:4, grey, CMYK,
progressive, restart intervals, optimized tables, odd and tiny sizes, EXIF), the kinds it
cannot write kept as fixtures in `sample/jpeg_variants` (arithmetic-coded, 12-bit, lossless;
see the README there), each truncated at many points, with single bits flipped all through
its headers and across its entropy-coded data, with markers replaced, removed and repeated,
and with garbage before markers and after the end; Hypothesis adds random combinations of
flips and truncation. PNG, GIF, BMP and WebP, intact and damaged, show that every other
format is decided by TensorFlow itself.
"""

from __future__ import annotations

import io
import os
import random
import struct
import zlib
from collections.abc import Iterable

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from transforms.images import verify

VARIANTS = os.path.join(os.path.dirname(__file__), "sample", "jpeg_variants")
Verdict = tuple[int, int] | None


def oracle(data: bytes) -> Verdict:
    """TensorFlow's verdict: the (width, height) it decodes, or None when it cannot."""
    try:
        shape = tf.io.decode_image(data, channels=3, expand_animations=False).shape
    except tf.errors.OpError:
        return None
    return int(shape[1]), int(shape[0])


def fast(data: bytes) -> Verdict:
    try:
        decoded = verify.decode(data)
    except verify.Undecodable:
        return None
    return decoded.width, decoded.height


def disagreements(corpus: Iterable[tuple[str, bytes]]) -> list[str]:
    return [
        f"{name}: fast {fast(data)}, TensorFlow {oracle(data)}"
        for name, data in corpus
        if fast(data) != oracle(data)
    ]


def picture(width: int, height: int, mode: str = "RGB") -> Image.Image:
    """Smooth gradients under noise: entropy-coded data of some length, as in photographs."""
    y, x = np.indices((height, width))
    rng = np.random.default_rng(width * height)
    planes = [x * 255 // max(width, 1), y * 255 // max(height, 1), (x + y) * 3 % 256]
    rgb = np.stack(planes, -1) + rng.integers(-40, 40, (height, width, 3))
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).convert(mode)


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def _exif() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6
    return exif.tobytes()


# The fast path's own territory, each with the size TensorFlow decodes it at.
COVERED = {
    "420": encode(picture(96, 64), "JPEG", quality=90),
    "422": encode(picture(96, 64), "JPEG", quality=90, subsampling=1),
    "444": encode(picture(96, 64), "JPEG", quality=90, subsampling=0),
    "grey": encode(picture(80, 48, "L"), "JPEG"),
    "progressive": encode(picture(96, 64), "JPEG", progressive=True),
    "progressive_grey": encode(picture(64, 40, "L"), "JPEG", progressive=True),
    "restarts": encode(picture(96, 64), "JPEG", restart_marker_blocks=3),
    "progressive_restarts": encode(
        picture(96, 64), "JPEG", progressive=True, restart_marker_rows=1
    ),
    "optimized": encode(picture(96, 64), "JPEG", optimize=True, quality=40),
    "odd_size": encode(picture(17, 9), "JPEG", quality=100),
    "one_pixel": encode(picture(1, 1), "JPEG"),
    "exif": encode(picture(40, 30), "JPEG", exif=_exif()),
    "quality_1": encode(picture(64, 64), "JPEG", quality=1),
}
# JPEGs TensorFlow alone decides: CMYK, and the fixtures (arithmetic, 12-bit, lossless).
OTHER_JPEGS = {
    "cmyk": encode(picture(48, 32, "CMYK"), "JPEG"),
    "cmyk_progressive": encode(picture(48, 32, "CMYK"), "JPEG", progressive=True),
    **{
        name.removesuffix(".jpg"): open(os.path.join(VARIANTS, name), "rb").read()
        for name in sorted(os.listdir(VARIANTS))
        if name.endswith(".jpg")
    },
}
JPEGS = {**COVERED, **OTHER_JPEGS}


def segments(data: bytes) -> list[tuple[int, int]]:
    """(offset, marker) of each marker segment up to and including the first SOS."""
    found, position = [], 2
    while position + 4 <= len(data):
        marker = data[position + 1]
        found.append((position, marker))
        if marker == 0xDA:
            break
        position += 2 + int.from_bytes(data[position + 2 : position + 4], "big")
    return found


def scan_start(data: bytes) -> int:
    """Offset of the first entropy-coded byte."""
    position, _ = segments(data)[-1]
    return position + 2 + int.from_bytes(data[position + 2 : position + 4], "big")


def frame_offset(data: bytes) -> int:
    return next(p for p, m in segments(data) if 0xC0 <= m <= 0xCF and m not in (0xC4, 0xCC))


def flip(data: bytes, offset: int, bit: int) -> bytes:
    return data[:offset] + bytes([data[offset] ^ (1 << bit)]) + data[offset + 1 :]


def patch(data: bytes, offset: int, new: bytes) -> bytes:
    return data[:offset] + new + data[offset + len(new) :]


def test_covered_images_are_certified_at_tensorflows_size():
    """The fast path is really taken for the common kinds, and gives TensorFlow's size;
    the kinds it does not cover are left to TensorFlow."""
    for name, data in COVERED.items():
        certified = verify._certified(data)
        assert certified is not None, name
        assert (certified.width, certified.height) == oracle(data), name
        assert verify.declared_size(data) == oracle(data), name
        preview = tf.image.resize(tf.io.decode_image(data, channels=3), certified.preview.shape[:2])
        # The kept pixels are the picture, scaled: the perceptual hash is taken of them.
        assert abs(float(tf.reduce_mean(preview)) - certified.preview.mean()) < 8, name
    for name, data in OTHER_JPEGS.items():
        assert verify._certified(data) is None, name


def test_intact_and_variant_jpegs():
    assert not disagreements(JPEGS.items())


def test_truncated_everywhere():
    """Cut after every header byte and at 97 points through the entropy-coded data, and
    just before and inside the end marker."""
    corpus = []
    for name, data in JPEGS.items():
        start = scan_start(data)
        cuts = set(range(0, start + 2)) | {start + (len(data) - start) * k // 97 for k in range(97)}
        cuts |= {len(data) - 1, len(data) - 2, len(data) - 3}
        corpus += [(f"{name} cut at {cut}", data[:cut]) for cut in sorted(cuts)]
    assert not disagreements(corpus)


def test_every_header_bit_flipped():
    corpus = []
    for name in ("420", "progressive", "restarts", "grey", "cmyk", "arithmetic"):
        data = JPEGS[name]
        corpus += [
            (f"{name} bit {bit} of byte {offset}", flip(data, offset, bit))
            for offset in range(scan_start(data))
            for bit in range(8)
        ]
    assert not disagreements(corpus)


def test_entropy_coded_bits_flipped():
    """Bits flipped one at a time across the scans, and in bursts."""
    corpus = []
    for name, data in JPEGS.items():
        start = scan_start(data)
        stride = max(1, (len(data) - 2 - start) // 120)
        for offset in range(start, len(data) - 2, stride):
            bit = offset % 8
            corpus.append((f"{name} bit {bit} of byte {offset}", flip(data, offset, bit)))
            burst = patch(data, offset, bytes(b ^ 0x5A for b in data[offset : offset + 6]))
            corpus.append((f"{name} burst at {offset}", burst[: len(data)]))
    assert not disagreements(corpus)


def _marker_surgery(data: bytes) -> Iterable[tuple[str, bytes]]:
    sof = frame_offset(data)
    start = scan_start(data)
    eoi = len(data) - 2
    assert data[eoi:] == b"\xff\xd9"
    for marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC9, 0xCA, 0xCB, 0xCD, 0xCF, 0xC4, 0xDA):
        yield f"frame marker {marker:02X}", patch(data, sof + 1, bytes([marker]))
    for precision in (0, 7, 12, 16, 255):
        yield f"precision {precision}", patch(data, sof + 4, bytes([precision]))
    for components in (0, 2, 4, 5, 255):
        yield f"{components} components", patch(data, sof + 9, bytes([components]))
    # Zero, and sizes the data cannot fill: TensorFlow refuses 2^29 samples or more before
    # decoding (16384x16384 lossless also overran simplejpeg's buffer, see
    # transforms.images.verify).
    for height, width in (
        (0, 64),
        (64, 0),
        (65535, 65535),
        (16384, 16384),
        (9000, 20000),
        (6000, 8000),
    ):
        yield f"{width}x{height}", patch(data, sof + 5, struct.pack(">HH", height, width))
    for position, marker in segments(data):
        without = (
            data[:position]
            + data[position + 2 + int.from_bytes(data[position + 2 : position + 4], "big") :]
        )
        yield f"segment {marker:02X} at {position} removed", without
        yield (
            f"segments from {marker:02X} at {position} repeated",
            (data[:position] + data[position:start] + data[position:]),
        )
        yield f"garbage before {marker:02X}", data[:position] + b"\x00\x13\x37" + data[position:]
        yield f"fill bytes before {marker:02X}", data[:position] + b"\xff\xff" + data[position:]
        yield f"length of {marker:02X} short", patch(data, position + 2, b"\x00\x02")
        yield f"length of {marker:02X} long", patch(data, position + 2, b"\xff\xf0")
    yield "no SOI", data[2:]
    yield "SOI twice", data[:2] + data
    yield "no EOI", data[:eoi]
    yield "EOI cut in half", data[: eoi + 1]
    yield "EOI twice", data + b"\xff\xd9"
    yield "garbage after EOI", data + b"trailing garbage" * 10
    yield "another image after EOI", data + JPEGS["grey"]
    yield "garbage before EOI", data[:eoi] + b"\x12\x34\x56" + data[eoi:]
    yield "marker in the scan", data[: start + 8] + b"\xff\xd9" + data[start + 8 :]
    yield "stuffed zero removed", data.replace(b"\xff\x00", b"\xff", 1)
    yield "EOI as the only scan byte", data[:start] + b"\xff\xd9"
    for restart in range(8):
        yield f"restart markers all RST{restart}", _renumber_restarts(data, restart)


def _renumber_restarts(data: bytes, number: int) -> bytes:
    out = bytearray(data)
    for index in range(scan_start(data), len(out) - 1):
        if out[index] == 0xFF and 0xD0 <= out[index + 1] <= 0xD7:
            out[index + 1] = 0xD0 + number
    return bytes(out)


def test_marker_surgery():
    corpus = [
        (f"{name}: {what}", damaged)
        for name, data in JPEGS.items()
        for what, damaged in _marker_surgery(data)
    ]
    assert not disagreements(corpus)


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _interlaced_png() -> bytes:
    """A 1x1 Adam7-interlaced RGB PNG (Pillow writes no interlaced PNG): the one pixel is
    in the first pass."""
    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 1)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(b"\x00\x10\x20\x30"))
        + _chunk(b"IEND", b"")
    )


def gif_of_two_frames() -> bytes:
    """A GIF whose second frame is wider than its logical screen and its first frame:
    TensorFlow decodes it onto a canvas of the widest and the tallest frame."""
    first, second = encode(picture(4, 4, "P"), "GIF"), encode(picture(10, 2, "P"), "GIF")
    descriptor = second.index(b"\x2c", 13)
    local_table = bytearray(second[descriptor : descriptor + 10])
    local_table[9] = 0x80 | second[10] & 7
    frame = bytes(local_table) + second[13:descriptor] + second[descriptor + 10 :]
    return first[:-1] + frame


def other_formats() -> dict[str, bytes]:
    image = picture(40, 30)
    return {
        "png": encode(image, "PNG"),
        "png_rgba": encode(image.convert("RGBA"), "PNG"),
        "png_palette": encode(image.convert("P"), "PNG"),
        "png_grey16": encode(image.convert("L").convert("I;16"), "PNG"),
        "png_interlaced": _interlaced_png(),
        "gif": encode(image, "GIF"),
        "gif_two_frames": gif_of_two_frames(),
        "bmp": encode(image, "BMP"),
        "webp": encode(image, "WEBP", lossless=True),
        "webp_lossy": encode(image, "WEBP", quality=80),
        "webp_extended": encode(image, "WEBP", quality=80, exif=_exif()),
    }


def test_other_formats_are_tensorflows_verdict():
    corpus = []
    for name, data in other_formats().items():
        assert verify.jpeg_frame(data) is None
        corpus.append((name, data))
        corpus += [(f"{name} cut at {cut}", data[:cut]) for cut in range(0, len(data), 37)]
        corpus += [
            (f"{name} bit flipped at {offset}", flip(data, offset, offset % 8))
            for offset in range(0, len(data), 29)
        ]
        corpus.append((f"{name} trailing garbage", data + b"\x00garbage"))
    assert not disagreements(corpus)
    # What TensorFlow decodes, the loader can name the format of, and the size its header
    # declares (where it tells one) is the size TensorFlow decodes it at.
    decoded = [(name, data, oracle(data)) for name, data in corpus if oracle(data)]
    assert not [name for name, data, _ in decoded if verify.signature_format(data) is None]
    assert not [
        f"{name}: {verify.declared_size(data)}, TensorFlow {size}"
        for name, data, size in decoded
        if verify.declared_size(data) not in (None, size)
    ]


FUZZ = settings(
    max_examples=300,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@FUZZ
@given(
    name=st.sampled_from(sorted(JPEGS)),
    flips=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 7)), max_size=4),
    cut=st.one_of(st.none(), st.floats(0, 1)),
    seed=st.integers(0, 2**32 - 1),
)
def test_random_damage(name: str, flips: list[tuple[float, int]], cut: float | None, seed: int):
    data = JPEGS[name]
    for where, bit in flips:
        data = flip(data, min(int(where * len(data)), len(data) - 1), bit)
    if cut is not None:
        data = data[: int(cut * len(data))]
    if seed % 5 == 0:  # Now and then a run of random bytes over the data.
        rng = random.Random(seed)
        offset = rng.randrange(len(data) or 1)
        data = patch(data, offset, rng.randbytes(rng.randint(1, 16)))[: len(data)]
    assert fast(data) == oracle(data)


@pytest.mark.parametrize("name", ["420", "progressive", "cmyk"])
def test_rejection_carries_tensorflows_message(name):
    """Its own words first: without the function and op names eager execution wraps them in,
    which would fill an error record's short excerpt."""
    with pytest.raises(verify.Undecodable, match="^[Jj][Pp][Ee][Gg].*[^]]$"):
        verify.decode(JPEGS[name][: len(JPEGS[name]) // 2])
