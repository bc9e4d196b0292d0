"""Rebuilding a dataset as a schedule does, through the real `create` command: each build is
written aside and published whole (a version behind `OUT/LATEST`, or moved up without
versions), an interrupted build or publication never damages the published dataset and the
next run finishes the job, class ids stay stable across builds, and a build with too many
errors is not published."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import SAMPLE, read_output, run_create
from test_replace import tree

from pipelines.latest import latest
from pipelines.latest import main as latest_main
from transforms.builds.layout import VERSIONS

CSV = ["--format", "csv", "--images", f"{SAMPLE}/images"]


def write_labels(path: Path, rows: list[list[str]]) -> Path:
    """A CSV of the sample's images with the given rows (filename, width, height, class,
    xmin, ymin, xmax, ymax)."""
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["filename", "width", "height", "class", "xmin", "ymin", "xmax", "ymax"])
        writer.writerows(rows)
    return path


def sample_rows(rename: dict[str, str] | None = None) -> list[list[str]]:
    """The sample's rows with boxes, classes renamed by `rename` (to None: row dropped)."""
    with open(f"{SAMPLE}/labels.csv", newline="") as handle:
        rows = [row for row in csv.reader(handle)][1:]
    rename = rename or {}
    return [
        [*row[:3], rename.get(row[3], row[3]), *row[4:]]
        for row in rows
        if row[3] and rename.get(row[3], row[3]) is not None
    ]


def versions_of(out: Path) -> list[str]:
    return sorted(p.name for p in (out / VERSIONS).iterdir())


def test_versions_are_published_by_the_pointer_and_the_newest_are_kept(tmp_path, capsys):
    labels = write_labels(tmp_path / "labels.csv", sample_rows())
    out = tmp_path / "out"
    args = [*CSV, "--annotations", labels, "--output", out, "--versions", "--keep-versions", "2"]
    published = []
    for _ in range(3):
        assert run_create(*args) == 0
        (out / "notes.txt").write_text("mine")
        published.append((out / "LATEST").read_text().strip())
        assert f"published version {published[-1]}" in capsys.readouterr().out
    assert versions_of(out) == published[1:]  # The oldest was removed after the third.
    folder = out / VERSIONS / published[-1]
    assert latest(str(out)) == str(folder)
    assert latest(str(out), "train") == f"{folder}/train/train.tfrecord-*"
    assert latest_main([str(out), "--split", "val"]) == 1
    assert "has no split 'val'" in capsys.readouterr().err
    for name in published[1:]:
        result = read_output(out / VERSIONS / name)
        assert result["manifest"]["build"]["id"] == name
        assert len(result["splits"]["train"]) == result["manifest"]["images"]["written"] == 19
    assert (out / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in out.iterdir()) == ["LATEST", "notes.txt", VERSIONS]


def test_a_file_of_someone_else_in_an_old_version_is_left_and_the_rest_removed(tmp_path):
    labels = write_labels(tmp_path / "labels.csv", sample_rows())
    out = tmp_path / "out"
    args = [*CSV, "--annotations", labels, "--output", out, "--versions", "--keep-versions", "1"]
    assert run_create(*args) == 0
    first = out / VERSIONS / (out / "LATEST").read_text().strip()
    (first / "train" / "mine.txt").write_text("mine")
    assert run_create(*args) == 0
    assert tree(first) == {"train/mine.txt": b"mine"}
    assert len(versions_of(out)) == 2


def test_class_ids_are_stable_across_builds_and_retired_ids_are_never_reused(tmp_path, capsys):
    out = tmp_path / "out"

    def build(rename: dict[str, str | None], *extra: str) -> dict[str, int]:
        labels = write_labels(tmp_path / "labels.csv", sample_rows(rename))
        assert run_create(*CSV, "--annotations", labels, "--output", out, *extra) == 0
        return read_output(out)["label_map"]

    assert build({}) == {"circle": 1, "square": 2, "triangle": 3}
    # A new class that sorts first: the earlier ones keep their ids.
    assert build({"triangle": "arrow"}) == {"circle": 1, "square": 2, "arrow": 4}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["retired_classes"] == {"triangle": 3}
    assert manifest["class_ids_changed"] == {}
    # Ids of removed classes are not given to others, and a returning class gets its own.
    assert build({"arrow": None, "square": "blob"}) == {"circle": 1, "triangle": 3, "blob": 5}
    assert json.loads((out / "manifest.json").read_text())["retired_classes"] == {
        "arrow": 4,
        "square": 2,
    }
    capsys.readouterr()
    # A given label map that renumbers a class: published, with a loud warning.
    given = tmp_path / "given.pbtxt"
    given.write_text(
        "".join(
            f"item {{ name: '{name}' id: {number} }}\n"
            for name, number in (("triangle", 1), ("circle", 2), ("blob", 5))
        )
    )
    assert build({"square": "blob"}, "--label-map", given) == {
        "triangle": 1,
        "circle": 2,
        "blob": 5,
    }
    err = capsys.readouterr().err
    assert (
        "warning: Class ids changed since the previous build (circle 1 → 2; triangle 3 → 1)" in err
    )
    card = (out / "README.md").read_text()
    assert "**Class ids changed since the previous build (circle 1 → 2; triangle 3 → 1)" in card


@pytest.mark.parametrize("versions", [False, True], ids=["flat", "versions"])
def test_a_build_over_the_error_rate_is_not_published(tmp_path, capsys, versions):
    out = tmp_path / "out"
    flags = ["--versions"] if versions else []
    good = write_labels(tmp_path / "good.csv", sample_rows())
    assert run_create(*CSV, "--annotations", good, "--output", out, *flags) == 0
    before = tree(out)
    rows = sample_rows() + [["missing.jpg", "10", "10", "circle", "1", "1", "5", "5"]]
    bad = write_labels(tmp_path / "bad.csv", rows)
    args = [*CSV, "--annotations", bad, "--output", out, *flags, "--max-error-rate", "0.04"]
    assert run_create(*args) == 1
    err = capsys.readouterr().err
    assert "not published: 5.00% of the input was rejected, more than --max-error-rate 0.04" in err
    if versions:  # The pointer and the published version are unchanged.
        assert {k: v for k, v in tree(out).items() if k in before} == before
    else:
        assert {k: v for k, v in tree(out).items() if not k.startswith(".builds/")} == before
    # Within the limit it is published, and the held-back build is cleared away.
    assert run_create(*args[:-1], "0.05") == 0
    assert not (out / ".builds").exists()
    if versions:
        assert len(versions_of(out)) == 2


def many_images(folder: Path, copies: int) -> Path:
    """A CSV of `copies` copies of the sample's images with boxes, each under its own name:
    a build long enough to be killed while it writes a shard."""
    images = folder / "images"
    images.mkdir()
    rows = []
    for copy in range(copies):
        for row in sample_rows():
            name = f"{copy:03d}-{row[0]}"
            if not (images / name).exists():
                os.link(f"{SAMPLE}/images/{row[0]}", images / name)
            rows.append([name, *row[1:]])
    return write_labels(folder / "labels.csv", rows)


def killed_while_writing_a_shard(args: list, out: Path) -> None:
    """Runs create in a subprocess and SIGKILLs it as soon as a shard is being written."""
    command = [sys.executable, "-m", "pipelines.cli", "create", *map(str, args)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and process.poll() is None:
            if any(p.is_file() for p in out.glob("*/*/.parts/*")):
                process.send_signal(signal.SIGKILL)
                break
            time.sleep(0.002)
    finally:
        process.wait()
    assert process.returncode == -signal.SIGKILL, "the build ended before it could be killed"


@pytest.mark.parametrize("versions", [False, True], ids=["flat", "versions"])
def test_a_build_killed_mid_shard_leaves_the_dataset_intact_and_a_rerun_finishes(
    tmp_path, versions
):
    out = tmp_path / "out"
    labels = many_images(tmp_path, 20)
    base = ["--format", "csv", "--images", tmp_path / "images", "--annotations", labels,
            "--output", out, *(["--versions"] if versions else [])]  # fmt: skip
    assert run_create(*base) == 0
    before = tree(out)
    # The next build: other shards, other splits.
    args = [*base, "--num-shards", "3", "--splits", "train=0.8,val=0.2"]
    killed_while_writing_a_shard(args, out)
    after = tree(out)
    assert {k: v for k, v in after.items() if k in before} == before
    # Only the build's own folder and its lock (`transforms.builds.lock`) were written.
    aside = (".builds/",) if not versions else (f"{VERSIONS}/", ".builds/")
    assert all(k.startswith(aside) for k in set(after) - set(before))
    assert latest(str(out)) == (
        str(out) if not versions else str(out / VERSIONS / build_of_tree(before))
    )
    assert run_create(*args) == 0
    folder = Path(latest(str(out)))
    result = read_output(folder)
    assert sorted(result["splits"]) == ["train", "val"]
    assert sum(len(examples) for examples in result["splits"].values()) == 19 * 20
    # What the killed build left is gone; with versions, both complete versions remain.
    assert not (out / ".builds").exists()
    if versions:
        assert versions_of(out) == sorted([folder.name, build_of_tree(before)])


def build_of_tree(files: dict[str, bytes]) -> str:
    """The version a tree's `LATEST` names."""
    return files["LATEST"].decode().strip()


def test_an_interrupted_publication_is_finished_by_the_next_run(tmp_path, monkeypatch):
    """Killed while moving a build's files up: the next run first finishes that publication,
    then builds and publishes its own."""
    from transforms.builds import publish

    out = tmp_path / "out"
    labels = write_labels(tmp_path / "labels.csv", sample_rows())
    assert run_create(*CSV, "--annotations", labels, "--output", out, "--num-shards", "2") == 0
    move, moved = publish.move_file, []

    def failing_move(root, source, target, *rest):
        if ".builds" in source and ".builds" not in target:
            moved.append(source)
            if len(moved) == 2:  # The old manifest is aside, one file has moved up.
                raise RuntimeError("killed")
        return move(root, source, target, *rest)

    monkeypatch.setattr(publish, "move_file", failing_move)
    args = [*CSV, "--annotations", labels, "--output", out, "--num-shards", "3"]
    assert run_create(*args) == 1  # Said in one line; the half-published build is kept.
    monkeypatch.undo()
    assert not (out / "manifest.json").exists()
    (interrupted,) = (out / ".builds").iterdir()
    # The next run, with other settings, finishes the interrupted one before its own build.
    assert run_create(*args[:-1], "4") == 0
    result = read_output(out)
    assert len(result["manifest"]["splits"]["train"]["files"]) == 4
    assert sorted(os.listdir(out / "train")) == sorted(
        Path(f).name for f in result["manifest"]["splits"]["train"]["files"]
    )
    assert not (out / ".builds").exists()
    # The finished build's 3 shards and their index files.
    assert result["manifest"]["earlier_output"]["removed"] == 6


def test_a_reader_of_the_latest_version_only_ever_sees_complete_versions(tmp_path):
    out = tmp_path / "out"
    labels = write_labels(tmp_path / "labels.csv", sample_rows())
    args = [*CSV, "--annotations", labels, "--output", out, "--versions", "--keep-versions", "2"]
    assert run_create(*args) == 0
    command = [sys.executable, "-m", "pipelines.cli", "create", *map(str, args), "--num-shards",
               "5"]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seen, reads = set(), 0
    while process.poll() is None or reads < 5:
        folder = Path(latest(str(out)))
        manifest = json.loads((folder / "manifest.json").read_text())
        for relative, entry in manifest["written"].items():
            assert (folder / relative).stat().st_size == entry["size"]
        seen.add(folder.name)
        reads += 1
    assert process.wait() == 0
    assert len(seen) == 2  # The old version while the new one was built, then the new one.
