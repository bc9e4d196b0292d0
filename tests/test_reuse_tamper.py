"""A previous build tampered with, whatever was done to it, never makes a rebuild that reuses
write anything but what a `--reuse off` build writes: rows' offsets and lengths swapped,
image names swapped, bytes flipped in shards and index files, files cut short, rows and files
deleted, with or without the manifest's sizes, hashes and checksum recomputed (which anyone
can do). A record is reused only when its own bytes prove it is the image's current example."""

import hashlib
import json
import shutil
import tempfile
from pathlib import Path

import pytest
from conftest import run_create
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_incremental import assert_same_files, manifest_of, sample

from transforms.builds.outputs import with_checksum

TAMPER = settings(
    max_examples=15,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# A row operation: (kind, one row, another row), rows numbered across all index files.
ROW_OPS = st.tuples(
    st.sampled_from(["swap_place", "swap_image", "delete_row"]),
    st.integers(0, 99),
    st.integers(0, 99),
)
# A file operation: (kind, file, position, mask), files numbered over shards and index files.
FILE_OPS = st.tuples(
    st.sampled_from(["flip", "truncate", "delete_file"]),
    st.integers(0, 99),
    st.integers(0, 1 << 20),
    st.integers(1, 255),
)


def small_sample(root: Path) -> Path:
    """The sample with a box rejected and an image missing, cut to nine images."""
    data = sample(root)
    for path in (data / "annotations").iterdir():
        if path.name != "lost.xml" and path.name > "shapes-008.xml":
            path.unlink()
    return data


def create(data: Path, out: Path, *args: str) -> int:
    return run_create(
        "--format", "voc", "--annotations", data / "annotations", "--images", data / "images",
        "--output", out, "--splits", "train=0.5,valid=0.5", "--num-shards", "2", *args,
    )  # fmt: skip


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, Path]:
    """The small sample and a build of it, which each example copies and tampers with."""
    root = tmp_path_factory.mktemp("tamper")
    data, out = small_sample(root), root / "base"
    assert create(data, out) == 0
    return data, out


def previous_files(out: Path) -> list[str]:
    """The shards and index files of the build in `out`, sorted."""
    return sorted(name for name in manifest_of(out)["written"] if ".tfrecord-" in name)


def rewrite_rows(out: Path, kind: str, one: int, other: int) -> None:
    """Applies a row operation to the index files that still read as JSON lines."""
    files = {}
    for name in previous_files(out):
        path = out / name
        if name.startswith("index/") and path.exists():
            try:
                files[name] = [json.loads(line) for line in path.read_bytes().splitlines()]
            except ValueError:
                continue
    rows = [(name, n) for name, lines in files.items() for n in range(len(lines))]
    if not rows:
        return
    (a_file, a), (b_file, b) = rows[one % len(rows)], rows[other % len(rows)]
    first, second = files[a_file][a], files[b_file][b]
    if kind == "swap_place":
        for key in ("offset", "length"):
            first[key], second[key] = second[key], first[key]
    elif kind == "swap_image":
        first["image"], second["image"] = second["image"], first["image"]
    else:
        del files[a_file][a]
    for name in {a_file, b_file}:
        lines = [
            json.dumps(row, sort_keys=True, separators=(",", ":")) + "\n" for row in files[name]
        ]
        (out / name).write_bytes("".join(lines).encode("ascii"))


def damage_file(out: Path, kind: str, which: int, position: int, mask: int) -> None:
    """Applies a file operation to a shard or index file of the build, if it is still there."""
    names = [name for name in previous_files(out) if (out / name).exists()]
    if not names:
        return
    path = out / names[which % len(names)]
    data = bytearray(path.read_bytes())
    if kind == "delete_file":
        path.unlink()
    elif kind == "truncate":
        path.write_bytes(bytes(data[: position % (len(data) + 1)]))
    elif data:
        data[position % len(data)] ^= mask
        path.write_bytes(bytes(data))


def relist(out: Path) -> None:
    """Recomputes the manifest's size and sha256 of every file it lists and its checksum, as
    anyone can, so the tampered files pass for the build's own."""
    manifest = manifest_of(out)
    for name in manifest["written"]:
        path = out / name
        if path.exists():
            data = path.read_bytes()
            manifest["written"][name] = {
                "size": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
            }
    (out / "manifest.json").write_text(json.dumps(with_checksum(manifest)))


@given(
    rows=st.lists(ROW_OPS, max_size=3),
    files=st.lists(FILE_OPS, max_size=2),
    recompute=st.booleans(),
    mode=st.sampled_from(["stat", "content"]),
)
@TAMPER
def test_a_tampered_previous_build_never_changes_what_a_rebuild_writes(
    built, rows, files, recompute, mode
):
    data, base = built
    work = Path(tempfile.mkdtemp(dir=base.parent))
    try:
        out, full = work / "out", work / "full"
        shutil.copytree(base, out)
        for operation in rows:
            rewrite_rows(out, *operation)
        for operation in files:
            damage_file(out, *operation)
        if recompute:
            relist(out)
        shutil.copytree(out, full)
        assert create(data, out, "--reuse", mode) == 0
        assert create(data, full, "--reuse", "off") == 0
        assert_same_files(out, full)
        assert all(manifest_of(out)["accounting"].values())
    finally:
        shutil.rmtree(work)


def test_swapped_places_copy_neither_record(tmp_path):
    """The issue's case: neighbouring rows' offsets and lengths swapped, the manifest's hashes
    and checksum recomputed: both images are converted again, each written once."""
    data, out = small_sample(tmp_path), tmp_path / "out"
    assert create(data, out) == 0
    index = next(
        name
        for name in previous_files(out)
        if name.startswith("index/") and len((out / name).read_bytes().splitlines()) >= 2
    )
    position = previous_files(out).index(index)
    rows = [name for name in previous_files(out)[:position] if name.startswith("index/")]
    first = sum(len((out / name).read_bytes().splitlines()) for name in rows)
    rewrite_rows(out, "swap_place", first, first + 1)
    relist(out)
    shutil.copytree(out, tmp_path / "full")
    assert create(data, out) == 0
    assert create(data, tmp_path / "full", "--reuse", "off") == 0
    assert_same_files(out, tmp_path / "full")
    assert manifest_of(out)["reuse"]["images"] == {"reused": 6, "converted": 3}


def test_a_row_claiming_the_current_annotation_over_a_stale_record_is_not_reused(tmp_path):
    """A previous row whose fingerprints are the current annotation's, over a record written
    from an older annotation (other boxes): the record is stale, the image converted again."""
    data, out = small_sample(tmp_path), tmp_path / "out"
    assert create(data, out) == 0
    stale = tmp_path / "stale"
    shutil.copytree(out, stale)
    xml = data / "annotations/shapes-003.xml"
    xml.write_text(xml.read_text().replace("<xmin>7</xmin>", "<xmin>8</xmin>", 1))
    assert create(data, out) == 0
    current = {
        json.loads(line)["image"]: json.loads(line)
        for name in previous_files(out)
        if name.startswith("index/")
        for line in (out / name).read_bytes().splitlines()
    }
    for name in previous_files(stale):
        if name.startswith("index/"):
            lines = []
            for line in (stale / name).read_bytes().splitlines():
                row = json.loads(line)
                for key in ("fingerprint", "annotation"):
                    row[key] = current[row["image"]][key]
                lines.append(json.dumps(row, sort_keys=True, separators=(",", ":")) + "\n")
            (stale / name).write_bytes("".join(lines).encode("ascii"))
    relist(stale)
    shutil.copytree(stale, tmp_path / "full")
    assert create(data, stale) == 0
    assert create(data, tmp_path / "full", "--reuse", "off") == 0
    assert_same_files(stale, tmp_path / "full")
    assert manifest_of(stale)["reuse"]["images"] == {"reused": 7, "converted": 2}


def test_rows_with_values_of_other_types_leave_their_file_out(tmp_path):
    """A row whose values are valid JSON of other types (a perceptual hash in text, a
    negative offset) never reaches a later step: its index file is left out."""
    data, out = small_sample(tmp_path), tmp_path / "out"
    assert create(data, out) == 0
    index = [name for name in previous_files(out) if name.startswith("index/")]
    for name, key, value in ((index[0], "phash", "abc"), (index[-1], "offset", -1)):
        rows = [json.loads(line) for line in (out / name).read_bytes().splitlines()]
        rows[0][key] = value
        lines = [json.dumps(row, sort_keys=True, separators=(",", ":")) + "\n" for row in rows]
        (out / name).write_bytes("".join(lines).encode("ascii"))
    relist(out)
    shutil.copytree(out, tmp_path / "full")
    assert create(data, out) == 0
    assert create(data, tmp_path / "full", "--reuse", "off") == 0
    assert_same_files(out, tmp_path / "full")
    assert manifest_of(out)["reuse"]["previous_index_files"]["left_out"] == 2
