"""`odrecords inspect`: the summary, every check with its file and record index, the exit
code, JSON output and rendered pictures."""

import json
import os

import pytest
from conftest import RACCOON, SAMPLE, run_create
from PIL import Image
from test_export import example, jpeg_bytes, write_records

from pipelines import inspect_records
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
    assert Image.open(tmp_path / sheets[0]).size == (1024, 1024)
    assert Image.open(tmp_path / "classes.png").format == "PNG"


def test_json_summary(sample_records, capsys):
    assert run_inspect(f"{sample_records}/train/*", "--json") == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["examples"] == 24 and summary["problems"] == []
    assert sum(summary["classes"].values()) == summary["objects"]
    assert summary["keys"]["image/encoded"] == {"bytes_list": 24}
    assert set(summary["image_formats"]) == {"jpeg", "png"}


def test_raccoon_tf1_record_is_readable(capsys):
    record = os.path.join(RACCOON, "data", "test.record")
    if not os.path.exists(record):
        pytest.skip("../shared/data/raccoon is not present")
    assert run_inspect(record) == 0
    printed = capsys.readouterr().out
    assert "examples: 40   objects: 44" in printed and "44  raccoon" in printed


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
          image__object__class__text=[b"x"]), "label 5 is not in the label map"),
    (good(image__source_id=b"g", image__object__class__label=[2]),
     "class text 'cat' is id 1 in the label map, but the label is 2"),
    (good(image__source_id=b"h", image__encoded=b"not an image"), "image does not decode"),
    (good(image__source_id=b"i", image__width=99), "the pixels are (40, 30)"),
    (good(image__source_id=b"j", image__height=None), "missing key image/height"),
    (good(image__source_id=b"k", image__height=[3.0]), "image/height is a float_list"),
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
    assert "no files match" in capsys.readouterr().err


def test_files_without_records_are_a_problem_only_when_no_file_has_an_example(tmp_path, capsys):
    (tmp_path / "empty.tfrecord").write_bytes(b"")
    write_records(tmp_path / "full.tfrecord", [example(**good())])
    assert run_inspect(tmp_path / "empty.tfrecord") == 1
    assert f"{tmp_path}/empty.tfrecord: holds no records" in capsys.readouterr().out
    assert run_inspect(tmp_path / "empty.tfrecord", tmp_path / "full.tfrecord") == 0
    assert "no problems found" in capsys.readouterr().out
