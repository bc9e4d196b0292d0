"""YOLO segmentation labels (Ultralytics -seg: `class x1 y1 ... xn yn`, as Roboflow and Label
Studio export them) through `odrecords create`, read back with TensorFlow: boxes are the
polygons' extents, masks the polygons."""

import os

import numpy as np
import tensorflow as tf
import yaml
from conftest import OD_FEATURES, read_output, run_create
from PIL import Image

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
