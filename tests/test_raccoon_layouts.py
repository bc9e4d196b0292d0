"""The real Raccoon dataset (../shared/data/raccoon) written as Open Images, KITTI, VIA and
RetinaNet CSV lay it out comes back as the same 200 examples and 217 boxes as its own CSV;
skipped when the dataset is absent."""

import csv
import json
import os

import numpy as np
import pytest
from conftest import RACCOON, read_output, run_create
from test_raccoon import expected_boxes


def raccoon_rows(root: str) -> list[dict]:
    with open(os.path.join(root, "data", "raccoon_labels.csv"), newline="") as handle:
        return list(csv.DictReader(handle))


def write_open_images(folder, rows):
    with open(folder / "raccoon-annotations-bbox.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow("ImageID,Source,LabelName,Confidence,XMin,XMax,YMin,YMax".split(","))
        for row in rows:
            w, h = float(row["width"]), float(row["height"])
            stem = os.path.splitext(row["filename"])[0]
            corners = [
                float(row[k]) / s for k, s in (("xmin", w), ("xmax", w), ("ymin", h), ("ymax", h))
            ]
            writer.writerow([stem, "xclick", "/m/0raccoon", "1", *corners])
    (folder / "class-descriptions-boxable.csv").write_text("/m/0raccoon,raccoon\n")
    return ["--format", "open-images", "--annotations", folder]


def write_kitti(folder, rows):
    (folder / "label_2").mkdir()
    for row in rows:
        stem = os.path.splitext(row["filename"])[0]
        with open(folder / "label_2" / f"{stem}.txt", "a") as handle:
            corners = " ".join(row[k] for k in ("xmin", "ymin", "xmax", "ymax"))
            handle.write(f"{row['class']} 0.00 0 0.0 {corners} 1.5 1.6 3.9 1.0 1.7 30.0 0.1\n")
    return ["--format", "kitti", "--annotations", folder / "label_2"]


def write_via(folder, rows):
    metadata = {}
    for row in rows:
        x, y = int(row["xmin"]), int(row["ymin"])
        shape = {"name": "rect", "x": x, "y": y}
        shape |= {"width": int(row["xmax"]) - x, "height": int(row["ymax"]) - y}
        entry = metadata.setdefault(
            row["filename"], {"filename": row["filename"], "size": -1, "regions": []}
        )
        entry["regions"].append(
            {"shape_attributes": shape, "region_attributes": {"animal": "raccoon"}}
        )
    (folder / "via_export_json.json").write_text(json.dumps(metadata))
    return ["--format", "via", "--annotations", folder / "via_export_json.json"]


def write_retinanet(folder, rows):
    with open(folder / "train.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        for row in rows:
            writer.writerow(
                [row["filename"], *(row[k] for k in ("xmin", "ymin", "xmax", "ymax")), row["class"]]
            )
    (folder / "classes.csv").write_text("raccoon,0\n")
    return ["--format", "retinanet-csv", "--annotations", folder / "train.csv"]


@pytest.mark.parametrize("write", [write_open_images, write_kitti, write_via, write_retinanet])
def test_raccoon_in_each_layout_gives_its_200_examples_and_217_boxes(tmp_path, write):
    if not os.path.isdir(RACCOON):
        pytest.skip("../shared/data/raccoon is not present")
    root = os.path.abspath(RACCOON)
    (tmp_path / "in").mkdir()
    args = write(tmp_path / "in", raccoon_rows(root))
    out = tmp_path / "out"
    assert run_create(*args, "--images", f"{root}/images", "--output", out) == 0
    output = read_output(out)
    expected = expected_boxes(root)
    examples = [e for split in output["splits"].values() for e in split]
    assert sorted(e["image/filename"].decode() for e in examples) == sorted(expected)
    assert sum(len(e["image/object/bbox/xmin"]) for e in examples) == 217
    assert output["label_map"] == {"raccoon": 1} and output["errors"] == []
    for example in examples:
        got = sorted(
            zip(
                example["image/object/bbox/xmin"],
                example["image/object/bbox/ymin"],
                example["image/object/bbox/xmax"],
                example["image/object/bbox/ymax"],
                strict=True,
            )
        )
        name = example["image/filename"].decode()
        assert np.allclose(got, expected[name], atol=1e-6), name
