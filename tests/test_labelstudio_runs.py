"""Label Studio exports through the real commands: `odrecords create --format labelstudio`
on both export layouts, masks, hostile tasks, and `odrecords export --format labelstudio`
read back by create; every output read back with TensorFlow."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest
import tensorflow as tf
from conftest import SAMPLE, example_boxes, read_output, run_create
from format_writers import sample_boxes
from PIL import Image, ImageDraw
from test_create_boundaries import error_for, finished
from test_export import run_export
from test_labelstudio import ls_rle, rect, rgba, task

IMAGES = f"{SAMPLE}/images"


def regions(entry: dict) -> list[dict]:
    """The sample boxes of one image as Label Studio's rectanglelabels results."""
    width, height = entry["width"], entry["height"]
    return [
        rect(x0 / width * 100, y0 / height * 100, (x1 - x0) / width * 100,
             (y1 - y0) / height * 100, label, f"r{number}", (width, height))
        for number, (label, x0, y0, x1, y1) in enumerate(entry["boxes"], start=1)
    ]  # fmt: skip


def full_export(reference) -> list[dict]:
    """The sample as a full export: `reference(name)` is each task's data.image."""
    return [
        task(reference(name), regions(entry), task_id=number)
        for number, (name, entry) in enumerate(sorted(sample_boxes().items()), start=1)
    ]


def min_export(reference) -> list[dict]:
    """The sample as JSON-MIN records: region values with the sizes beside them."""
    records = []
    for number, (name, entry) in enumerate(sorted(sample_boxes().items()), start=1):
        record = {"image": reference(name), "id": number}
        found = [{**r["value"], "original_width": r["original_width"],
                  "original_height": r["original_height"]} for r in regions(entry)]  # fmt: skip
        if found:
            record["label"] = found
        records.append({**record, "annotator": 1, "annotation_id": 100 + number,
                        "created_at": "2024-05-02T09:14:03.518227Z",
                        "updated_at": "2024-05-02T09:14:03.518227Z", "lead_time": 3.5})  # fmt: skip
    return records


def by_name(output) -> dict[str, tuple]:
    """Each example's (image bytes, boxes rounded to float32's precision) by file name."""
    found = {}
    for examples in output["splits"].values():
        for example in examples:
            boxes = [(c, *np.round(v, 5).tolist()) for c, *v in example_boxes(example)]
            found[example["image/filename"].decode()] = (example["image/encoded"], boxes)
    return found


def assert_is_the_sample(output, name=lambda name: name) -> None:
    expected = sample_boxes()
    examples = by_name(output)
    assert sorted(examples) == sorted(name(n) for n in expected)
    for image, entry in expected.items():
        w, h = entry["width"], entry["height"]
        want = sorted((c, x0 / w, y0 / h, x1 / w, y1 / h) for c, x0, y0, x1, y1 in entry["boxes"])
        got = examples[name(image)][1]
        assert [g[0] for g in got] == [w_[0] for w_ in want], image
        assert np.allclose([g[1:] for g in got], [w_[1:] for w_ in want], atol=1e-5), image
    assert output["label_map"] == {"circle": 1, "square": 2, "triangle": 3}
    assert output["errors"] == []
    assert all(output["manifest"]["accounting"].values())


def create(tmp_path, name: str, *args) -> dict:
    out = tmp_path / name
    assert run_create(*args, "--output", out, "--num-shards", "1") == 0
    return read_output(out)


def test_full_export_of_uploads_finds_each_file_by_its_stored_name_first(tmp_path):
    images = tmp_path / "upload"
    images.mkdir()
    names = sorted(sample_boxes())
    # The first half under the names Label Studio stores uploads by; for one of them a decoy
    # with the name it was uploaded as, holding another image; the rest as uploaded.
    for number, name in enumerate(names):
        stored = f"{number:08x}-{name}" if number < len(names) // 2 else name
        shutil.copy(f"{IMAGES}/{name}", images / stored)
    shutil.copy(f"{IMAGES}/{names[2]}", images / names[1])
    tasks = full_export(lambda name: f"/data/upload/3/{names.index(name):08x}-{name}")
    (tmp_path / "export.json").write_text(json.dumps(tasks, indent=2))
    output = create(tmp_path, "out", "--format", "labelstudio", "--annotations",
                    tmp_path / "export.json", "--images", images)  # fmt: skip
    stored = {n: (f"{i:08x}-{n}" if i < len(names) // 2 else n) for i, n in enumerate(names)}
    assert_is_the_sample(output, name=lambda name: stored[name])
    examples = by_name(output)
    assert examples[stored[names[1]]][0] == (images / stored[names[1]]).read_bytes()
    ids = {
        e["image/filename"].decode(): e["image/source_id"].decode()
        for split in output["splits"].values()
        for e in split
    }
    assert ids == {stored[n]: str(number) for number, n in enumerate(names, start=1)}


def test_json_min_with_local_files_by_auto_detection(tmp_path, capsys):
    records = min_export(lambda name: f"/data/local-files/?d=images/{quote(name)}")
    (tmp_path / "min.json").write_text(json.dumps(records))
    output = create(tmp_path, "out", "--format", "auto", "--annotations", tmp_path / "min.json",
                    "--images", SAMPLE)  # fmt: skip
    assert "detected format labelstudio" in capsys.readouterr().err
    assert_is_the_sample(output, name=lambda name: f"images/{name}")


def mask_arrays(output) -> list[tuple[str, np.ndarray]]:
    """(class, mask) of every object, decoded from `image/object/mask`'s PNGs."""
    found = []
    for split in output["manifest"]["splits"].values():
        paths = [str(output["dir"] / f) for f in split["files"]]
        for record in tf.data.TFRecordDataset(paths):
            features = {
                "image/object/mask": tf.io.VarLenFeature(tf.string),
                "image/object/class/text": tf.io.VarLenFeature(tf.string),
            }
            parsed = tf.io.parse_single_example(record, features)
            texts = tf.sparse.to_dense(parsed["image/object/class/text"]).numpy()
            masks = tf.sparse.to_dense(parsed["image/object/mask"]).numpy()
            for text, png in zip(texts, masks, strict=True):
                found.append((text.decode(), np.asarray(Image.open(io.BytesIO(png)))))
    return found


def test_polygons_brushes_and_rotated_boxes_with_masks(tmp_path):
    Image.new("RGB", (40, 30), (90, 120, 150)).save(tmp_path / "a.jpg")
    brush = np.zeros((30, 40), dtype=np.uint8)
    brush[3:9, 25:38] = 1
    polygon = {
        "id": "p",
        "type": "polygonlabels",
        "original_width": 40,
        "original_height": 30,
        "value": {"points": [[10, 10], [50, 20], [30, 60]], "polygonlabels": ["leaf"]},
    }
    painted = {
        "id": "b",
        "type": "brushlabels",
        "original_width": 40,
        "original_height": 30,
        "value": {"format": "rle", "rle": ls_rle(rgba(brush)), "brushlabels": ["spot"]},
    }
    turned = rect(50, 50, 25, 10, "box", "t", (40, 30), rotation=90)
    (tmp_path / "e.json").write_text(json.dumps([task("a.jpg", [polygon, painted, turned])]))
    output = create(tmp_path, "out", "--format", "labelstudio", "--annotations",
                    tmp_path / "e.json", "--include-masks")  # fmt: skip
    assert output["errors"] == []
    (example,) = output["splits"]["train"]
    boxes = {c: np.round(v, 5).tolist() for c, *v in example_boxes(example)}
    assert boxes["leaf"] == pytest.approx([0.1, 0.1, 0.5, 0.6])
    assert boxes["spot"] == pytest.approx([25 / 40, 3 / 30, 38 / 40, 9 / 30])
    # 10 x 3 px from (20, 15) turned 90 degrees clockwise: x from 17 to 20, y from 15 to 25.
    assert boxes["box"] == pytest.approx([17 / 40, 15 / 30, 20 / 40, 25 / 30], abs=1e-5)
    masks = dict(mask_arrays(output))
    assert np.array_equal(masks["spot"], brush)
    canvas = Image.new("L", (40, 30), 0)
    ImageDraw.Draw(canvas).polygon([(4, 3), (20, 6), (12, 18)], fill=1, outline=1)
    assert np.array_equal(masks["leaf"], np.asarray(canvas))


def test_hostile_tasks_cost_what_they_hold_and_the_job_goes_on(tmp_path, capsys):
    (tmp_path / "images").mkdir()
    Image.new("RGB", (40, 30), (90, 120, 150)).save(tmp_path / "images" / "a.jpg")
    (tmp_path / "secret.jpg").write_bytes((tmp_path / "images" / "a.jpg").read_bytes())
    box = rect(10, 10, 20, 20, "cat", "r1", (40, 30))
    huge = {
        "id": "h",
        "type": "brushlabels",
        "original_width": 10**6,
        "original_height": 10**6,
        "value": {"format": "rle", "rle": [255] * 64, "brushlabels": ["cat"]},
    }
    bad = [rect(float("nan"), 1, 5, 5, rid="n"), rect(150, 10, 5, 5, rid="o"),
           rect(10, 10, -5, 5, rid="w"), huge]  # fmt: skip
    tasks = [
        task("https://example.com/photos/a.jpg?sig=1", [box, *bad], task_id=1),
        task("/data/local-files/?d=../secret.jpg", [box], task_id=2),
        task("/data/upload/3/%2E%2E", [box], task_id=3),
        task("../secret.jpg", [box, box], task_id=4),
        task("/data/local-files/?d=missing.jpg", [box], task_id=5),
    ]
    (tmp_path / "e.json").write_text(json.dumps(tasks))
    images = tmp_path / "images"
    create(tmp_path, "out", "--format", "labelstudio", "--annotations", tmp_path / "e.json",
           "--images", images)  # fmt: skip
    assert "nothing is downloaded" in capsys.readouterr().err
    result = finished(tmp_path / "out")
    assert result["manifest"]["objects"]["written"] == 1
    (example,) = result["splits"]["train"]
    assert example["image/filename"] == b"a.jpg"
    assert "is not a finite number" in error_for(result, "task[1]#result[2]")["reason"]
    assert "lies outside" in error_for(result, "task[1]#result[3]")["reason"]
    assert "negative width" in error_for(result, "task[1]#result[4]")["reason"]
    assert "more than 100000000 pixels" in error_for(result, "task[1]#result[5]")["reason"]
    for number, objects in ((2, 1), (3, 1), (4, 2), (5, 1)):
        error = error_for(result, f"task[{number}]")
        assert error["objects"] == objects and error["stage"] in ("read", "image"), error
    assert "outside the images root" in error_for(result, "task[2]")["reason"]


@pytest.fixture(scope="module")
def voc_records(tmp_path_factory):
    out = tmp_path_factory.mktemp("records")
    code = run_create(
        "--format", "voc", "--annotations", f"{SAMPLE}/annotations", "--images", IMAGES,
        "--output", out, "--splits", "train=0.75,val=0.25", "--num-shards", "2",
    )  # fmt: skip
    assert code == 0
    return out


def test_export_writes_tasks_label_studio_imports(voc_records, tmp_path):
    assert run_export("--input", voc_records, "--format", "labelstudio", "--output",
                      tmp_path / "ls") == 0  # fmt: skip
    expected = sample_boxes()
    seen = set()
    for split in ("train", "val"):
        tasks = json.loads((tmp_path / "ls" / "annotations" / f"{split}.json").read_text())
        for exported in tasks:
            reference = exported["data"]["image"]
            assert reference.startswith("/data/local-files/?d=images/")
            name = reference.rsplit("/", 1)[1]
            entry = expected[name]
            (annotation,) = exported["annotations"]
            assert annotation["was_cancelled"] is False
            got = []
            for result in annotation["result"]:
                assert (result["type"], result["from_name"], result["to_name"]) == (
                    "rectanglelabels", "label", "image"
                )  # fmt: skip
                assert (result["original_width"], result["original_height"]) == (
                    entry["width"], entry["height"]
                )  # fmt: skip
                v = result["value"]
                w, h = entry["width"] / 100, entry["height"] / 100
                got.append((v["rectanglelabels"][0], v["x"] * w, v["y"] * h,
                            (v["x"] + v["width"]) * w, (v["y"] + v["height"]) * h))  # fmt: skip
            want = sorted(entry["boxes"])
            assert [g[0] for g in sorted(got)] == [b[0] for b in want]
            assert np.allclose([g[1:] for g in sorted(got)], [b[1:] for b in want], atol=1e-3)
            written = (tmp_path / "ls" / "images" / name).read_bytes()
            assert written == Path(IMAGES, name).read_bytes()
            seen.add(name)
    assert seen == set(expected)


def test_create_export_create_gives_the_same_boxes_and_classes(voc_records, tmp_path):
    out = tmp_path / "ls"
    assert run_export("--input", voc_records, "--format", "labelstudio", "--output", out) == 0
    again = create(tmp_path, "again", "--format", "labelstudio", "--annotations",
                   out / "annotations", "--images", out, "--splits", "source")  # fmt: skip
    first = read_output(voc_records)
    assert set(again["splits"]) == {"train", "val"}
    assert again["label_map"] == first["label_map"]
    assert {n.split("/", 1)[1]: v for n, v in by_name(again).items()} == by_name(first)
    for split in ("train", "val"):
        assert sorted(e["image/filename"] for e in again["splits"][split]) == sorted(
            b"images/" + e["image/filename"] for e in first["splits"][split]
        )
