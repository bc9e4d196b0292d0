"""Differential test of `ImageLoader.load` against `tf.io.decode_image`: over images on which
Pillow and TensorFlow may disagree, no image is rejected unless TensorFlow refuses it too,
and then for TensorFlow's reason.

Pillow reads an image before TensorFlow does (to identify it, measure it, find its
orientation, turn it, convert it), and is stricter in places: it refuses a PNG with a wrong
CRC on an ancillary chunk, which libpng only warns about, and it parses JPEG segments
(Exif, MPF, ICC) that libjpeg skips. The corpus damages exactly those places: ancillary PNG
chunks (wrong CRCs, malformed contents, eXIf with bad orientation entries), JPEG APP segments
(Exif with bad offsets, MPF, ICC, truncated and odd segments before the frame), GIF, BMP
and WebP headers, each also with an EXIF orientation where the format carries one; Hypothesis
adds random ancillary chunks. For each item (all within the pixel and byte limits):

- TensorFlow decodes the original: the loader accepts it at TensorFlow's size (turned when
  its annotation was drawn on the displayed image), and TensorFlow decodes what it writes;
- TensorFlow refuses it: a JPEG or PNG, whose bytes would be kept, is rejected with
  TensorFlow's message; any other format is rejected so, or converted by Pillow into a PNG
  that TensorFlow decodes.
"""

from __future__ import annotations

import io
import re
import struct
import zlib
from collections.abc import Iterable, Iterator

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image
from test_verify import (
    FUZZ,
    encode,
    flip,
    gif_of_two_frames,
    oracle,
    patch,
    picture,
    segments,
)
from test_verify_png import MALFORMED_ANCILLARY, chunk

from transforms.images import verify
from transforms.images.loader import ImageLoader, ImageRejected
from transforms.images.orientation import DISPLAYED, OrientationPolicy
from transforms.records import ImageAnnotation

MAX_PIXELS = 1_000_000
PIXEL_LIMIT = re.compile(f"more than {MAX_PIXELS} pixels$")
KEPT_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n")
ORIENTATION = 0x0112


def loader(option: str = "auto") -> ImageLoader:
    fn = ImageLoader("/nonexistent", 10**7, MAX_PIXELS, OrientationPolicy.of(option, "voc"))
    fn.setup()
    return fn


LOADERS = {option: loader(option) for option in ("auto", "stored", "ignore")}


def tensorflow_message(data: bytes) -> str | None:
    """TensorFlow's message on refusing `data` (without eager execution's wrapping), or None
    when it decodes it."""
    try:
        tf.io.decode_image(data, channels=3, expand_animations=False)
    except tf.errors.OpError as error:
        return re.sub(r"^\{\{[^}]*\}\}\s*|\s*\[Op:\w+\]$", "", error.message)
    return None


def mismatch(name: str, data: bytes, option: str = "auto") -> str | None:
    """What is wrong with the loader's verdict on `data`, or None when it agrees."""
    try:
        loaded = LOADERS[option].load(ImageAnnotation(name, ("s",)), stored=data)
    except ImageRejected as error:
        return rejection_mismatch(name, data, str(error))
    written = oracle(loaded.encoded)
    if written != (loaded.width, loaded.height):
        return f"{name}: written {written}, said {loaded.width}x{loaded.height}"
    original = oracle(data)
    kept = data.startswith(KEPT_SIGNATURES)
    if original is None:
        if kept:
            return f"{name}: accepted, TensorFlow refuses its kept format"
        if loaded.format != "png" or loaded.converted_from is None:
            return f"{name}: accepted as {loaded.format}, neither decoded nor converted"
        return None
    if not kept and not pillow_refuses(data):
        return None  # Converted from Pillow's pixels: the PNG's size is checked above.
    turned = loaded.orientation is not None and loaded.orientation.frame == DISPLAYED
    expected = original[::-1] if turned and loaded.orientation.value >= 5 else original
    if (loaded.width, loaded.height) != expected:
        return f"{name}: accepted at {loaded.width}x{loaded.height}, TensorFlow's {expected}"
    return None


def rejection_mismatch(name: str, data: bytes, reason: str) -> str | None:
    """What is wrong with rejecting `data` for `reason`: TensorFlow decodes it within the
    limits, or its message is not the reason."""
    decoded = oracle(data)
    if PIXEL_LIMIT.search(reason):
        # The limit is ours, held to the size the header declares (read by odrecords, and
        # checked against TensorFlow's in test_verify, or by Pillow) or TensorFlow decodes.
        sizes = (decoded, pillow_size(data), verify.declared_size(data))
        if max(area(size) for size in sizes) <= MAX_PIXELS:
            return f"{name}: rejected ({reason}), TensorFlow decodes it at {decoded}"
        return None
    message = tensorflow_message(data)
    if message is None:
        return f"{name}: rejected ({reason}), TensorFlow decodes it at {decoded}"
    if message not in reason:
        return f"{name}: rejected for {reason}, not TensorFlow's {message!r}"
    return None


def area(size: tuple[int, int] | None) -> int:
    return 0 if size is None else size[0] * size[1]


def pillow_size(data: bytes) -> tuple[int, int] | None:
    """The size Pillow reads from the header, which it would convert the image at (a GIF's
    logical screen, larger than its frames, which TensorFlow decodes at)."""
    try:
        return Image.open(io.BytesIO(data)).size
    except Image.DecompressionBombError:
        return MAX_PIXELS + 1, 1
    except Exception:
        return None


def mismatches(corpus: Iterable[tuple[str, bytes]], option: str = "auto") -> list[str]:
    found = [mismatch(name, data, option) for name, data in corpus]
    return [problem for problem in found if problem is not None]


def exif_block(value: int = 6, byte_order: str = "<", kind: int = 3, count: int = 1) -> bytes:
    """A TIFF structure whose first IFD holds one orientation entry."""
    mark = b"II" if byte_order == "<" else b"MM"
    entry = struct.pack(byte_order + "HHIHH", ORIENTATION, kind, count, value, 0)
    return mark + struct.pack(byte_order + "HIH", 42, 8, 1) + entry + bytes(4)


def bad_exif_blocks() -> Iterator[tuple[str, bytes]]:
    """EXIF blocks with their orientation entry, or what leads to it, damaged."""
    block = exif_block()
    for value in (0, 1, 9, 255, 65535):
        yield f"orientation {value}", exif_block(value)
    yield "orientation a LONG", exif_block(kind=4)
    yield "orientation twice over", exif_block(count=2)
    yield "big-endian", exif_block(byte_order=">")
    for offset in (0, 7, 9, 2**31, 2**32 - 1):
        yield f"first IFD at {offset}", patch(block, 4, struct.pack("<I", offset))
    for count in (0, 2, 1000, 65535):
        yield f"{count} entries", patch(block, 8, struct.pack("<H", count))
    yield "magic 43", patch(block, 2, struct.pack("<H", 43))
    yield "byte order XX", b"XX" + block[2:]
    for cut in (1, 4, 9, 14, 20):
        yield f"cut at {cut}", block[:cut]
    yield "empty", b""
    yield "garbage", b"\xff" * 30


# -- PNG --------------------------------------------------------------------------------------

IMAGE = picture(40, 30)


def png_bases() -> dict[str, bytes]:
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    return {
        "png": encode(IMAGE, "PNG"),
        "png_palette": encode(IMAGE.convert("P"), "PNG"),
        "png_oriented": encode(IMAGE, "PNG", exif=exif),
        "png_grey_alpha_oriented": encode(IMAGE.convert("LA"), "PNG", exif=exif),
    }


PNGS = png_bases()
# Ancillary chunks libpng and Pillow read, and one neither knows.
ANCILLARY = {
    b"tEXt": b"Comment\x00hello",
    b"zTXt": b"Comment\x00\x00" + zlib.compress(b"hello"),
    b"iTXt": b"Comment\x00\x00\x00en\x00\x00hello",
    b"eXIf": exif_block(),
    b"pHYs": struct.pack(">IIB", 2835, 2835, 1),
    b"gAMA": struct.pack(">I", 45455),
    b"iCCP": b"icc\x00\x00" + zlib.compress(b"not a profile"),
    b"sRGB": b"\x00",
    b"tIME": struct.pack(">HBBBBB", 2026, 1, 2, 3, 4, 5),
    b"bKGD": bytes(6),
    b"cHRM": bytes(32),
    b"prVt": b"private data",
}


def wrong_crc(kind: bytes, body: bytes) -> bytes:
    return chunk(kind, body)[:-4] + struct.pack(">I", zlib.crc32(kind + body) ^ 0x5A5A5A5A)


def with_raw(data: bytes, raw: bytes, before: bytes) -> bytes:
    """`raw` (one or more chunks as bytes) inserted before the first chunk of type `before`."""
    position = 8
    while data[position + 4 : position + 8] != before:
        position += 12 + struct.unpack_from(">I", data, position)[0]
    return data[:position] + raw + data[position:]


def ancillary_damage(data: bytes) -> Iterator[tuple[str, bytes]]:
    for kind, body in ANCILLARY.items():
        for place in (b"IDAT", b"IEND"):
            where = f"before {place.decode()}"
            yield (
                f"{kind.decode()} {where}, CRC wrong",
                with_raw(data, wrong_crc(kind, body), place),
            )
            yield f"{kind.decode()} {where}", with_raw(data, chunk(kind, body), place)
            cut = chunk(kind, body)[:-6]
            yield f"{kind.decode()} {where}, cut short", with_raw(data, cut, place)
    for kind, body in MALFORMED_ANCILLARY:
        yield f"malformed {kind.decode()} {body[:8]!r}", with_raw(data, chunk(kind, body), b"IDAT")
    for what, block in bad_exif_blocks():
        yield f"eXIf {what}", with_raw(data, chunk(b"eXIf", block), b"IDAT")
        yield f"eXIf {what}, CRC wrong", with_raw(data, wrong_crc(b"eXIf", block), b"IDAT")


def damaged_existing_chunks(data: bytes) -> Iterator[tuple[str, bytes]]:
    """The file's own chunks with a wrong CRC, one at a time (critical ones included, which
    both refuse)."""
    position = 8
    while position < len(data):
        (length,) = struct.unpack_from(">I", data, position)
        kind = data[position + 4 : position + 8].decode()
        crc = position + 8 + length
        yield f"{kind} at {position}, CRC wrong", flip(data, crc, 3)
        position = crc + 4


def test_a_text_chunk_with_a_wrong_crc_is_accepted_as_tensorflow_decodes_it():
    """The issue's image: libpng only warns about the CRC, Pillow refuses the file."""
    data = with_raw(PNGS["png"], wrong_crc(b"tEXt", b"Comment\x00hello"), b"IDAT")
    assert pillow_refuses(data)
    loaded = LOADERS["auto"].load(ImageAnnotation("a.png", ("s",)), stored=data)
    assert (loaded.format, loaded.width, loaded.height) == ("png", 40, 30)
    assert loaded.encoded is data


@pytest.mark.parametrize("name", sorted(PNGS))
def test_png_ancillary_damage(name):
    data = PNGS[name]
    corpus = [(f"{name}: {what}", damaged) for what, damaged in ancillary_damage(data)]
    corpus += [(f"{name}: {what}", damaged) for what, damaged in damaged_existing_chunks(data)]
    for option in LOADERS:
        assert not mismatches(corpus, option)


def test_oriented_png_pillow_refuses_is_turned_from_tensorflows_pixels():
    """An eXIf orientation read by odrecords' own parser, on a PNG Pillow cannot read: the
    pixels TensorFlow decodes are turned."""
    data = with_raw(PNGS["png_oriented"], wrong_crc(b"tEXt", b"k\x00v"), b"IDAT")
    loaded = LOADERS["auto"].load(ImageAnnotation("a.png", ("s",)), stored=data)
    assert (loaded.width, loaded.height) == (30, 40)
    turned = np.rot90(tf.io.decode_png(data).numpy(), k=-1)
    assert np.array_equal(tf.io.decode_png(loaded.encoded).numpy(), turned)
    stored = LOADERS["stored"].load(ImageAnnotation("a.png", ("s",)), stored=data)
    assert (stored.width, stored.height) == (40, 30)
    assert np.array_equal(tf.io.decode_png(stored.encoded).numpy(), tf.io.decode_png(data).numpy())


# -- JPEG -------------------------------------------------------------------------------------


def jpeg_bases() -> dict[str, bytes]:
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    return {
        "jpeg": encode(IMAGE, "JPEG", quality=90),
        "jpeg_oriented": encode(IMAGE, "JPEG", quality=90, exif=exif),
        "jpeg_grey_oriented": encode(IMAGE.convert("L"), "JPEG", exif=exif),
        "jpeg_progressive_oriented": encode(IMAGE, "JPEG", progressive=True, exif=exif),
    }


JPEGS = jpeg_bases()


def segment(marker: int, body: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(body) + 2) + body


def mpf(offset: int = 8, count: int = 2, size: int = 10**6) -> bytes:
    """An MPF APP2 body (Pillow reads it on opening, to tell MPO from JPEG)."""
    header = b"MPF\x00II*\x00" + struct.pack("<I", offset)
    entries = struct.pack("<HHHIIHH", 2, 0xB000, 7, 4, 0, 0, 0)
    entries += struct.pack("<HHIIHHI", 0xB002, 7, 16 * count, 50, 0, 0, 0)
    images = struct.pack("<IIIHH", 0x030000, size, 0, 0, 0) * count
    return header + entries[: 2 + 12 * 2] + images


def app_segments() -> Iterator[tuple[str, bytes]]:
    """Segments to put after SOI, where Pillow and libjpeg read them differently."""
    for what, block in bad_exif_blocks():
        yield f"Exif {what}", segment(0xE1, b"Exif\x00\x00" + block)
    yield "Exif header alone", segment(0xE1, b"Exif\x00\x00")
    yield "Exif header cut", segment(0xE1, b"Exi")
    yield "two Exif segments", segment(0xE1, b"Exif\x00\x00" + exif_block(3)) * 2
    yield "XMP garbage", segment(0xE1, b"http://ns.adobe.com/xap/1.0/\x00<x:garbage")
    for offset in (0, 4, 2**31):
        yield f"MPF offset {offset}", segment(0xE2, mpf(offset=offset))
    for count in (0, 1, 1000):
        yield f"MPF of {count} images", segment(0xE2, mpf(count=count))
    yield "MPF cut", segment(0xE2, mpf()[:20])
    yield "MPF image past the end", segment(0xE2, mpf(size=2**31))
    yield "ICC of 2 of 1", segment(0xE2, b"ICC_PROFILE\x00\x02\x01" + b"x" * 20)
    yield "ICC of 0 chunks", segment(0xE2, b"ICC_PROFILE\x00\x00\x00" + b"x" * 20)
    yield "ICC cut", segment(0xE2, b"ICC_PROF")
    yield "Adobe cut", segment(0xEE, b"Adobe\x00\x64")
    yield "Adobe transform 7", segment(0xEE, b"Adobe\x00\x64\x00\x00\x00\x00\x07")
    yield "JFIF cut", segment(0xE0, b"JFIF\x00\x01")
    yield "JFIF density 0", segment(0xE0, b"JFIF\x00\x01\x02\x00\x00\x00\x00\x00\x00\x00")
    yield "JFXX garbage", segment(0xE0, b"JFXX\x00\x13garbage")
    yield "empty APP1", segment(0xE1, b"")
    yield "APP15", segment(0xEF, b"anything")
    yield "comment", segment(0xFE, b"a comment")
    yield "empty comment", segment(0xFE, b"")
    yield "fill bytes", b"\xff\xff\xff"
    yield "restart interval", segment(0xDD, b"\x00\x04")
    yield "restart interval cut", segment(0xDD, b"\x00")
    yield "TEM marker", b"\xff\x01"
    yield "RST0 marker", b"\xff\xd0"
    yield "zero byte", b"\x00"
    yield "APP1 length 0", b"\xff\xe1\x00\x00"
    yield "APP1 length 1", b"\xff\xe1\x00\x01"


def jpeg_damage(data: bytes) -> Iterator[tuple[str, bytes]]:
    for what, raw in app_segments():
        yield f"{what} after SOI", data[:2] + raw + data[2:]
    frame = next(p for p, m in segments(data) if m in (0xC0, 0xC1, 0xC2))
    yield "MPF before the frame", data[:frame] + segment(0xE2, mpf()) + data[frame:]
    for position, marker in segments(data):
        if 0xE0 <= marker <= 0xEF:
            length = int.from_bytes(data[position + 2 : position + 4], "big")
            end = position + 2 + length
            yield (
                f"APP{marker - 0xE0} cut to half",
                patch(data, position + 2, struct.pack(">H", length // 2)),
            )
            yield (
                f"APP{marker - 0xE0} past its end",
                patch(data, position + 2, struct.pack(">H", length + 7)),
            )
            yield f"APP{marker - 0xE0} body removed", data[: position + 4] + data[end:]
            for offset in range(position + 4, min(end, position + 40)):
                yield f"APP{marker - 0xE0} byte {offset} flipped", flip(data, offset, 7)


@pytest.mark.parametrize("name", sorted(JPEGS))
def test_jpeg_segment_damage(name):
    corpus = [(f"{name}: {what}", damaged) for what, damaged in jpeg_damage(JPEGS[name])]
    for option in LOADERS:
        assert not mismatches(corpus, option)


def pillow_refuses(data: bytes) -> bool:
    try:
        Image.open(io.BytesIO(data)).load()
    except Exception:
        return True
    return False


def test_oriented_jpeg_pillow_refuses_is_turned_from_tensorflows_pixels():
    """A turned JPEG whose tables Pillow cannot read is re-encoded at a high fixed quality:
    close to TensorFlow's pixels, turned."""
    data = JPEGS["jpeg_oriented"]
    damaged = [d for _, d in jpeg_damage(data) if pillow_refuses(d) and oracle(d) is not None]
    assert damaged, "no JPEG in the corpus that Pillow refuses and TensorFlow decodes"
    for item in damaged:
        loaded = LOADERS["auto"].load(ImageAnnotation("a.jpg", ("s",)), stored=item)
        expected = np.rot90(tf.io.decode_jpeg(item).numpy(), k=-1).astype(float)
        if loaded.orientation is None:  # The damage reached the tag itself.
            continue
        assert (loaded.format, loaded.width, loaded.height) == ("jpeg", 30, 40)
        error = tf.io.decode_jpeg(loaded.encoded).numpy().astype(float) - expected
        assert 10 * np.log10(255**2 / np.mean(error**2)) > 35


# -- GIF, BMP, WebP ---------------------------------------------------------------------------


def webp_with_exif(data: bytes, block: bytes) -> bytes:
    """A lossless WebP turned extended, with an EXIF chunk holding `block`."""
    assert data[12:16] == b"VP8L"
    width = 1 + (int.from_bytes(data[21:25], "little") & 0x3FFF)
    height = 1 + (int.from_bytes(data[21:25], "little") >> 14 & 0x3FFF)
    vp8x = b"VP8X" + struct.pack("<I", 10) + bytes([0x08, 0, 0, 0])
    vp8x += (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    exif = b"EXIF" + struct.pack("<I", len(block)) + block + b"\x00" * (len(block) & 1)
    body = b"WEBP" + vp8x + data[12:] + exif
    return b"RIFF" + struct.pack("<I", len(body)) + body


def other_bases() -> dict[str, bytes]:
    webp = encode(IMAGE, "WEBP", lossless=True)
    return {
        "gif": encode(IMAGE, "GIF"),
        "gif_two_frames": gif_of_two_frames(),
        "bmp": encode(IMAGE, "BMP"),
        "bmp_rgba": encode(IMAGE.convert("RGBA"), "BMP"),
        "webp": webp,
        "webp_lossy": encode(IMAGE, "WEBP", quality=80),
        "webp_oriented": webp_with_exif(webp, exif_block()),
    }


OTHERS = other_bases()


def header_damage(name: str, data: bytes) -> Iterator[tuple[str, bytes]]:
    """Each of the first 64 bytes changed, bits flipped beyond, cuts, and the format's own
    fields set to odd values."""
    for offset in range(min(64, len(data))):
        yield f"byte {offset} flipped", flip(data, offset, offset % 8)
        yield f"byte {offset} zeroed", patch(data, offset, b"\x00")
        yield f"byte {offset} 0xff", patch(data, offset, b"\xff")
    for offset in range(64, len(data), max(1, len(data) // 40)):
        yield f"bit flipped at {offset}", flip(data, offset, offset % 8)
    for cut in range(0, len(data), max(1, len(data) // 30)):
        yield f"cut at {cut}", data[:cut]
    yield "trailing garbage", data + b"\x00garbage"
    if name.startswith("gif"):
        for width, height in ((0, 30), (40, 0), (41, 30), (20, 15), (65535, 30)):
            yield f"screen {width}x{height}", patch(data, 6, struct.pack("<HH", width, height))
        yield "no trailer", data[:-1]
        yield "extension garbage", data[:-1] + b"!\xfe\x03abc\x00;"
    if name.startswith("bmp"):
        for size in (12, 40, 52, 56, 64, 108, 124, 0, 200):
            yield f"DIB header of {size}", patch(data, 14, struct.pack("<I", size))
        for offset in (0, 14, 54, 10**6):
            yield f"pixels at {offset}", patch(data, 10, struct.pack("<I", offset))
        yield "file size wrong", patch(data, 2, struct.pack("<I", 1))
        yield "top-down", patch(data, 22, struct.pack("<i", -30))
        yield "compression 3", patch(data, 30, struct.pack("<I", 3))
        yield "colours 1000", patch(data, 46, struct.pack("<I", 1000))
    if name.startswith("webp"):
        yield "RIFF size small", patch(data, 4, struct.pack("<I", 10))
        yield "RIFF size large", patch(data, 4, struct.pack("<I", 2**31))
    if name == "webp_oriented":
        for what, block in bad_exif_blocks():
            yield f"EXIF {what}", webp_with_exif(OTHERS["webp"], block)


@pytest.mark.parametrize("name", sorted(OTHERS))
def test_other_formats_damage(name):
    corpus = [(f"{name}: {what}", damaged) for what, damaged in header_damage(name, OTHERS[name])]
    corpus.append((name, OTHERS[name]))
    for option in LOADERS:
        assert not mismatches(corpus, option)


def test_formats_only_tensorflow_reads_are_converted_from_its_pixels():
    """Images Pillow refuses and TensorFlow decodes, in formats that are not kept: written as
    PNGs of TensorFlow's pixels."""
    found = 0
    for name, data in OTHERS.items():
        for what, damaged in header_damage(name, data):
            if not pillow_refuses(damaged) or oracle(damaged) is None:
                continue
            loaded = LOADERS["ignore"].load(ImageAnnotation("a", ("s",)), stored=damaged)
            assert (loaded.format, loaded.converted_from) == ("png", name.split("_")[0]), what
            decoded = tf.io.decode_image(damaged, channels=3, expand_animations=False).numpy()
            written = tf.io.decode_png(loaded.encoded, channels=3).numpy()
            assert np.array_equal(written, decoded), (name, what)
            found += 1
    assert found


def test_a_bomb_is_refused_from_its_header_even_when_pillow_cannot_read_it(monkeypatch):
    """A PNG whose IHDR declares 5000 x 5000 pixels, with a wrong CRC on a text chunk:
    refused by the pixel limit before anything decodes it."""
    bomb = encode(Image.new("L", (5000, 5000)), "PNG", optimize=True)
    bomb = with_raw(bomb, wrong_crc(b"tEXt", b"k\x00v"), b"IDAT")
    monkeypatch.setattr("transforms.images.loader.decode", lambda data: pytest.fail("decoded"))
    with pytest.raises(ImageRejected, match="5000x5000, more than 1000000 pixels"):
        LOADERS["auto"].load(ImageAnnotation("bomb.png", ("s",)), stored=bomb)


def test_a_gif_bomb_is_refused_from_its_frames_even_when_pillow_cannot_read_it(monkeypatch):
    """A GIF whose frame declares 5000 x 5000 pixels on a 4 x 4 screen, with a version
    Pillow does not know: refused by the pixel limit before TensorFlow decodes it onto a
    canvas of its frame's size."""
    data = encode(Image.new("P", (4, 4)), "GIF")
    descriptor = data.index(b"\x2c", 13)
    bomb = b"GIF8!a" + patch(data, descriptor + 5, struct.pack("<HH", 5000, 5000))[6:]
    assert pillow_refuses(bomb)
    monkeypatch.setattr("transforms.images.loader.decode", lambda data: pytest.fail("decoded"))
    with pytest.raises(ImageRejected, match="5000x5000, more than 1000000 pixels"):
        LOADERS["auto"].load(ImageAnnotation("bomb.gif", ("s",)), stored=bomb)


def test_a_webp_bomb_is_refused_from_its_canvas(monkeypatch):
    """A WebP whose extended header declares a 5000 x 5000 canvas: refused by the pixel limit
    before libwebp, through Pillow or TensorFlow, allocates it."""
    bomb = patch(OTHERS["webp_oriented"], 24, (4999).to_bytes(3, "little") * 2)
    monkeypatch.setattr("transforms.images.loader.decode", lambda data: pytest.fail("decoded"))
    monkeypatch.setattr("transforms.images.loader.Image.open", lambda data: pytest.fail("opened"))
    with pytest.raises(ImageRejected, match="5000x5000, more than 1000000 pixels"):
        LOADERS["auto"].load(ImageAnnotation("bomb.webp", ("s",)), stored=bomb)


# -- random ancillary chunks ------------------------------------------------------------------

ANCILLARY_TYPES = st.one_of(
    st.sampled_from(sorted(ANCILLARY)),
    st.tuples(
        st.sampled_from("abcdefghijklmnopqrstuvwxyz"),
        st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=3, max_size=3),
    ).map(lambda parts: (parts[0] + parts[1]).encode()),
)


@FUZZ
@given(
    name=st.sampled_from(sorted(PNGS)),
    extra=st.lists(
        st.tuples(
            ANCILLARY_TYPES,
            st.one_of(st.binary(max_size=40), st.sampled_from(list(ANCILLARY.values()))),
            st.sampled_from([b"IDAT", b"IEND"]),
            st.sampled_from([None, 0, 1, 0xFFFFFFFF]),
        ),
        min_size=1,
        max_size=3,
    ),
    option=st.sampled_from(sorted(LOADERS)),
)
def test_random_ancillary_chunks(name: str, extra: list, option: str):
    data = PNGS[name]
    for kind, body, before, crc_change in extra:
        raw = chunk(kind, body)
        if crc_change is not None:
            raw = raw[:-4] + struct.pack(">I", zlib.crc32(kind + body) ^ crc_change)
        data = with_raw(data, raw, before)
    assert not mismatches([(f"{name} with {extra}", data)], option)


def test_the_corpus_reaches_where_pillow_and_tensorflow_disagree():
    """The corpus is worth its name: it holds images Pillow refuses and TensorFlow decodes,
    in every family."""
    families = {
        "png": [d for n in PNGS for _, d in ancillary_damage(PNGS[n])],
        "jpeg": [d for n in JPEGS for _, d in jpeg_damage(JPEGS[n])],
        "other": [d for n in OTHERS for _, d in header_damage(n, OTHERS[n])],
    }
    for family, corpus in families.items():
        assert any(pillow_refuses(d) and oracle(d) is not None for d in corpus), family
