"""EXIF orientation: images tagged with each of the 8 orientations, annotated on the displayed
image or on the stored pixels, with a declared size (VOC, COCO) and without (YOLO). Read back
with TensorFlow, which ignores the tag, the pixels under every box must be the drawn square."""

from __future__ import annotations

import contextlib
import io
import json
import os
import struct
import zlib

import numpy as np
import pytest
import tensorflow as tf
from conftest import read_output, run_create
from PIL import Image, ImageOps
from sample_data import DrawnImage, DrawnObject, voc_xml

from transforms.counts import add_counts
from transforms.images.loader import ImageLoader
from transforms.images.orientation import (
    DISPLAYED,
    STORED,
    Orientation,
    OrientationPolicy,
    find_orientation,
    manifest_entry,
    orientation_counts,
    summary,
    without_orientation,
)
from transforms.records import ImageAnnotation

# The displayed image: wider than high, with a red square off-centre in both directions, so
# that every one of the 8 orientations puts it somewhere else.
WIDTH, HEIGHT = 64, 40
SQUARE = (8, 6, 28, 20)  # xmin, ymin, xmax, ymax in the displayed image
RED = (230, 20, 20)
T = Image.Transpose
# What gives the stored pixels of a displayed image for each orientation: the inverse of
# what a viewer applies.
TO_STORED = {
    1: None,
    2: T.FLIP_LEFT_RIGHT,
    3: T.ROTATE_180,
    4: T.FLIP_TOP_BOTTOM,
    5: T.TRANSPOSE,
    6: T.ROTATE_90,
    7: T.TRANSVERSE,
    8: T.ROTATE_270,
}
ALL = range(1, 9)


def displayed() -> Image.Image:
    image = Image.new("RGB", (WIDTH, HEIGHT), (60, 140, 60))
    image.paste(RED, SQUARE)
    return image


def stored(value: int) -> Image.Image:
    turn = TO_STORED[value]
    return displayed() if turn is None else displayed().transpose(turn)


def encode(image: Image.Image, fmt: str, value: int | None = None, **options) -> bytes:
    if value is not None:
        exif = Image.Exif()
        exif[0x0112] = value
        options["exif"] = exif
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def tagged(value: int, fmt: str) -> bytes:
    """The stored pixels of orientation `value`, tagged with it, as a camera writes them."""
    return encode(stored(value), fmt, value, **({"quality": 95} if fmt == "JPEG" else {}))


def red_box(pixels: np.ndarray) -> tuple[int, int, int, int]:
    """(xmin, ymin, xmax, ymax) of the red pixels of an RGB array."""
    red = (pixels[..., 0] > 150) & (pixels[..., 1] < 90) & (pixels[..., 2] < 90)
    ys, xs = np.nonzero(red)
    assert len(xs), "no red pixels"
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def stored_square(value: int) -> tuple[int, int, int, int]:
    return red_box(np.asarray(stored(value)))


def assert_box_on_square(example: dict) -> None:
    """The record's box, on the pixels TensorFlow decodes, is where the square is."""
    pixels = tf.io.decode_image(example["image/encoded"], channels=3).numpy()
    height, width = pixels.shape[:2]
    assert (width, height) == (example["image/width"], example["image/height"])
    box = [
        example["image/object/bbox/xmin"][0] * width,
        example["image/object/bbox/ymin"][0] * height,
        example["image/object/bbox/xmax"][0] * width,
        example["image/object/bbox/ymax"][0] * height,
    ]
    assert np.allclose(box, red_box(pixels), atol=1), (example["image/filename"], box)


def by_name(output: dict) -> dict[str, dict]:
    return {e["image/filename"].decode(): e for e in output["splits"]["train"]}


def create(*args) -> tuple[int, str]:
    """Runs create; returns the exit code and what it printed on stderr."""
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        code = run_create(*args, "--num-shards", 1)
    return code, stderr.getvalue()


def test_pillow_shows_the_tagged_files_as_the_displayed_image():
    """The fixtures are right: a viewer applying the tag sees the displayed image."""
    for value in ALL:
        for fmt in ("PNG", "JPEG"):
            shown = ImageOps.exif_transpose(Image.open(io.BytesIO(tagged(value, fmt))))
            assert shown.size == (WIDTH, HEIGHT)
            assert np.allclose(red_box(np.asarray(shown)), SQUARE, atol=1), (value, fmt)


@pytest.mark.parametrize("value", range(2, 9))
def test_tensorflow_ignores_the_tag_so_boxes_miss_unless_the_pixels_are_turned(value):
    """What goes wrong without this: the displayed box on the pixels TensorFlow decodes."""
    pixels = tf.io.decode_image(tagged(value, "PNG"), channels=3).numpy()
    assert red_box(pixels) == stored_square(value) != SQUARE


# -- reading and resetting the tag ----------------------------------------------------------


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "TIFF"])
def test_the_tag_is_read_where_pillow_reads_it(fmt):
    for value in ALL:
        options = {"tiffinfo": {0x0112: value}} if fmt == "TIFF" else {}
        data = encode(stored(value), fmt, None if fmt == "TIFF" else value, **options)
        tag = find_orientation(data, Image.open(io.BytesIO(data)).format)
        assert Image.open(io.BytesIO(data)).getexif()[0x0112] == value
        assert (tag.value if tag else 1) == value


def tiff_block(value: int, byte_order: str) -> bytes:
    """A minimal TIFF header and first IFD holding only an orientation entry."""
    mark = b"II" if byte_order == "<" else b"MM"
    return mark + struct.pack(byte_order + "HIH HHI H2x I", 42, 8, 1, 0x0112, 3, 1, value, 0)


def jpeg_with_app1(payload: bytes) -> bytes:
    plain = encode(displayed(), "JPEG")
    return plain[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + plain[2:]


def test_big_endian_exif_is_read_and_reset():
    data = jpeg_with_app1(b"Exif\x00\x00" + tiff_block(6, ">"))
    tag = find_orientation(data, "JPEG")
    assert (tag.value, tag.byte_order) == (6, ">")
    reset = without_orientation(data, tag)
    assert Image.open(io.BytesIO(reset)).getexif()[0x0112] == 1
    assert sum(a != b for a, b in zip(data, reset, strict=True)) == 1  # 6 → 1, one byte


def png_with_chunk(kind: bytes, payload: bytes, before_idat: bool) -> bytes:
    plain = encode(displayed(), "PNG")
    chunk = struct.pack(">I", len(payload)) + kind + payload
    chunk += struct.pack(">I", zlib.crc32(kind + payload))
    at = plain.index(b"IDAT") - 4 if before_idat else plain.index(b"IEND") - 4
    return plain[:at] + chunk + plain[at:]


def test_what_browsers_ignore_is_ignored():
    late = png_with_chunk(b"eXIf", tiff_block(6, "<"), before_idat=False)
    early = png_with_chunk(b"eXIf", tiff_block(6, "<"), before_idat=True)
    assert find_orientation(late, "PNG") is None
    assert find_orientation(early, "PNG").value == 6
    xmp = encode(displayed(), "JPEG", xmp=b'<x:xmpmeta><tiff:Orientation="6"/></x:xmpmeta>')
    assert Image.open(io.BytesIO(xmp)).getexif().get(0x0112) == 6  # Pillow reads XMP too.
    assert find_orientation(xmp, "JPEG") is None


def test_out_of_range_values_mean_as_stored():
    for value in (0, 1, 9, 65535):
        data = jpeg_with_app1(b"Exif\x00\x00" + tiff_block(value, "<"))
        assert find_orientation(data, "JPEG") is None


def test_the_tag_is_read_within_its_block():
    """An IFD offset leading out of the Exif segment or eXIf chunk, to an orientation entry in
    the next one, finds no tag: browsers read the block alone, and setting a tag to 1 there
    would change a byte of another segment."""
    ifd = struct.pack("<HHHIH2xI", 1, 0x0112, 3, 1, 6, 0)
    header = b"II*\x00" + struct.pack("<I", 12)  # The IFD, 4 bytes past the block's end.
    plain = encode(displayed(), "JPEG")
    app1 = b"\xff\xe1" + struct.pack(">H", 16) + b"Exif\x00\x00" + header
    comment = b"\xff\xfe" + struct.pack(">H", len(ifd) + 2) + ifd
    jpeg = plain[:2] + app1 + comment + plain[2:]
    png = encode(displayed(), "PNG")
    chunks = b"".join(
        struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        for kind, body in ((b"eXIf", header), (b"prVt", ifd))
    )
    png = png[:33] + chunks + png[33:]
    for data, fmt in ((jpeg, "JPEG"), (png, "PNG")):
        assert tf.io.decode_image(data).shape == (HEIGHT, WIDTH, 3)
        assert find_orientation(data, fmt) is None, fmt


def test_damaged_exif_never_raises():
    """Every cut of a tagged file, and bytes flipped anywhere in its EXIF block."""
    for fmt in ("JPEG", "PNG", "WEBP"):
        data = tagged(6, fmt)
        for end in range(len(data)):
            find_orientation(data[:end], fmt)
        rng = np.random.default_rng(0)
        for _ in range(300):
            damaged = bytearray(data)
            damaged[rng.integers(0, 120)] = rng.integers(0, 256)
            tag = find_orientation(bytes(damaged), fmt)
            assert tag is None or 2 <= tag.value <= 8


def test_png_tag_reset_keeps_a_valid_crc_and_the_pixels():
    data = tagged(6, "PNG")
    reset = without_orientation(data, find_orientation(data, "PNG"))
    image = Image.open(io.BytesIO(reset))  # Pillow checks chunk CRCs.
    image.load()
    assert image.getexif()[0x0112] == 1
    assert sum(a != b for a, b in zip(data, reset, strict=True)) <= 5  # value + CRC
    assert np.array_equal(tf.io.decode_png(reset).numpy(), tf.io.decode_png(data).numpy())


# -- deciding the frame ---------------------------------------------------------------------


def test_the_declared_size_decides_where_it_can():
    auto = OrientationPolicy.of("auto", "voc")
    landscape, portrait = (64, 40), (40, 64)
    for value in (5, 6, 7, 8):
        assert auto.decide(value, landscape, portrait) == Orientation(value, DISPLAYED, True)
        assert auto.decide(value, landscape, landscape) == Orientation(value, STORED, True)
        assert auto.decide(value, landscape, (32, 20)) == Orientation(value, DISPLAYED)
        assert auto.decide(value, (50, 50), (50, 50)) == Orientation(value, DISPLAYED)
    for value in (2, 3, 4):  # Flips and 180°: the size is the same either way.
        assert auto.decide(value, landscape, landscape) == Orientation(value, DISPLAYED)
    assert auto.decide(6, landscape, None) == Orientation(6, DISPLAYED)
    labelbox = OrientationPolicy.of("auto", "labelbox")
    assert labelbox.decide(3, landscape, landscape) == Orientation(3, STORED)
    assert labelbox.decide(6, landscape, portrait) == Orientation(6, DISPLAYED, True)
    for option, frame in (("displayed", DISPLAYED), ("stored", STORED), ("ignore", None)):
        policy = OrientationPolicy.of(option, "voc")
        assert policy.decide(6, landscape, landscape) == Orientation(6, frame)
        assert policy.decide(6, landscape, portrait) == Orientation(6, frame)


@pytest.fixture
def loader(tmp_path):
    def load(data: bytes, option: str = "auto", size: tuple[int, int] | None = None):
        (tmp_path / "image").write_bytes(data)
        fn = ImageLoader(str(tmp_path), 10**6, 10**6, OrientationPolicy.of(option, "voc"))
        fn.setup()
        width, height = size or (None, None)
        return fn.load(ImageAnnotation("image", ("s",), width=width, height=height))

    return load


@pytest.mark.parametrize(
    "fmt, options",
    [
        ("PNG", {}),
        ("WEBP", {"lossless": True}),
        ("TIFF", {}),
        ("TIFF", {"compression": "tiff_lzw"}),  # Read through libtiff.
    ],
)
def test_lossless_formats_are_turned_without_loss(loader, fmt, options):
    """Pillow turns TIFFs by their tag itself when loading them: never twice."""
    for value in range(2, 9):
        if fmt == "TIFF":
            data = encode(stored(value), fmt, tiffinfo={0x0112: value}, **options)
        else:
            data = encode(stored(value), fmt, value, **options)
        loaded = loader(data)
        assert loaded.format == "png"
        assert loaded.orientation == Orientation(value, DISPLAYED)
        assert np.array_equal(tf.io.decode_png(loaded.encoded).numpy(), np.asarray(displayed()))
        assert find_orientation(loaded.encoded, "PNG") is None


def test_tiff_annotated_as_stored_keeps_the_stored_pixels(loader):
    for value, option in ((6, "auto"), (3, "stored")):  # 6: the declared size tells.
        data = encode(stored(value), "TIFF", tiffinfo={0x0112: value})
        loaded = loader(data, option, size=stored(value).size)
        assert loaded.orientation == Orientation(value, STORED, by_size=option == "auto")
        assert np.array_equal(tf.io.decode_png(loaded.encoded).numpy(), np.asarray(stored(value)))


def test_turned_jpeg_keeps_its_quality_and_size(loader):
    """Re-encoded with the source's own tables: close to the source's pixels, turned."""
    rng = np.random.default_rng(3)
    y, x = np.mgrid[0:240, 0:320]
    photo = np.stack([x * 0.7, y * 0.9, (x + y) * 0.4], axis=-1) + rng.normal(0, 6, (240, 320, 3))
    image = Image.fromarray(np.clip(photo, 0, 255).astype(np.uint8))
    for quality in (75, 95):
        data = encode(image, "JPEG", 6, quality=quality)
        loaded = loader(data)
        assert (loaded.format, loaded.width, loaded.height) == ("jpeg", 240, 320)
        expected = np.rot90(tf.io.decode_jpeg(data).numpy(), k=-1).astype(float)
        error = tf.io.decode_jpeg(loaded.encoded).numpy().astype(float) - expected
        psnr = 10 * np.log10(255**2 / np.mean(error**2))
        assert psnr > 35, (quality, psnr)
        assert 0.8 < len(loaded.encoded) / len(data) < 1.25, quality
        assert "exif" not in Image.open(io.BytesIO(loaded.encoded)).info


def test_ignore_leaves_the_bytes_and_counts_the_tag(loader):
    data = tagged(6, "JPEG")
    loaded = loader(data, "ignore")
    assert loaded.encoded == data
    assert loaded.orientation == Orientation(6, None)
    counts = orientation_counts("a.jpg", loaded.orientation)["orientation"]
    assert counts["untouched"] == 1 and "frame_assumed" not in counts


def test_images_without_a_tag_are_untouched(loader):
    for data in (encode(displayed(), "JPEG"), tagged(1, "JPEG"), tagged(1, "PNG")):
        loaded = loader(data)
        assert loaded.encoded == data and loaded.orientation is None


# -- end to end -----------------------------------------------------------------------------


def write_voc(root, name: str, data: bytes, size: tuple[int, int], box) -> None:
    (root / "images" / name).write_bytes(data)
    drawn = DrawnImage(name, *size, (DrawnObject("square", *box),))
    (root / "annotations" / f"{name}.xml").write_text(voc_xml(drawn))


@pytest.fixture(scope="module")
def voc_auto(tmp_path_factory):
    """VOC, declared sizes, `auto`: for every orientation a JPEG annotated on the displayed
    image (as browsers show it), and for 5-8 a PNG annotated on the stored pixels (as labelImg
    shows it), which only the declared size tells apart."""
    root = tmp_path_factory.mktemp("voc")
    (root / "images").mkdir()
    (root / "annotations").mkdir()
    sources = {}
    for value in ALL:
        name = f"shown-{value}.jpg"
        sources[name] = tagged(value, "JPEG")
        write_voc(root, name, sources[name], (WIDTH, HEIGHT), SQUARE)
    for value in (5, 6, 7, 8):
        name = f"drawn-on-stored-{value}.png"
        sources[name] = tagged(value, "PNG")
        # The square's box in the stored pixels, where labelImg's user drew it.
        write_voc(root, name, sources[name], stored(value).size, stored_square(value))
    out = root / "out"
    code, stderr = create(
        "--format", "voc", "--annotations", root / "annotations", "--images", root / "images",
        "--output", out,
    )  # fmt: skip
    assert code == 0
    return read_output(out), sources, stderr


def test_voc_boxes_are_on_the_square_for_every_orientation(voc_auto):
    output, sources, _ = voc_auto
    examples = by_name(output)
    assert sorted(examples) == sorted(sources)
    for name, example in examples.items():
        assert_box_on_square(example)
        pixels = tf.io.decode_image(example["image/encoded"]).numpy()
        if name.startswith("shown-"):  # Turned to the displayed image the boxes were drawn on.
            assert pixels.shape[:2] == (HEIGHT, WIDTH)
        else:  # Kept as stored, tag set to 1, bytes otherwise the same.
            data = example["image/encoded"]
            assert np.array_equal(pixels, tf.io.decode_image(sources[name]).numpy())
            assert sum(a != b for a, b in zip(data, sources[name], strict=True)) <= 5
        shown = Image.open(io.BytesIO(example["image/encoded"]))
        assert shown.getexif().get(0x0112, 1) == 1, name  # Every reader sees the same pixels.
    assert examples["shown-1.jpg"]["image/encoded"] == sources["shown-1.jpg"]


def test_voc_orientation_is_counted_and_the_doubtful_assumption_warned(voc_auto):
    output, _, stderr = voc_auto
    entry = output["manifest"]["exif_orientation"]
    assert entry == {
        "images": 11,
        "by_orientation": {"2": 1, "3": 1, "4": 1, "5": 2, "6": 2, "7": 2, "8": 2},
        "pixels_turned": 7,
        "stored_pixels_kept": 4,
        "untouched": 0,
        "frame_from_declared_size": {"displayed": 4, "stored": 4},
        "frame_assumed": {"displayed": 3, "stored": 0},
        "first": [
            "drawn-on-stored-5.png (5: stored pixels kept)",
            "drawn-on-stored-6.png (6: stored pixels kept)",
            "drawn-on-stored-7.png (7: stored pixels kept)",
            "drawn-on-stored-8.png (8: stored pixels kept)",
            "shown-2.jpg (2: pixels turned)",
        ],
    }
    assert output["manifest"]["options"]["exif_orientation"] == "auto"
    assert output["manifest"]["images"]["size_differs_from_annotation"] == 0
    assert "3 images whose size cannot tell" in stderr
    assert "rerun with --exif-orientation stored" in stderr


def write_yolo(root, frame: str, fmt: str) -> None:
    """Darknet layout without sizes: labels beside the images, normalized, in `frame`."""
    root.mkdir()
    (root / "classes.txt").write_text("square\n")
    for value in ALL:
        image = stored(value) if frame == STORED else displayed()
        xmin, ymin, xmax, ymax = red_box(np.asarray(image))
        width, height = image.size
        (root / f"{value}.{fmt.lower()}").write_bytes(tagged(value, fmt))
        (root / f"{value}.txt").write_text(
            f"0 {(xmin + xmax) / 2 / width} {(ymin + ymax) / 2 / height} "
            f"{(xmax - xmin) / width} {(ymax - ymin) / height}\n"
        )


@pytest.mark.parametrize(
    "frame, fmt, option",
    [(STORED, "JPEG", "stored"), (DISPLAYED, "PNG", "auto"), (DISPLAYED, "JPEG", "displayed")],
)
def test_yolo_without_sizes_follows_the_option(tmp_path, frame, fmt, option):
    """Without a declared size, `auto` takes boxes as drawn on the displayed image (as
    Ultralytics and browser tools show it); `stored` serves labelImg's users."""
    write_yolo(tmp_path / "data", frame, fmt)
    out = tmp_path / "out"
    args = ("--format", "yolo", "--annotations", tmp_path / "data", "--output", out)
    code, stderr = create(*args, "--exif-orientation", option)
    assert code == 0 and "exif-orientation" not in stderr
    output = read_output(out)
    examples = by_name(output)
    assert sorted(examples) == [f"{value}.{fmt.lower()}" for value in ALL], sorted(examples)
    for example in examples.values():
        assert_box_on_square(example)
    entry = output["manifest"]["exif_orientation"]
    kept = "stored_pixels_kept" if frame == STORED else "pixels_turned"
    assert (entry["images"], entry[kept], entry["frame_assumed"][frame]) == (7, 7, 7)
    if frame == STORED:  # The JPEG's compressed data is untouched: one byte of the tag.
        for value in ALL:
            data = examples[f"{value}.jpeg"]["image/encoded"]
            assert sum(a != b for a, b in zip(data, tagged(value, fmt), strict=True)) <= 1


def test_coco_masks_and_keypoints_land_on_the_turned_pixels(tmp_path):
    """Masks and keypoints, drawn on the displayed image, stay on the square too."""
    images = tmp_path / "images"
    images.mkdir()
    xmin, ymin, xmax, ymax = SQUARE
    document = {
        "images": [],
        "annotations": [],
        "categories": [{"id": 1, "name": "square", "keypoints": ["top_left", "bottom_right"]}],
    }
    for number, (value, fmt) in enumerate([(6, "PNG"), (3, "PNG"), (8, "JPEG")], start=1):
        name = f"{value}.{fmt.lower()}"
        (images / name).write_bytes(tagged(value, fmt))
        document["images"].append(
            {"id": number, "file_name": name, "width": WIDTH, "height": HEIGHT}
        )
        document["annotations"].append(
            {
                "id": number,
                "image_id": number,
                "category_id": 1,
                "bbox": [xmin, ymin, xmax - xmin, ymax - ymin],
                "area": (xmax - xmin) * (ymax - ymin),
                "iscrowd": 0,
                "segmentation": [[xmin, ymin, xmax, ymin, xmax, ymax, xmin, ymax]],
                "keypoints": [xmin + 1.5, ymin + 1.5, 2, xmax - 1.5, ymax - 1.5, 2],
                "num_keypoints": 2,
            }
        )
    (tmp_path / "coco.json").write_text(json.dumps(document))
    out = tmp_path / "out"
    args = ["--format", "coco", "--annotations", tmp_path / "coco.json", "--images", images]
    code, _ = create(*args, "--output", out, "--include-masks", "--include-keypoints")
    assert code == 0
    manifest = read_output(out)["manifest"]
    assert manifest["exif_orientation"]["frame_from_declared_size"] == {
        "displayed": 2,
        "stored": 0,
    }
    assert manifest["exif_orientation"]["frame_assumed"] == {"displayed": 1, "stored": 0}
    paths = [os.path.join(out, f) for f in manifest["splits"]["train"]["files"]]
    records = list(tf.data.TFRecordDataset(paths).as_numpy_iterator())
    assert len(records) == 3
    for record in records:
        feature = tf.train.Example.FromString(record).features.feature
        pixels = tf.io.decode_image(feature["image/encoded"].bytes_list.value[0]).numpy()
        red = red_box(pixels)
        mask = tf.io.decode_png(feature["image/object/mask"].bytes_list.value[0]).numpy()
        ys, xs = np.nonzero(mask[..., 0])
        # A polygon's edge pixels may be rasterized either way; the mask covers the square.
        assert np.allclose((xs.min(), ys.min(), xs.max() + 1, ys.max() + 1), red, atol=1)
        points_x = feature["image/object/keypoint/x"].float_list.value
        points_y = feature["image/object/keypoint/y"].float_list.value
        assert len(points_x) == 2
        for x, y in zip(points_x, points_y, strict=True):
            assert red[0] <= x * pixels.shape[1] < red[2] and red[1] <= y * pixels.shape[0] < red[3]


def test_the_option_is_a_flag_and_a_config_key(tmp_path):
    write_yolo(tmp_path / "data", STORED, "JPEG")
    config = tmp_path / "config.yaml"
    config.write_text("format: yolo\nannotations: data\noutput: out\nexif_orientation: stored\n")
    assert create("--config", config)[0] == 0
    assert read_output(tmp_path / "out")["manifest"]["options"]["exif_orientation"] == "stored"
    code, stderr = create(
        "--config", config, "--output", tmp_path / "o", "--exif-orientation", "up"
    )
    assert code == 2 and "--exif-orientation must be one of" in stderr


def test_summary_line_and_warning():
    counts: dict = {}
    for image, orientation in [
        ("a.jpg", Orientation(6, STORED, by_size=True)),
        ("b.jpg", Orientation(3, DISPLAYED)),
        ("c.jpg", Orientation(6, DISPLAYED, by_size=True)),
    ]:
        add_counts(counts, orientation_counts(image, orientation)["orientation"])
    line, warning = summary(manifest_entry(counts))
    assert line == (
        "exif orientation: 3 images tagged (3: 1, 6: 2): 2 turned to the displayed image, "
        "1 kept as stored (tag set to 1)"
    )
    assert warning.startswith("the declared sizes of 1 images show boxes drawn on the stored")
    assert summary(manifest_entry({})) == (None, None)
