"""Hostile TFRecords through the real `export` and `inspect` commands: keys of the wrong kind,
non-finite and huge values, damaged GZIP, a length header claiming 2^63 bytes, a FIFO, and
boxes no one can draw. Each becomes an error record (export) or a problem (inspect); the job
goes on and every good record comes through."""

from __future__ import annotations

import gzip
import io
import json
import os
import random
import struct

import pytest
from PIL import Image
from test_export import example, jpeg_bytes, run_export, write_records
from test_inspect import good, run_inspect

from transforms.export.render import CAPTION, TILE, contact_sheets
from transforms.tfrecord import frame, masked_crc

NAN, INF = float("nan"), float("inf")
# (changes to a good record, what export's error says); None: the record is good.
HOSTILE = [
    ({}, None),
    ({"image__encoded": 7}, "image/encoded is a int64_list, expected bytes_list"),
    ({"image__width": b"40"}, "image/width is a bytes_list, expected int64_list"),
    ({"image__height": 30.0}, "image/height is a float_list, expected int64_list"),
    ({"image__object__bbox__xmin": [1]}, "bbox/xmin is a int64_list, expected float_list"),
    ({"image__object__class__text": [3]}, "class/text is a int64_list"),
    ({"image__object__class__label": [1.0]}, "class/label is a float_list"),
    ({"image__object__view": [0.5]}, "object/view is a float_list"),
    ({"image__object__is_crowd": [b"yes"]}, "is_crowd is a bytes_list"),
    ({"image__object__mask": [1]}, "mask is a int64_list"),
    ({"image__object__keypoint__x": [b"x"]}, "keypoint/x is a bytes_list"),
    ({"image__object__bbox__ymin": [0.1, 0.2]}, "object lists differ in length"),
    ({"image__object__bbox__xmin": [NAN]}, "outside [0, 1.1]"),
    ({"image__object__bbox__ymax": [INF]}, "outside [0, 1.1]"),
    ({"image__object__area": [NAN]}, "area nan is not a finite number"),
    ({"image__object__keypoint__x": [INF], "image__object__keypoint__y": [0.5]}, "keypoint"),
    ({"image__height": 2**62}, "beyond 2147483647 pixels a side"),
    ({"image__object__mask": [b"\x89PNG not really"]}, "mask is not a PNG image"),
]


def hostile_records() -> list[bytes]:
    return [
        example(**good(image__source_id=f"r{n}".encode(), image__filename=f"r{n}.jpg".encode(),
                       **changes))
        for n, (changes, _) in enumerate(HOSTILE)
    ]  # fmt: skip


def errors_of(out) -> list[dict]:
    path = out / "errors.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def strict_json(path):
    def refuse(name):
        raise ValueError(f"{name} in JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


@pytest.mark.parametrize("fmt", ["coco", "voc", "csv", "yolo"])
def test_export_turns_every_hostile_record_into_an_error_record(tmp_path, fmt):
    write_records(tmp_path / "h.tfrecord", hostile_records())
    out = tmp_path / "out"
    assert run_export("--input", tmp_path / "h.tfrecord", "--format", fmt, "--output", out) == 0
    errors = errors_of(out)
    for n, (_, reason) in enumerate(HOSTILE):
        found = [e for e in errors if e["source"].startswith(f"{tmp_path}/h.tfrecord#record[{n}]")]
        assert (reason is None) == (found == []), (n, found)
        assert reason is None or any(reason in e["reason"] for e in found), (n, found)
    assert all(len(e["reason"]) < 300 for e in errors)
    summary = json.loads((out / "export.json").read_text())
    assert summary["errors"] == len(errors)
    # Records whose objects alone were rejected keep their image, without those objects.
    object_level = sum(e["stage"] == "box" for e in errors)
    assert sum(summary["images"].values()) == 1 + object_level
    if fmt == "coco":
        coco = strict_json(out / "annotations" / "instances_h.json")
        assert len(coco["images"]) == 1 + object_level and len(coco["annotations"]) == 1


def test_inspect_reports_every_hostile_record_and_goes_on(tmp_path, capsys):
    write_records(tmp_path / "h.tfrecord", hostile_records())
    assert run_inspect(tmp_path / "h.tfrecord", "--json", "--render", tmp_path / "pictures") == 1
    report = json.loads(capsys.readouterr().out)
    assert report["examples"] == len(HOSTILE)
    flagged = {p["record"] for p in report["problems"]}
    # Mask bytes are not checked (the OD API's decoder decodes them lazily); the rest is.
    unchecked = {n for n, (changes, _) in enumerate(HOSTILE) if "image__object__mask" in changes
                 and isinstance(changes["image__object__mask"][0], bytes)}  # fmt: skip
    assert flagged == set(range(1, len(HOSTILE))) - unchecked
    assert (tmp_path / "pictures" / "examples-001.png").is_file()


def length_bomb() -> bytes:
    """A record whose length header, with a valid CRC, claims 2^63 bytes."""
    length = struct.pack("<Q", 2**63)
    return length + struct.pack("<I", masked_crc(length)) + b"\x00" * 64


def damaged_files(folder) -> dict[str, str]:
    """{file name: the problem it must give}, each file after one good record."""
    noise = random.Random(0).randbytes  # Incompressible, so the damage is past the first block.
    first = frame(example(**good(image__source_id=b"first"), padding=noise(20_000)))
    rest = b"".join(
        frame(example(**good(image__source_id=f"{n}".encode()), padding=noise(20_000)))
        for n in range(20)
    )
    packed = bytearray(gzip.compress(first + rest, mtime=0))
    packed[len(packed) // 2 : len(packed) // 2 + 8] = b"\x00\xff" * 4
    files = {
        "middle.tfrecord.gz": (bytes(packed), "unreadable"),
        "cut.tfrecord.gz": (gzip.compress(first + rest, mtime=0)[:-200], "unreadable"),
        "bomb.tfrecord": (first + length_bomb(), "file ends inside a record (truncated)"),
    }
    for name, (data, _) in files.items():
        (folder / name).write_bytes(data)
    return {name: problem for name, (_, problem) in files.items()}


def test_damaged_files_give_problems_in_inspect_and_error_records_in_export(tmp_path, capsys):
    problems = damaged_files(tmp_path)
    for name, problem in problems.items():
        assert run_inspect(tmp_path / name, "--json") == 1
        report = json.loads(capsys.readouterr().out)
        assert report["examples"] >= 1
        assert any(problem in p["problem"] for p in report["problems"]), (name, report)
    for name, problem in problems.items():
        out = tmp_path / f"out-{name}"
        assert run_export("--input", tmp_path / name, "--format", "csv", "--output", out) == 0
        assert any(problem in e["reason"] for e in errors_of(out)), name
        assert (out / "images").is_dir()  # The good records before the damage came through.


def test_a_fifo_is_not_read(tmp_path, capsys):
    os.mkfifo(tmp_path / "pipe.tfrecord")
    assert run_inspect(tmp_path / "pipe.tfrecord") == 1
    assert "is not a regular file" in capsys.readouterr().out
    out = tmp_path / "out"
    pipe = tmp_path / "pipe.tfrecord"
    assert run_export("--input", pipe, "--format", "csv", "--output", out) == 0
    assert "is not a regular file" in errors_of(out)[0]["reason"]


def test_render_draws_inverted_nan_and_infinite_boxes_and_undecodable_images(tmp_path, capsys):
    boxes = [[0.6, 0.1, 0.2, 0.5], [NAN, 0.1, 0.5, 0.5], [0.1, -INF, 0.5, INF], [-5, -5, 9, 9]]
    records = [
        example(**good(image__source_id=f"{n}".encode(), image__object__bbox__xmin=[b[0]],
                       image__object__bbox__ymin=[b[1]], image__object__bbox__xmax=[b[2]],
                       image__object__bbox__ymax=[b[3]]))
        for n, b in enumerate(boxes)
    ]  # fmt: skip
    write_records(tmp_path / "boxes.tfrecord", records)
    assert run_inspect(tmp_path / "boxes.tfrecord", "--render", tmp_path / "pictures") == 1
    assert "inverted or empty" in capsys.readouterr().out
    tile = (TILE, TILE + CAPTION)
    assert Image.open(tmp_path / "pictures" / "examples-001.png").size == (4 * tile[0], tile[1])
    # PIL may fail where TensorFlow decoded: such a tile says so instead of ending the job.
    samples = [(b"not an image", [("cat", [0.1, 0.1, 0.5, 0.5])], "a.jpg"), (jpeg_bytes(), [], "")]
    (sheet,) = contact_sheets(samples, str(tmp_path / "direct"))
    assert Image.open(sheet).size == (2 * tile[0], tile[1])
    (tmp_path / "file").write_text("")
    assert run_inspect(tmp_path / "boxes.tfrecord", "--render", tmp_path / "file") == 2


def test_an_image_claiming_more_pixels_than_allowed_is_not_decoded(tmp_path, capsys):
    buffer = io.BytesIO()
    Image.new("1", (12_000, 10_000)).save(buffer, "PNG")  # 120 M pixels in a few kB.
    write_records(tmp_path / "big.tfrecord", [example(**good(image__encoded=buffer.getvalue()))])
    assert run_inspect(tmp_path / "big.tfrecord") == 1
    assert "120000000 pixels, more than 100000000: not decoded" in capsys.readouterr().out
