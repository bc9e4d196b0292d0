"""odrecords' outputs read by the real clients: TF-Vision's decoders, parsers (training and
evaluation), config system and COCO evaluator, and the TF OD API's decoder with keypoints.

They need another TensorFlow and protobuf than odrecords pins, so they run in their own
virtualenv (`.ci/run` makes `.venv-tfvision`; `ODRECORDS_TFVISION_PYTHON` names another
one's Python) through `tests/tfvision_check.py`. Without that virtualenv the test skips,
except in CI (`CI` set), where it fails.
"""

from __future__ import annotations

import json
import os

import pytest
from conftest import SAMPLE, read_output, run_create
from format_writers import copy_images, sample_boxes, write_yolo
from services import REPO, run_json, virtualenv_python

CHECK = os.path.join(REPO, "tests", "tfvision_check.py")
KEYPOINTS = ["top", "left", "right"]
# COCO category ids with gaps, and a name label_map.csv must quote.
CATEGORIES = {"circle": 3, "square": 7, 'tri, "angle"': 11}
# Image ids beyond int32, as large datasets have them.
FIRST_IMAGE_ID = 5_000_000_000


def _python() -> str:
    return virtualenv_python("ODRECORDS_TFVISION_PYTHON", ".venv-tfvision", "TF-Vision")


def _run_check(*args: str, **env: str) -> dict:
    environment = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return run_json([_python(), CHECK, *args], env={**environment, **env}, cwd=REPO)


def _coco_split(path, names: list[str], first_id: int) -> dict[str, dict]:
    """A COCO file of sample images: masks for every object, keypoints for some circles
    (the others have none, as do all objects of some images), ids from `first_id`."""
    boxes = sample_boxes()
    document = {
        "images": [],
        "annotations": [],
        "categories": [
            {"id": number, "name": name, **({"keypoints": KEYPOINTS} if name == "circle" else {})}
            for name, number in CATEGORIES.items()
        ],
    }
    for number, name in enumerate(names, start=first_id):
        entry = boxes[name]
        document["images"].append(
            {"id": number, "file_name": name, "width": entry["width"], "height": entry["height"]}
        )
        for index, (label, xmin, ymin, xmax, ymax) in enumerate(entry["boxes"]):
            label = label if label != "triangle" else 'tri, "angle"'
            annotation = {
                "id": len(document["annotations"]) + 1,
                "image_id": number,
                "category_id": CATEGORIES[label],
                "bbox": [xmin, ymin, xmax - xmin, ymax - ymin],
                "area": (xmax - xmin) * (ymax - ymin),
                "iscrowd": 0,
                "segmentation": [[xmin, ymin, xmax, ymin, xmax, ymax, xmin, ymax]],
            }
            if label == "circle" and index % 2 == 0:
                middle = (xmin + xmax) / 2
                annotation["keypoints"] = [middle, ymin, 2, xmin, ymax, 1, xmax, ymax, 0]
            document["annotations"].append(annotation)
    path.write_text(json.dumps(document), encoding="utf-8")


@pytest.fixture(scope="module")
def outputs(tmp_path_factory) -> dict[str, str]:
    """VOC (hash splits), COCO with masks and keypoints (source splits) and YOLO."""
    root = tmp_path_factory.mktemp("tfvision")
    names = sorted(sample_boxes())
    made = {name: str(root / name) for name in ("voc", "coco", "yolo")}
    assert run_create("--format", "voc", "--annotations", f"{SAMPLE}/annotations",
                      "--images", f"{SAMPLE}/images", "--output", made["voc"],
                      "--splits", "train=0.6,valid=0.4", "--num-shards", "2") == 0  # fmt: skip
    coco = root / "coco-source"
    copy_images(str(coco), names)
    _coco_split(coco / "instances_train.json", names[:16], FIRST_IMAGE_ID)
    _coco_split(coco / "instances_val.json", names[16:], FIRST_IMAGE_ID + 100)
    assert run_create("--format", "coco", "--annotations", coco, "--output", made["coco"],
                      "--splits", "source", "--include-masks", "--include-keypoints",
                      "--num-shards", "2") == 0  # fmt: skip
    splits = {name: ("val" if number % 4 == 0 else "train") for number, name in enumerate(names)}
    write_yolo(str(root / "yolo-source"), sample_boxes(), splits)
    assert run_create("--format", "yolo", "--annotations", root / "yolo-source",
                      "--output", made["yolo"], "--splits", "source") == 0  # fmt: skip
    return made


@pytest.fixture(scope="module")
def tf_vision(outputs) -> dict:
    return _run_check("tf-vision", *outputs.values())


def _source_ids(output) -> dict[str, dict[str, str]]:
    """{split: {source_id: filename}} as odrecords wrote them."""
    return {
        split: {e["image/source_id"].decode(): e["image/filename"].decode() for e in examples}
        for split, examples in output["splits"].items()
    }


@pytest.mark.parametrize("name", ["voc", "coco", "yolo"])
def test_tf_vision_decodes_parses_and_evaluates_every_record(outputs, tf_vision, name):
    output = read_output(outputs[name])
    result = tf_vision[outputs[name]]
    ids = _source_ids(output)
    records = result["records"]
    assert len(records) == sum(len(examples) for examples in output["splits"].values())
    labels = set(output["label_map"].values())
    for record in records:
        # Numeric, unique within its split, and read as the same int64 in both parsers'
        # evaluation mode, without `regenerate_source_id`.
        assert record["source_id"] in ids[record["split"]]
        number = int(record["source_id"])
        assert record["retinanet_eval_source_id"] == record["maskrcnn_eval_source_id"] == number
        assert record["retinanet_train_image"] == record["maskrcnn_train_image"] == [128, 128, 3]
        assert set(record["classes"]) <= labels
        # label_map.csv gives TF-Vision's label-map decoder the same ids from the class text.
        assert record["classes_from_text"] == record["classes"]
    for split, by_id in ids.items():
        assert len(by_id) == len(output["splits"][split])
    # The ground truth as predictions scores perfectly: no two images merged by their ids.
    assert result["ap"] == pytest.approx(1.0) and result["ap50"] == pytest.approx(1.0)
    masks = output["manifest"]["options"]["include_masks"]
    for split, generated in result["generated_annotations"].items():
        assert generated["image_ids"] == sorted(int(i) for i in ids[split])
        assert generated["annotations"] == output["manifest"]["splits"][split]["objects"]
        assert generated["with_masks"] == (generated["annotations"] if masks else 0)


@pytest.mark.parametrize("name", ["voc", "coco", "yolo"])
def test_card_lines_configure_tf_vision_experiments(outputs, tf_vision, name):
    output = read_output(outputs[name])
    manifest = output["manifest"]
    train, evaluate = "train", "valid" if name == "voc" else "val"
    files = lambda split: sorted(  # noqa: E731
        os.path.join(outputs[name], f) for f in manifest["splits"][split]["files"]
    )
    for experiment in tf_vision[outputs[name]]["experiments"].values():
        # TF-Vision one-hot encodes the label itself: the largest id + 1.
        assert experiment["num_classes"] == max(output["label_map"].values()) + 1
        assert experiment["annotation_file"] == ""
        assert experiment["train"] == files(train)
        assert experiment["validation"] == files(evaluate)


def test_coco_image_ids_are_the_source_ids(outputs, tf_vision):
    output = read_output(outputs["coco"])
    ids = _source_ids(output)
    names = sorted(sample_boxes())
    expected = {
        "train": {str(FIRST_IMAGE_ID + i): name for i, name in enumerate(names[:16])},
        "val": {str(FIRST_IMAGE_ID + 100 + i): name for i, name in enumerate(names[16:])},
    }
    assert ids == expected
    assert max(output["label_map"].values()) == 11  # Ids with gaps: num_classes is not 3.


def test_od_api_decoder_gives_every_box_its_keypoints(outputs):
    output = read_output(outputs["coco"])
    decoded = _run_check(
        "od-api",
        str(len(KEYPOINTS)),
        outputs["coco"],
        PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION="python",
    )[outputs["coco"]]
    examples = [e for examples in output["splits"].values() for e in examples]
    assert len(decoded) == len(examples)
    without = 0
    for record, example in zip(decoded, examples, strict=True):
        count = record["boxes"][0]
        assert record["source_id"] == example["image/source_id"].decode()
        assert record["classes"] == example["image/object/class/label"]
        assert record["keypoints"] == [count, len(KEYPOINTS), 2]
        assert record["visibilities"] == [count, len(KEYPOINTS)]
        assert record["masks"][0] == count
        without += record["visible"] == 0 and count > 0
    assert without  # Images whose objects have no keypoints were among them.


def test_missing_virtualenv_skips_or_fails_in_ci(monkeypatch, tmp_path):
    monkeypatch.setenv("ODRECORDS_TFVISION_PYTHON", str(tmp_path / "none" / "python"))
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception):
        _python()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception):
        _python()
