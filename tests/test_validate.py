"""`odrecords validate` and `create --strict`: thresholds on real create outputs, failing
with the files involved named; a strict build that fails a check is not published."""

import json
import re
from pathlib import Path

import pytest
from conftest import SAMPLE, read_output, run_create
from test_replace import tree

from pipelines import validate
from pipelines.latest import latest
from transforms.builds.checks import Thresholds

HEADER = "filename,width,height,class,xmin,ymin,xmax,ymax\n"
TRAIN = [
    "shapes-002.jpg,120,160,circle,55,107,76,128",
    "shapes-003.jpg,120,160,triangle,7,73,63,129",
    "shapes-005.png,120,160,square,31,101,66,136",
    "missing.jpg,120,160,circle,1,1,20,20",
]
# shapes-003 in val too: the same image in two source splits. No square in val.
VAL = [
    "shapes-003.jpg,120,160,triangle,7,73,63,129",
    "shapes-004.jpg,160,120,circle,15,39,65,89",
]


def write_dataset(folder):
    folder.mkdir()
    (folder / "train_labels.csv").write_text(HEADER + "\n".join(TRAIN) + "\n", encoding="utf-8")
    (folder / "val_labels.csv").write_text(HEADER + "\n".join(VAL) + "\n", encoding="utf-8")
    return [
        "--format",
        "csv",
        "--annotations",
        folder,
        "--images",
        f"{SAMPLE}/images",
        "--splits",
        "source",
    ]


@pytest.fixture(scope="module")
def leaky(tmp_path_factory):
    """A real output with the same image in two splits and a rejected object."""
    root = tmp_path_factory.mktemp("leaky")
    args = write_dataset(root / "data")
    assert run_create(*args, "--output", root / "out") == 0
    return root / "out"


def lines(text: str) -> list[str]:
    return text.splitlines()


def test_a_clean_output_passes_and_a_check_it_cannot_make_fails_only_when_asked(tmp_path, capsys):
    out = tmp_path / "out"
    args = ["--format", "voc", "--annotations", f"{SAMPLE}/annotations"]
    assert run_create(*args, "--images", f"{SAMPLE}/images", "--output", out) == 0
    manifest = read_output(out)["manifest"]
    assert manifest["objects"]["rejected"] == 0 and manifest["errors"]["count"] == 0
    capsys.readouterr()
    assert validate.main([str(out)]) == 0
    captured = capsys.readouterr()
    assert re.search(r"^ok +leakage .*: 0 \(--max-leakage-pairs 0\)$", captured.out, re.M)
    assert re.search(r"^ok +classes missing from a split: 0", captured.out, re.M)
    # An output of a version that wrote no stats.json.
    (out / "stats.json").unlink()
    assert validate.main([str(out)]) == 0
    assert re.search(
        r"^skip +classes missing from a split: not checked", capsys.readouterr().out, re.M
    )
    assert validate.main([str(out), "--max-missing-classes", "3"]) == 1
    assert "no stats.json" in capsys.readouterr().err


def test_leakage_and_rejected_objects_fail_naming_the_files(leaky, capsys):
    manifest = read_output(leaky)["manifest"]
    # Without --strict the findings do not gate publication.
    assert manifest["options"]["strict"] is None and "checks" not in manifest["build"]
    assert manifest["images"]["in_several_splits"]["count"] == 1
    assert manifest["objects"]["rejected"] == 1
    capsys.readouterr()
    assert validate.main([str(leaky)]) == 1
    captured = capsys.readouterr()
    out = lines(captured.out)
    leak = next(i for i, line in enumerate(out) if line.startswith("FAIL  leakage"))
    assert out[leak].endswith(": 1 (--max-leakage-pairs 0)")
    assert out[leak + 1].strip() == "shapes-003.jpg (train, val)"
    read = manifest["objects"]["read"] + manifest["objects"]["copies_in_other_splits"]
    rejected = next(i for i, line in enumerate(out) if line.startswith("FAIL  rejected objects"))
    assert f"(1 of {read} read): {1 / read:.2%}" in out[rejected]
    # The errors file's source of the rejected object: the CSV line of missing.jpg.
    errors = read_output(leaky)["errors"]
    (source,) = [error["source"] for error in errors if error["objects"]]
    assert source.endswith("train_labels.csv:5")
    assert out[rejected + 1].strip() == f"{source} (1)"
    assert "3 of 3 checks failed" in captured.err  # val has no square too


def test_thresholds_at_the_findings_pass(leaky, capsys):
    read = read_output(leaky)["manifest"]["objects"]["read"]
    share = str(round(1 / read + 0.001, 3))
    assert validate.main([str(leaky), "--max-leakage-pairs", "1"]) == 1
    found = ["--max-leakage-pairs", "1", "--max-rejected-objects", share]
    assert validate.main([str(leaky), *found]) == 1  # val has no square
    assert validate.main([str(leaky), *found, "--max-missing-classes", "1"]) == 0
    assert validate.main([str(leaky), "--max-rejected-objects", share]) == 1


def test_missing_classes_come_from_stats_json(leaky, capsys):
    """The build's `stats.json` lists each split's classes without objects; val has no square."""
    stats = json.loads((leaky / "stats.json").read_text(encoding="utf-8"))
    assert stats["splits"]["val"]["missing_classes"] == ["square"]
    loose = ["--max-leakage-pairs", "1", "--max-rejected-objects", "0.5"]
    capsys.readouterr()
    assert validate.main([str(leaky), *loose]) == 1
    out = lines(capsys.readouterr().out)
    missing = next(i for i, line in enumerate(out) if line.startswith("FAIL  classes"))
    assert out[missing].endswith(": 1 (--max-missing-classes 0)")
    assert out[missing + 1].strip() == "val: square"
    assert validate.main([str(leaky), *loose, "--max-missing-classes", "1"]) == 0


def check_lines(text: str) -> list[str]:
    """The lines of the checks as `odrecords validate` prints them: one per check, each
    followed by the files involved when it failed."""
    out = lines(text)
    first = next(i for i, line in enumerate(out) if re.match(r"(FAIL|ok  |skip)  ", line))
    block = []
    for line in out[first:]:
        if not re.match(r"(FAIL|ok  |skip)  |        \S", line):
            break
        block.append(line)
    return block


def published_id(out: Path) -> str:
    """The build id of the output's published build, as `odrecords latest` finds it."""
    manifest = json.loads((Path(latest(str(out))) / "manifest.json").read_text())
    return manifest["build"]["id"]


@pytest.mark.parametrize("versions", [False, True], ids=["flat", "versions"])
def test_a_strict_build_that_fails_a_check_is_not_published(tmp_path, capsys, versions):
    out = tmp_path / "out"
    flags = ["--versions"] if versions else []
    clean = ["--format", "voc", "--annotations", f"{SAMPLE}/annotations"]
    assert run_create(*clean, "--images", f"{SAMPLE}/images", "--output", out, *flags) == 0
    published, first = tree(out), published_id(out)
    capsys.readouterr()
    # The same image in two splits, a rejected object, and no square in val.
    leaky = [*write_dataset(tmp_path / "data"), "--output", out, *flags, "--strict"]
    assert run_create(*leaky) == 1
    captured = capsys.readouterr()
    held_back = Path(re.search(r"the build is in (.+?), the published", captured.err)[1])
    now = tree(out)
    assert {name: now.get(name) for name in published} == published
    assert all(
        (out / name).is_relative_to(held_back) or name.startswith(".builds/")
        for name in now.keys() - published.keys()
    )
    assert published_id(out) == first
    manifest = json.loads((held_back / "manifest.json").read_text())
    assert manifest["build"]["published"] is False and manifest["build"]["id"] != first
    assert manifest["options"]["strict"] == {
        "max_missing_classes": 0,
        "max_rejected_objects": 0.0,
        "max_leakage_pairs": 0,
    }
    # create prints the lines validate prints of the same build, files named.
    printed = check_lines(captured.out)
    assert validate.report(validate.check(str(held_back), Thresholds()), "odrecords validate") == 1
    assert printed == check_lines(capsys.readouterr().out)
    assert "        val: square" in printed and "        shapes-003.jpg (train, val)" in printed
    failed = [f"--strict: {line[6:]}" for line in printed if line.startswith("FAIL  ")]
    assert "--strict: classes missing from a split: 1 (--max-missing-classes 0)" in failed
    assert len(failed) == 3 and manifest["build"]["not_published_because"] == failed
    assert f"not published: {'; '.join(failed)}; the build is in" in captured.err
    # At the thresholds it is published, and says what it passed by.
    read = manifest["objects"]["read"] + manifest["objects"]["copies_in_other_splits"]
    share = str(round(1 / read + 0.001, 3))
    loose = ["--max-missing-classes", "1", "--max-leakage-pairs", "1"]
    assert run_create(*leaky, *loose, "--max-rejected-objects", share) == 0
    printed = check_lines(capsys.readouterr().out)
    assert len(printed) == 3 and all(line.startswith("ok  ") for line in printed)
    assert published_id(out) not in (first, manifest["build"]["id"])
    assert not held_back.exists() and not (out / ".builds").exists()
    manifest = read_output(latest(str(out)))["manifest"]
    assert manifest["build"]["published"] and manifest["build"]["not_published_because"] == []
    assert manifest["options"]["strict"]["max_rejected_objects"] == float(share)
    assert [entry["name"] for entry in manifest["build"]["checks"]] == [
        "missing_classes",
        "rejected_objects",
        "leakage_pairs",
    ]
