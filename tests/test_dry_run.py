"""`odrecords create --dry-run`: the plan of a build, true to what a build writes, with nothing
written anywhere."""

import csv
import os
import re
import shutil
from pathlib import Path

import pytest
from conftest import SAMPLE, read_output, run_create

SAMPLE_ARGS = [
    "--format",
    "voc",
    "--annotations",
    f"{SAMPLE}/annotations",
    "--images",
    f"{SAMPLE}/images",
    "--splits",
    "train=0.75,valid=0.25",
]


def snapshot(*folders) -> dict:
    """Every file and folder under `folders`, with its size and modification time."""
    found = {}
    for folder in folders:
        for path in Path(folder).rglob("*"):
            stat = path.lstat()
            found[str(path)] = (stat.st_size, stat.st_mtime_ns)
        found[str(folder)] = Path(folder).lstat().st_mtime_ns
    return found


def plan_of(text: str) -> dict:
    """The splits (images, objects) and label map (name → (id, objects)) a plan prints."""
    splits = {
        name: (int(images), int(objects))
        for name, images, objects in re.findall(
            r"^(\w+): (\d+) images, (\d+) objects", text, re.MULTILINE
        )
    }
    classes = {
        name: (int(number), int(objects))
        for number, name, objects in re.findall(
            r"^ +(\d+)  (\S+) \((\d+) objects\)$", text, re.MULTILINE
        )
    }
    return {"splits": splits, "classes": classes}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A real build of the sample, to hold the plans against."""
    out = tmp_path_factory.mktemp("built") / "out"
    assert run_create(*SAMPLE_ARGS, "--output", out) == 0
    return read_output(out)["manifest"]


@pytest.mark.parametrize("mode", [[], ["--dry-run=decode"]])
def test_the_plan_is_what_a_build_writes_and_nothing_is_written(built, tmp_path, capsys, mode):
    temp = tmp_path / "temp"
    temp.mkdir()
    before = snapshot(tmp_path, SAMPLE)
    args = [*SAMPLE_ARGS, "--output", tmp_path / "out", "--temp_location", temp]
    assert run_create(*args, *(mode or ["--dry-run"])) == 0
    assert snapshot(tmp_path, SAMPLE) == before
    assert not (tmp_path / "out").exists() and not list(temp.iterdir())
    out = capsys.readouterr().out
    plan = plan_of(out)
    assert plan["splits"] == {
        name: (split["examples"], split["objects"]) for name, split in built["splits"].items()
    }
    assert plan["classes"] == {
        name: (entry["id"], entry["objects"]) for name, entry in built["classes"].items()
    }
    assert "nothing was written" in out


def test_a_dry_run_beside_an_earlier_output_leaves_it_as_it_is(tmp_path, capsys):
    out = tmp_path / "out"
    assert run_create(*SAMPLE_ARGS, "--output", out) == 0
    before = snapshot(tmp_path)
    assert run_create(*SAMPLE_ARGS, "--output", out, "--dry-run") == 0
    assert snapshot(tmp_path) == before


def test_images_not_found_are_listed_with_the_path_looked_at_and_exit_1(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    args = ["--format", "csv", "--annotations", f"{SAMPLE}/labels.csv", "--output", tmp_path / "o"]
    before = snapshot(tmp_path)
    assert run_create(*args, "--images", empty, "--dry-run") == 1
    assert snapshot(tmp_path) == before
    captured = capsys.readouterr()
    with open(f"{SAMPLE}/labels.csv", newline="", encoding="utf-8") as handle:
        names = sorted({row["filename"] for row in csv.DictReader(handle)})
    errors = [line for line in captured.out.splitlines() if line.startswith("error: ")]
    assert len(errors) == min(10, len(names))
    # In the errors file's order: by source, the CSV's lines in order.
    assert errors == sorted(errors, key=lambda line: line.split(": ", 2)[1])
    for line in errors:
        assert "image file not found (looked for " + str(empty) in line
    assert re.search(rf"^ +{len(names)}  image: image file not found$", captured.out, re.M)
    assert "no example would be written" in captured.err
    assert not (tmp_path / "o").exists()
    # A root that does not exist is refused before anything is read, as create refuses it.
    assert run_create(*args, "--images", tmp_path / "nowhere", "--dry-run") == 2


def test_a_link_out_of_the_images_root_is_reported_not_followed(tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    shutil.copy(f"{SAMPLE}/images/shapes-002.jpg", images / "inside.jpg")
    os.symlink(Path(SAMPLE, "images", "shapes-003.jpg").resolve(), images / "outside.jpg")
    labels = tmp_path / "labels.csv"
    labels.write_text(
        "filename,width,height,class,xmin,ymin,xmax,ymax\n"
        "inside.jpg,120,160,circle,55,107,76,128\n"
        "outside.jpg,120,160,triangle,7,73,63,129\n",
        encoding="utf-8",
    )
    args = ["--format", "csv", "--annotations", labels, "--images", images]
    assert run_create(*args, "--output", tmp_path / "out", "--dry-run") == 0
    out = capsys.readouterr().out
    assert plan_of(out)["splits"] == {"train": (1, 1)}
    (error,) = [line for line in out.splitlines() if line.startswith("error: ")]
    assert "outside.jpg" in error and "leads outside the images root" in error
    assert f"looked for {images / 'outside.jpg'}" in error
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--dry_run=True"], "invalid choice: 'True'"),
        (["--dry-run", "--strict"], "--dry-run writes and submits nothing: drop --strict"),
        (["--dry-run=sideways"], "invalid choice: 'sideways'"),
    ],
)
def test_dry_run_usage_errors_are_one_line_and_exit_2(tmp_path, capsys, flags, message):
    assert run_create(*SAMPLE_ARGS, "--output", tmp_path / "out", *flags) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()
