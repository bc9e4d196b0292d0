"""The bundled sample's known boxes written out as Open Images, KITTI, VIA and RetinaNet CSV
exports lay them out, and the examples of an output read back with the features those
formats add (crowd flags, truncation, masks)."""

from __future__ import annotations

import csv
import json
import os
import shutil

import numpy as np
import tensorflow as tf
from format_writers import sample_boxes
from PIL import Image
from sample_data import CLASSES, SAMPLE_DIR

IMAGES = os.path.join(SAMPLE_DIR, "images")
OPEN_IMAGES_HEADER = (
    "ImageID,Source,LabelName,Confidence,XMin,XMax,YMin,YMax,IsOccluded,IsTruncated,IsGroupOf,"
    "IsDepiction,IsInside"
).split(",")
# V6 and V7's train file has the four extreme points clicked besides.
XCLICKS = [f"XClick{n}{axis}" for axis in "XY" for n in range(1, 5)]
MIDS = {"circle": "/m/0circ", "square": "/m/0squa", "triangle": "/m/0tria"}
# Object features the OD API's decoder reads beyond `conftest.OD_FEATURES`.
EXTRA_FEATURES = {
    "image/filename": tf.io.FixedLenFeature((), tf.string),
    "image/object/is_crowd": tf.io.VarLenFeature(tf.int64),
    "image/object/truncated": tf.io.VarLenFeature(tf.int64),
    "image/object/mask": tf.io.VarLenFeature(tf.string),
}


def stem(name: str) -> str:
    return os.path.splitext(name)[0]


def save_as(name: str, target: str) -> None:
    """A sample image saved in the format `target`'s extension names (KITTI's PNG, Open
    Images' JPEG), with the same pixel size."""
    os.makedirs(os.path.dirname(target), exist_ok=True)
    with Image.open(os.path.join(IMAGES, name)) as image:
        image.convert("RGB").save(target, quality=95)


def expected(images: dict[str, dict], key=lambda name: name) -> dict[str, list[tuple]]:
    """{example name: sorted (class, xmin, ymin, xmax, ymax) normalized} of sample images."""
    return {
        key(name): sorted(
            (
                label,
                x0 / entry["width"],
                y0 / entry["height"],
                x1 / entry["width"],
                y1 / entry["height"],
            )
            for label, x0, y0, x1, y1 in entry["boxes"]
        )
        for name, entry in images.items()
    }


def assert_boxes(output: dict, want: dict[str, list[tuple]], rename=lambda label: label) -> None:
    """The examples of `output` (conftest.read_output) are exactly `want`'s images and boxes,
    read back with TensorFlow; their label ids agree with the label map."""
    got = {}
    for examples in output["splits"].values():
        for example in examples:
            name = example["image/filename"].decode()
            labels = [t.decode() for t in example["image/object/class/text"]]
            assert example["image/object/class/label"] == [output["label_map"][t] for t in labels]
            got[name] = sorted(
                zip(
                    labels,
                    example["image/object/bbox/xmin"],
                    example["image/object/bbox/ymin"],
                    example["image/object/bbox/xmax"],
                    example["image/object/bbox/ymax"],
                    strict=True,
                )
            )
    assert sorted(got) == sorted(want)
    for name, wanted in want.items():
        boxes = sorted((rename(label), *corners) for label, *corners in wanted)
        assert [g[0] for g in got[name]] == [w[0] for w in boxes], name
        assert np.allclose([g[1:] for g in got[name]], [w[1:] for w in boxes], atol=1e-5), name


def extra_features(output_dir: str, manifest: dict) -> dict[str, dict]:
    """{image name: {is_crowd, truncated, masks}} of every example, read back with
    tf.data.TFRecordDataset and tf.io.parse_single_example."""
    found = {}
    for split in manifest["splits"].values():
        paths = [os.path.join(output_dir, f) for f in split["files"]]
        for record in tf.data.TFRecordDataset(paths):
            parsed = tf.io.parse_single_example(record, EXTRA_FEATURES)
            name = parsed["image/filename"].numpy().decode()
            found[name] = {
                key.rsplit("/", 1)[1]: tf.sparse.to_dense(parsed[key]).numpy().tolist()
                for key in EXTRA_FEATURES
                if key != "image/filename"
            }
    return found


def write_open_images(
    root: str, splits: dict[str, str], descriptions: str | None = "oidv7"
) -> dict[str, dict]:
    """Open Images' download layout: `annotations/` with V6's train file (with its XClick
    columns) and the validation and test files, the class descriptions (`oidv7`: V7's, with
    a header; `v6`: `class-descriptions-boxable.csv` without; None: none), and images as
    `images/<split>/<ImageID>.jpg`. The first box of each image is a group (IsGroupOf), the
    second truncated. Returns the images written, by their Open Images split."""
    images = sample_boxes()
    annotations = os.path.join(root, "annotations")
    os.makedirs(annotations, exist_ok=True)
    names = {
        "train": "oidv6-train-annotations-bbox.csv",
        "validation": "validation-annotations-bbox.csv",
        "test": "test-annotations-bbox.csv",
    }
    for split in sorted(set(splits.values())):
        header = OPEN_IMAGES_HEADER + (XCLICKS if split == "train" else [])
        with open(os.path.join(annotations, names[split]), "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            for name in sorted(n for n in images if splits[n] == split):
                entry = images[name]
                save_as(name, os.path.join(root, "images", split, f"{stem(name)}.jpg"))
                w, h = entry["width"], entry["height"]
                for number, (label, x0, y0, x1, y1) in enumerate(entry["boxes"]):
                    row = [stem(name), "xclick", MIDS[label], "1"]
                    row += [f"{x0 / w:.6f}", f"{x1 / w:.6f}", f"{y0 / h:.6f}", f"{y1 / h:.6f}"]
                    row += ["0", str(int(number == 1)), str(int(number == 0)), "0", "0"]
                    writer.writerow(row + ["0.5"] * (len(header) - len(row)))
    if descriptions == "oidv7":
        rows = [["LabelName", "DisplayName"]] + [[MIDS[c], c.title()] for c in CLASSES]
        path = os.path.join(annotations, "oidv7-class-descriptions-boxable.csv")
    elif descriptions == "v6":
        rows = [[MIDS[c], c.title()] for c in CLASSES]
        path = os.path.join(annotations, "class-descriptions-boxable.csv")
    else:
        return images
    with open(path, "w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    return images


def write_kitti(
    root: str, images: dict[str, dict], folder: str = "training", extension: str = ".png"
) -> None:
    """KITTI's devkit layout: `<folder>/label_2/<id>.txt` and `<folder>/image_2/<id>.png`;
    every label file ends with a DontCare region, and the first object of each image is
    truncated (0.42)."""
    for name, entry in images.items():
        save_as(name, os.path.join(root, folder, "image_2", f"{stem(name)}{extension}"))
        os.makedirs(os.path.join(root, folder, "label_2"), exist_ok=True)
        with open(os.path.join(root, folder, "label_2", f"{stem(name)}.txt"), "w") as handle:
            for number, (label, x0, y0, x1, y1) in enumerate(entry["boxes"]):
                truncated = 0.42 if number == 0 else 0.0
                handle.write(
                    f"{label} {truncated:.2f} {number % 3} -1.57 {x0:.2f} {y0:.2f} {x1:.2f} "
                    f"{y1:.2f} 1.52 1.63 3.88 -2.61 1.71 28.74 -1.59\n"
                )
            handle.write("DontCare -1 -1 -10 0.00 0.00 4.00 4.00 -1 -1 -1 -1000 -1000 -1000 -10\n")


def via_regions(entry: dict, attribute: str, shapes: str) -> list[dict]:
    """A sample image's boxes as VIA regions: `rect` ones, or `polygon` ones tracing the
    box's four corners."""
    regions = []
    for label, x0, y0, x1, y1 in entry["boxes"]:
        if shapes == "rect":
            shape = {"name": "rect", "x": x0, "y": y0, "width": x1 - x0, "height": y1 - y0}
        else:
            shape = {
                "name": "polygon",
                "all_points_x": [x0, x1, x1, x0],
                "all_points_y": [y0, y0, y1, y1],
            }
        regions.append(
            {
                "shape_attributes": shape,
                "region_attributes": {attribute: label} if attribute else {},
            }
        )
    return regions


def via_metadata(
    folder: str,
    images: dict[str, dict],
    attribute: str = "label",
    shapes: str = "rect",
    version: int = 2,
) -> dict:
    """VIA's `_via_img_metadata`, keyed `<filename><size>`, with the images copied beside it;
    VIA 1 keeps each entry's regions as an object keyed "0", "1", ..."""
    metadata = {}
    os.makedirs(folder, exist_ok=True)
    for name, entry in sorted(images.items()):
        shutil.copy(os.path.join(IMAGES, name), os.path.join(folder, name))
        size = os.path.getsize(os.path.join(folder, name))
        regions = via_regions(entry, attribute, shapes)
        if version == 1:
            regions = {str(index): region for index, region in enumerate(regions)}
        metadata[f"{name}{size}"] = {
            "filename": name,
            "size": size,
            "regions": regions,
            "file_attributes": {},
        }
    return metadata


def write_via_project(path: str, metadata: dict, attributes: dict) -> None:
    """A VIA 2.0.10 project file, as "Save project" writes it."""
    project = {
        "_via_settings": {
            "ui": {"annotation_editor_height": 25, "leftsidebar_width": 18},
            "core": {"buffer_size": 18, "filepath": {}, "default_filepath": ""},
            "project": {"name": "via_project"},
        },
        "_via_img_metadata": metadata,
        "_via_attributes": {"region": attributes, "file": {}},
        "_via_data_format_version": "2.0.10",
        "_via_image_id_list": list(metadata),
    }
    with open(path, "w") as handle:
        json.dump(project, handle)


def write_retinanet(folder: str, images: dict[str, dict], roboflow: bool = True) -> None:
    """keras-retinanet's CSV with the images beside it: Roboflow's `_annotations.csv` and
    `_classes.csv`, or `annotations.csv` and `classes.csv`; an image without objects is a
    `path,,,,,` row."""
    os.makedirs(folder, exist_ok=True)
    prefix = "_" if roboflow else ""
    with open(os.path.join(folder, f"{prefix}annotations.csv"), "w", newline="") as handle:
        writer = csv.writer(handle)
        for name, entry in sorted(images.items()):
            shutil.copy(os.path.join(IMAGES, name), os.path.join(folder, name))
            if not entry["boxes"]:
                writer.writerow([name, "", "", "", "", ""])
            for label, x0, y0, x1, y1 in entry["boxes"]:
                writer.writerow([name, x0, y0, x1, y1, label])
    with open(os.path.join(folder, f"{prefix}classes.csv"), "w", newline="") as handle:
        csv.writer(handle).writerows([name, index] for index, name in enumerate(CLASSES))
