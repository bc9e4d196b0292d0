"""The portable runner (Fn API, separate worker processes, as on Flink and Dataflow) gives the
same output as the local runner: same examples in the same shards, label map, errors, counts."""

import json
import shutil
from pathlib import Path

import pytest
from conftest import SAMPLE, read_output, run_create
from services import portable_runner
from test_export import run_export

from pipelines.latest import latest


@pytest.fixture(scope="module")
def runner_flags():
    with portable_runner() as flags:
        yield flags


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """The sample plus two bad inputs, so errors travel the portable path too."""
    root = tmp_path_factory.mktemp("portable-data")
    shutil.copytree(f"{SAMPLE}/annotations", root / "annotations")
    (root / "annotations" / "broken.xml").write_text("<annotation><filename>x.jpg")
    (root / "annotations" / "missing.xml").write_text(
        "<annotation><filename>missing.jpg</filename><object><name>circle</name>"
        "<bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox></object>"
        "</annotation>"
    )
    return root


def same_output(local, portable) -> None:
    """Shard bytes, label map, errors and counts are equal (times and input paths aside)."""
    a, b = read_output(local), read_output(portable)
    assert a["label_map"] == b["label_map"]

    def errors(output):  # Sources compared by file name: the inputs may live elsewhere.
        return sorted(
            (e["source"].rsplit("/", 1)[-1], e["image"], e["stage"], e["reason"])
            for e in output["errors"]
        )

    assert errors(a) == errors(b)
    for field in ("splits", "classes", "images", "objects", "accounting"):
        assert a["manifest"][field] == b["manifest"][field], field
    for split in a["manifest"]["splits"].values():
        for relative in split["files"]:
            assert (local / relative).read_bytes() == (portable / relative).read_bytes()


@pytest.mark.parametrize("fmt", ["voc", "csv"])
def test_create_on_the_portable_runner_equals_the_local_run(runner_flags, dataset, tmp_path, fmt):
    annotations = dataset / "annotations" if fmt == "voc" else f"{SAMPLE}/labels.csv"
    args = ["--format", fmt, "--annotations", annotations, "--images", f"{SAMPLE}/images",
            "--splits", "train=0.6,val=0.2,test=0.2", "--num-shards", "3"]  # fmt: skip
    assert run_create(*args, "--output", tmp_path / "local") == 0
    temp = tmp_path / "temp"
    temp.mkdir()
    portable = [*runner_flags, f"--temp_location={temp}"]
    assert run_create(*args, "--output", tmp_path / "portable", *portable) == 0
    same_output(tmp_path / "local", tmp_path / "portable")
    assert list(temp.iterdir()) == []  # Scratch files went to --temp_location and were removed.
    assert not (tmp_path / "portable" / ".parts").exists()
    if fmt == "voc":
        assert len(read_output(tmp_path / "portable")["errors"]) == 2


def test_export_on_the_portable_runner_equals_the_local_run(runner_flags, tmp_path):
    assert run_create("--format", "voc", "--annotations", f"{SAMPLE}/annotations", "--images",
                      f"{SAMPLE}/images", "--output", tmp_path / "records") == 0  # fmt: skip
    args = ["--input", tmp_path / "records", "--format", "coco"]
    assert run_export(*args, "--output", tmp_path / "local") == 0
    assert run_export(*args, "--output", tmp_path / "portable", *runner_flags) == 0
    relative = "annotations/instances_train.json"
    local = json.loads((tmp_path / "local" / relative).read_text())
    assert local["images"] and local["annotations"]
    assert (tmp_path / "local" / relative).read_bytes() == (
        tmp_path / "portable" / relative
    ).read_bytes()
    images = sorted(p.name for p in (tmp_path / "portable" / "images").iterdir())
    assert images == sorted(p.name for p in (tmp_path / "local" / "images").iterdir())


def test_versions_on_the_portable_runner_equal_the_local_ones(runner_flags, dataset, tmp_path):
    """Versioned builds are published by the workers (as on Dataflow, whose launcher may be
    gone), and a held-back build leaves the published version in place."""
    args = ["--format", "voc", "--annotations", dataset / "annotations", "--images",
            f"{SAMPLE}/images", "--num-shards", "2", "--versions"]  # fmt: skip
    for where, flags in (("local", []), ("portable", runner_flags)):
        out = tmp_path / where
        assert run_create(*args, "--output", out, *flags) == 0
        first = latest(str(out))
        assert run_create(*args, "--output", out, *flags, "--max-error-rate", "0.01") == 1
        assert latest(str(out)) == first
        assert run_create(*args, "--output", out, *flags) == 0
        assert latest(str(out)) != first
    same_output(Path(latest(str(tmp_path / "local"))), Path(latest(str(tmp_path / "portable"))))
