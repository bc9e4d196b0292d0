"""`odrecords create` end to end on the bundled sample and on deliberately broken inputs,
read back with TensorFlow as the Object Detection API reads it."""

import csv
import hashlib
import io
import math
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from conftest import SAMPLE, build_folder, example_boxes, read_output, run_create
from PIL import Image

from transforms.choices import (
    EXAMPLE_BYTES,
    PARALLEL_SHARD_IMAGES,
    PARALLEL_SHARDS,
    POOL_MIN_IMAGES,
    TARGET_SHARD_BYTES,
)
from transforms.readers import FORMAT_NAMES
from transforms.shard_count import shards_for

SAMPLE_VOC = [
    "--format",
    "voc",
    "--annotations",
    f"{SAMPLE}/annotations",
    "--images",
    f"{SAMPLE}/images",
]
SAMPLE_ARGS = [
    "--images",
    f"{SAMPLE}/images",
    "--splits",
    "train=0.75,valid=0.25",
    "--num-shards",
    "2",
]


def csv_boxes(path):
    """{filename: sorted [(class, xmin/w, ymin/h, xmax/w, ymax/h)]} from a TF OD CSV."""
    boxes = {}
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            entry = boxes.setdefault(row["filename"], [])
            if row["class"]:
                w, h = float(row["width"]), float(row["height"])
                entry.append(
                    (
                        row["class"],
                        float(row["xmin"]) / w,
                        float(row["ymin"]) / h,
                        float(row["xmax"]) / w,
                        float(row["ymax"]) / h,
                    )
                )
    return {name: sorted(entries) for name, entries in boxes.items()}


def assert_boxes_equal(actual, expected):
    assert len(actual) == len(expected)
    for got, want in zip(actual, expected, strict=True):
        assert got[0] == want[0]
        assert np.allclose(got[1:], want[1:], atol=1e-6)


@pytest.fixture(scope="module")
def sample_outputs(tmp_path_factory):
    outputs = {}
    for fmt, annotations in [("voc", f"{SAMPLE}/annotations"), ("csv", f"{SAMPLE}/labels.csv")]:
        out = tmp_path_factory.mktemp(fmt)
        assert (
            run_create("--format", fmt, "--annotations", annotations, "--output", out, *SAMPLE_ARGS)
            == 0
        )
        outputs[fmt] = read_output(out)
        outputs[fmt]["dir"] = out
    return outputs


@pytest.mark.parametrize("fmt", ["voc", "csv"])
def test_sample_examples_match_the_annotations(sample_outputs, fmt):
    out = sample_outputs[fmt]
    expected = csv_boxes(f"{SAMPLE}/labels.csv")
    examples = [e for split in out["splits"].values() for e in split]
    assert len(examples) == len(expected) == 24
    assert sorted(e["image/filename"].decode() for e in examples) == sorted(expected)
    label_map = out["label_map"]
    assert label_map == {"circle": 1, "square": 2, "triangle": 3}
    for example in examples:
        name = example["image/filename"].decode()
        assert example["image/filename"].decode() == name
        assert_boxes_equal(example_boxes(example), expected[name])
        texts = [t.decode() for t in example["image/object/class/text"]]
        assert example["image/object/class/label"] == [label_map[t] for t in texts]
        with open(f"{SAMPLE}/images/{name}", "rb") as handle:
            original = handle.read()
        assert example["image/encoded"] == original  # Not re-encoded.
        assert example["image/key/sha256"].decode() == hashlib.sha256(original).hexdigest()
        assert example["image/format"] == (b"png" if name.endswith(".png") else b"jpeg")
        pixels = tf.io.decode_image(example["image/encoded"], channels=3)
        assert pixels.shape == (example["image/height"], example["image/width"], 3)
        assert len(example["image/object/difficult"]) == len(texts)
        assert len(example["image/object/truncated"]) == len(texts)
        assert len(example["image/object/view"]) == len(texts)


def test_sample_manifest_counts_and_shards(sample_outputs):
    out = sample_outputs["voc"]
    manifest = out["manifest"]
    assert set(manifest["splits"]) == {"train", "valid"}
    for name, split in manifest["splits"].items():
        assert split["files"] == [f"{name}/{name}.tfrecord-0000{n}-of-00002" for n in range(2)]
        assert split["examples"] == len(out["splits"][name])
        assert split["objects"] == sum(
            len(e["image/object/bbox/xmin"]) for e in out["splits"][name]
        )
    total_objects = sum(len(v) for v in csv_boxes(f"{SAMPLE}/labels.csv").values())
    assert manifest["objects"] == {
        "read": total_objects,
        "written": total_objects,
        "rejected": 0,
        "dropped": 0,
        "dropped_by_class": {},
        "clipped": 0,
        "copies_in_other_splits": 0,
    }
    assert manifest["images"]["referenced"] == manifest["images"]["written"] == 24
    assert sum(c["objects"] for c in manifest["classes"].values()) == total_objects
    assert manifest["errors"]["count"] == 0 and out["errors"] == []
    assert all(manifest["accounting"].values())
    card = (out["dir"] / "README.md").read_text()
    assert f'input_path: "{out["dir"]}/train/train.tfrecord-*"' in card
    assert f'label_map_path: "{out["dir"]}/label_map.pbtxt"' in card


def test_voc_and_csv_give_the_same_examples_in_the_same_splits(sample_outputs):
    def by_split(out):
        return {
            name: {e["image/filename"]: e for e in examples}
            for name, examples in out["splits"].items()
        }

    voc, csv_ = by_split(sample_outputs["voc"]), by_split(sample_outputs["csv"])
    assert {k: sorted(v) for k, v in voc.items()} == {k: sorted(v) for k, v in csv_.items()}
    for split in voc:
        for key in voc[split]:
            assert example_boxes(voc[split][key]) == example_boxes(csv_[split][key])


def test_same_input_gives_identical_shards_with_one_worker_or_several(sample_outputs, tmp_path):
    """Two worker threads (shards written in parallel) must write the same bytes as one."""
    args = ["--format", "voc", "--annotations", f"{SAMPLE}/annotations", *SAMPLE_ARGS]
    threads = ["--direct_num_workers=2", "--direct_running_mode=multi_threading"]
    assert run_create(*args, "--output", tmp_path, *threads) == 0
    first = sample_outputs["voc"]["dir"]
    for entry in sample_outputs["voc"]["manifest"]["splits"].values():
        for relative in entry["files"]:
            assert (first / relative).read_bytes() == (tmp_path / relative).read_bytes()


def jpeg(width=64, height=48, color=(200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, "JPEG")
    return buffer.getvalue()


def voc(filename, *objects, size=(64, 48)):
    parts = [
        f"<annotation><filename>{filename}</filename>"
        f"<size><width>{size[0]}</width><height>{size[1]}</height></size>"
    ]
    for name, corners in objects:
        xmin, ymin, xmax, ymax = corners
        parts.append(
            f"<object><name>{name}</name><bndbox><xmin>{xmin}</xmin><ymin>{ymin}</ymin>"
            f"<xmax>{xmax}</xmax><ymax>{ymax}</ymax></bndbox></object>"
        )
    return "".join(parts) + "</annotation>"


@pytest.fixture(scope="module")
def broken_dataset(tmp_path_factory):
    """A dataset with one instance of every bad-input rule, converted once."""
    root = tmp_path_factory.mktemp("broken")
    images, annotations = root / "images", root / "annotations"
    images.mkdir()
    annotations.mkdir()
    (root / "outside.jpg").write_bytes(jpeg())
    good = jpeg()
    files = {
        "good.jpg": good,
        "negative.jpg": jpeg(color=(0, 0, 255)),
        "truncated.jpg": good[: len(good) // 2],
        "empty.jpg": b"",
        "text.jpg": b"just text",
        "scan.tif": None,
        "bomb.png": None,
    }
    tiff = io.BytesIO()
    Image.new("RGB", (64, 48), (1, 2, 3)).save(tiff, "TIFF")
    files["scan.tif"] = tiff.getvalue()
    bomb = io.BytesIO()
    Image.new("L", (4000, 4000)).save(bomb, "PNG", optimize=True)
    files["bomb.png"] = bomb.getvalue()
    for name, data in files.items():
        (images / name).write_bytes(data)
    xml = {
        "good.xml": voc(
            "good.jpg",
            ("cat", (1, 1, 20, 20)),
            ("cat", (30, 10, 10, 20)),
            ("cat", (5, 5, 5, 9)),
            ("cat", (50, 40, 90, 60)),
            ("zebra", (1, 1, 9, 9)),
        ),
        "good-more.xml": voc("good.jpg", ("dog", (2, 2, 30, 30))),
        "negative.xml": voc("negative.jpg"),
        "truncated.xml": voc("truncated.jpg", ("cat", (1, 1, 5, 5))),
        "empty.xml": voc("empty.jpg", ("cat", (1, 1, 5, 5))),
        "text.xml": voc("text.jpg", ("cat", (1, 1, 5, 5))),
        "missing.xml": voc("missing.jpg", ("cat", (1, 1, 5, 5)), ("dog", (1, 1, 5, 5))),
        "escape.xml": voc("../outside.jpg", ("cat", (1, 1, 5, 5))),
        "scan.xml": voc("scan.tif", ("dog", (1, 1, 5, 5))),
        "bomb.xml": voc("bomb.png", ("cat", (1, 1, 5, 5))),
        "malformed.xml": "<annotation><filename>good.jpg",
    }
    for name, text in xml.items():
        (annotations / name).write_text(text)
    (root / "labels.pbtxt").write_text("item { name: 'cat' id: 1 }\nitem: { id: 2 name: \"dog\" }")
    out = root / "out"
    code = run_create(
        "--format",
        "voc",
        "--annotations",
        annotations,
        "--images",
        images,
        "--output",
        out,
        "--label-map",
        root / "labels.pbtxt",
        "--max-image-pixels",
        "1000000",
    )
    assert code == 0
    return read_output(out)


def errors_by(output, **fields):
    return [e for e in output["errors"] if all(fields[k] in e[k] for k in fields)]


@pytest.mark.parametrize(
    "image, stage, reason",
    [
        ("truncated.jpg", "image", "cannot decode"),
        ("empty.jpg", "image", "image file is empty"),
        ("text.jpg", "image", "TensorFlow cannot decode the image: Unknown image"),
        ("missing.jpg", "image", "image file not found"),
        ("bomb.png", "image", "pixels"),
        ("../outside.jpg", "read", "outside the images root"),
        ("good.jpg", "box", "inverted"),
        ("good.jpg", "box", "empty"),
        ("good.jpg", "box", "class 'zebra' is not in the label map"),
    ],
)
def test_each_bad_input_becomes_one_error_record(broken_dataset, image, stage, reason):
    matches = [
        e
        for e in broken_dataset["errors"]
        if e["image"] == image and e["stage"] == stage and reason in e["reason"]
    ]
    assert len(matches) == 1, broken_dataset["errors"]
    assert matches[0]["source"].endswith(".xml") or "#object[" in matches[0]["source"]


def test_malformed_xml_is_an_error_without_an_image(broken_dataset):
    (error,) = [e for e in broken_dataset["errors"] if e["source"].endswith("malformed.xml")]
    assert (error["image"], error["stage"]) == (None, "read")


def test_broken_dataset_keeps_every_usable_image_and_box(broken_dataset):
    examples = {e["image/filename"].decode(): e for e in broken_dataset["splits"]["train"]}
    assert sorted(examples) == ["good.jpg", "negative.jpg", "scan.tif"]
    good = examples["good.jpg"]
    # Two XML files name good.jpg: one example with the boxes of both; the box reaching
    # past the 64x48 image is clipped.
    assert_boxes_equal(
        example_boxes(good),
        sorted(
            [
                ("cat", 1 / 64, 1 / 48, 20 / 64, 20 / 48),
                ("cat", 50 / 64, 40 / 48, 1.0, 1.0),
                ("dog", 2 / 64, 2 / 48, 30 / 64, 30 / 48),
            ]
        ),
    )
    assert examples["negative.jpg"]["image/object/bbox/xmin"] == []
    scan = examples["scan.tif"]
    assert scan["image/format"] == b"png"
    assert tf.io.decode_image(scan["image/encoded"], channels=3).shape == (48, 64, 3)


def test_broken_dataset_accounting_adds_up(broken_dataset):
    manifest = broken_dataset["manifest"]
    folder = broken_dataset["dir"].parent / "annotations"
    merged = f"good.jpg ({folder}/good-more.xml, {folder}/good.xml)"
    images, objects = manifest["images"], manifest["objects"]
    # good, negative, truncated, empty, text, missing, scan, bomb (outside is rejected on read).
    assert images == {
        "referenced": 8,
        "written": 3,
        "rejected": 5,
        "converted": {"tiff": 1},
        "size_differs_from_annotation": 0,
        "merged_from_several_files": {"count": 1, "first": [merged]},
        "in_several_splits": {"count": 0, "first": []},
        "copies_in_other_splits": 0,
        "source_ids": {"from_source": 0, "from_name": 8, "reassigned": {"count": 0, "first": []}},
    }
    # good: 6 boxes, truncated/empty/text/bomb/escape: 1 each, missing: 2, scan: 1.
    assert objects == {
        "read": 14,
        "written": 4,
        "rejected": 10,
        "dropped": 0,
        "dropped_by_class": {},
        "clipped": 1,
        "copies_in_other_splits": 0,
    }
    assert manifest["errors"]["count"] == len(broken_dataset["errors"]) == 10
    assert sum(e["objects"] for e in broken_dataset["errors"]) == 10
    assert all(manifest["accounting"].values())
    assert broken_dataset["label_map"] == {"cat": 1, "dog": 2}
    assert manifest["classes"] == {"cat": {"id": 1, "objects": 2}, "dog": {"id": 2, "objects": 2}}


def test_rerun_into_the_same_folder_replaces_the_old_shards(tmp_path, capsys):
    args = [
        *SAMPLE_VOC,
        "--output",
        tmp_path,
    ]
    assert run_create(*args, "--num-shards", "3") == 0
    assert run_create(*args, "--num-shards", "2", "--splits", "a=0.5,b=0.5") == 0
    found = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.tfrecord-*"))
    shards = [f"{s}/{s}.tfrecord-0000{n}-of-00002" for s in "ab" for n in range(2)]
    assert found == sorted(shards + [f"index/{shard}.jsonl" for shard in shards])
    assert not (tmp_path / ".parts").exists()
    printed = capsys.readouterr().out
    assert "a: " in printed and "images: 24 referenced = 24 written + 0 rejected" in printed


@pytest.mark.parametrize(
    "args, message",
    [
        (["--format", "yaml"], "unknown format 'yaml'"),
        (["--annotations", "/nonexistent/dir"], "no annotation files match /nonexistent/dir"),
        (["--images", "/nonexistent/images"], "images folder /nonexistent/images does not exist"),
        (["--label-map", "/nonexistent/l.pbtxt"], "label map /nonexistent/l.pbtxt"),
        (["--splits", "train=0.9"], "--splits: split fractions sum to 0.9, not 1"),
        (["--num-shards", "0"], "--num-shards must be a whole number >= 1, not 0"),
        (["--num-shards", "many"], "invalid int value: 'many'"),
        (["--num-shard", "4"], "unknown option --num-shard; did you mean --num-shards?"),
        (["--runer", "FnApiRunner"], "unknown option --runer; did you mean --runner?"),
    ],
)
def test_unusable_arguments_exit_2_with_one_line(tmp_path, capsys, args, message):
    base = {
        "--format": "voc",
        "--annotations": f"{SAMPLE}/annotations",
        "--images": f"{SAMPLE}/images",
        "--output": str(tmp_path / "out"),
    }
    base.update(dict(zip(args[::2], args[1::2], strict=True)))
    assert run_create(*[x for pair in base.items() for x in pair]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err


def test_unreadable_label_map_and_foreign_output_folder_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.pbtxt"
    bad.write_text("item { name: 'a' id: 1 } item { name: 'b' id: 1 }")

    assert run_create(*SAMPLE_VOC, "--output", tmp_path / "o", "--label-map", bad) == 2
    assert "id 1 is given to two classes" in capsys.readouterr().err
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "thesis.tex").write_text("precious")
    assert run_create(*SAMPLE_VOC, "--output", tmp_path / "foreign") == 2
    assert "is not empty and holds no odrecords output" in capsys.readouterr().err
    assert (tmp_path / "foreign" / "thesis.tex").read_text() == "precious"


def write_csv(path, rows) -> list[list[str]]:
    """Writes the sample CSV's header and `rows`; returns the rows with their line numbers."""
    with open(f"{SAMPLE}/labels.csv", newline="", encoding="utf-8") as handle:
        header = next(csv.reader(handle))
    with open(path, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([header, *rows])
    return [[str(line), *row] for line, row in enumerate(rows, start=2)]


def sample_rows() -> list[list[str]]:
    with open(f"{SAMPLE}/labels.csv", newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))[1:]


def expand_lines(ranges: str) -> set[int]:
    """`2,3,5-9` → {2, 3, 5, 6, 7, 8, 9}."""
    lines = set()
    for part in ranges.split(","):
        first, _, last = part.partition("-")
        lines.update(range(int(first), int(last or first) + 1))
    return lines


def test_no_image_found_exits_1_and_names_the_images_root(tmp_path, capsys):
    images = tmp_path / "elsewhere"
    images.mkdir()
    out = tmp_path / "out"
    args = ["--format", "csv", "--annotations", f"{SAMPLE}/labels.csv", "--images", images]
    assert run_create(*args, "--output", out) == 1
    referenced = len(csv_boxes(f"{SAMPLE}/labels.csv"))
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [
        f"odrecords create: error: no example was written: {referenced} of {referenced} images "
        f"were rejected (most: image file not found); images were looked for under {images}: "
        f"is --images right?; --images {SAMPLE}/images? (the first image not found is there)"
    ]
    assert not (out / "manifest.json").exists()  # Nothing published, the report kept aside:
    output = read_output(build_folder(out))
    assert output["manifest"]["images"]["rejected"] == len(output["errors"]) == referenced
    assert all(examples == [] for examples in output["splits"].values())
    # Each error names the file looked at, and the first ones are printed with it.
    assert [e["path"] for e in output["errors"]] == [
        str(images / e["image"]) for e in output["errors"]
    ]
    printed = [line for line in captured.out.splitlines() if line.startswith("error:")]
    assert printed == [
        f"error: {e['source']}: image file not found (looked at {images / e['image']})"
        for e in output["errors"][:10]
    ]


@pytest.mark.parametrize("annotations", ["annotations", "annotations/*.xml", "."])
def test_images_in_a_folder_beside_the_annotations_are_pointed_at(annotations, tmp_path, capsys):
    """A dataset root, or its annotations folder, given without --images: the images are
    looked for beside the annotation files, and the message names the folder that has them."""
    args = ["--format", "auto", "--annotations", os.path.join(SAMPLE, annotations)]
    assert run_create(*args, "--output", tmp_path / "out") == 1
    (line,) = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert line.endswith(f"; --images {SAMPLE}/images? (the first image not found is there)")


def test_annotations_without_images_exit_1(tmp_path, capsys):
    write_csv(tmp_path / "empty.csv", [])
    code = run_create("--format", "csv", "--annotations", tmp_path / "empty.csv",
                      "--output", tmp_path / "out")  # fmt: skip
    assert code == 1
    assert (
        "odrecords create: error: no example was written: the annotations name no image"
        in capsys.readouterr().err.splitlines()
    )


def test_most_images_missing_warns_and_each_missing_image_is_one_error(tmp_path, capsys):
    missing = [[f"gone-{n:02d}.jpg", "64", "48", "square", "1", "1", "9", "9"] for n in range(30)]
    # gone-00.jpg has 40 rows: one among the others, 39 at the end.
    rows = write_csv(tmp_path / "rows.csv", sample_rows() + missing + missing[:1] * 39)
    out = tmp_path / "out"
    args = ["--format", "csv", "--annotations", tmp_path / "rows.csv", "--output", out]
    assert run_create(*args, "--images", f"{SAMPLE}/images") == 0
    assert (
        f"warning: 30 of 54 images were rejected (most: image file not found); images were "
        f"looked for under {SAMPLE}/images: is --images right?"
    ) in capsys.readouterr().err.splitlines()
    output = read_output(out)
    assert len(output["splits"]["train"]) == 24
    assert sorted(e["image"] for e in output["errors"]) == [row[0] for row in missing]
    for error in output["errors"]:
        file, _, lines = error["source"].rpartition(":")
        assert file == str(tmp_path / "rows.csv")
        assert expand_lines(lines) == {int(r[0]) for r in rows if r[1] == error["image"]}
        assert error["objects"] == len(expand_lines(lines))


def test_a_class_the_label_map_lacks_is_warned_about_and_gated(tmp_path, capsys):
    """Every triangle is rejected (a given label map without the class): a third of the
    objects, but all of one class, which the command says and --max-error-rate acts on."""
    (tmp_path / "two.pbtxt").write_text(
        "item { name: 'circle' id: 1 } item { name: 'square' id: 2 }"
    )
    args = [*SAMPLE_VOC, "--label-map", tmp_path / "two.pbtxt", "--num-shards", "1"]
    assert run_create(*args, "--output", tmp_path / "out") == 0
    output = read_output(tmp_path / "out")
    boxes = csv_boxes(f"{SAMPLE}/labels.csv").values()
    triangles = sum(box[0] == "triangle" for image in boxes for box in image)
    lost = output["manifest"]["errors"]["by_class"]
    assert lost == {
        "triangle": {
            "objects": triangles,
            "by_reason": {"box: class … is not in the label map": triangles},
        }
    }
    objects = output["manifest"]["objects"]
    assert objects["rejected"] == triangles and 2 * triangles < objects["read"]
    assert [line for line in capsys.readouterr().err.splitlines() if "warning" in line] == [
        f"warning: class 'triangle': {triangles} of {triangles} objects were rejected "
        "(most: box: class … is not in the label map)"
    ]
    assert run_create(*args, "--output", tmp_path / "gated", "--max-error-rate", "0.5") == 1
    assert (
        "not published: 100.00% of the objects of class 'triangle' were rejected, more than "
        "--max-error-rate 0.5"
    ) in capsys.readouterr().err


def test_healthy_run_exits_0_without_warnings(tmp_path, capsys):
    assert run_create(*SAMPLE_VOC, "--output", tmp_path, "--num-shards", "1") == 0
    err = capsys.readouterr().err
    assert "warning" not in err and "error" not in err, err


def test_config_file_with_flag_overrides(tmp_path):
    config = tmp_path / "job.yaml"
    shutil.copytree(SAMPLE, tmp_path / "data")
    config.write_text(
        "format: csv\nannotations: data/labels.csv\nimages: data/images\n"
        "output: out\nsplits: {train: 0.5, test: 0.5}\nnum_shards: 4\n"
        "pipeline_options: {direct_num_workers: 1}\n"
    )
    assert run_create("--config", config, "--num-shards", "1") == 0
    manifest = read_output(tmp_path / "out")["manifest"]
    assert manifest["options"]["num_shards"] == 1
    assert manifest["inputs"]["annotations"] == str(tmp_path / "data" / "labels.csv")
    assert sum(s["examples"] for s in manifest["splits"].values()) == 24


def test_console_command_and_module_entry_point(tmp_path):
    command = os.path.join(os.path.dirname(sys.executable), "odrecords")
    usage = subprocess.run(
        [
            command,
            "create",
            "--format",
            "nope",
            "--annotations",
            "x",
            "--images",
            "y",
            "--output",
            "z",
        ],
        capture_output=True,
        text=True,
    )
    assert usage.returncode == 2
    assert (
        usage.stderr.strip().splitlines()[-1]
        == "odrecords create: error: unknown format 'nope'; choose one of "
        f"{', '.join(FORMAT_NAMES)}, auto"
    )
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipelines.create",
            "--format",
            "csv",
            "--annotations",
            f"{SAMPLE}/labels.csv",
            "--images",
            f"{SAMPLE}/images",
            "--output",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert read_output(tmp_path / "out")["manifest"]["images"]["written"] == 24
    assert os.path.exists(tmp_path / "out" / "train" / "train.tfrecord-00000-of-00001")


def test_shards_are_sized_from_each_split_by_default(tmp_path):
    out = tmp_path / "out"
    args = ["--format", "csv", "--annotations", f"{SAMPLE}/labels.csv"]
    assert run_create(*args, "--images", f"{SAMPLE}/images", "--output", out) == 0
    output = read_output(out)
    (split,) = output["manifest"]["splits"].values()
    assert output["manifest"]["options"]["num_shards"] is None
    assert split["num_shards"] == shards_for(split["examples"] + split["rejected"]) == 1
    assert split["files"] == ["train/train.tfrecord-00000-of-00001"]
    assert len(output["splits"]["train"]) == split["examples"] == 24  # Read back by TensorFlow.


@pytest.mark.parametrize("images", [0, 1, 35, 838, 1999, 2000, 7999, 8000, 10**5, 10**7])
def test_the_shard_count_rule(images):
    count = shards_for(images)
    assert count >= 1 and count >= shards_for(max(images - 1, 0))  # Never fewer for more.
    # Each shard about the target size or less, and more shards than that asks for only...
    assert images * EXAMPLE_BYTES / count <= TARGET_SHARD_BYTES
    # ...when a shard more would fall below it, or to keep the shard writer's processes busy.
    smaller = images * EXAMPLE_BYTES / (count - 1) if count > 1 else math.inf
    assert smaller > TARGET_SHARD_BYTES or images >= POOL_MIN_IMAGES
    if images >= POOL_MIN_IMAGES:
        assert count >= min(PARALLEL_SHARDS, POOL_MIN_IMAGES // PARALLEL_SHARD_IMAGES)
