"""KITTI 2D object labels: the sample in KITTI's devkit layout comes back from `odrecords
create` as the same examples; DontCare regions are counted, not read; bad lines are errors."""

import os

import pytest
from conftest import read_output, run_create
from export_layouts import assert_boxes, expected, extra_features, stem, write_kitti
from format_writers import sample_boxes
from hypothesis import given
from hypothesis import strategies as st
from test_fuzz_readers import FUZZ, assert_accounted, check, fuzz_file

from transforms.readers.base import ReaderOptions
from transforms.readers.detect import detect_format
from transforms.readers.kitti import DONT_CARE, image_key, parse_kitti, split_of_label_file
from transforms.records import ErrorRecord, ImageAnnotation

LINE = "Car 0.50 1 -1.57 10.00 20.00 110.00 80.00 1.52 1.63 3.88 -2.61 1.71 28.74 -1.59"


def parse(text: bytes):
    records = list(parse_kitti(text, "/k/training/label_2/000001.txt", "image_2/000001.png"))
    counts = [r.value for r in records if hasattr(r, "tag")]
    annotations = [r for r in records if isinstance(r, ImageAnnotation)]
    errors = [r for r in records if isinstance(r, ErrorRecord)]
    return annotations, errors, counts


def test_lines_become_boxes_and_dont_care_regions_are_counted():
    text = (
        f"{LINE}\n"
        "Pedestrian 0.00 0 0.2 1 2 3 4 1.7 0.6 0.9 1 1 10 0.1 0.93\n"
        "DontCare -1 -1 -10 503.89 169.71 590.61 190.13 -1 -1 -1 -1000 -1000 -1000 -10\n"
        "\n"
        "DontCare -1 -1 -10 1 1 2 2 -1 -1 -1 -1000 -1000 -1000 -10\n"
    ).encode()
    (annotation,), errors, counts = parse(text)
    assert errors == []
    assert counts == [{"dropped": {DONT_CARE: 2}}]
    car, person = annotation.boxes
    assert (car.label, car.xmin, car.ymin, car.xmax, car.ymax, car.truncated) == (
        "Car", 10.0, 20.0, 110.0, 80.0, True,
    )  # fmt: skip
    assert (person.label, person.truncated, person.source) == (
        "Pedestrian",
        False,
        "/k/training/label_2/000001.txt:2",
    )
    assert annotation.image == "image_2/000001.png"


def test_bad_lines_cost_their_object_alone():
    text = (
        f"{LINE}\n"
        "Car 0 0 0 1 2 3\n"  # Too few fields.
        f"{LINE.replace('10.00', 'ten')}\n"
        "Person sitting 0 0 0 1 2 3 4 1 1 1 1 1 1 0\n"  # A type with a space shifts the fields.
        "Car\xff 0 0 0 1 2 3 4 1 1 1 1 1 1 0\n"
    ).encode("latin-1")
    (annotation,), errors, counts = parse(text)
    assert len(annotation.boxes) == 1 and counts == []
    assert [(e.source.rsplit(":", 1)[1], e.objects) for e in errors] == [
        ("2", 1),
        ("3", 1),
        ("4", 1),
        ("5", 1),
    ]
    assert "line has 7 fields, not 15" in errors[0].reason
    assert "x1 is not a number" in errors[1].reason
    assert "truncated is not a number: 'sitting'" in errors[2].reason
    assert errors[3].reason == "line is not UTF-8 text"


def test_image_beside_the_label_folder_png_first_then_jpeg(tmp_path):
    root = tmp_path / "kitti" / "training"
    (root / "image_2").mkdir(parents=True)
    (root / "image_2" / "000002.jpg").write_bytes(b"x")
    options = ReaderOptions(images=str(root), images_beside_annotations=True)
    assert image_key(f"{root}/label_2/000001.txt", options) == "image_2/000001.png"
    assert image_key(f"{root}/label_2/000002.txt", options) == "image_2/000002.jpg"
    tao = ReaderOptions(images=str(tmp_path), images_beside_annotations=True)
    assert image_key(f"{tmp_path}/labels/a.txt", tao) == "images/a.png"
    given_images = ReaderOptions(images=str(tmp_path / "imgs"))
    assert image_key(f"{root}/label_2/000001.txt", given_images) == "000001.png"


def test_split_of_a_label_file():
    assert split_of_label_file("/k/train/label_2/1.txt", "/k") == "train"
    assert split_of_label_file("/k/label_2/1.txt", "/k") is None


def sample_splits():
    names = sorted(sample_boxes())
    return {name: ("val" if i % 4 == 0 else "train") for i, name in enumerate(names)}


@pytest.mark.parametrize("given", ["root", "training", "label_2"])
def test_devkit_layout_from_any_of_its_folders(tmp_path, capsys, given):
    images = sample_boxes()
    write_kitti(str(tmp_path), images)
    annotations = {
        "root": tmp_path,
        "training": tmp_path / "training",
        "label_2": tmp_path / "training" / "label_2",
    }[given]
    out = tmp_path / "out"
    assert run_create("--format", "kitti", "--annotations", annotations, "--output", out) == 0
    output = read_output(out)
    prefix = "training/" if given == "root" else ""
    assert_boxes(output, expected(images, key=lambda n: f"{prefix}image_2/{stem(n)}.png"))
    manifest = output["manifest"]
    assert output["errors"] == [] and all(manifest["accounting"].values())
    assert manifest["objects"]["dropped_by_class"] == {"DontCare": len(images)}
    assert manifest["objects"]["dropped"] == len(images)
    assert output["label_map"] == {"circle": 1, "square": 2, "triangle": 3}
    for name, features in extra_features(out, manifest).items():
        count = len(features["truncated"])
        assert features["truncated"] == [1, *[0] * (count - 1)][:count], name


def test_image_sets_give_source_splits(tmp_path):
    images = sample_boxes()
    write_kitti(str(tmp_path), images)
    splits = sample_splits()
    (tmp_path / "ImageSets").mkdir()
    for split in ("train", "val"):
        ids = [stem(n) for n in sorted(images) if splits[n] == split]
        (tmp_path / "ImageSets" / f"{split}.txt").write_text("\n".join(ids) + "\n")
    # KITTI's test list names the testing images, whose ids the training images share.
    (tmp_path / "ImageSets" / "test.txt").write_text("\n".join(stem(n) for n in images))
    out = tmp_path / "out"
    code = run_create(
        "--format", "kitti", "--annotations", tmp_path / "training" / "label_2",
        "--splits", "source", "--output", out,
    )  # fmt: skip
    assert code == 0
    output = read_output(out)
    assert set(output["splits"]) == {"train", "val"}
    for split, examples in output["splits"].items():
        names = sorted(e["image/filename"].decode() for e in examples)
        assert names == sorted(f"image_2/{stem(n)}.png" for n in images if splits[n] == split)


def test_split_folders_and_tao_layout_with_jpeg_images(tmp_path, capsys):
    images = sample_boxes()
    splits = sample_splits()
    for split in ("train", "val"):
        write_kitti(str(tmp_path), {n: e for n, e in images.items() if splits[n] == split}, split)
    out = tmp_path / "out"
    args = ["--format", "auto", "--annotations", tmp_path, "--splits", "source", "--output", out]
    assert run_create(*args) == 0
    assert "detected format kitti" in capsys.readouterr().err
    output = read_output(out)
    assert_boxes(output, expected(images, key=lambda n: f"{splits[n]}/image_2/{stem(n)}.png"))
    assert set(output["splits"]) == {"train", "val"}

    tao = tmp_path / "tao"
    write_kitti(str(tao), images, folder="x", extension=".jpg")
    os.rename(tao / "x" / "label_2", tao / "labels")
    os.rename(tao / "x" / "image_2", tao / "images")
    out = tmp_path / "out-tao"
    assert run_create("--format", "kitti", "--annotations", tao / "labels", "--output", out) == 0
    assert_boxes(read_output(out), expected(images, key=lambda n: f"images/{stem(n)}.jpg"))


def test_given_images_folder_and_auto_detection(tmp_path):
    images = sample_boxes()
    write_kitti(str(tmp_path), images)
    assert detect_format(str(tmp_path / "training")) == "kitti"
    assert detect_format(str(tmp_path / "training" / "label_2")) == "kitti"
    out = tmp_path / "out"
    code = run_create(
        "--format", "kitti", "--annotations", f"{tmp_path}/training/label_2/*.txt",
        "--images", tmp_path / "training" / "image_2", "--output", out,
    )  # fmt: skip
    assert code == 0
    assert_boxes(read_output(out), expected(images, key=lambda n: f"{stem(n)}.png"))


def test_a_folder_without_labels_and_splits_without_folders_are_refused(tmp_path, capsys):
    args = ["--format", "kitti", "--annotations", tmp_path, "--output", tmp_path / "o"]
    assert run_create(*args) == 2
    assert "found no KITTI label files" in capsys.readouterr().err
    write_kitti(str(tmp_path), sample_boxes())
    code = run_create(
        "--format", "kitti", "--annotations", tmp_path / "training", "--splits", "source",
        "--output", tmp_path / "o",
    )  # fmt: skip
    assert code == 2
    assert "carry no splits" in capsys.readouterr().err


words = st.sampled_from(["Car", "DontCare", "Van", "1", "-1", "0.5", "nan", "1e999", "x", ""])
lines = st.lists(words, max_size=17).map(" ".join)


def kitti_bytes(lines_: list[str]) -> tuple[bytes, int]:
    objects = sum(1 for line in lines_ if line.split()[:1] not in ([], ["DontCare"]))
    return "\n".join(lines_).encode(), objects


@FUZZ
@given(fuzz_file(st.lists(lines, max_size=6), kitti_bytes))
def test_fuzzed_label_files(data):
    records = parse_kitti(data[0], "/k/label_2/1.txt", "1.png")
    records = [r for r in records if not hasattr(r, "tag")]
    objects, checked = check(records)
    assert_accounted(data, objects, checked)
