"""LoadImages: every way an image can be unusable, and the formats that are converted."""

import io
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from transforms.images.loader import ImageLoader, ImageRejected
from transforms.records import ImageAnnotation


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def noise(width=40, height=30, mode="RGB") -> Image.Image:
    pixels = np.random.default_rng(1).integers(0, 255, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels).convert(mode)


@pytest.fixture
def loader(tmp_path):
    root = tmp_path / "images"
    root.mkdir()
    fn = ImageLoader(str(root), max_bytes=1_000_000, max_pixels=1_000_000)
    fn.setup()

    def load(name: str, data: bytes | None = None):
        if data is not None:
            path = root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        return fn.load(ImageAnnotation(image=name, sources=("s",)))

    load.root = root
    return load


def test_jpeg_and_png_keep_their_bytes(loader):
    for name, fmt, mode in [
        ("a.jpg", "JPEG", "RGB"),
        ("g.jpg", "JPEG", "L"),
        ("c.jpg", "JPEG", "CMYK"),
        ("p.png", "PNG", "P"),
        ("a.png", "PNG", "RGBA"),
        ("s/deep.png", "PNG", "LA"),
    ]:
        data = encode(noise(mode=mode), fmt)
        loaded = loader(name, data)
        assert loaded.encoded == data, name
        assert (loaded.format, loaded.width, loaded.height) == (fmt.lower(), 40, 30)
        assert loaded.converted_from is None


@pytest.mark.parametrize("fmt", ["TIFF", "BMP", "GIF", "WEBP"])
def test_other_formats_are_converted_losslessly_to_png(loader, fmt):
    original = noise()
    options = {"lossless": True} if fmt == "WEBP" else {}
    loaded = loader(f"x.{fmt.lower()}", encode(original, fmt, **options))
    assert (loaded.format, loaded.converted_from) == ("png", fmt.lower())
    decoded = tf.io.decode_image(loaded.encoded, channels=3).numpy()
    expected = np.asarray(Image.open(io.BytesIO(encode(original, fmt, **options))).convert("RGB"))
    assert np.array_equal(decoded, expected)


def test_sixteen_bit_tiff_is_converted_without_losing_depth(loader):
    pixels = (np.arange(40 * 30, dtype=np.uint16).reshape(30, 40) * 50).astype(np.uint16)
    loaded = loader("deep.tif", encode(Image.fromarray(pixels), "TIFF"))
    decoded = tf.io.decode_png(loaded.encoded, dtype=tf.uint16).numpy()[:, :, 0]
    assert np.array_equal(decoded, pixels)


@pytest.mark.parametrize(
    "name, data, reason",
    [
        ("missing.jpg", None, "image file not found"),
        ("empty.jpg", b"", "image file is empty"),
        ("text.jpg", b"this is not an image", "TensorFlow cannot decode the image: Unknown image"),
        ("../outside.jpg", None, "outside the images root"),
    ],
)
def test_unusable_files_are_rejected_with_a_reason(loader, name, data, reason):
    with pytest.raises(ImageRejected, match=reason):
        loader(name, data)


def test_truncated_jpeg_and_png_are_rejected(loader):
    for name, fmt in [("t.jpg", "JPEG"), ("t.png", "PNG")]:
        data = encode(noise(), fmt)
        with pytest.raises(ImageRejected, match="decode"):
            loader(name, data[: len(data) // 2])


def test_decompression_bomb_is_refused_from_its_header(loader):
    # 2000x2000 of one colour: a tiny PNG that would decode to 4 megapixels (limit 1).
    bomb = encode(Image.new("L", (2000, 2000)), "PNG", optimize=True)
    assert len(bomb) < 20_000
    with pytest.raises(ImageRejected, match="more than 1000000 pixels"):
        loader("bomb.png", bomb)


def test_oversized_file_is_refused(loader):
    with pytest.raises(ImageRejected, match="larger than the 1000000-byte limit"):
        loader("big.jpg", b"\xff\xd8" + b"\0" * 1_000_001)


def test_symlink_leading_out_of_the_root_is_refused(loader, tmp_path):
    outside = tmp_path / "secret.jpg"
    outside.write_bytes(encode(noise(), "JPEG"))
    os.symlink(outside, loader.root / "link.jpg")
    with pytest.raises(ImageRejected, match="leads outside the images root"):
        loader("link.jpg")
