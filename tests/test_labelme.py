"""LabelMe 5 files as labelme writes them: mask shapes (box corners + a cropped base64 PNG)
and images embedded in `imageData`, from the reader to the TFRecord read back with TensorFlow."""

import base64
import io
import json
import zlib

import numpy as np
import pytest
import tensorflow as tf
from conftest import OD_FEATURES, read_output, run_create
from PIL import Image

from transforms.images.loader import ImageLoader, ImageRejected
from transforms.masks import mask_pixels, placed_rle
from transforms.readers.base import ReaderOptions
from transforms.readers.labelme import parse_labelme
from transforms.records import ErrorRecord, Extras, ImageAnnotation, Mask

WIDTH, HEIGHT = 40, 30


def png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def picture(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (HEIGHT, WIDTH, 3), dtype=np.uint8)


def blob(rows: int, columns: int, seed: int) -> np.ndarray:
    """A boolean bitmap with ones on every edge, as a mask cropped to its box has."""
    bitmap = np.random.default_rng(seed).random((rows, columns)) < 0.5
    bitmap[0, 0] = bitmap[-1, -1] = bitmap[0, -1] = bitmap[-1, 0] = True
    return bitmap


def mask_shape(label: str, bitmap: np.ndarray, left: int, top: int) -> dict:
    """A mask shape as labelme >= 5.3 saves it: the box's top-left and bottom-right pixels
    (inclusive) and the bitmap cropped to them, as a base64 PNG of 0/1 bytes."""
    rows, columns = bitmap.shape
    return {
        "label": label,
        "points": [[float(left), float(top)], [float(left + columns - 1), float(top + rows - 1)]],
        "group_id": None,
        "description": "",
        "shape_type": "mask",
        "flags": {},
        "mask": b64(png(bitmap.astype(np.uint8))),
    }


def document(shapes: list, image_path: str, image_data: bytes | None = None) -> dict:
    return {
        "version": "5.5.0",
        "flags": {},
        "shapes": shapes,
        "imagePath": image_path,
        "imageData": b64(image_data) if image_data is not None else None,
        "imageHeight": HEIGHT,
        "imageWidth": WIDTH,
    }


def parse(doc: dict, path: str, root: str, masks: bool = True):
    options = ReaderOptions(images=root, extras=Extras(masks=masks))
    records = list(parse_labelme(json.dumps(doc).encode(), path, options))
    annotations = [r for r in records if isinstance(r, ImageAnnotation)]
    errors = [r for r in records if isinstance(r, ErrorRecord)]
    return annotations, errors


def placed(bitmap: np.ndarray, left: int, top: int) -> np.ndarray:
    """The bitmap pasted into an empty image, cut off at the image's edges."""
    canvas = np.zeros((HEIGHT + 2 * 64, WIDTH + 2 * 64), dtype=np.uint8)
    rows, columns = bitmap.shape
    canvas[top + 64 : top + 64 + rows, left + 64 : left + 64 + columns] = bitmap
    return canvas[64 : 64 + HEIGHT, 64 : 64 + WIDTH]


def test_mask_shape_box_ends_past_its_inclusive_corner_and_mask_is_placed(tmp_path):
    bitmap = blob(7, 5, seed=1)
    doc = document([mask_shape("cat", bitmap, 12, 9)], "a.jpg")
    (annotation,), errors = parse(doc, f"{tmp_path}/a.json", str(tmp_path))
    assert errors == []
    (box,) = annotation.boxes
    assert (box.label, box.xmin, box.ymin, box.xmax, box.ymax) == ("cat", 12, 9, 17, 16)
    assert box.mask.rle_size == (HEIGHT, WIDTH)
    assert np.array_equal(mask_pixels(box.mask, WIDTH, HEIGHT), placed(bitmap, 12, 9))
    (plain,), _ = parse(doc, f"{tmp_path}/a.json", str(tmp_path), masks=False)
    assert plain.boxes[0].mask is None and plain.boxes[0].xmax == 17


@pytest.mark.parametrize("seed", range(40))
def test_placed_masks_are_cut_off_at_the_image_edges(seed):
    rng = np.random.default_rng(seed)
    bitmap = rng.random(tuple(rng.integers(1, 40, 2))) < rng.random()
    left, top = (int(v) for v in rng.integers(-45, 45, 2))
    counts = placed_rle(bitmap.astype(np.uint8), left, top, WIDTH, HEIGHT)
    decoded = mask_pixels(Mask(rle_size=(HEIGHT, WIDTH), rle_counts=counts), WIDTH, HEIGHT)
    assert np.array_equal(decoded, placed(bitmap, left, top))


def huge_png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height but whose data holds one row."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return len(data).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")

    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * (width + 1)))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize(
    "change, reason",
    [
        ({"mask": "not base64!"}, "not base64"),
        ({"mask": b64(b"GIF89a not a png")}, "not a PNG"),
        ({"mask": b64(png(np.ones((6, 5), np.uint8)))}, "mask is 5x6 but its box is 5x7"),
        ({"mask": b64(png(np.ones((7, 5), np.uint8))[:50])}, "cannot decode the mask PNG"),
        ({"mask": None}, "no base64 mask"),
        (
            {"points": [[0, 0], [4_999, 4_999]], "mask": b64(huge_png_header(5_000, 5_000))},
            "cannot hold a 5000x5000 mask",
        ),
        ({"points": [[0, 0], [float("nan"), 3]]}, "not a finite number"),
        ({"points": [[0, 0]]}, "mask shape with 1 points has no box"),
    ],
)
def test_unusable_mask_is_an_error_for_that_object_only(tmp_path, change, reason):
    good = mask_shape("dog", blob(3, 3, seed=2), 1, 1)
    bad = {**mask_shape("cat", blob(7, 5, seed=1), 12, 9), **change}
    (annotation,), (error,) = parse(document([bad, good], "a.jpg"), "/d/a.json", "/d")
    assert [b.label for b in annotation.boxes] == ["dog"]
    assert (error.source, error.image, error.objects) == ("/d/a.json#shape[1]", "a.jpg", 1)
    assert reason in error.reason


def test_mask_needs_the_declared_image_size(tmp_path):
    doc = {**document([mask_shape("cat", blob(2, 2, seed=3), 0, 0)], "a.jpg"), "imageWidth": None}
    (annotation,), (error,) = parse(doc, "/d/a.json", "/d")
    assert annotation.boxes == () and "imageWidth and imageHeight" in error.reason
    (annotation,), errors = parse(doc, "/d/a.json", "/d", masks=False)
    assert len(annotation.boxes) == 1 and errors == []


@pytest.mark.parametrize(
    "image_path, path, root, key",
    [
        ("../img/a.jpg", "/d/json/a.json", "/d", "img/a.jpg"),  # The file comes first.
        ("a.json", "/d/json/a.json", "/d", "json/a.json"),  # Names the JSON itself.
        (".\\a.json", "/d/json/a.json", "/d", "json/a.json"),
        ("C:\\Users\\me\\a.jpg", "/d/json/a.json", "/d", "json/a.json"),  # Unusable.
        ("../../etc/a.jpg", "/d/json/a.json", "/d", "json/a.json"),
        ("", "/d/json/a.json", "/d", "json/a.json"),
        ("a.json", "/elsewhere/json/a.json", "/d", "elsewhere/json/a.json"),  # Outside root.
    ],
)
def test_embedded_image_key(image_path, path, root, key):
    doc = document([], image_path, b"\x89PNG")
    (annotation,), errors = parse(doc, path, root)
    assert errors == []
    assert (annotation.image, annotation.embedded_in) == (key, path)


@pytest.mark.parametrize(
    "image_path, reason",
    [
        ("a.json", "imagePath names the annotation file, which has no imageData"),
        ("/etc/passwd", "lies outside the images root"),
        (" ", "names a folder, not a file"),
        ("sub/..", "names a folder, not a file"),
    ],
)
def test_unusable_image_path_without_image_data_is_an_error(image_path, reason):
    (error,) = parse_labelme(
        json.dumps(document([{}], image_path)).encode(), "/d/json/a.json", ReaderOptions("/d")
    )
    assert (error.source, error.stage, error.objects) == ("/d/json/a.json", "read", 1)
    assert reason in error.reason
    (annotation,), _ = parse(document([], "a.jpg"), "/d/json/a.json", "/d")
    assert annotation.embedded_in is None


@pytest.fixture
def loader(tmp_path):
    fn = ImageLoader(str(tmp_path), max_bytes=20_000, max_pixels=WIDTH * HEIGHT)
    fn.setup()

    def load(image: str, doc: dict, name: str = "a.json"):
        (tmp_path / name).write_text(json.dumps(doc))
        return fn.load(ImageAnnotation(image, (name,), embedded_in=str(tmp_path / name)))

    return load


def test_loader_prefers_the_file_and_falls_back_to_image_data(loader, tmp_path):
    embedded, on_disk = png(picture(1)), png(picture(2))
    doc = document([], "a.png", embedded)
    assert loader("a.png", doc).encoded == embedded  # a.png is missing.
    (tmp_path / "a.png").write_bytes(b"not an image")
    assert loader("a.png", doc).encoded == embedded
    (tmp_path / "a.png").write_bytes(on_disk)
    loaded = loader("a.png", doc)
    assert loaded.encoded == on_disk and (loaded.width, loaded.height) == (WIDTH, HEIGHT)
    assert loader("a.json", document([], "a.json", embedded)).encoded == embedded


@pytest.mark.parametrize(
    "image_data, reason",
    [
        ("@@@@", "embedded image is empty"),
        ("QUJDR", "imageData is not base64"),
        (None, "no imageData"),
        (b64(b"\0" * 20_001), "larger than the 20000-byte limit"),
        (b64(png(np.zeros((31, 40), np.uint8))), "more than 1200 pixels"),
        (b64(png(picture(1))[:200]), "TensorFlow cannot decode"),
    ],
)
def test_embedded_image_obeys_the_loader_limits(loader, image_data, reason):
    doc = {**document([], "a.png"), "imageData": image_data}
    with pytest.raises(ImageRejected) as raised:
        loader("a.png", doc)
    assert str(raised.value).startswith("image file not found; embedded image: ")
    assert reason in str(raised.value)


def read_with_masks(paths: list[str]) -> dict[str, dict]:
    """{filename: parsed example} with the OD API's spec plus `image/object/mask`."""
    spec = {**OD_FEATURES, "image/object/mask": tf.io.VarLenFeature(tf.string)}
    examples = {}
    for record in tf.data.TFRecordDataset(paths):
        parsed = tf.io.parse_single_example(record, spec)
        dense = {
            k: tf.sparse.to_dense(v) if isinstance(v, tf.SparseTensor) else v
            for k, v in parsed.items()
        }
        examples[dense["image/filename"].numpy().decode()] = dense
    return examples


def test_create_with_mask_shapes(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    pixels = picture(0)
    Image.fromarray(pixels).save(root / "a.png")
    cat, dog = blob(7, 5, seed=1), blob(4, 9, seed=2)
    shapes = [
        mask_shape("cat", cat, 12, 9),
        mask_shape("dog", dog, 35, 27),  # Reaches past the image: clipped, mask cut off.
        {**mask_shape("cat", cat, 0, 0), "mask": "%%%"},  # Undecodable: an error record.
        {"label": "dog", "points": [[2, 3], [8, 6]], "shape_type": "rectangle"},
    ]
    (root / "a.json").write_text(json.dumps(document(shapes, "a.png"), indent=2))
    out = tmp_path / "out"
    args = ["--format", "labelme", "--annotations", root, "--include-masks", "--output", out]
    assert run_create(*args, "--splits", "all=1") == 0
    output = read_output(out)
    examples = read_with_masks([str(out / f) for f in output["manifest"]["splits"]["all"]["files"]])
    a = examples["a.png"]
    assert np.array_equal(tf.io.decode_png(a["image/encoded"]).numpy(), pixels)
    assert [t.decode() for t in a["image/object/class/text"].numpy()] == ["cat", "dog", "dog"]
    boxes = np.stack(
        [a[f"image/object/bbox/{k}"].numpy() for k in ("xmin", "ymin", "xmax", "ymax")], 1
    )
    want = [
        [12 / 40, 9 / 30, 17 / 40, 16 / 30],
        [35 / 40, 27 / 30, 1, 1],
        [2 / 40, 3 / 30, 8 / 40, 6 / 30],
    ]
    assert np.allclose(boxes, want)
    masks = [tf.io.decode_png(m).numpy()[:, :, 0] for m in a["image/object/mask"].numpy()]
    assert np.array_equal(masks[0], placed(cat, 12, 9))
    assert np.array_equal(masks[1], placed(dog, 35, 27)) and masks[1].sum() < dog.sum()
    assert not masks[2].any()  # A rectangle has no mask: an empty one keeps the lists aligned.
    (error,) = output["errors"]
    assert error["source"] == f"{root}/a.json#shape[3]" and error["objects"] == 1
    assert error["reason"] == "mask is not a PNG image"
    assert output["manifest"]["splits"]["all"]["objects"] == 3
    assert output["manifest"]["objects"]["clipped"] == 1
    assert all(output["manifest"]["accounting"].values())


def test_create_with_embedded_images(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    pixels = {name: picture(seed) for seed, name in enumerate("bcd")}
    Image.fromarray(pixels["d"]).save(root / "d.png")
    dog = blob(4, 9, seed=2)
    files = {
        "b.json": document([mask_shape("dog", dog, 1, 2)], "gone/b.png", png(pixels["b"])),
        "c.json": document([mask_shape("dog", dog, 3, 4)], "c.json", png(pixels["c"])),
        "d.json": document([], "d.png", png(pixels["b"])),  # The file on disk comes first.
        "e.json": document([mask_shape("dog", dog, 0, 0)], "e.png", b"not an image"),
    }
    for name, doc in files.items():
        (root / name).write_text(json.dumps(doc, indent=2))
    out = tmp_path / "out"
    args = ["--format", "labelme", "--annotations", root, "--include-masks", "--output", out]
    assert run_create(*args, "--splits", "all=1") == 0
    output = read_output(out)
    examples = read_with_masks([str(out / f) for f in output["manifest"]["splits"]["all"]["files"]])
    assert sorted(examples) == ["c.json", "d.png", "gone/b.png"]
    for key, name in (("gone/b.png", "b"), ("c.json", "c"), ("d.png", "d")):
        example = examples[key]
        assert np.array_equal(tf.io.decode_png(example["image/encoded"]).numpy(), pixels[name])
        assert example["image/filename"].numpy().decode() == key
    for key, left, top in (("gone/b.png", 1, 2), ("c.json", 3, 4)):
        (mask,) = examples[key]["image/object/mask"].numpy()
        assert np.array_equal(tf.io.decode_png(mask).numpy()[:, :, 0], placed(dog, left, top))
    (error,) = output["errors"]
    assert (error["image"], error["stage"], error["objects"]) == ("e.png", "image", 1)
    assert error["reason"].startswith(
        "image file not found; embedded image: TensorFlow cannot decode the image: Unknown image"
    )
    assert error["reason"].endswith("(Pillow: format not recognised)")
    assert all(output["manifest"]["accounting"].values())


def test_auto_detects_a_file_whose_mask_shapes_come_before_its_image_path(tmp_path):
    from transforms.readers.detect import detect_format

    shapes = [mask_shape("cat", blob(200, 200, seed), 0, 0) for seed in range(8)]
    text = json.dumps(document(shapes, "a.png"), indent=2)
    assert text.index('"imagePath"') > 1 << 16  # Past what detection reads of a file.
    (tmp_path / "a.json").write_text(text)
    assert detect_format(str(tmp_path)) == "labelme"
