"""The dataset report every `create` writes beside its dataset card: its statistics agree with
the records read back with TensorFlow and with `odrecords report` on the same output, a
rebuild that reuses examples reports the same, rejected images and duplicate pairs are shown
with their names, and the page opens in headless Chromium with every class and its counts."""

from __future__ import annotations

import hashlib
import os
import shutil

import pytest
import tensorflow as tf
from browser import PageText
from conftest import read_output, run_create
from format_writers import copy_images, sample_boxes, write_coco
from report_checks import check_against_records, check_page, read_stats

from pipelines import report

SAMPLE = os.path.join(os.path.dirname(__file__), "sample")


def _sha256(path) -> str:
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


@pytest.fixture(scope="module")
def sample_build(tmp_path_factory):
    out = tmp_path_factory.mktemp("sample") / "out"
    args = ["--format", "voc", "--annotations", f"{SAMPLE}/annotations"]
    args += ["--images", f"{SAMPLE}/images", "--output", out, "--splits", "train=0.7,val=0.3"]
    assert run_create(*args) == 0
    return args, read_output(out)


def test_create_writes_the_report_and_lists_it_in_the_manifest(sample_build):
    _, output = sample_build
    folder, written = output["dir"], output["manifest"]["written"]
    for name in ("stats.json", "report.html"):
        assert written[name]["sha256"] == _sha256(folder / name)
    check_against_records(output, read_stats(folder))
    card = (folder / "README.md").read_text()
    assert "report.html" in card


def test_the_report_command_on_an_output_gives_the_same_statistics(sample_build, tmp_path):
    _, output = sample_build
    assert report.main([str(output["dir"]), "--output", str(tmp_path / "report")]) == 0
    built, read = read_stats(output["dir"]), read_stats(tmp_path / "report")
    for stats in (built, read):
        stats.pop("source")
        for entries in (
            *stats["sample"]["by_split"].values(),
            *stats["sample"]["by_class"].values(),
        ):
            for entry in entries:
                entry["location"]["path"] = os.path.basename(entry["location"]["path"])
    assert built == read


def test_a_rebuild_that_reuses_examples_writes_the_same_report(sample_build, tmp_path):
    args, output = sample_build
    again = tmp_path / "out"
    shutil.copytree(output["dir"], again)
    assert run_create(*args[:-4], "--output", again, *args[-2:]) == 0
    manifest = read_output(again)["manifest"]
    assert manifest["reuse"]["images"]["reused"] == manifest["images"]["written"]
    assert (again / "stats.json").read_bytes() == (output["dir"] / "stats.json").read_bytes()


def test_rejected_images_and_duplicate_pairs_are_named_and_drawn(tmp_path):
    images, annotations = tmp_path / "images", tmp_path / "annotations"
    shutil.copytree(f"{SAMPLE}/images", images)
    shutil.copytree(f"{SAMPLE}/annotations", annotations)
    (images / "shapes-002.jpg").unlink()
    shutil.copy(images / "shapes-003.jpg", images / "copy-of-003.jpg")
    text = (annotations / "shapes-003.xml").read_text()
    (annotations / "copy-of-003.xml").write_text(text.replace("shapes-003", "copy-of-003"))
    out = tmp_path / "out"
    args = ["--format", "voc", "--annotations", annotations, "--images", images]
    assert run_create(*args, "--output", out) == 0
    stats = read_stats(out)
    (rejected,) = stats["rejected"]["first"]
    assert rejected["image"] == "shapes-002.jpg" and "not found" in rejected["reason"]
    assert stats["splits"]["train"]["rejected_images"] == stats["rejected"]["count"] == 1
    (pair,) = stats["duplicates"]["pairs"]
    assert (pair["kind"], pair["a"], pair["b"]) == ("exact", "copy-of-003.jpg", "shapes-003.jpg")
    assert stats["splits"]["train"]["duplicates"] == 2
    page = PageText.parse((out / "report.html").read_text())
    text = " ".join(page.parts)
    assert "shapes-002.jpg" in text and "copy-of-003.jpg" in text
    pictures = [attrs for tag, attrs in page.tags if tag == "img"]
    assert any("copy-of-003.jpg" in attrs.get("alt", "") for attrs in pictures)


def test_the_report_of_a_coco_file_with_masks_opens_in_chromium(chromium, tmp_path):
    boxes = sample_boxes()
    copy_images(str(tmp_path / "images"), boxes)
    write_coco(str(tmp_path / "instances.json"), boxes)
    out = tmp_path / "out"
    args = ["--format", "coco", "--annotations", tmp_path / "instances.json"]
    args += ["--images", tmp_path / "images", "--include-masks", "--output", out]
    assert run_create(*args) == 0
    output = read_output(out)
    files = [
        str(out / f) for split in output["manifest"]["splits"].values() for f in split["files"]
    ]
    examples = [tf.train.Example.FromString(r.numpy()) for r in tf.data.TFRecordDataset(files)]
    masks = [len(e.features.feature["image/object/mask"].bytes_list.value) for e in examples]
    assert sum(masks) == output["manifest"]["objects"]["written"] > 0
    check_against_records(output, read_stats(out))
    check_page(chromium, out / "report.html", output["manifest"], tmp_path)
