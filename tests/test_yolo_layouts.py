"""YOLO datasets in the layouts Ultralytics and Roboflow publish, end to end through
`odrecords create --format yolo` (and `auto`), read back with TensorFlow.

Each fixture is built in the exact published layout (coco8 / coco128: `images/<split>`,
`labels/<split>` and a YAML with `path`; Roboflow's YOLOv8 export: `data.yaml` naming
`../train/images` from inside the download, `train/images`, `train/labels`, ...; Roboflow's
Darknet export: `_darknet.labels` and labels beside the images in each split folder) with
tiny images and label lines whose corners are exact binary fractions.
"""

import os

import numpy as np
import pytest
import yaml
from conftest import RACCOON, build_folder, example_boxes, read_output, run_create
from PIL import Image

from pipelines import export
from transforms.builds.report import reason_kind

NAMES = ("cat", "dog")
# Per split, image stem → its label lines (class, x_center, y_center, width, height); None: the
# image has no label file (a negative example, as Ultralytics reads it), []: an empty one.
SPLITS = {
    "train": {
        "a": [(0, 0.5, 0.5, 0.25, 0.5)],
        "b": [(1, 0.25, 0.25, 0.25, 0.25), (0, 0.75, 0.75, 0.125, 0.25)],
        "c": None,
    },
    "val": {
        "d": [(1, 0.5, 0.5, 0.5, 0.5)],
        "e": [],
    },
}
FACEMASK = os.path.join(os.path.dirname(RACCOON), "roboflow-facemask")
needs_facemask = pytest.mark.skipif(
    not os.path.isdir(FACEMASK), reason="the shared Roboflow face-mask export is absent"
)


def jpeg(path, size=(40, 32)) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.new("RGB", size, (90, 120, 150)).save(path, "JPEG")


def write_labels(path, lines) -> None:
    if lines is None:
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as handle:
        handle.writelines(f"{c} {x} {y} {w} {h}\n" for c, x, y, w, h in lines)


def write_yaml(path, config: dict) -> None:
    with open(path, "w") as handle:
        yaml.safe_dump(config, handle, sort_keys=False)


def corners(lines) -> list[tuple]:
    """The (class, xmin, ymin, xmax, ymax) a label file's lines mean, in normalized units."""
    return sorted(
        (NAMES[c], x - w / 2, y - h / 2, x + w / 2, y + h / 2) for c, x, y, w, h in lines or []
    )


def label_lines(splits=SPLITS) -> int:
    return sum(len(lines or []) for images in splits.values() for lines in images.values())


def ultralytics_layout(root, splits=SPLITS) -> dict[str, str]:
    """coco8's layout: `images/<split>/x.jpg` and `labels/<split>/x.txt`. Returns {image key
    relative to the root: split}."""
    keys = {}
    for split, images in splits.items():
        for stem, lines in images.items():
            jpeg(os.path.join(root, "images", split, f"{stem}.jpg"))
            write_labels(os.path.join(root, "labels", split, f"{stem}.txt"), lines)
            keys[f"images/{split}/{stem}.jpg"] = split
    return keys


def create(*args, splits=("--splits", "source")):
    """Runs `odrecords create` into the first free `out*` folder beside the annotations and
    returns its output read back; fails the test on a non-zero exit."""
    annotations = str(args[args.index("--annotations") + 1])
    base = annotations if os.path.isdir(annotations) else os.path.dirname(annotations)
    number = 0
    while os.path.exists(os.path.join(base, "..", f"out{number}")):
        number += 1
    out = os.path.normpath(os.path.join(base, "..", f"out{number}"))
    assert run_create(*args, *splits, "--num-shards", "1", "--output", out) == 0
    return read_output(out)


def examples(output) -> dict[tuple[str, str], list]:
    """{(filename, split): boxes} of every example; an image written twice in one split
    fails."""
    found: dict[tuple[str, str], list] = {}
    for split, written in output["splits"].items():
        for example in written:
            key = (example["image/filename"].decode(), split)
            assert key not in found, f"{key} written twice"
            found[key] = example_boxes(example)
    return found


def assert_written(output, expected: dict[str, tuple[str | None, list]]) -> None:
    """Every expected image (key → split or None for any, label lines) is one example with
    exactly its boxes, and nothing else was written or rejected."""
    got = examples(output)
    assert len(got) == len(expected), sorted(got)
    for key, (split, lines) in expected.items():
        matches = [(s, boxes) for (k, s), boxes in got.items() if k == key]
        assert len(matches) == 1, (key, matches)
        (found_split, boxes), want = matches[0], corners(lines)
        assert split is None or found_split == split, (key, found_split)
        assert [b[0] for b in boxes] == [w[0] for w in want], key
        assert np.allclose([b[1:] for b in boxes], [w[1:] for w in want], atol=1e-6), key
    manifest = output["manifest"]
    assert output["errors"] == []
    assert manifest["images"]["rejected"] == 0
    assert all(manifest["accounting"].values())


def expected_from(keys: dict[str, str], splits=SPLITS, source=True) -> dict:
    """{key: (its split, or None with fractions; its label lines)} of the images `keys` names,
    their lines found in `splits` by file stem."""
    lines = {stem: lines for images in splits.values() for stem, lines in images.items()}
    return {
        key: (split if source else None, lines[os.path.splitext(os.path.basename(key))[0]])
        for key, split in keys.items()
    }


# --- Ultralytics: coco8's layout and YAML, with every kind of `path` ----------------------------


@pytest.mark.parametrize(
    ("path", "noticed", "names", "target", "fmt"),
    [
        (None, False, list(NAMES), "folder", "yolo"),
        (".", False, dict(enumerate(NAMES)), "yaml", "yolo"),
        ("coco8", True, list(NAMES), "folder", "auto"),  # relative to Ultralytics' datasets dir
        ("/content/datasets/coco8", True, dict(enumerate(NAMES)), "yaml", "auto"),  # Colab
    ],
)
def test_ultralytics_layout_with_each_kind_of_path(
    tmp_path, capsys, path, noticed, names, target, fmt
):
    root = tmp_path / "ds"
    keys = ultralytics_layout(root)
    config = {} if path is None else {"path": path}
    config |= {"train": "images/train", "val": "images/val", "test": None, "names": names}
    write_yaml(root / "data.yaml", config)
    annotations = root if target == "folder" else root / "data.yaml"
    output = create("--format", fmt, "--annotations", annotations)
    assert_written(output, expected_from(keys))
    assert output["label_map"] == {"cat": 1, "dog": 2}
    stderr = capsys.readouterr().err
    notice = f"path {path!r} does not exist here; using the YAML's folder {root}"
    assert (notice in stderr) == noticed, stderr
    manifest = output["manifest"]
    counts = {name: (s["examples"], s["objects"]) for name, s in manifest["splits"].items()}
    assert counts == {"train": (3, 3), "val": (2, 1)}
    assert manifest["objects"]["read"] == label_lines() == 4


def test_ultralytics_layout_with_fractions_keeps_every_image_once(tmp_path):
    root = tmp_path / "ds"
    keys = ultralytics_layout(root)
    config = {"train": "images/train", "val": "images/val", "names": list(NAMES)}
    write_yaml(root / "data.yaml", config)
    output = create(
        "--format", "yolo", "--annotations", root, splits=("--splits", "train=0.5,eval=0.5")
    )
    assert_written(output, expected_from(keys, source=False))
    assert output["manifest"]["objects"]["read"] == label_lines()


def test_list_files_and_lists_of_folders(tmp_path):
    """Entries as Ultralytics reads them: a list file whose `./` lines are relative to its
    own folder, one with root-relative and absolute lines, and a list of folders (VOC.yaml's
    `train: [images/train2012, ...]`) naming one folder twice."""
    root = tmp_path / "ds"
    keys = ultralytics_layout(root)
    extra = {"f": [(1, 0.5, 0.25, 0.5, 0.25)]}
    keys |= ultralytics_layout(root, {"extra": extra})
    (root / "images" / "train.txt").write_text("".join(f"./train/{s}.jpg\n" for s in "abc"))
    (root / "val.txt").write_text(f"images/val/d.jpg\n{root}/images/val/e.jpg\n")
    write_yaml(
        root / "data.yaml",
        {
            "train": ["images/train.txt", "images/extra", "images/extra"],
            "val": "val.txt",
            "names": dict(enumerate(NAMES)),
        },
    )
    output = create("--format", "yolo", "--annotations", root / "data.yaml")
    keys["images/extra/f.jpg"] = "train"
    assert_written(output, expected_from(keys, {**SPLITS, "extra": extra}))
    assert output["manifest"]["objects"]["read"] == 5  # a, b (2), d and f once.


# --- Roboflow's YOLOv8 export -------------------------------------------------------------------

ROBOFLOW = {
    "train": {
        "a_jpg.rf.3f2c": [(0, 0.5, 0.5, 0.25, 0.5)],
        "b_png.rf.91d0": [(1, 0.25, 0.25, 0.25, 0.25), (1, 0.75, 0.75, 0.125, 0.25)],
    },
    "valid": {"c_jpg.rf.77aa": [(0, 0.375, 0.625, 0.25, 0.25)]},
    "test": {"d_jpg.rf.05be": [(1, 0.5, 0.5, 1.0, 1.0)], "e_jpg.rf.c4f1": None},
}


def roboflow_yolov8(root, entries="../{}/images") -> dict[str, str]:
    """A Roboflow YOLOv8 download: `<split>/images`, `<split>/labels`, READMEs and a data.yaml
    whose entries are written relative to a folder inside the download."""
    keys = {}
    for folder, images in ROBOFLOW.items():
        for stem, lines in images.items():
            jpeg(os.path.join(root, folder, "images", f"{stem}.jpg"))
            write_labels(os.path.join(root, folder, "labels", f"{stem}.txt"), lines)
            keys[f"{folder}/images/{stem}.jpg"] = "val" if folder == "valid" else folder
    for name in ("README.dataset.txt", "README.roboflow.txt"):
        (root / name).write_text("Exported via roboflow.com\n")
    write_yaml(
        root / "data.yaml",
        {
            "train": entries.format("train"),
            "val": entries.format("valid"),
            "test": entries.format("test"),
            "nc": 2,
            "names": list(NAMES),
            "roboflow": {
                "workspace": "w",
                "project": "p",
                "version": 1,
                "license": "CC BY 4.0",
                "url": "https://universe.roboflow.com/w/p/dataset/1",
            },
        },
    )
    return keys


@pytest.mark.parametrize(
    ("entries", "fmt", "target"),
    [
        ("../{}/images", "yolo", "folder"),
        ("../{}/images", "auto", "yaml"),
        ("{}/images", "yolo", "yaml"),
    ],
)
def test_roboflow_yolov8_export(tmp_path, capsys, entries, fmt, target):
    root = tmp_path / "download"
    keys = roboflow_yolov8(root, entries)
    annotations = root if target == "folder" else root / "data.yaml"
    output = create("--format", fmt, "--annotations", annotations)
    assert_written(output, expected_from(keys, ROBOFLOW))
    manifest = output["manifest"]
    counts = {name: (s["examples"], s["objects"]) for name, s in manifest["splits"].items()}
    assert counts == {"train": (2, 3), "val": (1, 1), "test": (2, 1)}
    assert "does not exist here" not in capsys.readouterr().err
    fractions = create("--format", fmt, "--annotations", annotations, splits=())
    assert_written(fractions, expected_from(keys, ROBOFLOW, source=False))
    assert fractions["manifest"]["objects"]["read"] == label_lines(ROBOFLOW) == 5


# --- coco128: the train folder listed as `val` too ----------------------------------------------


@pytest.mark.parametrize("path", ["coco128", "../datasets/coco128"])
def test_coco128_val_is_the_train_folder(tmp_path, path):
    """coco128.yaml beside its folder (as `datasets/coco128.yaml`), `path` as published now
    and before; `val` names the train folder. One label line is broken: one error, once."""
    datasets = tmp_path / "datasets"
    train = {"train2017": SPLITS["train"] | SPLITS["val"]}
    keys = ultralytics_layout(datasets / "coco128", train)
    with open(datasets / "coco128" / "labels" / "train2017" / "a.txt", "a") as handle:
        handle.write("0 0.5 0.5\n")
    config = {"path": path, "train": "images/train2017", "val": "images/train2017", "test": None}
    write_yaml(datasets / "coco128.yaml", config | {"names": dict(enumerate(NAMES))})
    lines = label_lines(train)

    once = create("--format", "yolo", "--annotations", datasets / "coco128.yaml", splits=())
    assert sorted(k for k, _ in examples(once)) == sorted(keys)
    assert [e["source"] for e in once["errors"]] == [f"{datasets}/coco128/labels/train2017/a.txt:2"]
    assert once["manifest"]["objects"]["read"] == lines + 1
    assert once["manifest"]["objects"]["written"] == lines
    assert once["manifest"]["images"]["in_several_splits"]["count"] == 0
    assert all(once["manifest"]["accounting"].values())

    both = create("--format", "auto", "--annotations", datasets / "coco128.yaml")
    got = examples(both)  # fails if an image were written twice in one split
    expected = expected_from(keys, train)
    for split in ("train", "val"):
        assert sorted(k for k, s in got if s == split) == sorted(keys)
        for key in keys:
            want = corners(expected[key][1])
            assert [b[0] for b in got[key, split]] == [w[0] for w in want]
            assert np.allclose([b[1:] for b in got[key, split]], [w[1:] for w in want])
    manifest = both["manifest"]
    assert len(both["errors"]) == 1 and manifest["images"]["rejected"] == 0
    images, objects = manifest["images"], manifest["objects"]
    assert (images["referenced"], images["copies_in_other_splits"]) == (5, 5)
    assert images["written"] == 10
    assert (objects["read"], objects["copies_in_other_splits"]) == (lines + 1, lines)
    assert (objects["written"], objects["rejected"]) == (2 * lines, 1)
    assert images["in_several_splits"]["count"] == len(keys)
    assert images["in_several_splits"]["first"][0] == "images/train2017/a.jpg (train, val)"
    assert all(manifest["accounting"].values())


# --- YAMLs that cannot be used: exit 2 with one line --------------------------------------------


def usage_error(capsys, *args) -> str:
    """Runs create, which must refuse the arguments (exit 2) with exactly one stderr line."""
    capsys.readouterr()
    assert run_create(*args, "--output", "unused") == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_a_split_entry_that_points_at_nothing_names_the_entry_and_where(tmp_path, capsys):
    root = tmp_path / "ds"
    ultralytics_layout(root)
    write_yaml(
        root / "data.yaml",
        {"path": ".", "train": "images/train", "val": "../images/valid", "names": list(NAMES)},
    )
    line = usage_error(capsys, "--format", "yolo", "--annotations", root)
    assert line == (
        f"odrecords create: error: {root}/data.yaml: val entry '../images/valid' points at "
        f"nothing (looked for {tmp_path}/images/valid and {root}/images/valid); {root}/images "
        "holds train, val"
    )


@pytest.mark.parametrize(
    ("names", "problem"),
    [
        (None, "names is missing; give the class names with --classes"),
        ("cat dog", "names is not a list of names; give the class names with --classes"),
        ({0: "cat", 2: "dog"}, "names must be numbered 0 to 1, not 0, 2"),
        ({"a": "cat"}, "names keys must be class indexes 0, 1, 2, ..."),
        (["cat", None], "class 1 has no name"),
        (["cat", "dog", "eel"], "nc is 2 but names holds 3 names"),
    ],
)
def test_data_yaml_without_usable_names(tmp_path, capsys, names, problem):
    root = tmp_path / "ds"
    ultralytics_layout(root)
    config = {"train": "images/train", "val": "images/val", "nc": 2}
    write_yaml(root / "data.yaml", config if names is None else config | {"names": names})
    line = usage_error(capsys, "--format", "yolo", "--annotations", root / "data.yaml")
    assert line == f"odrecords create: error: {root}/data.yaml: {problem}"


def test_names_keyed_by_digit_strings_and_a_validation_key(tmp_path):
    """Ultralytics reads `'0': cat` keys as indexes and `validation` as `val`."""
    root = tmp_path / "ds"
    keys = ultralytics_layout(root)
    write_yaml(
        root / "data.yaml",
        {"train": "images/train", "validation": "images/val", "names": {"1": "dog", "0": "cat"}},
    )
    output = create("--format", "yolo", "--annotations", root)
    assert_written(output, expected_from(keys))
    assert output["label_map"] == {"cat": 1, "dog": 2}


def test_unreadable_yaml_is_one_line(tmp_path, capsys):
    (tmp_path / "data.yaml").write_text("train: [images/train\nnames: {0: cat}\n")
    line = usage_error(capsys, "--format", "yolo", "--annotations", tmp_path)
    assert line.startswith(f"odrecords create: error: {tmp_path}/data.yaml is not readable YAML:")
    missing = usage_error(capsys, "--format", "yolo", "--annotations", tmp_path / "other.yaml")
    assert missing == f"odrecords create: error: {tmp_path}/other.yaml does not exist"


# --- Darknet: labels beside the images, names in a file, no data.yaml --------------------------


def darknet_folders(root, names_file: str | None, per_folder: str | None) -> dict[str, str]:
    """`train/`, `val/` folders of images with their label files beside them; the class names
    in `root/<names_file>` and/or in `<split>/<per_folder>` (Roboflow's `_darknet.labels`)."""
    keys = {}
    for split, images in SPLITS.items():
        for stem, lines in images.items():
            jpeg(root / split / f"{stem}.jpg")
            write_labels(root / split / f"{stem}.txt", lines)
            keys[f"{split}/{stem}.jpg"] = split
        if per_folder:
            (root / split / per_folder).write_text("\n".join(NAMES) + "\n")
    if names_file:
        (root / names_file).write_text("\n".join(NAMES) + "\n")
    for name in ("README.dataset.txt", "README.roboflow.txt"):
        (root / name).write_text("Exported via roboflow.com\n")
    return keys


@pytest.mark.parametrize(
    ("names_file", "per_folder"),
    [("obj.names", None), ("classes.txt", None), (None, "_darknet.labels")],
)
def test_darknet_folders_with_names_at_the_top_or_in_each_split(tmp_path, names_file, per_folder):
    root = tmp_path / "export"
    keys = darknet_folders(root, names_file, per_folder)
    output = create("--format", "yolo", "--annotations", root)
    assert_written(output, expected_from(keys))
    assert output["label_map"] == {"cat": 1, "dog": 2}
    counts = {n: (s["examples"], s["objects"]) for n, s in output["manifest"]["splits"].items()}
    assert counts == {"train": (3, 3), "val": (2, 1)}
    fractions = create("--format", "yolo", "--annotations", root, splits=())
    assert_written(fractions, expected_from(keys, source=False))
    # One split folder on its own: `--format auto` recognises it by its names file; without
    # one, the names are given.
    given = ("--format", "yolo", "--classes", root / names_file) if names_file else ()
    folder = create(*(given or ("--format", "auto")), "--annotations", root / "train", splits=())
    train = {stem: lines for stem, lines in SPLITS["train"].items()}
    assert_written(folder, {f"{stem}.jpg": (None, lines) for stem, lines in train.items()})


def test_darknet_names_files_that_disagree_are_refused(tmp_path, capsys):
    root = tmp_path / "export"
    darknet_folders(root, None, "_darknet.labels")
    (root / "val" / "_darknet.labels").write_text("dog\ncat\n")
    line = usage_error(capsys, "--format", "yolo", "--annotations", root)
    assert line == (
        f"odrecords create: error: the _darknet.labels files under {root} disagree; "
        "give the names with --classes"
    )


def test_darknet_folder_without_split_folders_cannot_keep_source_splits(tmp_path, capsys):
    root = tmp_path / "obj"
    for stem, lines in SPLITS["train"].items():
        jpeg(root / f"{stem}.jpg")
        write_labels(root / f"{stem}.txt", lines)
    (root / "obj.names").write_text("\n".join(NAMES) + "\n")
    line = usage_error(capsys, "--format", "yolo", "--annotations", root, "--splits", "source")
    assert line == (
        f"odrecords create: error: --splits source: {root} has no data.yaml and no folder per "
        "split; give fractions instead"
    )


def test_label_values_within_ultralytics_tolerance_are_kept_and_clipped(tmp_path):
    """Ultralytics accepts coordinates down to -0.01 and up to 1.01 (exporters round); such a
    box is clipped to the image, not rejected. Beyond that a line is an error."""
    root = tmp_path / "obj"
    jpeg(root / "a.jpg")
    (root / "a.txt").write_text(
        "0 1.005 0.5 0.01 0.5\n1 -0.005 0.5 0.02 0.25\n0 1.02 0.5 0.1 0.1\n"
    )
    (root / "obj.names").write_text("\n".join(NAMES) + "\n")
    out = tmp_path / "out"
    assert run_create("--format", "yolo", "--annotations", root, "--output", out) == 0
    output = read_output(out)
    (example,) = output["splits"]["train"]
    boxes = example_boxes(example)
    assert [b[0] for b in boxes] == ["cat", "dog"]
    assert np.allclose([b[1:] for b in boxes], [[1.0, 0.25, 1.0, 0.75], [0, 0.375, 0.005, 0.625]])
    assert [e["source"] for e in output["errors"]] == [f"{root}/a.txt:3"]
    assert output["manifest"]["objects"]["clipped"] == 2


# --- The real Roboflow face-mask export ---------------------------------------------------------


def facemask_truth(folder: str) -> dict[str, list]:
    """{image file name: its label lines} read straight from a split folder of the export
    (None for an image without a label file)."""
    truth = {}
    for name in sorted(os.listdir(folder)):
        if name.endswith(".jpg"):
            labels = os.path.join(folder, name[: -len(".jpg")] + ".txt")
            if os.path.exists(labels):
                with open(labels) as handle:
                    rows = [line.split() for line in handle if line.strip()]
                truth[name] = [(int(r[0]), *map(float, r[1:])) for r in rows]
            else:
                truth[name] = None
    return truth


def facemask_boxes(lines) -> list[tuple]:
    return sorted(("Faces", x - w / 2, y - h / 2, x + w / 2, y + h / 2) for _, x, y, w, h in lines)


@needs_facemask
@pytest.mark.parametrize(
    ("annotations", "fmt"),
    [("", "yolo"), ("", "auto"), ("data.yaml", "yolo"), ("data.yaml", "auto")],
)
def test_facemask_data_yaml_names_folders_that_are_not_there(capsys, annotations, fmt):
    root = os.path.abspath(FACEMASK)
    capsys.readouterr()
    assert (
        run_create(
            "--format", fmt, "--annotations", os.path.join(root, annotations), "--output", "unused"
        )
        == 2
    )
    lines = [line for line in capsys.readouterr().err.splitlines() if "detected format" not in line]
    assert lines == [
        f"odrecords create: error: {root}/data.yaml: train entry '../train/images' points at "
        f"nothing (looked for {os.path.dirname(root)}/train/images and {root}/train/images); "
        f"{root}/train holds the images: correct the entry to 'train'"
    ]


@needs_facemask
@pytest.mark.parametrize(
    ("split", "fmt", "images", "boxes"),
    [("train", "yolo", 49, 48), ("valid", "auto", 11, 11), ("test", "auto", 8, 12)],
)
def test_facemask_split_folders(tmp_path, split, fmt, images, boxes):
    """Each split folder alone, names from its `_darknet.labels`; counts as published."""
    folder = os.path.join(FACEMASK, split)
    truth = facemask_truth(folder)
    assert (len(truth), sum(len(lines or []) for lines in truth.values())) == (images, boxes)
    out = tmp_path / "out"
    assert run_create("--format", fmt, "--annotations", folder, "--output", out) == 0
    output = read_output(out)
    got = {e["image/filename"].decode(): example_boxes(e) for e in output["splits"]["train"]}
    assert sorted(got) == sorted(truth)
    for name, lines in truth.items():
        want = facemask_boxes(lines or [])
        assert [b[0] for b in got[name]] == [w[0] for w in want], name
        assert np.allclose([b[1:] for b in got[name]], [w[1:] for w in want], atol=1e-6), name
    manifest = output["manifest"]
    assert (manifest["images"]["written"], manifest["objects"]["written"]) == (images, boxes)
    assert output["label_map"] == {"Faces": 1} and output["errors"] == []
    if split == "train":  # One image ships without a label file: a negative example.
        assert [name for name, lines in truth.items() if lines is None] == [
            name for name, found in got.items() if not found
        ]
        assert len([name for name, found in got.items() if not found]) == 1


@needs_facemask
def test_facemask_round_trip_through_yolo_export(tmp_path):
    """create → export --format yolo → create gives the same boxes for the same images, and
    the export resolves the way Ultralytics resolves it: root = the YAML's folder, `./`
    lines from the list's folder, labels where `img2label_paths` puts them."""
    first = tmp_path / "first"
    assert (
        run_create("--format", "yolo", "--annotations", f"{FACEMASK}/train", "--output", first) == 0
    )
    exported = tmp_path / "yolo"
    assert export.main(["--input", str(first), "--format", "yolo", "--output", str(exported)]) == 0
    config = yaml.safe_load((exported / "data.yaml").read_text())
    assert "path" not in config and config["names"] == ["Faces"]
    listed = (exported / config["train"]).read_text().splitlines()
    assert len(listed) == 49 and all(line.startswith("./images/") for line in listed)
    for line in listed:
        image = exported / line[2:]
        label = str(image).rsplit("/images/", 1)
        assert image.is_file() and os.path.isfile(label[0] + "/labels/" + label[1][:-4] + ".txt")

    again = tmp_path / "again"
    code = run_create(
        "--format", "auto", "--annotations", exported, "--splits", "source", "--output", again
    )
    assert code == 0
    before = {
        e["image/filename"].decode(): example_boxes(e)
        for e in read_output(first)["splits"]["train"]
    }
    after = read_output(again)
    assert after["errors"] == [] and after["label_map"] == {"Faces": 1}
    got = {e["image/filename"].decode(): example_boxes(e) for e in after["splits"]["train"]}
    assert sorted(got) == sorted(f"images/{name}" for name in before)
    for name, boxes in before.items():
        redone = got[f"images/{name}"]
        assert [b[0] for b in redone] == [b[0] for b in boxes]
        assert np.allclose([b[1:] for b in redone], [b[1:] for b in boxes], atol=1e-6), name
    assert after["manifest"]["objects"]["written"] == 48


def test_coco8_download_without_its_yaml(tmp_path, capsys):
    """coco8.zip holds `images/`, `labels/`, LICENSE and README.md; its YAML ships with
    Ultralytics. The folder alone needs the names; with them, splits come from the folders."""
    root = tmp_path / "coco8"
    keys = ultralytics_layout(root)
    (root / "README.md").write_text("# COCO8\n")
    line = usage_error(capsys, "--format", "yolo", "--annotations", root)
    assert line == (
        f"odrecords create: error: {root} has no data.yaml nor classes.txt, obj.names, "
        "_darknet.labels; give the dataset's YAML as --annotations, or the class names with "
        "--classes"
    )
    (tmp_path / "names.txt").write_text("\n".join(NAMES) + "\n")
    classes = ("--classes", tmp_path / "names.txt")
    output = create("--format", "yolo", "--annotations", root, *classes)
    assert_written(output, expected_from(keys))


# --- Objects lost without an image lost ---------------------------------------------------------


def lost_object_layout(root, split_lines: dict[str, list[str]]) -> None:
    """coco8's layout and YAML, with the label lines of each split's images replaced by
    `split_lines` (the same lines for every image of the split)."""
    ultralytics_layout(root)
    for split, images in SPLITS.items():
        for stem, lines in images.items():
            if split in split_lines and lines is not None:
                text = "".join(line + "\n" for line in split_lines[split])
                (root / "labels" / split / f"{stem}.txt").write_text(text)
    config = {"train": "images/train", "val": "images/val", "names": list(NAMES)}
    write_yaml(root / "data.yaml", config)


def object_warnings(err: str) -> list[str]:
    return [line for line in err.splitlines() if "objects were rejected" in line]


def test_every_label_line_rejected_warns_and_max_error_rate_holds_the_build_back(tmp_path, capsys):
    """Label lines the reader does not take (predictions saved with their confidence) lose
    every object while every image is written: the command says so, naming the most common
    reason, and --max-error-rate holds such a build back as it does one whose images were
    rejected."""
    root = tmp_path / "ds"
    train = ["0 0.5 0.5 0.25 0.25 0.91", "1 0.25 0.25 0.25 0.25 0.5"]
    lost_object_layout(root, {"train": train, "val": ["1 0.5 0.5 0.25 0.25 0.7"]})
    out = tmp_path / "out"
    args = ["--format", "yolo", "--annotations", root, "--splits", "source", "--output", out]
    assert run_create(*args) == 0
    output = read_output(out)
    manifest = output["manifest"]
    assert manifest["images"]["written"] == 5 and manifest["images"]["rejected"] == 0
    # Two lines in each of a and b (train), one in each of d and e (val).
    assert manifest["objects"]["read"] == manifest["objects"]["rejected"] == 6
    assert len(output["errors"]) == 6
    kind = "read: " + reason_kind(output["errors"][0]["reason"])
    assert kind.startswith("read: line has … fields")
    errors = manifest["errors"]
    assert errors["objects_by_reason"] == {kind: 6}
    assert errors["by_split"] == {
        "train": {"objects": 4, "by_reason": {kind: 4}},
        "val": {"objects": 2, "by_reason": {kind: 2}},
    }
    assert {name: lost["objects"] for name, lost in errors["by_class"].items()} == {
        "cat": 2,
        "dog": 4,
    }
    # Splits and classes that lost their objects as the whole input did add no warning.
    assert object_warnings(capsys.readouterr().err) == [
        f"warning: 6 of 6 objects were rejected (most: {kind})"
    ]
    card = (out / "README.md").read_text()
    assert f"**6 of 6 objects were rejected (most: {kind})**" in card

    again = tmp_path / "again"
    assert run_create(*args[:-1], again, "--max-error-rate", "0.5") == 1
    assert (
        "odrecords create: error: not published: 100.00% of the input was rejected, more than "
        "--max-error-rate 0.5"
    ) in capsys.readouterr().err
    assert not (again / "manifest.json").exists()
    held_back = read_output(build_folder(again))["manifest"]["build"]
    assert held_back["published"] is False and held_back["error_rate"] == 1


def test_a_split_that_loses_most_objects_is_warned_about_and_gated(tmp_path, capsys):
    root = tmp_path / "ds"
    lost_object_layout(root, {"val": ["0 0.5 0.5 0.5 0.5 0.5"]})  # d's and e's, cats.
    out = tmp_path / "out"
    args = ["--format", "yolo", "--annotations", root, "--splits", "source", "--output", out]
    assert run_create(*args) == 0
    manifest = read_output(out)["manifest"]
    assert manifest["objects"]["rejected"] == 2 and manifest["objects"]["read"] == 5
    (kind,) = manifest["errors"]["objects_by_reason"]
    # Two of the input's five objects, two of the cats' four, but both of val's.
    assert object_warnings(capsys.readouterr().err) == [
        f"warning: split val: 2 of 2 objects were rejected (most: {kind})"
    ]
    assert run_create(*args[:-1], tmp_path / "gated", "--max-error-rate", "0.5") == 1
    assert (
        "not published: 100.00% of the objects of split val were rejected, more than "
        "--max-error-rate 0.5"
    ) in capsys.readouterr().err
    assert run_create(*args[:-1], tmp_path / "allowed", "--max-error-rate", "1") == 0
