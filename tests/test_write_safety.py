"""Links planted where a command writes, through the real `create`, `export` and `inspect
--render`: a link to a file outside, to a folder outside, a dangling link, and a linked
subfolder, at every path the command would write. Nothing outside ever changes (content,
mtime, what is there), no planted link is followed or removed, and the command refuses with
a clear message, before it starts where the path is known then, or rejects only what would
have gone through the link."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from conftest import run_create
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_export import example, jpeg_bytes, run_export, write_records
from test_inspect import run_inspect
from test_versions import CSV, sample_rows, write_labels

from transforms.builds.safe_write import UnsafeWrite, move_file, write_file

KINDS = ("file", "folder", "dangling")
SHARD = "train/train.tfrecord-00000-of-00002"


def outside(tmp_path: Path) -> Path:
    """A folder outside every output: a file, a folder with a file, and a name left free."""
    folder = tmp_path / "outside"
    (folder / "folder").mkdir(parents=True)
    (folder / "file").write_text("precious")
    (folder / "folder" / "kept.txt").write_text("kept")
    return folder


def snapshot(folder: Path) -> dict[str, tuple]:
    """{relative path: (bytes or None for a folder, mtime in ns)} of all under `folder`."""
    return {
        str(path.relative_to(folder)): (
            None if path.is_dir() else path.read_bytes(),
            path.lstat().st_mtime_ns,
        )
        for path in [folder, *folder.rglob("*")]
    }


def plant(path: Path, kind: str, target: Path) -> Path:
    """Puts a link of `kind` at `path`, replacing what is there; returns where it points."""
    points = {"file": target / "file", "folder": target / "folder", "dangling": target / "free"}
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(points[kind])
    return points[kind]


def assert_untouched(target: Path, before: dict, links: dict[Path, Path]) -> None:
    assert snapshot(target) == before
    assert not (target / "free").exists()
    for link, points in links.items():
        assert link.is_symlink() and Path(os.readlink(link)) == points, link


def copy(source: Path, destination: Path) -> Path:
    shutil.copytree(source, destination, symlinks=True)
    return destination


# create


@pytest.fixture(scope="module")
def create_args(tmp_path_factory) -> list:
    """Arguments of a build of the sample with an error (an image that is missing)."""
    folder = tmp_path_factory.mktemp("labels")
    rows = sample_rows() + [["missing.jpg", "40", "30", "cat", "1", "1", "20", "20"]]
    labels = write_labels(folder / "labels.csv", rows)
    return [*CSV, "--annotations", labels, "--num-shards", "2", "--splits", "train=1"]


@pytest.fixture(scope="module")
def created(tmp_path_factory, create_args) -> Path:
    out = tmp_path_factory.mktemp("created") / "out"
    assert run_create(*create_args, "--output", out) == 0
    assert (out / SHARD).is_file() and (out / "errors.jsonl").is_file()
    return out


# Known before a build starts: refused with exit code 2, nothing written.
CREATE_FIXED = [
    "manifest.json",
    "README.md",
    "label_map.pbtxt",
    "label_map.csv",
    "errors.jsonl",
    "LATEST",
    ".builds",
    "versions",
    "index",
]
# Named by the data: the build is made, then not published (exit code 1).
CREATE_PUBLISHED = ["train", SHARD, "index/train", f"index/{SHARD}.jsonl"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("relative", CREATE_FIXED + CREATE_PUBLISHED)
def test_create_never_writes_through_a_link(created, create_args, tmp_path, capsys, relative, kind):
    target = outside(tmp_path)
    out = copy(created, tmp_path / "out")
    published = (out / "manifest.json").read_bytes()
    link = out / relative
    links = {link: plant(link, kind, target)}
    before = snapshot(target)
    code = run_create(*create_args, "--output", out)
    assert_untouched(target, before, links)
    err = capsys.readouterr().err
    assert f"{relative} is a link; odrecords never writes through links" in err
    if relative in CREATE_FIXED:
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        assert not (out / ".builds").is_dir() or relative == ".builds"
    else:
        assert code == 1 and "not published" in err
        assert (out / "manifest.json").read_bytes() == published


def test_create_into_a_new_output_whose_build_folder_is_a_link(create_args, tmp_path, capsys):
    target = outside(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    for parent, flags in ((".builds", []), ("versions", ["--versions"])):
        links = {out / parent: plant(out / parent, "folder", target)}
        before = snapshot(target)
        code = run_create(*create_args, *flags, "--output", out)
        assert_untouched(target, before, links)
        assert code == 2 and f"{parent} is a link" in capsys.readouterr().err
        (out / parent).unlink()


def test_links_named_as_builds_are_never_published_nor_removed(created, create_args, tmp_path):
    """A link named as a build folder, to a folder holding files named as odrecords names
    them (a copy of a published output), is no build: the next build neither publishes it
    nor removes what it leads to."""
    target = outside(tmp_path)
    copy(created, target / "folder" / "copy")
    out = copy(created, tmp_path / "out")
    links = {}
    for parent in (".builds", "versions"):
        link = out / parent / "20200101T000000000000Z-abcdef"
        links[link] = plant(link, "folder", target)
    before = snapshot(target)
    assert run_create(*create_args, "--output", out) == 0
    assert_untouched(target, before, links)
    versions = tmp_path / "versions"
    args = [*create_args, "--output", versions, "--versions", "--keep-versions", "1"]
    assert run_create(*args) == 0
    link = versions / "versions" / "20200101T000000000000Z-abcdef"
    links = {link: plant(link, "folder", target)}
    assert run_create(*args) == 0
    assert_untouched(target, before, links)


@pytest.mark.parametrize("kind", KINDS)
def test_the_versions_pointer_is_never_written_through(create_args, tmp_path, capsys, kind):
    target = outside(tmp_path)
    out = tmp_path / "out"
    args = [*create_args, "--output", out, "--versions"]
    assert run_create(*args) == 0
    links = {out / "LATEST": plant(out / "LATEST", kind, target)}
    before = snapshot(target)
    code = run_create(*args)
    assert_untouched(target, before, links)
    assert code == 2 and "LATEST is a link" in capsys.readouterr().err


# export

NAMES = [b"a.jpg", b"b.jpg", b"c.jpg", b"sub/d.jpg", b"e.jpg", b"f.jpg", b"g.jpg"]


@pytest.fixture(scope="module")
def records(tmp_path_factory) -> Path:
    box = {f"image__object__bbox__{k}": [v] for k, v in
           (("xmin", 0.1), ("ymin", 0.1), ("xmax", 0.5), ("ymax", 0.5))}  # fmt: skip
    path = tmp_path_factory.mktemp("records") / "r.tfrecord"
    write_records(path, [
        example(image__encoded=jpeg_bytes(40 + n), image__filename=name, image__height=30,
                image__width=40 + n, image__object__class__text=[b"cat"], **box)
        for n, name in enumerate(NAMES)
    ])  # fmt: skip
    return path


def export_args(records: Path, fmt: str, out: Path) -> list:
    return ["--input", f"train={records}", "--format", fmt, "--output", out]


# Known before an export starts, per format: refused with exit code 2.
EXPORT_FIXED = {
    "coco": ["annotations", "annotations/instances_train.json"],
    "csv": ["train_labels.csv"],
    "voc": ["annotations", "ImageSets", "ImageSets/Main", "ImageSets/Main/train.txt"],
    "yolo": ["labels", "train.txt", "data.yaml"],
}
# The annotation file of each image, in the formats with one per image.
EXPORT_PER_IMAGE = {
    "voc": "annotations/{}.xml",
    "yolo": "labels/{}.txt",
}


@pytest.fixture(scope="module", params=sorted(EXPORT_FIXED))
def exported(request, tmp_path_factory, records) -> tuple[str, Path]:
    out = tmp_path_factory.mktemp("exported") / request.param
    assert run_export(*export_args(records, request.param, out)) == 0
    return request.param, out


@pytest.mark.parametrize("kind", KINDS)
def test_export_never_writes_through_a_link_it_knows_of_before(
    exported, records, tmp_path, capsys, kind
):
    fmt, reference = exported
    target = outside(tmp_path)
    for number, relative in enumerate(
        ["export.json", "errors.jsonl", "images", ".parts", *EXPORT_FIXED[fmt]]
    ):
        out = copy(reference, tmp_path / f"out{number}")
        links = {out / relative: plant(out / relative, kind, target)}
        before = snapshot(target)
        code = run_export(*export_args(records, fmt, out))
        assert_untouched(target, before, links)
        err = capsys.readouterr().err
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        assert f"{relative} is a link; odrecords never writes through links" in err


def test_export_rejects_the_images_whose_files_would_go_through_a_link(exported, records, tmp_path):
    """Images and per-image files named by the data: each one whose place is a link, or
    lies in a linked subfolder, becomes an error record; the others are written."""
    fmt, reference = exported
    target = outside(tmp_path)
    out = copy(reference, tmp_path / "out")
    links = {}
    planted = {"images/a.jpg": "file", "images/b.jpg": "dangling", "images/c.jpg": "folder"}
    planted["images/sub"] = "folder"
    if fmt in EXPORT_PER_IMAGE:
        for stem, kind in zip("efg", KINDS, strict=True):
            planted[EXPORT_PER_IMAGE[fmt].format(stem)] = kind
    for relative, kind in planted.items():
        links[out / relative] = plant(out / relative, kind, target)
    before = snapshot(target)
    assert run_export(*export_args(records, fmt, out)) == 0
    assert_untouched(target, before, links)
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    rejected = {error["image"] for error in errors}
    assert all("never writes through links" in error["reason"] for error in errors), errors
    expected = {"a.jpg", "b.jpg", "c.jpg", "sub/d.jpg"} | (
        {"e.jpg", "f.jpg", "g.jpg"} if fmt in EXPORT_PER_IMAGE else set()
    )
    assert rejected == expected
    written = json.loads((out / "export.json").read_text())["written"]
    assert not any(Path(out / name).is_symlink() for name in written)
    kept = sorted(name.decode() for name in NAMES if name.decode() not in expected)
    assert all((out / "images" / name).is_file() for name in kept)


# inspect --render


@pytest.fixture(scope="module")
def shards(created) -> str:
    return f"{created}/train/*"


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", ["classes.png", "examples-001.png", "examples-002.png"])
def test_render_never_writes_through_a_link(shards, tmp_path, capsys, name, kind):
    target = outside(tmp_path)
    folder = tmp_path / "render"
    assert run_inspect(shards, "--render", folder, "--limit", "20") == 0
    links = {folder / name: plant(folder / name, kind, target)}
    before = snapshot(target)
    capsys.readouterr()
    code = run_inspect(shards, "--render", folder, "--limit", "20")
    assert_untouched(target, before, links)
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert f"{name} is a link; odrecords never writes through links" in err


def test_render_replaces_its_own_pictures_only(shards, tmp_path, capsys):
    folder = tmp_path / "render"
    assert run_inspect(shards, "--render", folder) == 0
    drawn = (folder / "classes.png").stat().st_mtime_ns
    assert run_inspect(shards, "--render", folder) == 0  # Its own pictures are replaced.
    assert (folder / "classes.png").stat().st_mtime_ns >= drawn
    (folder / "examples-001.png").write_bytes(jpeg_bytes())
    capsys.readouterr()
    assert run_inspect(shards, "--render", folder) == 2
    assert "examples-001.png is not a file odrecords wrote" in capsys.readouterr().err
    assert (folder / "examples-001.png").read_bytes() == jpeg_bytes()


def test_render_into_a_folder_named_by_a_link(shards, tmp_path):
    """The folder given is the user's to name, a link or not: the pictures are real files in
    the folder it leads to."""
    target = outside(tmp_path)
    (tmp_path / "render").symlink_to(target / "folder")
    assert run_inspect(shards, "--render", tmp_path / "render") == 0
    assert (target / "folder" / "classes.png").is_file()
    assert not (target / "folder" / "classes.png").is_symlink()


# The rule itself, on any tree


PARTS = st.sampled_from(["a", "b", "c"])
PLANTED = st.sampled_from(["file", "folder", "dangling", "regular", "real folder"])


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    planted=st.dictionaries(
        st.lists(PARTS, min_size=1, max_size=3).map(tuple), PLANTED, max_size=6
    ),
    written=st.lists(PARTS, min_size=1, max_size=3).map(tuple),
    move=st.booleans(),
)
def test_a_write_lands_in_a_real_file_below_real_folders_or_is_refused(
    tmp_path_factory, planted, written, move
):
    """Whatever stands on the way: the bytes end up in a regular file reached from the root
    through real folders only, or the write is refused (UnsafeWrite) and nothing changed;
    nothing outside changes, no link is removed, and no regular file odrecords does not
    own is replaced."""
    base = tmp_path_factory.mktemp("tree")
    target, root = outside(base), base / "root"
    root.mkdir()
    links, regular = {}, {}
    for parts, kind in sorted(planted.items(), key=lambda item: len(item[0])):
        path = root.joinpath(*parts)
        if any(p.is_symlink() or p.is_file() for p in [*path.parents][: len(parts) - 1]):
            continue  # Below a link or a file: cannot be planted.
        if path.is_symlink() or path.exists():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        if kind == "regular":
            path.write_text("theirs")
            regular[path] = "theirs"
        elif kind == "real folder":
            path.mkdir()
        else:
            links[path] = plant(path, kind, target)
    before = snapshot(target)
    path = root.joinpath(*written)
    try:
        if move:
            source = base / "scratch"
            source.write_bytes(b"new")
            move_file(str(root), str(source), str(path), lambda _: False)
        else:
            write_file(str(root), str(path), [b"new"], lambda _: False)
    except UnsafeWrite:
        landed = False
    else:
        landed = True
    assert_untouched(target, before, links)
    for file, text in regular.items():
        assert file.read_text() == text
    if landed:
        on_way = [root.joinpath(*written[:end]) for end in range(1, len(written))]
        assert all(p.is_dir() and not p.is_symlink() for p in on_way)
        assert path.is_file() and not path.is_symlink() and path.read_bytes() == b"new"


@pytest.mark.parametrize("written", ["root/../x", "root/a/../../x", "x", "root"])
def test_a_path_outside_the_root_is_refused(tmp_path, written):
    with pytest.raises(UnsafeWrite, match="lies outside"):
        write_file(str(tmp_path / "root"), f"{tmp_path}/{written}", [b""], bool)
    assert sorted(os.listdir(tmp_path)) == []


def test_export_of_one_file_given_twice_writes_both_copies(records, tmp_path):
    """Scratch files are created only where their name is free, so each record gets its
    own: the same input given twice is no reason to stop."""
    out = tmp_path / "out"
    args = ["--input", f"train={records}", "--input", f"train={records}"]
    assert run_export(*args, "--format", "csv", "--output", out) == 0
    summary = json.loads((out / "export.json").read_text())
    assert summary["images"] == {"train": 2 * len(NAMES)} and not summary["errors"]


def test_a_hard_link_in_place_is_replaced_never_written_into(tmp_path):
    """A file odrecords may replace gets a new file under its name: the file a hard link
    shares with a name outside keeps its bytes."""
    target, root = outside(tmp_path), tmp_path / "root"
    root.mkdir()
    os.link(target / "file", root / "shard")
    before = snapshot(target)
    write_file(str(root), str(root / "shard"), [b"new"], lambda _: True)
    assert (root / "shard").read_bytes() == b"new"
    assert snapshot(target) == before


def test_a_lock_left_beside_a_link_named_as_a_build_removes_nothing_it_leads_to(
    created, create_args, tmp_path
):
    """A lock file nobody holds marks a build as abandoned, to be removed: when its folder, or
    the folder of temporary files the lock names, is a link, it is left, never followed."""
    target = outside(tmp_path)
    build_id = "20200101T000000000000Z-abcdef"
    copy(created, target / "folder" / "copy")
    (target / f"odrecords-{build_id}").mkdir()
    (target / f"odrecords-{build_id}" / "part").write_text("precious")
    out = copy(created, tmp_path / "out")
    (out / ".builds").mkdir()
    link = out / ".builds" / build_id
    links = {link: plant(link, "folder", target)}
    parts = tmp_path / "temp" / f"odrecords-{build_id}"
    parts.parent.mkdir()
    parts.symlink_to(target / f"odrecords-{build_id}")
    links[parts] = target / f"odrecords-{build_id}"
    (out / ".builds" / f"{build_id}.lock").write_text(f"{build_id}\n{parts}\n")
    before = snapshot(target)
    code = run_create(*create_args, "--output", out)
    assert_untouched(target, before, links)
    assert code == 0
