"""`odrecords inspect`: the summary, every check with its file and record index, the exit
code, JSON output and rendered pictures."""

import csv
import json
import os
from collections import Counter

import pytest
import tensorflow as tf
from conftest import RACCOON, SAMPLE, run_create
from PIL import Image, ImageDraw
from test_export import example, jpeg_bytes, write_records

from pipelines import inspect_records
from transforms.drawing import FONT
from transforms.export import render
from transforms.export.render import CAPTION, TILE
from transforms.tfrecord import frame


def run_inspect(*args) -> int:
    return inspect_records.main([str(arg) for arg in args])


@pytest.fixture(scope="module")
def sample_records(tmp_path_factory):
    out = tmp_path_factory.mktemp("records")
    assert run_create("--format", "voc", "--annotations", f"{SAMPLE}/annotations", "--output", out,
                      "--images", f"{SAMPLE}/images", "--num-shards", "2") == 0  # fmt: skip
    return out


def test_odrecords_output_is_clean_and_summarized(sample_records, capsys, tmp_path):
    label_map = sample_records / "label_map.pbtxt"
    code = run_inspect(f"{sample_records}/train/*", "--label-map", label_map,
                       "--render", tmp_path, "--limit", "20")  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "examples: 24" in printed and "no problems found" in printed
    assert "classes (names from the label map):" in printed
    sheets = sorted(p for p in os.listdir(tmp_path) if p.startswith("examples-"))
    assert sheets == ["examples-001.png", "examples-002.png"]  # 20 examples, 16 per sheet.
    # Each sheet is as large as what it holds: 4 x 4 tiles, then the 4 left in one row.
    assert Image.open(tmp_path / sheets[0]).size == (4 * TILE, 4 * (TILE + CAPTION))
    assert Image.open(tmp_path / sheets[1]).size == (4 * TILE, TILE + CAPTION)
    assert Image.open(tmp_path / "classes.png").format == "PNG"


def captions(sheet: Image.Image) -> list[bytes]:
    """The pixels of the strip under each tile of a sheet."""
    strips = []
    for top in range(TILE, sheet.height, TILE + CAPTION):
        for left in range(0, sheet.width, TILE):
            strips.append(sheet.crop((left, top, left + TILE, top + CAPTION)).tobytes())
    return strips


def test_tiles_are_named_and_a_sheet_is_as_large_as_what_it_holds(sample_records, tmp_path):
    assert run_inspect(f"{sample_records}/train/*", "--render", tmp_path, "--limit", "8") == 0
    sheet = Image.open(tmp_path / "examples-001.png").convert("L")
    assert sheet.size == (4 * TILE, 2 * (TILE + CAPTION))
    filenames = [
        tf.train.Example.FromString(data.numpy()).features.feature["image/filename"]
        for data in tf.data.TFRecordDataset(sorted(map(str, sample_records.glob("train/*"))))
    ]
    assert len({f.bytes_list.value[0] for f in filenames}) == len(filenames) >= 8
    strips = captions(sheet)
    # Every tile carries text under its image, and tiles of images of other names differ.
    assert all(max(strip) > 128 for strip in strips)
    assert len(set(strips)) == len(strips) == 8


def test_a_long_image_name_keeps_its_end():
    draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    name = "a-very-long-folder-name/" * 6 + "raccoon-194.jpg"
    fitted = render._fitted(draw, name, TILE)
    assert fitted.startswith("…") and fitted.endswith("raccoon-194.jpg")
    width = lambda text: draw.textlength(text, font=FONT)  # noqa: E731
    assert width(fitted) <= TILE < width(name)


def test_an_output_folder_is_read_as_its_shards(sample_records, capsys):
    assert run_inspect(sample_records, "--json") == 0
    summary = json.loads(capsys.readouterr().out)
    manifest = json.loads((sample_records / "manifest.json").read_text())
    shards = [
        str(sample_records / f) for split in manifest["splits"].values() for f in split["files"]
    ]
    assert summary["files"] == shards and summary["problems"] == []
    assert summary["examples"] == sum(1 for _ in tf.data.TFRecordDataset(shards)) > 0


def test_json_summary(sample_records, capsys):
    assert run_inspect(f"{sample_records}/train/*", "--json") == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["examples"] == 24 and summary["problems"] == []
    assert sum(summary["classes"].values()) == summary["objects"]
    assert summary["keys"]["image/encoded"] == {"bytes_list": 24}
    assert set(summary["image_formats"]) == {"jpeg", "png"}


def raccoon_csv_classes() -> tuple[int, Counter]:
    """The images and the objects per class of Dat Tran's test record, from its CSV."""
    with open(os.path.join(RACCOON, "data", "test_labels.csv"), newline="") as handle:
        rows = list(csv.DictReader(handle))
    return len({row["filename"] for row in rows}), Counter(row["class"] for row in rows)


@pytest.fixture(scope="module")
def raccoon_record():
    record = os.path.join(RACCOON, "data", "test.record")
    if not os.path.exists(record):
        pytest.skip("../shared/data/raccoon is not present")
    return record


def test_raccoon_tf1_record_is_readable(raccoon_record, capsys):
    assert run_inspect(raccoon_record) == 0
    printed = capsys.readouterr().out
    images, classes = raccoon_csv_classes()
    assert f"examples: {images}   objects: {classes.total()}" in printed
    assert f"{classes['raccoon']}  raccoon" in printed
    assert "labels: from class text" not in printed


def test_records_with_class_text_and_no_label_are_counted_and_checked(
    raccoon_record, tmp_path, capsys
):
    """Dat Tran's record without its labels is what TF Models' scripts write."""
    examples = [
        tf.train.Example.FromString(r.numpy()) for r in tf.data.TFRecordDataset(raccoon_record)
    ]
    for record in examples:
        del record.features.feature["image/object/class/label"]
    write_records(tmp_path / "text.tfrecord", [e.SerializeToString() for e in examples])
    images, classes = raccoon_csv_classes()

    assert run_inspect(tmp_path / "text.tfrecord", "--json") == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["examples"] == images and summary["objects"] == classes.total()
    assert summary["classes"] == dict(classes)
    assert summary["objects_labelled_by_text"] == classes.total()
    assert "image/object/class/label" not in summary["keys"] and summary["problems"] == []

    assert run_inspect(tmp_path / "text.tfrecord") == 0
    printed = capsys.readouterr().out
    assert f"labels: from class text for {classes.total()} objects" in printed
    assert "give --label-map to check it" in printed

    (tmp_path / "raccoon.pbtxt").write_text("item { name: 'raccoon' id: 1 display_name: 'R' }")
    assert run_inspect(tmp_path / "text.tfrecord", "--label-map", tmp_path / "raccoon.pbtxt") == 0
    printed = capsys.readouterr().out
    assert f"{classes['raccoon']}  R" in printed and "checked against the label map" in printed

    (tmp_path / "other.pbtxt").write_text("item { name: 'dog' id: 1 }")
    code = run_inspect(tmp_path / "text.tfrecord", "--label-map", tmp_path / "other.pbtxt",
                       "--json")  # fmt: skip
    assert code == 1
    problems = json.loads(capsys.readouterr().out)["problems"]
    assert [p["problem"] for p in problems] == [
        f"object {i + 1}: class text 'raccoon' is not in the label map"
        for e in examples
        for i in range(len(e.features.feature["image/object/bbox/xmin"].float_list.value))
    ]


def good(**changes) -> dict:
    base = {
        "image__encoded": jpeg_bytes(),
        "image__format": b"jpeg",
        "image__source_id": b"good",
        "image__height": 30,
        "image__width": 40,
        "image__object__bbox__xmin": [0.1],
        "image__object__bbox__ymin": [0.1],
        "image__object__bbox__xmax": [0.5],
        "image__object__bbox__ymax": [0.5],
        "image__object__class__label": [1],
        "image__object__class__text": [b"cat"],
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


BROKEN = [
    (good(), None),
    (good(image__source_id=b"good"), "duplicate image/source_id 'good'"),
    (good(image__source_id=b"b", image__object__class__label=[1, 1]), "object lists differ"),
    (good(image__source_id=b"c", image__object__bbox__xmax=[1.2]), "outside [0, 1]"),
    (good(image__source_id=b"d", image__object__bbox__xmin=[0.6]), "inverted"),
    (good(image__source_id=b"e", image__object__class__label=[0]), "label 0 is below 1"),
    (good(image__source_id=b"f", image__object__class__label=[5],
          image__object__class__text=[b"x"]),
     "label 5 and class text 'x' are not in the label map"),
    (good(image__source_id=b"g", image__object__class__label=[2]),
     "class text 'cat' is id 1 in the label map, but the label is 2"),
    (good(image__source_id=b"h", image__encoded=b"not an image"), "image does not decode"),
    (good(image__source_id=b"i", image__width=99), "the pixels are (40, 30)"),
    (good(image__source_id=b"j", image__height=None), "missing key image/height"),
    (good(image__source_id=b"k", image__height=[3.0]), "image/height is a float_list"),
    (good(image__source_id=b"l", image__object__class__label=None), None),
    (good(image__source_id=b"m", image__object__class__label=None,
          image__object__class__text=[b"zebra"]), "class text 'zebra' is not in the label map"),
    (good(image__source_id=b"n", image__object__class__label=None,
          image__object__class__text=None), "objects have neither image/object/class/label"),
    (good(image__source_id=b"o", image__object__class__label=[0],
          image__object__class__text=None), "label 0, which names no class"),
]  # fmt: skip


def test_every_problem_is_reported_with_file_and_record(tmp_path, capsys):
    (tmp_path / "labels.pbtxt").write_text("item { name: 'cat' id: 1 } item { name: 'dog' id: 2 }")
    write_records(tmp_path / "broken.tfrecord", [example(**fields) for fields, _ in BROKEN])
    code = run_inspect(tmp_path / "broken.tfrecord", "--label-map", tmp_path / "labels.pbtxt",
                       "--json")  # fmt: skip
    assert code == 1
    problems = json.loads(capsys.readouterr().out)["problems"]
    for index, (_, expected) in enumerate(BROKEN):
        found = [p for p in problems if p["record"] == index]
        if expected is None:
            assert found == []
        else:
            assert any(expected in p["problem"] for p in found), (index, found)
            assert all(p["file"] == str(tmp_path / "broken.tfrecord") for p in found)


def test_class_text_without_a_label_map_names_the_objects(tmp_path, capsys):
    two = {f"image__object__bbox__{k}": [v, v + 0.3] for k, v in
           {"xmin": 0.1, "ymin": 0.2, "xmax": 0.5, "ymax": 0.6}.items()}  # fmt: skip
    records = [
        good(image__source_id=b"1", image__object__class__label=None),
        good(image__source_id=b"2", image__object__class__label=None,
             image__object__class__text=[b"dog", b"cat"], **two),
        good(image__source_id=b"3", image__object__class__label=None,
             image__object__class__text=None, **two),
    ]  # fmt: skip
    write_records(tmp_path / "text.tfrecord", [example(**fields) for fields in records])
    assert run_inspect(tmp_path / "text.tfrecord", "--json") == 1
    summary = json.loads(capsys.readouterr().out)
    assert summary["objects"] == 5 and summary["objects_labelled_by_text"] == 3
    assert summary["classes"] == {"cat": 2, "dog": 1}
    assert [(p["record"], p["problem"]) for p in summary["problems"]] == [
        (2, "objects have neither image/object/class/label nor class/text")
    ]


def test_flipped_bytes_and_truncation_are_found(tmp_path, capsys):
    records = [frame(example(**good(image__source_id=f"{n}".encode()))) for n in range(3)]
    flipped = bytearray(b"".join(records))
    flipped[len(records[0]) + 40] ^= 0xFF  # A byte inside record 1's data.
    (tmp_path / "flipped.tfrecord").write_bytes(bytes(flipped))
    (tmp_path / "cut.tfrecord").write_bytes(b"".join(records)[:-10])
    assert run_inspect(tmp_path / "flipped.tfrecord", tmp_path / "cut.tfrecord") == 1
    printed = capsys.readouterr().out
    assert f"{tmp_path}/flipped.tfrecord record 1: record data fails its CRC check" in printed
    assert f"{tmp_path}/cut.tfrecord record 2: file ends inside a record (truncated)" in printed
    assert "examples: 4" in printed  # Records 0 and 2 of one file, 0 and 1 of the other.


def test_no_matching_files_is_a_usage_error(tmp_path, capsys):
    assert run_inspect(tmp_path / "nothing*") == 2
    assert "no TFRecord files match" in capsys.readouterr().err


def test_files_without_records_are_a_problem_only_when_no_file_has_an_example(tmp_path, capsys):
    (tmp_path / "empty.tfrecord").write_bytes(b"")
    write_records(tmp_path / "full.tfrecord", [example(**good())])
    assert run_inspect(tmp_path / "empty.tfrecord") == 1
    assert f"{tmp_path}/empty.tfrecord: holds no records" in capsys.readouterr().out
    assert run_inspect(tmp_path / "empty.tfrecord", tmp_path / "full.tfrecord") == 0
    assert "no problems found" in capsys.readouterr().out


LISTS = {"bytes_list": tf.train.BytesList, "int64_list": tf.train.Int64List,
         "float_list": tf.train.FloatList}  # fmt: skip


def roboflow_example(boxes, source_id: bytes | None = None, drop: str | None = None) -> bytes:
    """A record as Roboflow's TFRecord export writes it, built with tf.train.Example itself:
    no image/source_id (unless given), no image/key/sha256; `drop` leaves one more key out.
    `boxes`: (class text, label, [xmin, ymin, xmax, ymax])."""

    def feature(kind: str, values: list) -> tf.train.Feature:
        return tf.train.Feature(**{kind: LISTS[kind](value=values)})

    corners = list(zip(*(box for _, _, box in boxes), strict=True)) or [[], [], [], []]
    features = {
        "image/height": feature("int64_list", [30]),
        "image/width": feature("int64_list", [40]),
        "image/filename": feature("bytes_list", [b"a.jpg"]),
        "image/encoded": feature("bytes_list", [jpeg_bytes()]),
        "image/format": feature("bytes_list", [b"jpeg"]),
        **{
            f"image/object/bbox/{name}": feature("float_list", list(values))
            for name, values in zip(("xmin", "ymin", "xmax", "ymax"), corners, strict=True)
        },
        "image/object/class/text": feature("bytes_list", [text for text, _, _ in boxes]),
        "image/object/class/label": feature("int64_list", [label for _, label, _ in boxes]),
    }
    if source_id is not None:
        features["image/source_id"] = feature("bytes_list", [source_id])
    features.pop(drop, None)
    return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()


def test_records_without_source_id_are_counted_and_pass_with_a_warning(tmp_path, capsys):
    """Roboflow's records have no image/source_id: everything in them is still checked and
    counted, and as the OD API trains on them, the missing id is a warning, not a problem."""
    cat, dog = (b"cat", 1, [0.1, 0.1, 0.5, 0.5]), (b"dog", 2, [0.5, 0.2, 0.9, 0.8])
    path = tmp_path / "roboflow.tfrecord"
    write_records(
        path, [roboflow_example([cat, dog]), roboflow_example([cat]), roboflow_example([])]
    )
    assert run_inspect(path, "--json") == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["examples"] == 3 and summary["objects"] == 3
    assert summary["classes"] == {"cat": 2, "dog": 1}
    assert summary["images_without_objects"] == 1
    assert summary["image_formats"] == {"jpeg": 3}
    assert summary["image_width"] == {"min": 40, "median": 40, "max": 40}
    assert summary["box_sizes"] == {"small": 3, "medium": 0, "large": 0}
    assert summary["problems"] == []
    assert summary["warnings"] == [
        {"warning": inspect_records.NO_SOURCE_ID, "records": 3, "file": str(path), "record": 0}
    ]
    assert run_inspect(path) == 0
    printed = capsys.readouterr().out
    assert f"warning: 3 records: {inspect_records.NO_SOURCE_ID} (first: {path} record 0)" in printed
    assert "examples: 3   objects: 3" in printed and "no problems found" in printed

    # A name as source id (TF Models' VOC script) is a warning for TF-Vision's sake; a key
    # the OD API needs is a problem, and the rest of that record is still counted.
    write_records(
        tmp_path / "more.tfrecord",
        [
            roboflow_example([cat], source_id=b"a.jpg"),
            roboflow_example([dog], source_id=b"7"),
            roboflow_example([cat, dog], drop="image/height"),
        ],
    )
    assert run_inspect(tmp_path / "more.tfrecord", "--json") == 1
    summary = json.loads(capsys.readouterr().out)
    assert [(w["warning"], w["records"], w["record"]) for w in summary["warnings"]] == [
        (inspect_records.NOT_A_NUMBER, 1, 0),
        (inspect_records.NO_SOURCE_ID, 1, 2),
    ]
    assert [(p["record"], p["problem"]) for p in summary["problems"]] == [
        (2, "missing key image/height")
    ]
    assert summary["objects"] == 4 and summary["classes"] == {"cat": 2, "dog": 2}
