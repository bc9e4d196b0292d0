"""Integration on the real Raccoon dataset (../shared/data/raccoon), skipped when it is absent."""

import csv
import os

import numpy as np
import pytest
from conftest import pair_names, read_output, run_create
from report_checks import check_against_records, check_page, read_stats


def expected_boxes(raccoon):
    """{filename: sorted normalized boxes} from the dataset's own CSV."""
    boxes = {}
    with open(os.path.join(raccoon, "data", "raccoon_labels.csv"), newline="") as handle:
        for row in csv.DictReader(handle):
            w, h = float(row["width"]), float(row["height"])
            boxes.setdefault(row["filename"], []).append(
                (
                    float(row["xmin"]) / w,
                    float(row["ymin"]) / h,
                    float(row["xmax"]) / w,
                    float(row["ymax"]) / h,
                )
            )
    return {name: sorted(entries) for name, entries in boxes.items()}


@pytest.fixture(scope="module")
def raccoon_outputs(tmp_path_factory):
    from conftest import RACCOON

    if not os.path.isdir(RACCOON):
        pytest.skip("../shared/data/raccoon is not present")
    root = os.path.abspath(RACCOON)
    outputs = {}
    for fmt, annotations in [
        ("voc", f"{root}/annotations"),
        ("csv", f"{root}/data/raccoon_labels.csv"),
    ]:
        out = tmp_path_factory.mktemp(f"raccoon-{fmt}")
        assert (
            run_create(
                "--format",
                fmt,
                "--annotations",
                annotations,
                "--images",
                f"{root}/images",
                "--output",
                out,
                "--splits",
                "train=0.8,test=0.2",
                "--num-shards",
                "2",
                "--label-map",
                f"{root}/training/object-detection.pbtxt",
            )
            == 0
        )
        outputs[fmt] = read_output(out)
    outputs["root"] = root
    return outputs


@pytest.mark.parametrize("fmt", ["voc", "csv"])
def test_raccoon_gives_200_examples_and_217_boxes_equal_to_the_csv(raccoon_outputs, fmt):
    out = raccoon_outputs[fmt]
    expected = expected_boxes(raccoon_outputs["root"])
    examples = [e for split in out["splits"].values() for e in split]
    assert len(examples) == 200
    assert sum(len(e["image/object/bbox/xmin"]) for e in examples) == 217
    assert out["label_map"] == {"raccoon": 1}
    assert out["errors"] == []
    for example in examples:
        name = example["image/filename"].decode()
        got = sorted(
            zip(
                example["image/object/bbox/xmin"],
                example["image/object/bbox/ymin"],
                example["image/object/bbox/xmax"],
                example["image/object/bbox/ymax"],
                strict=True,
            )
        )
        assert np.allclose(got, expected[name], atol=1e-6), name
        assert set(example["image/object/class/label"]) == {1}
        assert example["image/format"] == b"jpeg"


def test_raccoon_images_land_in_the_same_split_from_either_source(raccoon_outputs):
    def splits(out):
        return {
            e["image/filename"]: name for name, examples in out["splits"].items() for e in examples
        }

    voc, csv_ = splits(raccoon_outputs["voc"]), splits(raccoon_outputs["csv"])
    assert voc == csv_
    train = sum(1 for split in voc.values() if split == "train")
    assert 140 <= train <= 180  # 80% of 200, give or take the hash's spread.


def test_raccoon_rerun_puts_every_image_in_the_same_split(raccoon_outputs, tmp_path):
    root = raccoon_outputs["root"]
    assert (
        run_create(
            "--format",
            "voc",
            "--annotations",
            f"{root}/annotations",
            "--images",
            f"{root}/images",
            "--output",
            tmp_path,
            "--splits",
            "train=0.8,test=0.2",
            "--num-shards",
            "2",
        )
        == 0
    )
    again = read_output(tmp_path)
    for name, examples in again["splits"].items():
        assert sorted(e["image/filename"] for e in examples) == sorted(
            e["image/filename"] for e in raccoon_outputs["voc"]["splits"][name]
        )


# The Raccoon images hold identical files under two names, and photos saved again at another
# size (raccoon-50.jpg is a smaller raccoon-52.jpg, itself identical to raccoon-74.jpg).
RACCOON_EXACT = {
    ("raccoon-11.jpg", "raccoon-116.jpg"),
    ("raccoon-120.jpg", "raccoon-83.jpg"),
    ("raccoon-52.jpg", "raccoon-74.jpg"),
    ("raccoon-65.jpg", "raccoon-98.jpg"),
}
RACCOON_NEAR = {
    ("raccoon-21.jpg", "raccoon-45.jpg"),
    ("raccoon-50.jpg", "raccoon-52.jpg"),
    ("raccoon-50.jpg", "raccoon-74.jpg"),
    ("raccoon-51.jpg", "raccoon-85.jpg"),
}


@pytest.mark.parametrize("fmt", ["voc", "csv"])
def test_raccoon_duplicates_are_reported_across_and_within_splits(raccoon_outputs, fmt):
    output = raccoon_outputs[fmt]
    split_of = {
        example["image/filename"].decode(): split
        for split, examples in output["splits"].items()
        for example in examples
    }
    found = output["manifest"]["duplicates"]
    for kind, pairs in (("exact", RACCOON_EXACT), ("near", RACCOON_NEAR)):
        for where in ("across_splits", "within_split"):
            expected = {
                (a, b)
                for a, b in pairs
                if (split_of[a] != split_of[b]) == (where == "across_splits")
            }
            assert found[kind][where]["pairs"] == len(expected)
            assert {pair_names(text) for text in found[kind][where]["first"]} == expected
    assert found["near"]["not_hashed"] == 0


def test_the_raccoon_report_opens_in_chromium_with_its_counts(raccoon_outputs, chromium, tmp_path):
    output = raccoon_outputs["voc"]
    check_against_records(output, read_stats(output["dir"]))
    check_page(chromium, output["dir"] / "report.html", output["manifest"], tmp_path)


def test_the_raccoon_root_without_images_points_at_its_images_folder(tmp_path, capsys):
    """Dat Tran's layout given as a dataset root: each image is looked for beside its XML
    (`annotations/raccoon-1.jpg`), and the message names `images/`, where --images finds it."""
    from conftest import RACCOON

    if not os.path.isdir(RACCOON):
        pytest.skip("../shared/data/raccoon is not present")
    root = os.path.abspath(RACCOON)
    args = ["--format", "auto", "--annotations", root]
    assert run_create(*args, "--output", tmp_path / "out") == 1
    (line,) = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert line.endswith(f"; --images {root}/images? (the first image not found is there)")
    assert run_create(*args, "--images", f"{root}/images", "--output", tmp_path / "ok") == 0
