"""Incremental rebuilds: the per-image index beside each shard, examples of unchanged images
reused from the previous build, and what changed since it. A rebuild that reuses must write
what a full rebuild of the same input writes, byte for byte."""

import io
import json
import os
import re
import shutil
from pathlib import Path

import apache_beam as beam
import pytest
import tensorflow as tf
from conftest import SAMPLE, local_pipeline, run_create
from PIL import Image

from transforms.builds.layout import latest_folder
from transforms.builds.report import write_errors
from transforms.builds.safe_write import new_folder
from transforms.records import ErrorRecord
from transforms.shard_count import shards_for
from transforms.splits import assign_split

SPLITS = "train=0.6,valid=0.4"
# What differs between two builds of the same input: when and as what they were built, and
# what each reused and compared.
PER_BUILD = {"created", "build", "reuse", "changes", "written", "earlier_output", "checksum"}


def sample(tmp_path: Path) -> Path:
    """A copy of the sample VOC dataset, with a box that is rejected (inverted) and an image
    that is (its file is missing), so reused examples must also give back their errors."""
    data = tmp_path / "data"
    shutil.copytree(SAMPLE, data, ignore=shutil.ignore_patterns("labels.csv"))
    edit(data / "annotations/shapes-004.xml", "<xmin>15</xmin>", "<xmin>95</xmin>")
    xml = (data / "annotations/shapes-002.xml").read_text()
    (data / "annotations/lost.xml").write_text(xml.replace("shapes-002.jpg", "lost.jpg"))
    return data


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def create(data: Path, out: Path, *args: str) -> int:
    return run_create(
        "--format", "voc", "--annotations", data / "annotations", "--images", data / "images",
        "--output", out, "--splits", SPLITS, "--num-shards", "3", *args,
    )  # fmt: skip


def folder(out: Path) -> Path:
    """Where the latest published build of `out` is."""
    return Path(latest_folder(str(out)))


def manifest_of(out: Path) -> dict:
    return json.loads((folder(out) / "manifest.json").read_text())


def written(out: Path) -> dict[str, bytes]:
    """The bytes of the shards, index files and label maps a build wrote."""
    where = folder(out)
    return {
        name: (where / name).read_bytes()
        for name in manifest_of(out)["written"]
        if name.startswith("index/") or ".tfrecord-" in name or name.startswith("label_map")
    }


def errors_of(out: Path) -> set[str]:
    path = folder(out) / "errors.jsonl"
    return set(path.read_text().splitlines()) if path.exists() else set()


def assert_same_dataset(rebuilt: Path, full: Path) -> None:
    """`rebuilt` holds what `full` does: the same shard, index and label map bytes, the same
    errors, and a manifest that differs only in what differs between any two builds."""
    assert written(rebuilt) == written(full)
    assert errors_of(rebuilt) == errors_of(full)
    ours, theirs = manifest_of(rebuilt), manifest_of(full)
    assert {k: v for k, v in ours.items() if k not in PER_BUILD} == {
        k: v for k, v in theirs.items() if k not in PER_BUILD
    }
    assert {k: v for k, v in ours["written"].items() if k in written(full)} == {
        k: v for k, v in theirs["written"].items() if k in written(full)
    }


def reencode(path: Path, quality: int) -> None:
    """Writes the image again as a JPEG of another quality: other bytes, the same picture."""
    image = Image.open(path)
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=quality)
    assert buffer.getvalue() != path.read_bytes()
    path.write_bytes(buffer.getvalue())


@pytest.mark.parametrize("processes", ["1", "2"])
def test_a_rebuild_reuses_unchanged_images_and_writes_what_a_full_rebuild_writes(
    tmp_path, capsys, processes
):
    """With shards written by worker processes too: they reuse and write the same bytes."""
    data, out = sample(tmp_path), tmp_path / "out"
    workers = ("--processes", processes)
    assert create(data, out, *workers) == 0
    first = manifest_of(out)
    assert first["changes"] is None
    assert first["reuse"]["not_possible_because"] == "no previous build"
    index = sorted(name for name in first["written"] if name.startswith("index/"))
    shards = sorted(f for split in first["splits"].values() for f in split["files"])
    assert index == [f"index/{shard}.jsonl" for shard in shards]
    row = json.loads((out / index[0]).read_text().splitlines()[0])
    assert row["offset"] == 0 and row["split"] in ("train", "valid")
    assert set(row) >= {"image", "length", "fingerprint", "files", "sha256", "phash", "stats"}
    capsys.readouterr()

    reencode(data / "images/shapes-003.jpg", 60)  # Bytes changed.
    edit(data / "annotations/shapes-006.xml", "<name>", "<name>x")  # Annotation changed.
    shutil.copy(data / "images/shapes-007.jpg", data / "images/added.jpg")  # Image added.
    xml = (data / "annotations/shapes-007.xml").read_text()
    (data / "annotations/added.xml").write_text(xml.replace("shapes-007.jpg", "added.jpg"))
    (data / "annotations/shapes-010.xml").unlink()  # Image removed.
    assert create(data, out, *workers) == 0
    printed = capsys.readouterr().out
    assert create(data, tmp_path / "full", "--reuse", "off") == 0
    assert_same_dataset(out, tmp_path / "full")

    manifest = manifest_of(out)
    reuse = manifest["reuse"]
    # 25 images: 21 unchanged, 3 changed or added, and the missing one, rejected again.
    assert reuse["images"] == {"reused": 21, "converted": 4}
    assert reuse["previous"] == first["build"]["id"] and reuse["mode"] == "stat"
    assert reuse["shards"]["copied"] >= 1
    assert reuse["shards"]["copied"] + reuse["shards"]["written"] == len(shards)
    assert f"reused 21 unchanged images of build {first['build']['id']}" in printed
    images = manifest["changes"]["images"]
    assert images["added"] == {"count": 1, "first": ["added.jpg"]}
    assert images["removed"] == {"count": 1, "first": ["shapes-010.png"]}
    assert images["changed"] == {
        "count": 2,
        "first": ["shapes-003.jpg", "shapes-006.jpg"],
        "image_bytes": 1,
        "annotations": 1,
    }
    assert images["moved"]["count"] == 0 and images["unchanged"] == 21
    splits = manifest["changes"]["splits"]
    assert {name: counts["after"] for name, counts in splits.items()} == {
        name: split["examples"] for name, split in manifest["splits"].items()
    }
    assert {name: counts["before"] for name, counts in splits.items()} == {
        name: split["examples"] for name, split in first["splits"].items()
    }
    assert "1 added, 1 removed, 2 changed (1 image bytes, 1 annotations)" in printed
    card = (out / "README.md").read_text()
    assert f"## Changes since build {first['build']['id']}" in card and "`added.jpg`" in card

    # Nothing changed since: every image is reused but the missing one.
    assert create(data, out, *workers) == 0
    reuse = manifest_of(out)["reuse"]
    assert reuse["images"] == {"reused": 24, "converted": 1}
    assert_same_dataset(out, tmp_path / "full")


def test_classes_renamed_and_added_are_reported_and_rebuilt_exactly(tmp_path):
    data, out = sample(tmp_path), tmp_path / "out"
    assert create(data, out, "--versions") == 0
    before = manifest_of(out)
    edit(data / "annotations/shapes-003.xml", "<name>triangle</name>", "<name>arrow</name>")
    edit(data / "annotations/shapes-008.xml", "<name>", "<name>zebra-")
    # The full rebuild follows the same previous build, whose class ids both keep.
    shutil.copytree(out, tmp_path / "full")
    assert create(data, out, "--versions") == 0
    assert create(data, tmp_path / "full", "--versions", "--reuse", "off") == 0
    assert_same_dataset(out, tmp_path / "full")
    after = manifest_of(out)
    classes = after["changes"]["classes"]
    old = {name: entry["id"] for name, entry in before["classes"].items()}
    new = {name: entry["id"] for name, entry in after["classes"].items()}
    assert "arrow" in classes["added"] and any(n.startswith("zebra-") for n in classes["added"])
    assert classes["added"] == [name for name in new if name not in old]
    assert classes["removed"] == [name for name in old if name not in new]
    # Classes keep their ids; the new ones follow every id used before.
    assert all(new[name] == old[name] for name in new if name in old)
    assert min(new[name] for name in classes["added"]) > max(old.values())
    assert after["class_ids_changed"] == {}
    assert classes["objects"]["arrow"] == {"before": 0, "after": 1}
    objects = classes["objects"].values()
    assert sum(c["before"] for c in objects) == sum(c["after"] for c in objects)
    reuse = after["reuse"]
    assert sum(reuse["images"].values()) == 25
    # Examples whose classes all kept their ids are reused (those without objects too); the
    # others are converted again.
    kept = {name for name in old if new.get(name) == old[name]}
    unchanged = [
        path
        for path in (data / "annotations").iterdir()
        if path.name not in ("lost.xml", "shapes-003.xml", "shapes-008.xml")
        and set(re.findall("<name>(.*?)</name>", path.read_text())) <= kept
    ]
    assert reuse["images"]["reused"] == len(unchanged)


def set_mtime(path: Path, ns: int) -> None:
    os.utime(path, ns=(ns, ns))


def test_stat_and_content_see_what_changed_and_a_record_must_hold_the_current_bytes(tmp_path):
    data, out = sample(tmp_path), tmp_path / "out"
    image = data / "images/shapes-002.jpg"
    assert create(data, out, "--versions") == 0
    # Touched, not changed: `stat` converts it again, `content` sees the same bytes.
    set_mtime(image, image.stat().st_mtime_ns + 5 * 10**9)
    assert create(data, out, "--versions") == 0
    assert manifest_of(out)["reuse"]["images"] == {"reused": 23, "converted": 2}
    set_mtime(image, image.stat().st_mtime_ns + 5 * 10**9)
    assert create(data, out, "--versions", "--reuse", "content") == 0
    manifest = manifest_of(out)
    assert manifest["reuse"]["images"] == {"reused": 24, "converted": 1}
    assert manifest["reuse"]["mode"] == "content"
    assert create(data, tmp_path / "full", "--reuse", "off") == 0
    assert_same_dataset(out, tmp_path / "full")  # The index holds the new time.

    # Other bytes of the same size, and the time put back: `stat` takes the file for
    # unchanged, but a record is reused only when it holds the file's current bytes, so the
    # image is converted again all the same.
    stored = image.read_bytes()
    assert stored[13:16] == b"\x00\x00\x01"  # JFIF density: a byte no decoder needs.
    when = image.stat().st_mtime_ns
    image.write_bytes(stored[:15] + b"\x02" + stored[16:])
    set_mtime(image, when)
    assert create(data, out, "--versions") == 0
    manifest = manifest_of(out)
    assert manifest["reuse"]["images"] == {"reused": 23, "converted": 2}
    assert manifest["changes"]["images"]["changed"]["first"] == ["shapes-002.jpg"]
    assert create(data, tmp_path / "full2", "--reuse", "off") == 0
    assert_same_dataset(out, tmp_path / "full2")


def flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def test_damaged_previous_files_are_never_copied(tmp_path):
    data, out = sample(tmp_path), tmp_path / "out"
    assert create(data, out, "--versions") == 0
    assert create(data, tmp_path / "full", "--reuse", "off") == 0
    where = folder(out)
    shards = sorted(manifest_of(out)["splits"]["train"]["files"])
    # A flipped byte inside the second record of a shard: the shard is no longer what the
    # manifest lists, so it is not copied whole, and that record fails its CRC check.
    rows = [json.loads(line) for line in (where / f"index/{shards[0]}.jsonl").open()]
    assert len(rows) >= 2
    flip_byte(where / shards[0], rows[1]["offset"] + 12 + rows[1]["length"] // 2)
    # A flipped byte in another shard's index file: the whole file is left out.
    flip_byte(where / f"index/{shards[1]}.jsonl", 40)
    assert create(data, out, "--versions") == 0
    assert_same_dataset(out, tmp_path / "full")
    manifest = manifest_of(out)
    indexed = len((where / f"index/{shards[1]}.jsonl").read_bytes().splitlines())
    assert manifest["reuse"]["images"]["converted"] == 1 + 1 + indexed  # `lost.jpg` too.
    assert manifest["reuse"]["previous_index_files"]["left_out"] == 1
    assert manifest["changes"]["images"]["complete"] is False


def test_moved_images_and_changed_settings(tmp_path):
    data, out = sample(tmp_path), tmp_path / "out"
    assert create(data, out) == 0
    assert create(data, out, "--splits", "train=0.3,valid=0.7") == 0
    names = [path.name for path in sorted((data / "images").iterdir())]
    moved = [
        name
        for name in names
        if assign_split(name, {"train": 0.6, "valid": 0.4})
        != assign_split(name, {"train": 0.3, "valid": 0.7})
    ]
    manifest = manifest_of(out)
    images = manifest["changes"]["images"]
    assert moved and images["moved"]["count"] == len(moved)
    assert images["moved"]["first"] == moved[:5]
    assert manifest["reuse"]["images"]["reused"] == 24 - len(moved)
    # Settings that change examples make every example new.
    assert create(data, out, "--splits", "train=0.3,valid=0.7", "--max-image-pixels", "99999") == 0
    reuse = manifest_of(out)["reuse"]
    assert reuse["images"] == {"reused": 0, "converted": 25}
    assert re.search("differ from the previous build", reuse["not_possible_because"])
    assert manifest_of(out)["changes"]["images"]["unchanged"] == 24


@pytest.mark.parametrize("mode", ["stat", "content"])
def test_embedded_images_take_the_identity_of_their_annotation_file(tmp_path, mode):
    import base64

    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    with open(f"{SAMPLE}/images/shapes-002.jpg", "rb") as handle:
        encoded = base64.b64encode(handle.read()).decode()
    document = {
        "imagePath": "gone.jpg",
        "imageData": encoded,
        "imageWidth": 120,
        "imageHeight": 160,
        "shapes": [{"label": "circle", "shape_type": "rectangle", "points": [[5, 5], [40, 40]]}],
    }
    annotation = data / "images/one.json"
    annotation.write_text(json.dumps(document))
    out = tmp_path / "out"
    args = ["--format", "labelme", "--annotations", data / "images", "--output", out]
    assert run_create(*args, "--reuse", mode) == 0
    assert run_create(*args, "--reuse", mode) == 0
    assert manifest_of(out)["reuse"]["images"] == {"reused": 1, "converted": 0}
    with open(f"{SAMPLE}/images/shapes-003.jpg", "rb") as handle:
        document["imageData"] = base64.b64encode(handle.read()).decode()
    annotation.write_text(json.dumps(document))
    assert run_create(*args, "--reuse", mode) == 0
    manifest = manifest_of(out)
    assert manifest["reuse"]["images"] == {"reused": 0, "converted": 1}
    assert manifest["changes"]["images"]["changed"]["image_bytes"] == 1


def assert_same_files(rebuilt: Path, full: Path) -> None:
    """Every file `rebuilt` wrote is byte for byte the one `full` wrote (the dataset card
    but for the time and the output folder it names), and their manifests differ only in the
    fields that differ between any two builds of the same input."""
    ours, theirs = manifest_of(rebuilt), manifest_of(full)
    assert sorted(ours["written"]) == sorted(theirs["written"])
    for name in ours["written"]:
        mine, other = (folder(rebuilt) / name).read_bytes(), (folder(full) / name).read_bytes()
        if name == "README.md":
            mine = mine.replace(str(rebuilt).encode(), b"OUT").replace(
                ours["created"].encode(), b""
            )
            other = other.replace(str(full).encode(), b"OUT").replace(
                theirs["created"].encode(), b""
            )
        assert mine == other, name
    for manifest in (ours, theirs):
        manifest["written"].pop("README.md")
    per_build = {"created", "build", "reuse", "checksum"}
    assert {k: v for k, v in ours.items() if k not in per_build} == {
        k: v for k, v in theirs.items() if k not in per_build
    }


def rebuild_both(data_args: list, out: Path, full: Path, *args: str) -> dict:
    """Rebuilds `out` reusing its build, and `full`, a copy of `out` made before, with
    `--reuse off`, so both follow the same previous build; returns the reusing one's
    manifest's `reuse`."""
    shutil.copytree(out, full)
    assert run_create(*data_args, "--output", out, *args) == 0
    assert run_create(*data_args, "--output", full, *args, "--reuse", "off") == 0
    return manifest_of(out)["reuse"]


def test_a_rebuild_in_another_shard_count_reuses_every_example(tmp_path):
    """The previous build's 3 shards a split, then as many as each split's size asks for:
    no shard is copied whole (their names differ), every unchanged example is reused."""
    data, out = sample(tmp_path), tmp_path / "out"
    assert create(data, out) == 0
    args = ["--format", "voc", "--annotations", data / "annotations", "--images", data / "images"]
    reuse = rebuild_both([*args, "--splits", SPLITS], out, tmp_path / "full")
    assert_same_dataset(out, tmp_path / "full")
    manifest = manifest_of(out)
    for split in manifest["splits"].values():
        count = shards_for(split["examples"] + split["rejected"])
        assert split["num_shards"] == count < 3
        assert all(f.endswith(f"-of-{count:05d}") for f in split["files"]), split["files"]
    assert reuse["shards"]["copied"] == 0
    assert reuse["images"]["reused"] == manifest["images"]["written"]
    shards = [str(folder(out) / f) for s in manifest["splits"].values() for f in s["files"]]
    assert sum(1 for _ in tf.data.TFRecordDataset(shards)) == manifest["images"]["written"]


def csv_rows(data: Path) -> list[str]:
    """The sample's CSV rows (no header), with an inverted box added, which is rejected."""
    rows = Path(SAMPLE, "labels.csv").read_text().splitlines()[1:]
    return rows + ["shapes-004.jpg,160,120,square,90,39,65,89"]


def write_csv(path: Path, rows: list[str]) -> None:
    path.write_text("\n".join(["filename,width,height,class,xmin,ymin,xmax,ymax", *rows]) + "\n")


def test_rows_reordered_renamed_and_moved_between_csv_files_rebuild_exactly(tmp_path):
    data, out = tmp_path / "data", tmp_path / "out"
    shutil.copytree(Path(SAMPLE, "images"), data / "images")
    (data / "labels").mkdir()
    rows = csv_rows(data)
    write_csv(data / "labels/a.csv", rows[: len(rows) // 2])
    write_csv(data / "labels/b.csv", rows[len(rows) // 2 :])
    args = ["--format", "csv", "--annotations", data / "labels", "--images", data / "images"]
    args += ["--splits", SPLITS, "--num-shards", "3"]
    assert run_create(*args, "--output", out) == 0
    assert any("a.csv" in line or "b.csv" in line for line in errors_of(out))

    # Images' rows reordered (each image keeps the order of its own rows), rows moved from
    # one file to the other, and a file renamed: the examples are the same, only the lines
    # and files they are read from changed.
    groups: dict[str, list[str]] = {}
    for row in rows:
        groups.setdefault(row.split(",")[0], []).append(row)
    order = sorted(groups, key=lambda name: name[::-1])
    moved = [row for name in order for row in groups[name]]
    (data / "labels/a.csv").unlink()
    write_csv(data / "labels/b.csv", moved[: len(moved) // 3])
    write_csv(data / "labels/c.csv", moved[len(moved) // 3 :])
    reuse = rebuild_both(args, out, tmp_path / "full")
    assert_same_files(out, tmp_path / "full")
    assert reuse["images"] == {"reused": 24, "converted": 0}


def test_renamed_voc_files_rebuild_exactly(tmp_path):
    data, out = sample(tmp_path), tmp_path / "out"
    assert create(data, out) == 0
    for path in sorted((data / "annotations").iterdir()):
        path.rename(path.with_name("renamed-" + path.name))
    args = ["--format", "voc", "--annotations", data / "annotations", "--images", data / "images"]
    args += ["--splits", SPLITS, "--num-shards", "3"]
    reuse = rebuild_both(args, out, tmp_path / "full")
    assert_same_files(out, tmp_path / "full")
    # The image with a rejected box is reused too: its error names the renamed file.
    assert reuse["images"] == {"reused": 24, "converted": 1}


def test_the_errors_file_is_sorted_whatever_order_errors_come_in(tmp_path):
    """A rebuild that reuses finds errors in another order than a full build: the file must
    not depend on it."""
    errors = [ErrorRecord(f"{name}.xml", f"{name}.jpg", "image", "missing", 1) for name in "zyxa"]
    with local_pipeline() as pipeline:
        path = str(tmp_path / "errors.jsonl")
        write_errors(
            pipeline | beam.Create(errors, reshuffle=False), str(tmp_path), path, new_folder
        )
    lines = (tmp_path / "errors.jsonl").read_text().splitlines()
    assert [json.loads(line)["image"] for line in lines] == ["a.jpg", "x.jpg", "y.jpg", "z.jpg"]


def test_the_errors_file_is_sorted_by_source_then_reason(tmp_path):
    """Not by the text of the JSON line, where `"` sorts after a space and the image comes
    before the reason."""
    errors = [
        ErrorRecord("a.json", "a.jpg", "image", "image file not found", 1),
        ErrorRecord("a.json", "b.jpg", "image", "image file is empty", 1),
        ErrorRecord("a.json copy", "c.jpg", "image", "image file is empty", 1),
    ]
    with local_pipeline() as pipeline:
        path = str(tmp_path / "errors.jsonl")
        write_errors(pipeline | beam.Create(errors[::-1]), str(tmp_path), path, new_folder)
    lines = [json.loads(line) for line in (tmp_path / "errors.jsonl").read_text().splitlines()]
    assert [(line["source"], line["reason"]) for line in lines] == sorted(
        (error.source, error.reason) for error in errors
    )
    assert [line["image"] for line in lines] == ["b.jpg", "a.jpg", "c.jpg"]
