"""Writing into a folder that holds an earlier output, through the real `create` and `export`
commands: only files odrecords wrote there, listed with their size and sha256 by a summary it
wrote, inside the folder and unchanged since, are ever removed; nothing is written outside
`--output`, whatever names the records or manifests hold."""

from __future__ import annotations

import hashlib
import json
import os

from conftest import run_create
from test_create import SAMPLE_VOC
from test_export import example, jpeg_bytes, run_export, write_records

from transforms.builds.outputs import with_checksum


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tree(folder) -> dict[str, bytes]:
    """{relative path: bytes} of every file under `folder` (symlinks not followed)."""
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in folder.rglob("*")
        if p.is_file() and not p.is_symlink()
    }


def one_line_error(capsys, text: str) -> None:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and text in err, err


def test_a_hand_written_manifest_makes_no_earlier_output_and_nothing_is_deleted(tmp_path, capsys):
    out = tmp_path / "out"
    (out / "train").mkdir(parents=True)
    (tmp_path / "victim.txt").write_text("precious")
    (out / "train" / "train.tfrecord-00000-of-00001").write_text("mine")
    (out / "notes.txt").write_text("mine too")
    listed = ["../victim.txt", "train/train.tfrecord-00000-of-00001", "notes.txt", "/etc/hosts"]
    manifests = [
        {"splits": {"train": {"files": listed}}},  # The crafted manifest of the issue.
        with_checksum({"splits": {}, "written": listed}),  # Odrecords' checksum, wrong types.
        with_checksum({"splits": {}, "written": {"notes.txt": {"size": "8", "sha256": "x"}}}),
    ]
    before = tree(tmp_path)
    for manifest in manifests:
        (out / "manifest.json").write_text(json.dumps(manifest))
        assert run_create(*SAMPLE_VOC, "--output", out) == 2
        one_line_error(capsys, "holds an output odrecords did not write, or one changed since")
        assert tree(tmp_path) == {
            **before,
            "out/manifest.json": (out / "manifest.json").read_bytes(),
        }


def test_output_that_is_a_file_is_a_usage_error(tmp_path, capsys):
    (tmp_path / "file").write_text("mine")
    assert run_create(*SAMPLE_VOC, "--output", tmp_path / "file") == 2
    one_line_error(capsys, "--output")
    write_records(tmp_path / "r.tfrecord", records_named(b"a.jpg"))
    args = ["--input", tmp_path / "r.tfrecord", "--format", "csv", "--output", tmp_path / "file"]
    assert run_export(*args) == 2
    one_line_error(capsys, "is a file, not a folder")
    assert (tmp_path / "file").read_text() == "mine"


def test_only_files_still_as_the_earlier_run_wrote_them_are_replaced(tmp_path, capsys):
    out = tmp_path / "out"
    assert run_create(*SAMPLE_VOC, "--output", out, "--num-shards", "3") == 0
    manifest = json.loads((out / "manifest.json").read_text())
    shards = sorted(manifest["splits"]["train"]["files"])
    papers = ["README.md", "label_map.csv", "label_map.pbtxt", "report.html", "stats.json"]
    indexes = [f"index/{shard}.jsonl" for shard in shards]
    assert sorted(manifest["written"]) == sorted(papers + shards + indexes)
    for name, entry in manifest["written"].items():
        assert entry == {"size": (out / name).stat().st_size, "sha256": sha256(out / name)}
    # The user changes one shard (it is theirs now) and keeps a file of their own beside them.
    changed = out / shards[1]
    changed.write_bytes(changed.read_bytes() + b"edited")
    (out / "train" / "notes.txt").write_text("mine")
    # Someone adds files to the manifest, and makes its checksum right again.
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    written = dict(manifest["written"])
    for name, path in (("../victim.txt", victim), ("train/notes.txt", out / "train" / "notes.txt")):
        written[name] = {"size": path.stat().st_size, "sha256": sha256(path)}
    forged = with_checksum({**manifest, "written": written})
    (out / "manifest.json").write_text(json.dumps(forged))

    assert run_create(*SAMPLE_VOC, "--output", out, "--splits", "a=0.5,b=0.5") == 0
    captured = capsys.readouterr()
    assert "removed 5 files of the earlier output" in captured.out
    assert "3 files the earlier output in this folder listed were left in place" in captured.err
    assert victim.read_text() == "precious"
    assert (out / "train" / "notes.txt").read_text() == "mine"
    assert changed.exists() and not (out / shards[0]).exists() and not (out / shards[2]).exists()
    assert not any((out / index).exists() for index in indexes)
    earlier = json.loads((out / "manifest.json").read_text())["earlier_output"]
    assert earlier == {"removed": 5, "left_in_place": sorted(["../victim.txt", shards[1],
                                                             "train/notes.txt"])}  # fmt: skip


def test_a_split_folder_that_became_a_link_out_of_the_output_is_left_alone(tmp_path):
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    assert run_create(*SAMPLE_VOC, "--output", out, "--num-shards", "2") == 0
    (out / "train").rename(elsewhere)
    (out / "train").symlink_to(elsewhere)
    before = tree(elsewhere)
    assert run_create(*SAMPLE_VOC, "--output", out, "--splits", "a=1") == 0
    assert tree(elsewhere) == before and len(before) == 2
    left = json.loads((out / "manifest.json").read_text())["earlier_output"]["left_in_place"]
    assert left == sorted(f"train/{name}" for name in before)


def records_named(*names: bytes, data=None) -> list[bytes]:
    box = {f"image__object__bbox__{k}": [v] for k, v in
           (("xmin", 0.1), ("ymin", 0.1), ("xmax", 0.5), ("ymax", 0.5))}  # fmt: skip
    return [
        example(image__encoded=data or jpeg_bytes(40 + n), image__filename=name,
                image__height=30, image__width=40 + n, image__object__class__text=[b"cat"],
                **box)
        for n, name in enumerate(names)
    ]  # fmt: skip


def test_split_names_from_a_manifest_never_lead_out_of_the_output(tmp_path, capsys):
    source = tmp_path / "in"
    source.mkdir()
    write_records(source / "s.tfrecord", records_named(b"a.jpg"))
    manifest = {"splits": {"../../x": {"files": ["s.tfrecord"]}, "/abs": {"files": ["s.tfrecord"]}}}
    (source / "manifest.json").write_text(json.dumps(manifest))
    out = tmp_path / "deep" / "er" / "out"
    for fmt in ("coco", "voc", "csv", "yolo"):
        assert run_export("--input", source, "--format", fmt, "--output", out / fmt) == 0
    assert sorted(os.listdir(tmp_path)) == ["deep", "in"]
    assert sorted(os.listdir(tmp_path / "deep" / "er")) == ["out"]
    assert not (out / "csv" / "errors.jsonl").exists()
    splits = json.loads((out / "csv" / "export.json").read_text())["images"]
    assert len(splits) == 2 and all(name[0] not in "./" and "/" not in name for name in splits)
    assert sorted(os.listdir(out / "csv")) == sorted(
        ["export.json", "images", *(f"{name}_labels.csv" for name in splits)]
    )
    (source / "manifest.json").write_text(json.dumps({"splits": {"t": {"files": ["../s"]}}}))
    assert run_export("--input", source, "--format", "csv", "--output", out / "again") == 2
    one_line_error(capsys, "not a file inside")


def test_names_that_collide_as_file_and_folder_or_are_too_long_are_renamed(tmp_path):
    long = b"n" * 300 + b".jpg"
    deep = b"/".join([b"d" * 100] * 12) + b".jpg"  # Each part fits; the whole is too long.
    names = [b"a.jpg", b"a.jpg/b.jpg", b"x/images/y.jpg", long, deep]
    records = records_named(*names) + records_named(b"x/labels/y.txt", data=b"not an image")
    write_records(tmp_path / "r.tfrecord", records)
    for fmt in ("yolo", "voc", "coco"):
        out = tmp_path / fmt
        assert run_export("--input", tmp_path / "r.tfrecord", "--format", fmt, "--output", out) == 0
        assert not (out / "errors.jsonl").exists()
        written = json.loads((out / "export.json").read_text())["written"]
        images = [name.removeprefix("images/") for name in written if name.startswith("images/")]
        images = [name for name in images if fmt != "yolo" or "/labels/" not in f"/{name}"]
        assert "a.jpg/b.jpg" in images and "x/images/y.jpg" in images
        assert len(images) == len(records)
        assert all(len(part.encode()) <= 255 for name in written for part in name.split("/"))
        if fmt == "yolo":  # The label of x/images/y.jpg is where the image x/labels/y.txt was.
            assert (out / "images" / "x" / "labels" / "y.txt").read_text().startswith("0 ")


def test_export_again_removes_only_its_own_unchanged_stale_files(tmp_path, capsys):
    write_records(tmp_path / "three.tfrecord", records_named(b"r0.jpg", b"r1.jpg", b"r2.jpg"))
    write_records(tmp_path / "one.tfrecord", records_named(b"r0.jpg"))
    out = tmp_path / "out"
    assert (
        run_export("--input", tmp_path / "three.tfrecord", "--format", "yolo", "--output", out) == 0
    )
    summary = json.loads((out / "export.json").read_text())
    assert {"images/r0.jpg", "labels/r2.txt", "three.txt", "data.yaml"} <= set(summary["written"])
    (out / "images" / "r1.jpg").write_bytes(b"edited by hand")
    (out / "images" / "mine.jpg").write_bytes(b"mine")
    (out / "notes.md").write_text("mine")
    assert (
        run_export("--input", tmp_path / "one.tfrecord", "--format", "yolo", "--output", out) == 0
    )
    captured = capsys.readouterr()
    assert "1 files the earlier export in this folder listed were left in place" in captured.err
    assert "images/r1.jpg" in captured.err
    assert sorted(tree(out)) == sorted(["data.yaml", "export.json", "one.txt", "notes.md",
                                        "images/r0.jpg", "images/r1.jpg", "images/mine.jpg",
                                        "labels/r0.txt"])  # fmt: skip
    earlier = json.loads((out / "export.json").read_text())["earlier_output"]
    assert earlier == {"removed": 4, "left_in_place": ["images/r1.jpg"]}
    # A summary written or changed by hand makes the folder no earlier export.
    summary = json.loads((out / "export.json").read_text())
    (out / "export.json").write_text(json.dumps({**summary, "written": {"notes.md": {}}}))
    assert (
        run_export("--input", tmp_path / "one.tfrecord", "--format", "yolo", "--output", out) == 2
    )
    one_line_error(capsys, "holds a export.json that is not an earlier odrecords output")
    assert (out / "notes.md").read_text() == "mine"
