"""YOLO segmentation labels (Ultralytics -seg: `class x1 y1 ... xn yn`, as Roboflow and Label
Studio export them) through `odrecords create` and `odrecords export --format yolo`, read back
with TensorFlow: boxes are the polygons' extents, masks the polygons, and the way back gives
both again."""

import os

import numpy as np
import tensorflow as tf
import yaml
from conftest import OD_FEATURES, read_output, run_create
from PIL import Image, ImageDraw

from pipelines import export
from transforms.export.writers import yolo_polygon
from transforms.masks import mask_outline, mask_pixels, pixels_to_rle
from transforms.records import Box, Mask

WIDTH, HEIGHT = 40, 32
NAMES = ["cat", "dog"]
FEATURES = {**OD_FEATURES, "image/object/mask": tf.io.VarLenFeature(tf.string)}
# An L of pixel corners (x, y), exact binary fractions of the image size once normalized.
L_SHAPE = [(10, 8), (30, 8), (30, 16), (20, 16), (20, 24), (10, 24)]


def polygon_line(index: int, points, width=WIDTH, height=HEIGHT) -> str:
    return f"{index} " + " ".join(f"{x / width:.10g} {y / height:.10g}" for x, y in points)


def seg_dataset(root, labels: dict[str, list[str]], size=(WIDTH, HEIGHT)) -> str:
    """coco8-seg's layout: `images/train/<stem>.jpg`, `labels/train/<stem>.txt` and a
    data.yaml; returns the dataset folder."""
    for folder in ("images/train", "labels/train"):
        os.makedirs(os.path.join(root, folder), exist_ok=True)
    for stem, lines in labels.items():
        Image.new("RGB", size, (90, 120, 150)).save(os.path.join(root, f"images/train/{stem}.jpg"))
        with open(os.path.join(root, f"labels/train/{stem}.txt"), "w") as handle:
            handle.writelines(line + "\n" for line in lines)
    with open(os.path.join(root, "data.yaml"), "w") as handle:
        yaml.safe_dump({"train": "images/train", "names": NAMES}, handle)
    return str(root)


def create(annotations, output, *flags) -> dict:
    code = run_create("--format", "yolo", "--annotations", annotations, "--output", output,
                      "--splits", "source", "--num-shards", "1", *flags)  # fmt: skip
    assert code == 0
    return read_output(output)


def objects(output) -> dict[str, list[tuple]]:
    """{image name: [(class, xmin, ymin, xmax, ymax, mask or None)]} of every example, masks
    decoded from their PNGs with TensorFlow; boxes as float32, exactly as recorded."""
    found = {}
    for split in output["manifest"]["splits"].values():
        paths = [str(output["dir"] / name) for name in split["files"]]
        for record in tf.data.TFRecordDataset(paths):
            parsed = tf.io.parse_single_example(record, FEATURES)
            dense = {k: tf.sparse.to_dense(v) if isinstance(v, tf.SparseTensor) else v
                     for k, v in parsed.items()}  # fmt: skip
            masks = [tf.io.decode_png(png).numpy()[:, :, 0] for png in dense["image/object/mask"]]
            corners = [
                dense[f"image/object/bbox/{k}"].numpy() for k in ("xmin", "ymin", "xmax", "ymax")
            ]
            texts = [t.decode() for t in dense["image/object/class/text"].numpy()]
            name = os.path.basename(dense["image/filename"].numpy().decode())
            found[name] = [
                (text, *(float(c[i]) for c in corners), masks[i] if masks else None)
                for i, text in enumerate(texts)
            ]
    return found


def l_shape_pixels() -> np.ndarray:
    """The L's mask: the pixels its corners mark and every pixel between them."""
    expected = np.zeros((HEIGHT, WIDTH), dtype=np.uint8)
    expected[8:17, 10:31] = 1
    expected[16:25, 10:21] = 1
    return expected


def test_polygons_are_boxes_and_masks_beside_box_lines(tmp_path):
    root = seg_dataset(
        tmp_path / "ds",
        {
            "a": [polygon_line(0, L_SHAPE), "1 0.5 0.5 0.25 0.25"],
            # A triangle reaching past the right edge (within Ultralytics' 1% tolerance).
            "b": ["1 0.5 0.25 1.005 0.5 0.5 0.75"],
        },
    )
    output = create(root, tmp_path / "out", "--include-masks")
    assert output["errors"] == [] and output["label_map"] == {"cat": 1, "dog": 2}
    found = objects(output)
    (l_shape, box) = found["a.jpg"]
    assert l_shape[:5] == ("cat", 0.25, 0.25, 0.75, 0.75)
    assert np.array_equal(l_shape[5], l_shape_pixels())
    assert box[:5] == ("dog", 0.375, 0.375, 0.625, 0.625) and not box[5].any()
    ((name, xmin, ymin, xmax, ymax, triangle),) = found["b.jpg"]
    assert (name, xmin, ymin, xmax, ymax) == ("dog", 0.5, 0.25, 1.0, 0.75)
    columns = np.flatnonzero(triangle.any(axis=0))
    assert (columns.min(), columns.max()) == (20, WIDTH - 1)
    manifest = output["manifest"]
    assert manifest["objects"]["read"] == manifest["objects"]["written"] == 3
    assert manifest["objects"]["clipped"] == 1

    plain = objects(create(root, tmp_path / "plain"))
    assert {k: [o[:5] for o in v] for k, v in plain.items()} == {
        k: [o[:5] for o in v] for k, v in found.items()
    }
    assert all(o[5] is None for v in plain.values() for o in v)


# Polygons with vertices anywhere between pixels, as annotation tools export them.
SHAPES = {
    "pentagon": [(8.3, 5.7), (40.9, 3.2), (55.4, 20.6), (31.7, 44.1), (6.2, 30.8)],
    "arrow": [(10.5, 10.5), (40.2, 12.7), (40.9, 4.1), (60.3, 24.4), (41.6, 43.8), (40.4, 35.2),
              (11.1, 33.9)],
    "notch": [(20.05, 6.95), (50.5, 7.25), (50.5, 40.75), (35.35, 40.6), (35.1, 22.2),
              (30.9, 22.3), (30.2, 41.4), (20.05, 41.4)],
}  # fmt: skip


def test_create_export_create_gives_back_the_boxes_and_masks(tmp_path):
    """Polygons → records → `export --format yolo` → records again: the same boxes, float32
    for float32, and the same masks, pixel for pixel."""
    width, height = 64, 48
    labels = {
        name: [polygon_line(n % 2, points, width, height)]
        for n, (name, points) in enumerate(SHAPES.items())
    }
    labels["mixed"] = [polygon_line(1, SHAPES["pentagon"], width, height), "0 0.75 0.8 0.2 0.3"]
    labels["boxes"] = ["0 0.5 0.5 0.5 0.5", "1 0.25 0.25 0.125 0.25"]
    root = seg_dataset(tmp_path / "ds", labels, (width, height))
    first = create(root, tmp_path / "r1", "--include-masks")
    assert first["errors"] == []
    out = tmp_path / "exported"
    assert (
        export.main(["--input", str(tmp_path / "r1"), "--format", "yolo", "--output", str(out)])
        == 0
    )

    def label_file(stem: str) -> list[list[str]]:
        (path,) = out.rglob(f"{stem}.txt")
        return [line.split() for line in path.read_text().splitlines()]

    for stem in SHAPES:
        ((_, *values),) = label_file(stem)
        assert len(values) >= 6 and len(values) % 2 == 0, stem
    # Once a file holds a polygon, a box is written as its four corners (Ultralytics reads
    # every line of such a file as a polygon); a file of boxes keeps box lines.
    pentagon, box = sorted(label_file("mixed"), key=len, reverse=True)
    assert len(box) == 9 and len(pentagon) > 9
    assert [len(line) for line in label_file("boxes")] == [5, 5]

    again = create(str(out), tmp_path / "r2", "--include-masks")
    assert again["errors"] == []
    before, after = objects(first), objects(again)
    assert sorted(before) == sorted(after) == sorted(f"{stem}.jpg" for stem in labels)
    for name in before:
        old, new = (sorted(found[name], key=lambda o: o[:5]) for found in (before, after))
        assert [o[:5] for o in old] == [o[:5] for o in new], name
        for o, n in zip(old, new, strict=True):
            if o[5].any():
                assert np.array_equal(o[5], n[5]), (name, o[0], int((o[5] != n[5]).sum()))
            elif name == "mixed.jpg":  # The box, a polygon now: its mask is the box.
                assert n[5].any()
            else:
                assert not n[5].any()


def rle_fields(pixels: np.ndarray) -> dict:
    rle = pixels_to_rle(pixels)
    return {"rle_size": tuple(rle["size"]), "rle_counts": rle["counts"]}


def redrawn(pixels: np.ndarray) -> np.ndarray:
    outline = mask_outline(pixels)
    flat = tuple(v for point in outline for v in point)
    return mask_pixels(Mask(polygons=(flat,)), pixels.shape[1], pixels.shape[0])


def test_an_outline_draws_its_mask_again():
    """Convex polygons around a disc of 4 pixels at least (so their pixels are one part),
    anywhere between pixels, and a U: drawn, outlined and drawn again, the same pixels."""
    rng = np.random.default_rng(7)
    shapes = [[(5.5, 5.5), (30.2, 5.5), (30.2, 40.7), (22.4, 40.7), (22.4, 12.1), (12.6, 12.1),
               (12.6, 40.7), (5.5, 40.7)]]  # fmt: skip
    while len(shapes) < 50:
        angles = np.sort(rng.uniform(0, 2 * np.pi, rng.integers(3, 10)))
        if np.diff(np.append(angles, angles[0] + 2 * np.pi)).max() > 2 * np.pi / 3:
            continue
        (x, y), radius = rng.uniform([15, 15], [45, 35]), rng.uniform(8, 15)
        shapes.append([(x + radius * np.cos(a), y + radius * np.sin(a)) for a in angles])
    for points in shapes:
        canvas = Image.new("L", (60, 50), 0)
        ImageDraw.Draw(canvas).polygon(points, fill=1, outline=1)
        pixels = np.asarray(canvas).copy()
        assert np.array_equal(redrawn(pixels), pixels), points
    ring = np.zeros((20, 20), dtype=np.uint8)
    ring[2:15, 3:18] = 1
    ring[5:9, 6:12] = 0
    filled = ring.copy()
    filled[5:9, 6:12] = 1
    assert np.array_equal(redrawn(ring), filled)  # A hole is filled, as Ultralytics' are.


def test_parts_are_joined_by_bridges():
    pixels = np.zeros((30, 40), dtype=np.uint8)
    pixels[2:8, 3:10] = 1
    pixels[20:26, 25:33] = 1
    pixels[3:6, 30:38] = 1
    drawn = redrawn(pixels)
    assert (drawn >= pixels).all()
    extra = drawn & ~pixels.astype(bool)
    assert 0 < extra.sum() < 40  # Only the bridges' pixels, one line each way.


def test_empty_and_thin_masks():
    assert mask_outline(np.zeros((5, 5), dtype=np.uint8)) == []
    line = np.zeros((HEIGHT, WIDTH), dtype=np.uint8)
    line[2, 1:5] = 1
    assert mask_outline(line) == [(1, 2), (4, 2)]
    # Too thin to outline: written as its box, whose extent the polygon keeps.
    box = Box("cat", 0.6, 1.7, 5.3, 2.4, "r", mask=Mask(**rle_fields(line)))
    corners = [0.6, 1.7, 5.3, 1.7, 5.3, 2.4, 0.6, 2.4]
    assert yolo_polygon(box, WIDTH, HEIGHT) == [
        v / (WIDTH, HEIGHT)[n % 2] for n, v in enumerate(corners)
    ]
    assert yolo_polygon(Box("cat", 0, 0, 1, 1, "r"), WIDTH, HEIGHT) is None
