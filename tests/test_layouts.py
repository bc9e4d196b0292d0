"""Dataset downloads as they are published, read the ways a user would read them.

Roboflow's multi-split downloads keep one folder per split (`train/`, `valid/`, `test/`) with
the images and the split's annotations side by side, and README.roboflow.txt and
README.dataset.txt at the top. Each fixture below writes one such layout with small drawn
images whose boxes are known, in the exact file names and fields of the export, and each test
runs `odrecords create` on it and reads the TFRecords back with TensorFlow.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
from conftest import RACCOON, build_folder, example_boxes, read_output, run_create
from sample_data import CLASSES, DrawnImage, draw_images, voc_xml

SPLITS = {"train": 4, "valid": 2, "test": 2}
ROBOFLOW_README = """\

Shapes - v1 2024-01-01
==============================

This dataset was exported via roboflow.com on January 1, 2024

It includes 8 images.
Shapes are annotated in {format} format.
"""
DATASET_README = "# Shapes > 2024-01-01\n\nProvided by a Roboflow user\nLicense: CC BY 4.0\n"


def roboflow_name(stem: str) -> str:
    """An image name as Roboflow writes it: `<stem>_jpg.rf.<32 hex digits>.jpg`."""
    return f"{stem}_jpg.rf.{hashlib.md5(stem.encode()).hexdigest()}.jpg"


@dataclass(frozen=True)
class Layout:
    """A written dataset: its folder, and each image it lists by the key its example must
    get (its path relative to the images root) with the boxes drawn on it and its split."""

    root: str
    images: dict[str, DrawnImage]
    splits: dict[str, str]


def draw_splits(root: str, prefix: str) -> dict[str, list[DrawnImage]]:
    """Draws each split's images into `root/<split>/`, one seed per split."""
    return {
        split: draw_images(
            os.path.join(root, split),
            [roboflow_name(f"{prefix}{split}{n}") for n in range(1, count + 1)],
            seed=number,
        )
        for number, (split, count) in enumerate(SPLITS.items(), start=1)
    }


def write_readmes(root: str, export_format: str) -> None:
    with open(os.path.join(root, "README.roboflow.txt"), "w") as handle:
        handle.write(ROBOFLOW_README.format(format=export_format))
    with open(os.path.join(root, "README.dataset.txt"), "w") as handle:
        handle.write(DATASET_README)


def roboflow_coco(folder: str, images: list[DrawnImage]) -> None:
    """`_annotations.coco.json` as Roboflow writes it: ids from 0, and category 0 naming
    the dataset (the supercategory of the others), used by no annotation."""
    categories = [{"id": 0, "name": "shapes", "supercategory": "none"}] + [
        {"id": number, "name": name, "supercategory": "shapes"}
        for number, name in enumerate(CLASSES, start=1)
    ]
    document = {
        "info": {
            "year": "2024",
            "version": "1",
            "description": "Exported from roboflow.com",
            "contributor": "",
            "url": "https://public.roboflow.com/object-detection/undefined",
            "date_created": "2024-01-01T00:00:00+00:00",
        },
        "licenses": [{"id": 1, "url": "https://creativecommons.org/licenses/by/4.0/"}],
        "categories": categories,
        "images": [],
        "annotations": [],
    }
    for image_id, drawn in enumerate(images):
        document["images"].append(
            {
                "id": image_id,
                "license": 1,
                "file_name": drawn.filename,
                "height": drawn.height,
                "width": drawn.width,
                "date_captured": "2024-01-01T00:00:00+00:00",
            }
        )
        for obj in drawn.objects:
            width, height = obj.xmax - obj.xmin, obj.ymax - obj.ymin
            document["annotations"].append(
                {
                    "id": len(document["annotations"]),
                    "image_id": image_id,
                    "category_id": CLASSES.index(obj.label) + 1,
                    "bbox": [obj.xmin, obj.ymin, width, height],
                    "area": width * height,
                    "segmentation": [],
                    "iscrowd": 0,
                }
            )
    with open(os.path.join(folder, "_annotations.coco.json"), "w") as handle:
        json.dump(document, handle)


def roboflow_createml(folder: str, images: list[DrawnImage]) -> None:
    """`_annotations.createml.json`: box centre and size in pixels."""
    rows = [
        {
            "image": drawn.filename,
            "annotations": [
                {
                    "label": obj.label,
                    "coordinates": {
                        "x": (obj.xmin + obj.xmax) / 2,
                        "y": (obj.ymin + obj.ymax) / 2,
                        "width": obj.xmax - obj.xmin,
                        "height": obj.ymax - obj.ymin,
                    },
                }
                for obj in drawn.objects
            ],
        }
        for drawn in images
    ]
    with open(os.path.join(folder, "_annotations.createml.json"), "w") as handle:
        json.dump(rows, handle)


def roboflow_keras(folder: str, images: list[DrawnImage]) -> None:
    """`_annotations.txt` (`name x1,y1,x2,y2,class ...`) and `_classes.txt`, both without a
    final newline, as in Roboflow's "YOLO v3 Keras" export."""
    lines = [
        " ".join(
            [drawn.filename]
            + [
                f"{o.xmin},{o.ymin},{o.xmax},{o.ymax},{CLASSES.index(o.label)}"
                for o in drawn.objects
            ]
        )
        for drawn in images
    ]
    with open(os.path.join(folder, "_annotations.txt"), "w") as handle:
        handle.write("\n".join(lines))
    with open(os.path.join(folder, "_classes.txt"), "w") as handle:
        handle.write("\n".join(CLASSES))


def tf_csv(path: str, images: list[DrawnImage]) -> None:
    """TF Object Detection CSV, one row per box; an image without boxes has no row."""
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["filename", "width", "height", "class", "xmin", "ymin", "xmax", "ymax"])
        for drawn in images:
            for o in drawn.objects:
                writer.writerow(
                    [drawn.filename, drawn.width, drawn.height, o.label]
                    + [o.xmin, o.ymin, o.xmax, o.ymax]
                )


def roboflow_csv(folder: str, images: list[DrawnImage]) -> None:
    tf_csv(os.path.join(folder, "_annotations.csv"), images)


def roboflow_voc(folder: str, images: list[DrawnImage]) -> None:
    """One XML beside each image, as Roboflow's "Pascal VOC XML" export writes it."""
    for drawn in images:
        objects = "".join(
            f"\t<object>\n\t\t<name>{o.label}</name>\n\t\t<pose>Unspecified</pose>\n"
            "\t\t<truncated>0</truncated>\n\t\t<difficult>0</difficult>\n"
            "\t\t<occluded>0</occluded>\n\t\t<bndbox>\n"
            f"\t\t\t<xmin>{o.xmin}</xmin>\n\t\t\t<xmax>{o.xmax}</xmax>\n"
            f"\t\t\t<ymin>{o.ymin}</ymin>\n\t\t\t<ymax>{o.ymax}</ymax>\n"
            "\t\t</bndbox>\n\t</object>\n"
            for o in drawn.objects
        )
        xml = (
            f"<annotation>\n\t<folder></folder>\n\t<filename>{drawn.filename}</filename>\n"
            f"\t<path>{drawn.filename}</path>\n\t<source>\n\t\t<database>roboflow.ai</database>\n"
            f"\t</source>\n\t<size>\n\t\t<width>{drawn.width}</width>\n"
            f"\t\t<height>{drawn.height}</height>\n\t\t<depth>3</depth>\n\t</size>\n"
            f"\t<segmented>0</segmented>\n{objects}</annotation>\n"
        )
        stem = os.path.splitext(drawn.filename)[0]
        with open(os.path.join(folder, f"{stem}.xml"), "w") as handle:
            handle.write(xml)


def labelme(folder: str, images: list[DrawnImage]) -> None:
    """One LabelMe JSON beside each image, `imagePath` relative to it, no `imageData`."""
    for drawn in images:
        document = {
            "version": "5.4.1",
            "flags": {},
            "shapes": [
                {
                    "label": o.label,
                    "points": [[o.xmin, o.ymin], [o.xmax, o.ymax]],
                    "group_id": None,
                    "description": "",
                    "shape_type": "rectangle",
                    "flags": {},
                    "mask": None,
                }
                for o in drawn.objects
            ],
            "imagePath": drawn.filename,
            "imageData": None,
            "imageHeight": drawn.height,
            "imageWidth": drawn.width,
        }
        stem = os.path.splitext(drawn.filename)[0]
        with open(os.path.join(folder, f"{stem}.json"), "w") as handle:
            json.dump(document, handle)


@dataclass(frozen=True)
class Export:
    """One per-split layout, by its format's name in EXPORTS: how a split's annotations are
    written, the glob a user gives for them, Roboflow's name for the export (None for a
    layout that is not one) and whether images without boxes are listed."""

    write: Callable[[str, list[DrawnImage]], None]
    glob: str
    roboflow: str | None
    lists_images_without_boxes: bool = True


EXPORTS = {
    "coco": Export(roboflow_coco, "*/_annotations.coco.json", "COCO"),
    "createml": Export(roboflow_createml, "*/_annotations.createml.json", "CreateML"),
    "yolo-keras": Export(roboflow_keras, "*/_annotations.txt", "YOLO v3 Keras"),
    "csv": Export(roboflow_csv, "*/_annotations.csv", "Tensorflow Object Detection CSV", False),
    "voc": Export(roboflow_voc, "*/*.xml", "Pascal VOC"),
    "labelme": Export(labelme, "*/*.json", None),
}


@pytest.fixture(scope="module", params=sorted(EXPORTS))
def layout(request, tmp_path_factory) -> tuple[str, Layout]:
    """A download with train/, valid/ and test/ folders in one of the per-split layouts."""
    name = request.param
    export = EXPORTS[name]
    root = str(tmp_path_factory.mktemp(name))
    images, splits = {}, {}
    for split, drawn_images in draw_splits(root, "shape").items():
        export.write(os.path.join(root, split), drawn_images)
        for drawn in drawn_images:
            if drawn.objects or export.lists_images_without_boxes:
                images[f"{split}/{drawn.filename}"] = drawn
                splits[f"{split}/{drawn.filename}"] = split
    if export.roboflow:
        write_readmes(root, export.roboflow)
    drawn = list(images.values())
    # The fixture must hold what it is meant to test: negative and crowded images.
    assert any(len(d.objects) > 1 for d in drawn)
    assert not export.lists_images_without_boxes or any(not d.objects for d in drawn)
    return name, Layout(root, images, splits)


def expected_boxes(drawn: DrawnImage) -> list[tuple]:
    """The drawn boxes as the example must hold them: corners over the image's size."""
    w, h = drawn.width, drawn.height
    return sorted((o.label, o.xmin / w, o.ymin / h, o.xmax / w, o.ymax / h) for o in drawn.objects)


def check_examples(output: dict, expected: dict[str, DrawnImage], splits: dict[str, str]):
    """Every expected image written once, into its split, under its key, with its boxes."""
    got = {
        example["image/filename"].decode(): (split, example)
        for split, examples in output["splits"].items()
        for example in examples
    }
    assert sum(len(examples) for examples in output["splits"].values()) == len(got)
    assert sorted(got) == sorted(expected)
    for key, drawn in expected.items():
        split, example = got[key]
        assert split == splits[key], key
        assert example["image/filename"].decode() == key
        assert (example["image/width"], example["image/height"]) == (drawn.width, drawn.height)
        boxes = example_boxes(example)
        assert [box[0] for box in boxes] == [box[0] for box in expected_boxes(drawn)], key
        assert np.allclose(
            [box[1:] for box in boxes], [box[1:] for box in expected_boxes(drawn)], atol=1e-6
        ), key


def check_manifest(output: dict, expected: dict[str, DrawnImage], splits: dict[str, str]):
    """Counts that add up to the drawn images and boxes, per split and in all."""
    manifest = output["manifest"]
    objects = sum(len(drawn.objects) for drawn in expected.values())
    assert output["errors"] == []
    assert all(manifest["accounting"].values())
    assert manifest["images"]["referenced"] == manifest["images"]["written"] == len(expected)
    assert manifest["objects"]["read"] == manifest["objects"]["written"] == objects
    assert manifest["images"]["in_several_splits"]["count"] == 0
    assert manifest["images"]["merged_from_several_files"]["count"] == 0
    assert sorted(output["label_map"]) == sorted(
        {o.label for drawn in expected.values() for o in drawn.objects}
    )
    for name, split in manifest["splits"].items():
        in_split = [d for key, d in expected.items() if splits[key] == name]
        assert split["examples"] == len(in_split)
        assert split["objects"] == sum(len(d.objects) for d in in_split)


def create(tmp_path, capsys, *args) -> tuple[int, str, str]:
    """Runs create into tmp_path/out: the exit code, what it said on stderr, the output."""
    output = tmp_path / "out"
    code = run_create(*args, "--output", output, "--num-shards", "2")
    return code, capsys.readouterr().err, str(output)


def warnings(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("warning:")]


WAYS = {
    "glob": lambda name, root: ("--format", name, "--annotations", f"{root}/{EXPORTS[name].glob}"),
    "folder": lambda name, root: ("--format", name, "--annotations", root),
    "auto": lambda name, root: ("--format", "auto", "--annotations", root),
}


@pytest.mark.parametrize("source_splits", [True, False], ids=["source-splits", "one-split"])
@pytest.mark.parametrize("way", sorted(WAYS))
def test_download_is_read_whole_with_its_splits(layout, way, source_splits, tmp_path, capsys):
    name, data = layout
    split_args = ("--splits", "source") if source_splits else ()
    code, err, out = create(tmp_path, capsys, *WAYS[way](name, data.root), *split_args)
    assert code == 0, err
    if way == "auto":
        assert f"detected format {name}" in err
    assert not warnings(err)
    output = read_output(out)
    splits = data.splits if source_splits else dict.fromkeys(data.images, "train")
    assert list(output["manifest"]["splits"]) == (
        ["test", "train", "valid"] if source_splits else ["train"]
    )
    check_examples(output, data.images, splits)
    check_manifest(output, data.images, splits)
    # COCO's category ids and keras' class indexes + 1 are kept; the others' sorted names
    # are numbered from 1. Every class has objects here, so all agree.
    assert output["label_map"] == {"circle": 1, "square": 2, "triangle": 3}


@pytest.mark.parametrize("way", sorted(WAYS))
def test_one_split_with_images_given_as_its_folder(layout, way, tmp_path, capsys):
    """`--images DIR/train` for the train split alone: names resolve against it."""
    name, data = layout
    train = os.path.join(data.root, "train")
    annotations = {
        "glob": ("--format", name, "--annotations", f"{data.root}/{EXPORTS[name].glob}"),
        "folder": ("--format", name, "--annotations", train),
        "auto": ("--format", "auto", "--annotations", train),
    }[way]
    if way == "glob":  # The train split's file, or its files.
        annotations = (*annotations[:-1], annotations[-1].replace("*", "train", 1))
    code, err, out = create(tmp_path, capsys, *annotations, "--images", train)
    assert code == 0, err
    assert not warnings(err)
    output = read_output(out)
    expected = {
        key.split("/", 1)[1]: drawn
        for key, drawn in data.images.items()
        if data.splits[key] == "train"
    }
    splits = dict.fromkeys(expected, "train")
    check_examples(output, expected, splits)
    check_manifest(output, expected, splits)


def test_one_split_has_no_source_splits(layout, tmp_path, capsys):
    name, data = layout
    train = os.path.join(data.root, "train")
    code, err, _ = create(tmp_path, capsys, "--format", name, "--annotations", train,
                          "--splits", "source")  # fmt: skip
    assert code == 2
    assert f"annotations carry no splits (files directly in {train}" in err


def test_images_root_given_for_a_whole_download(layout, tmp_path, capsys):
    """`--images DIR` makes names relative to DIR. LabelMe's `imagePath` is relative to its
    JSON file and Roboflow's keras paths are looked for beside `_annotations.txt` first, so
    those are found; the names in COCO, CreateML, CSV and VOC files are then `DIR/<name>`,
    which does not exist, and the run says where it looked."""
    name, data = layout
    code, err, out = create(tmp_path, capsys, "--format", name, "--annotations", data.root,
                            "--images", data.root, "--splits", "source")  # fmt: skip
    output = read_output(build_folder(out))
    if name in ("labelme", "yolo-keras"):
        assert code == 0, err
        check_examples(output, data.images, data.splits)
        check_manifest(output, data.images, data.splits)
        return
    assert code == 1
    assert (
        f"odrecords create: error: no example was written: {len(data.images)} of "
        f"{len(data.images)} images were rejected (most: image file not found); images were "
        f"looked for under {data.root}: is --images right?"
    ) in err.splitlines()
    assert sorted(e["image"] for e in output["errors"]) == sorted(
        key.split("/", 1)[1] for key in data.images
    )


FACEMASK = os.path.join(os.path.dirname(RACCOON), "roboflow-facemask")


def keras_lines(path: str) -> dict[str, list[tuple[int, ...]]]:
    """{image name: [(x1, y1, x2, y2, class)]} of a keras-yolo3 file."""
    with open(path) as handle:
        return {
            fields[0]: [tuple(int(v) for v in box.split(",")) for box in fields[1:]]
            for fields in (line.split() for line in handle if line.strip())
        }


def test_roboflow_facemask_keras_files_with_train_images_missing(tmp_path, capsys):
    """The real download (see ../shared/README.md): train's `_annotations.txt` lists 105
    images of which 49 are shipped; valid has 11 images and 11 boxes, test 8 and 12."""
    if not os.path.isdir(FACEMASK):
        pytest.skip("../shared/data/roboflow-facemask is not present")
    root = os.path.abspath(FACEMASK)
    code, err, out = create(tmp_path, capsys, "--format", "yolo-keras", "--annotations",
                            f"{root}/*/_annotations.txt", "--splits", "source")  # fmt: skip
    assert code == 0, err
    output = read_output(out)
    manifest = output["manifest"]
    listed = {split: keras_lines(f"{root}/{split}/_annotations.txt") for split in SPLITS}
    shipped = {
        split: {n: boxes for n, boxes in lines.items() if os.path.exists(f"{root}/{split}/{n}")}
        for split, lines in listed.items()
    }
    assert {split: len(lines) for split, lines in listed.items()} == {
        "train": 105,
        "valid": 11,
        "test": 8,
    }
    counts = {s: (len(v), sum(map(len, v.values()))) for s, v in shipped.items()}
    assert counts == {"train": (49, 49), "valid": (11, 11), "test": (8, 12)}
    assert output["label_map"] == {"Faces": 1}
    for split, images in shipped.items():
        assert manifest["splits"][split]["examples"] == len(images)
        assert manifest["splits"][split]["objects"] == sum(map(len, images.values()))
        examples = {e["image/filename"].decode(): e for e in output["splits"][split]}
        assert sorted(examples) == sorted(f"{split}/{name}" for name in images)
        for name, boxes in images.items():
            example = examples[f"{split}/{name}"]
            assert (example["image/width"], example["image/height"]) == (420, 420)
            expected = sorted(("Faces", *(v / 420 for v in box[:4])) for box in boxes)
            got = example_boxes(example)
            assert [box[0] for box in got] == [box[0] for box in expected]
            assert np.allclose([b[1:] for b in got], [b[1:] for b in expected], atol=1e-6)
    missing = {f"train/{n}": boxes for n, boxes in listed["train"].items()
               if n not in shipped["train"]}  # fmt: skip
    assert len(missing) == 56
    assert {e["image"]: e["objects"] for e in output["errors"]} == {
        key: len(boxes) for key, boxes in missing.items()
    }
    assert {(e["stage"], e["reason"]) for e in output["errors"]} == {
        ("image", "image file not found")
    }
    assert manifest["splits"]["train"]["rejected"] == 56
    assert all(manifest["accounting"].values())
    assert manifest["images"]["referenced"] == 105 + 11 + 8
    assert warnings(err) == [
        "warning: split train: 56 of 105 images were rejected (most: image file not found); "
        f"images were looked for beside the annotation files that name them, under {root}"
    ]


YOLO_LINE = "0 0.5 0.5 0.25 0.25\n"
KERAS_LINES = "img/a.jpg 1,2,30,40,0 5,5,9,9,1\nimg/b.jpg\n"


@pytest.mark.parametrize(
    "files, expected",
    [
        # Roboflow's "YOLO Darknet": a label file beside each image, class names per split.
        (
            {
                "README.roboflow.txt": "exported via roboflow.com\n",
                "train/_darknet.labels": "circle\n",
                "train/a_jpg.rf.1.jpg": "",
                "train/a_jpg.rf.1.txt": YOLO_LINE,
            },
            "yolo",
        ),
        # keras-yolo3's own layout: any file name, its classes file beside it.
        ({"train.txt": KERAS_LINES, "classes.txt": "circle\nsquare\n"}, "yolo-keras"),
        ({"train.txt": "img/a.jpg\n" + KERAS_LINES}, "yolo-keras"),
        # Darknet's image list and names file; labels beside the images further down.
        ({"train.txt": "data/obj/a.jpg\n", "obj.names": "circle\n"}, "yolo"),
        ({"classes.txt": "circle\n", "labels/train/a.txt": YOLO_LINE}, "yolo"),
        ({"a.xml": "<annotation/>", "classes.txt": "circle\n"}, "voc"),
        ({"LICENSE.txt": "MIT\n", "train/_annotations.csv": "filename\n"}, "csv"),
    ],
)
def test_auto_recognises_a_folder_by_its_files_or_its_sub_folders(tmp_path, files, expected):
    from transforms.readers.detect import detect_format

    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert detect_format(str(tmp_path)) == expected


def test_auto_takes_no_readme_or_licence_for_annotations(tmp_path):
    from transforms.readers.detect import detect_format

    for name in ("README.roboflow.txt", "README.dataset.txt", "LICENSE", "train/readme.txt"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("img/a.jpg 1,2,30,40,0\n")  # Even if it looks the part.
    with pytest.raises(ValueError, match="found no annotation files in .* nor in its sub-folders"):
        detect_format(str(tmp_path))
    with pytest.raises(ValueError, match="cannot tell the annotation format of"):
        detect_format(str(tmp_path / "README.roboflow.txt"))
    (tmp_path / "train" / "_annotations.txt").write_text(KERAS_LINES)
    assert detect_format(str(tmp_path)) == "yolo-keras"
    assert detect_format(f"{tmp_path}/*/*.txt") == "yolo-keras"


@pytest.fixture(scope="module")
def tran(tmp_path_factory) -> Layout:
    """Dat Tran's raccoon layout: images/, annotations/ (VOC), and data/ with the CSVs his
    `split labels` notebook writes, naming images by file name alone."""
    root = str(tmp_path_factory.mktemp("tran"))
    drawn = draw_images(os.path.join(root, "images"), [f"raccoon-{n}.jpg" for n in range(1, 9)])
    os.makedirs(os.path.join(root, "annotations"))
    for image in drawn:
        with open(os.path.join(root, "annotations", image.filename[:-4] + ".xml"), "w") as out:
            out.write(voc_xml(image))
    os.makedirs(os.path.join(root, "data"))
    splits = {"train": drawn[:6], "test": drawn[6:]}
    for split, images in splits.items():
        tf_csv(os.path.join(root, "data", f"{split}_labels.csv"), images)
    listed = [(split, d) for split, images in splits.items() for d in images if d.objects]
    return Layout(
        root, {d.filename: d for _, d in listed}, {d.filename: split for split, d in listed}
    )


TRAN_WAYS = {
    "glob": ("--format", "csv", "--annotations", "{root}/data/*_labels.csv"),
    "folder": ("--format", "csv", "--annotations", "{root}/data"),
    "auto": ("--format", "auto", "--annotations", "{root}/data"),
}


@pytest.mark.parametrize("source_splits", [True, False], ids=["source-splits", "one-split"])
@pytest.mark.parametrize("way", sorted(TRAN_WAYS))
def test_tran_csv_per_split_with_images_folder(tran, way, source_splits, tmp_path, capsys):
    args = [arg.format(root=tran.root) for arg in TRAN_WAYS[way]]
    split_args = ("--splits", "source") if source_splits else ()
    code, err, out = create(tmp_path, capsys, *args, "--images", f"{tran.root}/images",
                            *split_args)  # fmt: skip
    assert code == 0, err
    assert not warnings(err)
    splits = tran.splits if source_splits else dict.fromkeys(tran.images, "train")
    output = read_output(out)
    assert list(output["manifest"]["splits"]) == (["test", "train"] if source_splits else ["train"])
    check_examples(output, tran.images, splits)
    check_manifest(output, tran.images, splits)


def test_tran_csv_without_images_folder_says_where_it_looked(tran, tmp_path, capsys):
    code, err, _ = create(tmp_path, capsys, "--format", "csv", "--annotations",
                          f"{tran.root}/data")  # fmt: skip
    assert code == 1
    assert err.splitlines()[-1] == (
        f"odrecords create: error: no example was written: {len(tran.images)} of "
        f"{len(tran.images)} images were rejected (most: image file not found); images were "
        f"looked for beside the annotation files that name them, under {tran.root}/data; "
        f"--images {tran.root}/images? (the first image not found is there)"
    )


def test_real_tran_data_folder_reads_each_csv_as_a_split_and_reports_the_overlap(tmp_path, capsys):
    """Dat Tran's data/ also holds raccoon_labels.csv, every image in one file: read as a
    split of its own, it puts each image in two splits, which is reported as leakage."""
    if not os.path.isdir(RACCOON):
        pytest.skip("../shared/data/raccoon is not present")
    root = os.path.abspath(RACCOON)
    code, err, out = create(tmp_path, capsys, "--format", "csv", "--annotations", f"{root}/data",
                            "--images", f"{root}/images", "--splits", "source")  # fmt: skip
    assert code == 0, err
    output = read_output(out)
    for split, images, objects in [("raccoon", 200, 217), ("train", 160, 173), ("test", 40, 44)]:
        with open(f"{root}/data/{split}_labels.csv", newline="") as handle:
            names = {row["filename"] for row in csv.DictReader(handle)}
        assert len(names) == images
        examples = output["splits"][split]
        assert sorted(e["image/filename"].decode() for e in examples) == sorted(names)
        assert sum(len(e["image/object/bbox/xmin"]) for e in examples) == objects
    assert output["manifest"]["images"]["in_several_splits"]["count"] == 200
    assert warnings(err)[0].startswith(
        "warning: 200 images in several source splits (each written once per split: leakage): "
        "raccoon-1.jpg (raccoon, train); "
    )


def test_a_split_whose_images_are_mostly_missing_is_warned_about(tmp_path, capsys):
    root = tmp_path / "download"
    for split, drawn in draw_splits(str(root), "shape").items():
        roboflow_coco(str(root / split), drawn)
    for image in (root / "valid").glob("*.jpg"):
        image.unlink()
    code, err, out = create(tmp_path, capsys, "--format", "coco", "--annotations", root,
                            "--splits", "source")  # fmt: skip
    assert code == 0, err
    valid = SPLITS["valid"]
    assert warnings(err) == [
        f"warning: split valid: {valid} of {valid} images were rejected (most: image file not "
        f"found); images were looked for beside the annotation files that name them, under {root}"
    ]
    manifest = read_output(out)["manifest"]
    assert {name: (s["examples"], s["rejected"]) for name, s in manifest["splits"].items()} == {
        "test": (SPLITS["test"], 0),
        "train": (SPLITS["train"], 0),
        "valid": (0, valid),
    }
