"""Every reader end to end: the sample's known boxes written in each format must come back
from `odrecords create` as the same examples."""

import os

import numpy as np
import pytest
from conftest import SAMPLE, example_boxes, read_output, run_create
from format_writers import (
    COCO_IDS,
    copy_images,
    sample_boxes,
    write_coco,
    write_createml,
    write_labelbox_json,
    write_labelbox_ndjson,
    write_labelme,
    write_yolo,
    write_yolo_keras,
)

IMAGES = f"{SAMPLE}/images"


def examples_by_name(output):
    return {e["image/filename"].decode(): e for split in output["splits"].values() for e in split}


def assert_matches_sample(output, key=lambda name: name):
    """Every sample image is an example with the sample's boxes, normalized."""
    expected = sample_boxes()
    examples = examples_by_name(output)
    assert sorted(examples) == sorted(key(name) for name in expected)
    for name, entry in expected.items():
        example = examples[key(name)]
        w, h = entry["width"], entry["height"]
        want = sorted((c, x0 / w, y0 / h, x1 / w, y1 / h) for c, x0, y0, x1, y1 in entry["boxes"])
        got = example_boxes(example)
        assert [g[0] for g in got] == [w_[0] for w_ in want], name
        assert np.allclose([g[1:] for g in got], [w_[1:] for w_ in want], atol=1e-6), name
        labels = [output["label_map"][t.decode()] for t in example["image/object/class/text"]]
        assert example["image/object/class/label"] == labels
    assert output["errors"] == []
    assert all(output["manifest"]["accounting"].values())


def create(tmp_path, *args):
    out = tmp_path / "out"
    assert run_create(*args, "--output", out) == 0
    return read_output(out)


def test_coco_keeps_category_ids_with_gaps(tmp_path):
    write_coco(tmp_path / "instances.json", sample_boxes())
    output = create(
        tmp_path,
        "--format",
        "coco",
        "--annotations",
        tmp_path / "instances.json",
        "--images",
        IMAGES,
    )
    assert_matches_sample(output)
    assert output["label_map"] == COCO_IDS
    assert output["manifest"]["renumbered_classes"] == {}
    example = next(iter(examples_by_name(output).values()))
    assert example["image/object/class/label"] == [
        COCO_IDS[t.decode()] for t in example["image/object/class/text"]
    ]


def test_yolo_ultralytics_with_source_splits(tmp_path):
    images = sample_boxes()
    splits = {name: ("val" if number % 4 == 0 else "train") for number, name in enumerate(images)}
    write_yolo(tmp_path / "ds", images, splits)
    output = create(
        tmp_path, "--format", "yolo", "--annotations", tmp_path / "ds", "--splits", "source"
    )
    assert_matches_sample(output, key=lambda name: f"images/{splits[name]}/{name}")
    assert output["label_map"] == {"circle": 1, "square": 2, "triangle": 3}
    for split, examples in output["splits"].items():
        assert {e["image/filename"].decode().split("/")[1] for e in examples} == {split}
    assert set(output["splits"]) == {"train", "val"}


def test_yolo_keras_with_absolute_paths_inside_the_images_root(tmp_path):
    write_yolo_keras(tmp_path / "train.txt", os.path.abspath(IMAGES), sample_boxes())
    output = create(
        tmp_path,
        "--format",
        "yolo-keras",
        "--annotations",
        tmp_path / "train.txt",
        "--classes",
        tmp_path / "classes.txt",
        "--images",
        IMAGES,
    )
    assert_matches_sample(output)


@pytest.mark.parametrize("writer", [write_labelbox_ndjson, write_labelbox_json])
def test_labelbox_exports(tmp_path, writer):
    path = tmp_path / ("export.ndjson" if writer is write_labelbox_ndjson else "export.json")
    writer(path, sample_boxes())
    output = create(tmp_path, "--format", "labelbox", "--annotations", path, "--images", IMAGES)
    assert_matches_sample(output)


def test_createml(tmp_path):
    write_createml(tmp_path / "createml.json", sample_boxes())
    output = create(
        tmp_path,
        "--format",
        "createml",
        "--annotations",
        tmp_path / "createml.json",
        "--images",
        IMAGES,
    )
    assert_matches_sample(output)


def test_labelme_paths_relative_to_each_json(tmp_path):
    images = sample_boxes()
    copy_images(tmp_path / "data" / "img", images)
    write_labelme(tmp_path / "data" / "json", tmp_path / "data" / "img", images)
    output = create(
        tmp_path,
        "--format",
        "labelme",
        "--annotations",
        tmp_path / "data" / "json",
        "--images",
        tmp_path / "data",
    )
    assert_matches_sample(output, key=lambda name: f"img/{name}")


@pytest.mark.parametrize(
    "fmt, make",
    [
        ("coco", lambda d: write_coco(d / "a.json", sample_boxes())),
        ("labelbox", lambda d: write_labelbox_ndjson(d / "a.ndjson", sample_boxes())),
        ("labelbox", lambda d: write_labelbox_json(d / "a.json", sample_boxes())),
        ("createml", lambda d: write_createml(d / "a.json", sample_boxes())),
        (
            "labelme",
            lambda d: write_labelme(d, d, {"shapes-001.jpg": sample_boxes()["shapes-001.jpg"]}),
        ),
        ("yolo", lambda d: write_yolo(d, sample_boxes(), dict.fromkeys(sample_boxes(), "train"))),
    ],
)
def test_auto_detects_the_format(tmp_path, capsys, fmt, make):
    from transforms.readers.detect import detect_format

    make(tmp_path)
    assert detect_format(str(tmp_path)) == fmt


def test_auto_detects_voc_and_csv_and_says_what_it_chose(tmp_path, capsys):
    from transforms.readers.detect import detect_format

    assert detect_format(f"{SAMPLE}/annotations") == "voc"
    assert detect_format(f"{SAMPLE}/labels.csv") == "csv"
    output = create(
        tmp_path, "--format", "auto", "--annotations", f"{SAMPLE}/labels.csv", "--images", IMAGES
    )
    assert "detected format csv" in capsys.readouterr().err
    assert_matches_sample(output)


def test_class_map_renames_merges_and_drops(tmp_path):
    class_map = tmp_path / "classes.yaml"
    class_map.write_text("circle: round thing\nsquare: angular\ntriangle: angular\n")
    output = create(
        tmp_path,
        "--format",
        "voc",
        "--annotations",
        f"{SAMPLE}/annotations",
        "--images",
        IMAGES,
        "--class-map",
        class_map,
    )
    assert output["label_map"] == {"angular": 1, "round thing": 2}
    texts = {
        t.decode() for e in examples_by_name(output).values() for t in e["image/object/class/text"]
    }
    assert texts == {"angular", "round thing"}

    class_map.write_text("circle: null\n")
    write_coco(tmp_path / "c.json", sample_boxes())
    assert (
        run_create(
            "--format",
            "coco",
            "--annotations",
            tmp_path / "c.json",
            "--images",
            IMAGES,
            "--class-map",
            class_map,
            "--output",
            tmp_path / "out2",
        )
        == 0
    )
    output = read_output(tmp_path / "out2")
    circles = sum(1 for e in sample_boxes().values() for b in e["boxes"] if b[0] == "circle")
    objects = output["manifest"]["objects"]
    assert objects["dropped"] == circles and objects["dropped_by_class"] == {"circle": circles}
    assert objects["read"] == objects["written"] + objects["rejected"] + objects["dropped"]
    assert output["label_map"] == {"square": 7, "triangle": 11}  # COCO ids survive the drop.
    assert all(output["manifest"]["accounting"].values())


def test_voc_image_sets_give_source_splits_and_unlisted_images_are_rejected(tmp_path):
    import shutil

    shutil.copytree(f"{SAMPLE}/annotations", tmp_path / "Annotations")
    stems = sorted(p.stem for p in (tmp_path / "Annotations").iterdir())
    (tmp_path / "ImageSets" / "Main").mkdir(parents=True)
    (tmp_path / "ImageSets" / "Main" / "train.txt").write_text("\n".join(stems[:16]) + "\n")
    (tmp_path / "ImageSets" / "Main" / "val.txt").write_text("\n".join(stems[16:23]) + "\n")
    output = create(
        tmp_path,
        "--format",
        "voc",
        "--annotations",
        tmp_path / "Annotations",
        "--images",
        IMAGES,
        "--splits",
        "source",
    )
    ids = {name: sorted(e["image/filename"].decode() for e in examples)
           for name, examples in output["splits"].items()}  # fmt: skip
    names = {stem: next(n for n in sample_boxes() if n.startswith(stem)) for stem in stems}
    assert ids == {
        "train": sorted(names[s] for s in stems[:16]),
        "val": sorted(names[s] for s in stems[16:23]),
    }
    (error,) = output["errors"]
    assert (error["image"], error["stage"]) == (names[stems[23]], "image")
    assert "no split" in error["reason"]
    assert all(output["manifest"]["accounting"].values())


def test_splits_source_needs_a_source_that_has_splits(tmp_path, capsys):
    assert (
        run_create(
            "--format",
            "csv",
            "--annotations",
            f"{SAMPLE}/labels.csv",
            "--images",
            IMAGES,
            "--splits",
            "source",
            "--output",
            tmp_path / "o",
        )  # fmt: skip
        == 2
    )
    assert "carry no splits" in capsys.readouterr().err


def test_keep_empty_classes_keeps_declared_classes_without_objects(tmp_path):
    write_yolo(tmp_path / "ds", sample_boxes(), dict.fromkeys(sample_boxes(), "train"))
    data = tmp_path / "ds" / "data.yaml"
    data.write_text(data.read_text().replace("2: triangle", "2: triangle\n  3: hexagon"))
    output = create(tmp_path, "--format", "yolo", "--annotations", data, "--keep-empty-classes")
    assert output["label_map"] == {"circle": 1, "square": 2, "triangle": 3, "hexagon": 4}
    assert output["manifest"]["classes"]["hexagon"] == {"id": 4, "objects": 0}


def test_annotations_of_another_format_are_named_in_the_refusal(tmp_path, capsys):
    """A folder of VOC XML given as COCO is refused in one line that says what it holds."""
    code = run_create(
        "--format", "coco", "--annotations", f"{SAMPLE}/annotations",
        "--images", f"{SAMPLE}/images", "--output", tmp_path / "out",
    )  # fmt: skip
    assert code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.endswith("; it holds voc annotations: --format voc?"), line
    assert not (tmp_path / "out").exists()
