"""The README's recipes run as written. Each code block marked `<!-- recipe: NAME -->` is run,
command by command, in a folder laid out the way the recipe expects (made from the bundled
sample's images and boxes); what it prints must show the output block that follows it, and
what it writes is read back: the records with TensorFlow as the OD API reads them, the
exported annotations as JSON."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import tensorflow as tf
from conftest import OD_FEATURES
from format_writers import copy_images, sample_boxes, write_coco, write_cvat, write_yolo
from sample_data import SAMPLE_DIR

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text(encoding="utf-8")
# A recipe's command block, and the block of what it prints (`…` marks what was left out).
RECIPE = re.compile(
    r"<!-- recipe: ([\w-]+) -->\s*```sh\n(.*?)```\s*(?:```text\n(.*?)```)?", re.DOTALL
)
SAMPLE = sample_boxes()


def recipe_commands(name: str) -> list[list[str]]:
    """The command lines of a recipe's block: continued lines joined, comments dropped."""
    (block,) = [body for found, body, _ in RECIPE.findall(README) if found == name]
    lines = [shlex.split(line, comments=True) for line in block.replace("\\\n", " ").splitlines()]
    return [line for line in lines if line]


def assert_shown(name: str, printed: str) -> None:
    """Every line of the recipe's output block is a line printed, its parts in order."""
    (shown,) = [output for found, _, output in RECIPE.findall(README) if found == name]
    lines = printed.splitlines()
    for line in shown.splitlines():
        parts = [part.strip() for part in line.split("…") if part.strip()]
        pattern = re.compile(".*".join(map(re.escape, parts)))
        assert any(pattern.search(got) for got in lines), f"{line!r} not in:\n{printed}"


def split_of(number: int, names: tuple[str, ...]) -> str:
    """Every fifth image to the last split, every fifth but one to the one before: each split
    gets some of the sample."""
    return names[max(0, number % 5 - (5 - len(names)))]


def sample_split(names: tuple[str, ...]) -> dict[str, str]:
    return {image: split_of(n, names) for n, image in enumerate(sorted(SAMPLE))}


def voc_folder(root: Path) -> None:
    """The sample where the README's VOC recipe finds it: `tests/sample/` of the checkout."""
    for part in ("annotations", "images"):
        shutil.copytree(os.path.join(SAMPLE_DIR, part), root / "tests" / "sample" / part)


def roboflow_download(root: Path) -> None:
    """A Roboflow COCO download: a folder per split holding its images and
    `_annotations.coco.json`, whose image ids start from 0 in every split."""
    splits = sample_split(("train", "valid", "test"))
    for split in sorted(set(splits.values())):
        folder = root / "roboflow-download" / split
        images = {name: SAMPLE[name] for name, s in splits.items() if s == split}
        copy_images(str(folder), images)
        write_coco(str(folder / "_annotations.coco.json"), images, first_id=0)
    (root / "roboflow-download" / "README.roboflow.txt").write_text("Exported via roboflow.com\n")


def ultralytics_dataset(root: Path) -> None:
    """An Ultralytics dataset: `images/<split>/`, `labels/<split>/` and `data.yaml`."""
    write_yolo(str(root / "my-dataset"), SAMPLE, sample_split(("train", "val")))


def coco_file(root: Path) -> None:
    copy_images(str(root / "coco" / "images"), SAMPLE)
    write_coco(str(root / "coco" / "annotations.json"), SAMPLE)


def cvat_export(root: Path) -> None:
    """CVAT's "CVAT for images 1.1" task export, unzipped: `annotations.xml` and `images/`."""
    copy_images(str(root / "cvat-export" / "images"), SAMPLE)
    write_cvat(str(root / "cvat-export" / "annotations.xml"), SAMPLE)


# Each recipe, the layout it reads, and the recipes whose output it reads.
LAYOUTS: dict[str, Callable[[Path], None]] = {
    "voc": voc_folder,
    "roboflow": roboflow_download,
    "yolo": ultralytics_dataset,
    "coco": coco_file,
    "cvat": cvat_export,
    "export": lambda root: None,
}
NEEDS = {"export": ["voc"]}


def flag(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Callable[[str], tuple[Path, list[list[str]]]]:
    """Runs a recipe once in a folder laid out for every recipe, and checks what it prints;
    returns the folder and the recipe's commands."""
    root = tmp_path_factory.mktemp("recipes")
    for layout in LAYOUTS.values():
        layout(root)
    done: set[str] = set()

    def run_recipe(name: str) -> tuple[Path, list[list[str]]]:
        commands = recipe_commands(name)
        if name not in done:
            printed = ""
            for needed in NEEDS.get(name, []):
                run_recipe(needed)
            for command in commands:
                assert command[0] == "odrecords", command
                result = subprocess.run(
                    [sys.executable, "-m", "pipelines.cli", *command[1:]],
                    cwd=root,
                    env={**os.environ, "PYTHONPATH": str(REPO)},
                    capture_output=True,
                    text=True,
                    timeout=600,
                )
                assert result.returncode == 0, f"{shlex.join(command)}\n{result.stderr}"
                printed += result.stderr + result.stdout
            assert_shown(name, printed)
            done.add(name)
        return root, commands

    return run_recipe


def count_records(paths: list[Path]) -> int:
    """Records parsed with the OD API's feature spec, as training reads them."""
    count = 0
    for record in tf.data.TFRecordDataset([str(path) for path in paths]):
        tf.io.parse_single_example(record, OD_FEATURES)
        count += 1
    return count


def read_back(output: Path) -> dict:
    """An output's manifest, after checking that each split's records are its examples and
    that the report each recipe says to open counts them too."""
    manifest = json.loads((output / "manifest.json").read_text(encoding="utf-8"))
    stats = json.loads((output / "stats.json").read_text(encoding="utf-8"))
    assert (output / "report.html").is_file()
    for split, entry in manifest["splits"].items():
        files = [output / name for name in entry["files"]]
        assert count_records(files) == entry["examples"] == stats["splits"][split]["images"]
    return manifest


def test_every_recipe_has_a_layout_and_shows_its_output():
    recipes = RECIPE.findall(README)
    assert sorted(name for name, _, _ in recipes) == sorted(LAYOUTS)
    assert all(output.strip() for _, _, output in recipes)


@pytest.mark.parametrize("name", [name for name in LAYOUTS if name != "export"])
def test_create_recipe_writes_the_sample(run, name):
    root, commands = run(name)
    (command,) = commands
    manifest = read_back(root / flag(command, "--output"))
    assert sum(split["examples"] for split in manifest["splits"].values()) == len(SAMPLE)
    assert sum(split["objects"] for split in manifest["splits"].values()) == sum(
        len(entry["boxes"]) for entry in SAMPLE.values()
    )
    if "source" in command:
        assert len(manifest["splits"]) > 1


def test_export_recipe_gives_back_every_example(run):
    root, commands = run("export")
    (command,) = commands
    source = read_back(root / flag(command, "--input"))
    output = root / flag(command, "--output")
    assert flag(command, "--format") == "coco"
    for split, entry in source["splits"].items():
        coco = json.loads((output / "annotations" / f"instances_{split}.json").read_text())
        assert len(coco["images"]) == entry["examples"]
        assert len(coco["annotations"]) == entry["objects"]
        for image in coco["images"]:
            assert (output / "images" / image["file_name"]).is_file()
