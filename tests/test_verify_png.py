"""Differential test of the PNG certificate (`transforms.images.verify_png`): over PNGs of every
colour type and bit depth, interlaced and not, and over damaged ones, the fast verdict
(accepted at a size, or rejected) equals `tf.io.decode_image`'s, item by item.

Damage comes two ways: as bytes (truncation at many points, bits flipped through the file,
which mostly breaks a CRC) and as structure with every CRC made right again, so that what
lies behind the CRCs is reached: IHDR's values, chunk order, PLTE, the zlib stream (corrupt,
cut short, too long, a second stream, a window smaller than its distances) and the rows'
filter types.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable, Iterator

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_verify import FUZZ, disagreements, encode, flip, oracle, picture

from transforms.images import verify_png
from transforms.images.verify_png import SIGNATURE


def chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """(type, data) of each chunk of a well-formed PNG."""
    found, position = [], len(SIGNATURE)
    while position < len(data):
        (length,) = struct.unpack_from(">I", data, position)
        found.append(
            (data[position + 4 : position + 8], data[position + 8 : position + 8 + length])
        )
        position += 12 + length
    return found


def assemble(parts: Iterable[tuple[bytes, bytes]]) -> bytes:
    return SIGNATURE + b"".join(chunk(kind, body) for kind, body in parts)


def png(
    width: int,
    height: int,
    depth: int,
    colour: int,
    rows: bytes,
    interlace: int = 0,
    extra: Iterable[tuple[bytes, bytes]] = (),
    compressed: bytes | None = None,
) -> bytes:
    """A PNG of the given filtered row data, written here (Pillow writes neither interlaced
    PNGs nor 2-bit ones)."""
    header = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, interlace)
    data = zlib.compress(rows) if compressed is None else compressed
    return assemble([(b"IHDR", header), *extra, (b"IDAT", data), (b"IEND", b"")])


def adam7_rows(pixels: np.ndarray) -> bytes:
    """The filtered rows (filter type 0) of an 8-bit RGB image's seven Adam7 passes."""
    rows = []
    for left, top, across, down in verify_png._ADAM7:
        sub = pixels[top::down, left::across]
        if sub.shape[0] and sub.shape[1]:
            rows += [b"\x00" + row.tobytes() for row in sub]
    return b"".join(rows)


def plain_rows(pixels: np.ndarray, filters: Iterator[int] | None = None) -> bytes:
    return b"".join(bytes([next(filters) if filters else 0]) + row.tobytes() for row in pixels)


PIXELS = np.asarray(picture(13, 9))


def variants() -> dict[str, bytes]:
    """Intact PNGs the certificate covers."""
    image = picture(40, 30)
    two_bit = bytes(range(4)) * 3  # 12 pixels of 2 bits, 3 bytes a row.
    return {
        "rgb": encode(image, "PNG"),
        "rgb_optimized": encode(image, "PNG", optimize=True),
        "rgba": encode(image.convert("RGBA"), "PNG"),
        "palette": encode(image.convert("P"), "PNG"),
        "palette_transparent": encode(image.convert("P"), "PNG", transparency=3),
        "palette_4bit": encode(image.convert("P", colors=16), "PNG", bits=4),
        "grey": encode(image.convert("L"), "PNG"),
        "grey_alpha": encode(image.convert("LA"), "PNG"),
        "bilevel": encode(image.convert("1"), "PNG"),
        "grey16": encode(image.convert("L").convert("I;16"), "PNG"),
        "rgb16": png(2, 2, 16, 2, b"\x00" + bytes(12) + b"\x01" + bytes(range(12))),
        "grey_2bit": png(12, 2, 2, 0, b"\x00" + two_bit[:3] + b"\x02" + two_bit[3:6]),
        "interlaced": png(13, 9, 8, 2, adam7_rows(PIXELS), interlace=1),
        "interlaced_1x1": png(1, 1, 8, 2, b"\x00\x10\x20\x30", interlace=1),
        "all_filters": png(13, 9, 8, 2, plain_rows(PIXELS, iter([0, 1, 2, 3, 4] * 2))),
        "one_pixel": encode(picture(1, 1), "PNG"),
        "small_window": png(13, 9, 8, 2, plain_rows(PIXELS), compressed=_small_window()),
        "text_chunks": png(
            13, 9, 8, 2, plain_rows(PIXELS), extra=[(b"tEXt", b"k\x00v"), (b"abCd", b"x")]
        ),
        "split_idat": assemble(_split_idat(encode(image, "PNG"), 7)),
    }


def _small_window() -> bytes:
    compressor = zlib.compressobj(wbits=9)
    return compressor.compress(plain_rows(PIXELS)) + compressor.flush()


def _split_idat(data: bytes, pieces: int) -> list[tuple[bytes, bytes]]:
    parts = []
    for kind, body in chunks(data):
        if kind == b"IDAT":
            step = max(1, len(body) // pieces)
            parts += [(b"IDAT", body[at : at + step]) for at in range(0, len(body), step)]
        else:
            parts.append((kind, body))
    return parts


VARIANTS = variants()


def test_intact_pngs_are_certified_at_tensorflows_size():
    """The fast path is really taken, and gives TensorFlow's size."""
    for name, data in VARIANTS.items():
        size = verify_png.certified_size(data, 1 << 29)
        assert size is not None, name
        assert size == oracle(data), name


def test_truncated_and_bit_flipped():
    corpus = []
    for name, data in VARIANTS.items():
        step = max(1, len(data) // 150)
        corpus += [(f"{name} cut at {cut}", data[:cut]) for cut in range(0, len(data), step)]
        corpus += [(f"{name} cut at -{back}", data[:-back]) for back in range(1, 14)]
        corpus += [
            (f"{name} bit {bit} of byte {offset}", flip(data, offset, bit))
            for offset in range(0, min(len(data), 64))
            for bit in range(0, 8, 3)
        ]
        corpus += [
            (f"{name} bit flipped at {offset}", flip(data, offset, offset % 8))
            for offset in range(64, len(data), max(1, len(data) // 100))
        ]
    assert not disagreements(corpus)


def _header_values(data: bytes) -> Iterator[tuple[str, bytes]]:
    """IHDR's fields set to other values, the CRC made right."""
    parts = chunks(data)
    width, height, depth, colour, *rest = struct.unpack(">IIBBBBB", parts[0][1])
    fields = {
        "width": [0, 1, width - 1, width + 1, 1_000_001, 2**31],
        "height": [0, 1, height - 1, height + 1, 1_000_001, 2**31],
        "depth": [0, 1, 2, 3, 4, 8, 16, 32],
        "colour": [0, 1, 2, 3, 4, 5, 6, 7],
        "compression": [1],
        "filtering": [1],
        "interlace": [1 - rest[2], 2],
    }
    names = list(fields)
    values = [width, height, depth, colour, *rest]
    for index, name in enumerate(names):
        for value in fields[name]:
            changed = values[:index] + [value] + values[index + 1 :]
            try:
                header = struct.pack(">IIBBBBB", *changed)
            except struct.error:
                continue
            yield f"{name} {value}", assemble([(b"IHDR", header), *parts[1:]])


def _surgery(data: bytes) -> Iterator[tuple[str, bytes]]:
    """Chunks removed, repeated, moved and renamed; PLTE and the zlib stream altered; each
    with right CRCs."""
    parts = chunks(data)
    for index, (kind, _) in enumerate(parts):
        yield f"{kind!r} removed", assemble(parts[:index] + parts[index + 1 :])
        yield f"{kind!r} repeated", assemble(parts[: index + 1] + parts[index:])
        if index + 1 < len(parts):
            swapped = parts[:index] + [parts[index + 1], parts[index]] + parts[index + 2 :]
            yield f"{kind!r} swapped with the next", assemble(swapped)
        for case in (0x20, -0x20):
            renamed = bytes([kind[0] + case]) + kind[1:]
            if renamed.isalpha():
                yield (
                    f"{kind!r} renamed {renamed!r}",
                    assemble(parts[:index] + [(renamed, parts[index][1])] + parts[index + 1 :]),
                )
    idat = next(index for index, (kind, _) in enumerate(parts) if kind == b"IDAT")
    stream = b"".join(body for kind, body in parts if kind == b"IDAT")
    rows = zlib.decompress(stream)
    others = [part for part in parts if part[0] != b"IDAT"]

    def with_stream(new: bytes) -> bytes:
        return assemble(others[:-1] + [(b"IDAT", new), others[-1]])

    yield (
        "a text chunk between IDATs",
        assemble(
            _split_idat(data, 2)[: idat + 1]
            + [(b"tEXt", b"a\x00b")]
            + _split_idat(data, 2)[idat + 1 :]
        ),
    )
    yield "unknown critical chunk", assemble(parts[:idat] + [(b"ABCD", b"x")] + parts[idat:])
    yield (
        "empty IDATs around the data",
        assemble(
            parts[:idat]
            + [(b"IDAT", b"")]
            + parts[idat : idat + 1]
            + [(b"IDAT", b"")] * 3
            + parts[idat + 1 :]
        ),
    )
    yield (
        "suggested or extra palette",
        assemble(
            parts[:1] + [(b"PLTE", bytes(range(30)))] + [p for p in parts[1:] if p[0] != b"PLTE"]
        ),
    )
    for size in (0, 2, 3 * 17, 3 * 257):
        palette = [(b"PLTE", bytes(size))]
        yield (
            f"palette of {size} bytes",
            assemble(parts[:1] + palette + [p for p in parts[1:] if p[0] != b"PLTE"]),
        )
    yield "trailing garbage", data + b"garbage"
    yield "data after IEND", data + chunk(b"tEXt", b"a\x00b")
    yield "a second zlib stream", with_stream(stream + zlib.compress(b"\x00"))
    yield "bytes after the zlib stream", with_stream(stream + b"\x00\x01")
    yield "stream cut short", with_stream(stream[:-4])
    yield "checksum wrong", with_stream(stream[:-1] + bytes([stream[-1] ^ 1]))
    yield "a row too few", with_stream(zlib.compress(rows[: len(rows) * 8 // 9]))
    yield "a byte too few", with_stream(zlib.compress(rows[:-1]))
    yield "a byte too many", with_stream(zlib.compress(rows + b"\x00"))
    yield "a row too many", with_stream(zlib.compress(rows + rows[: len(rows) // 9]))
    yield "preset dictionary", with_stream(_with_dictionary(rows))
    yield "window smaller than its distances", with_stream(_narrowed(stream))
    for offset in range(2, len(stream) - 4, max(1, len(stream) // 40)):
        damaged = stream[:offset] + bytes([stream[offset] ^ 0x10]) + stream[offset + 1 :]
        yield f"zlib byte {offset} changed", with_stream(damaged)


def _with_dictionary(rows: bytes) -> bytes:
    compressor = zlib.compressobj(zdict=b"dictionary")
    return compressor.compress(rows) + compressor.flush()


def _narrowed(stream: bytes, cinfo: int = 1) -> bytes:
    """The stream with its header declaring a window of 2 ** (cinfo + 8) bytes (the check
    bits made right)."""
    cmf = cinfo << 4 | 8
    flg = stream[1] & 0xE0
    flg |= 31 - ((cmf * 256 + flg) % 31) if (cmf * 256 + flg) % 31 else 0
    return bytes([cmf, flg]) + stream[2:]


def _filter_types(width: int, height: int) -> Iterator[tuple[str, bytes]]:
    for value in (5, 6, 127, 255):
        for row in (0, height // 2, height - 1):
            filters = iter([value if number == row else 0 for number in range(height)])
            yield (
                f"filter {value} on row {row}",
                png(width, height, 8, 2, plain_rows(PIXELS, filters)),
            )
    rows = bytearray(adam7_rows(PIXELS))
    rows[-1 - 13 * 3] = 9  # The filter byte of the last pass's last row.
    yield "interlaced, filter 9 on the last row", png(13, 9, 8, 2, bytes(rows), interlace=1)


@pytest.mark.parametrize("name", ["rgb", "palette", "grey_2bit", "interlaced", "rgb16"])
def test_header_values_and_chunk_surgery(name):
    data = VARIANTS[name]
    corpus = [(f"{name}: {what}", damaged) for what, damaged in _header_values(data)]
    corpus += [(f"{name}: {what}", damaged) for what, damaged in _surgery(data)]
    assert not disagreements(corpus)


def test_unknown_filter_types():
    assert not disagreements(_filter_types(13, 9))


# Ancillary chunks libpng knows, malformed (with right CRCs): it only warns about them.
MALFORMED_ANCILLARY = [
    (b"iCCP", b"name\x00\x00garbage"),
    (b"iCCP", b"name\x00\x05" + zlib.compress(b"x" * 200)),
    (b"iCCP", b"name\x00\x00" + zlib.compress(b"x" * 10)),
    (b"zTXt", b"k\x00\x00garbage"),
    (b"iTXt", b"k\x00\x01\x00\x00\x00garbage"),
    (b"tEXt", b"no keyword separator"),
    (b"tEXt", b"k" * 100 + b"\x00v"),
    (b"tRNS", bytes(100)),
    (b"gAMA", bytes(4)),
    (b"gAMA", bytes(2)),
    (b"cHRM", bytes(3)),
    (b"sRGB", b"\x09"),
    (b"sBIT", bytes(3)),
    (b"bKGD", b"\x00"),
    (b"pHYs", b"\x00"),
    (b"tIME", bytes(7)),
    (b"eXIf", b"garbage"),
    (b"hIST", b"\x00"),
    (b"sPLT", b"\x00"),
    (b"acTL", bytes(8)),
    (b"oFFs", b"\x00"),
    (b"pCAL", b"x"),
    (b"sCAL", b"x"),
]


@pytest.mark.parametrize("name", ["rgb", "palette"])
def test_malformed_ancillary_chunks(name):
    parts = chunks(VARIANTS[name])
    corpus = []
    for extra in MALFORMED_ANCILLARY:
        corpus.append((f"{extra!r} first", assemble(parts[:1] + [extra] + parts[1:])))
        corpus.append((f"{extra!r} last", assemble(parts[:-1] + [extra] + parts[-1:])))
    assert not disagreements(corpus)


def test_reaching_beyond_a_small_declared_window():
    """zlib refuses a distance beyond the window only counting what the current call has
    written, and libpng inflates a row per call: a stream that reaches beyond a small
    declared window is left to TensorFlow, which refuses it."""
    # A 1 x 200 grey image of zeros: a literal, 258 bytes at distance 1, then 141 at
    # distance 259, in a stream declaring a 256-byte window.
    reach = png(1, 200, 8, 0, b"", compressed=bytes.fromhex("081d631805832a080001900001"))
    pixels = np.asarray(picture(120, 100))
    stream = zlib.compress(plain_rows(np.concatenate([pixels, pixels])), 9)
    corpus = [("reaches 259 back in a 256-byte window", reach)]
    corpus += [
        (f"window of 2^{cinfo + 8}", png(120, 200, 8, 2, b"", compressed=_narrowed(stream, cinfo)))
        for cinfo in range(8)
    ]
    assert verify_png.certified_size(reach, 1 << 29) is None
    assert not disagreements(corpus)


def test_large_side_goes_to_tensorflow():
    """Over libpng's default limit of a million pixels a side, TensorFlow decides."""
    data = png(1_000_001, 1, 1, 0, b"\x00" + bytes(125_001))
    assert verify_png.certified_size(data, 1 << 29) is None
    assert not disagreements([("1000001x1", data)])


@FUZZ
@given(
    name=st.sampled_from(sorted(VARIANTS)),
    flips=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 7)), max_size=3),
    cut=st.one_of(st.none(), st.floats(0, 1)),
    fix_crcs=st.booleans(),
)
def test_random_damage(name: str, flips: list, cut: float | None, fix_crcs: bool):
    data = VARIANTS[name]
    for where, bit in flips:
        offset = len(SIGNATURE) + min(int(where * (len(data) - 8)), len(data) - 9)
        data = flip(data, offset, bit)
    if fix_crcs:
        try:
            data = assemble(chunks(data))
        except (struct.error, IndexError):
            pass
    if cut is not None:
        data = data[: int(cut * len(data))]
    assert not disagreements([(name, data)])
