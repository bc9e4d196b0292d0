"""Open Images boxes: the sample in Open Images' download layout comes back from `odrecords
create` as the same examples; rows stream, one image's run at a time; bad rows are errors."""

import csv
import io

import pytest
from conftest import read_output, run_create
from export_layouts import (
    MIDS,
    OPEN_IMAGES_HEADER,
    XCLICKS,
    assert_boxes,
    expected,
    extra_features,
    stem,
    write_open_images,
)
from format_writers import sample_boxes
from hypothesis import given
from hypothesis import strategies as st
from test_fuzz_readers import FUZZ, assert_accounted, check, fuzz_file

from transforms.readers.base import ReaderOptions
from transforms.readers.detect import detect_format
from transforms.readers.open_images import (
    RUN_BOXES,
    parse_boxes,
    read_descriptions,
    split_of_boxes,
)
from transforms.records import ErrorRecord, ImageAnnotation

NAMES = {"/m/0a": "Cat", "/m/0b": "Dog"}
OPTIONS = ReaderOptions(images="/data/images")


def boxes_file(rows: list[list[str]], header=OPEN_IMAGES_HEADER) -> io.BytesIO:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    return io.BytesIO(buffer.getvalue().encode("utf-8", "surrogatepass"))


def row(image: str, mid: str = "/m/0a", corners=("0.1", "0.5", "0.2", "0.6"), flags="0 0 1 0 0"):
    """A box row; `flags` are IsOccluded, IsTruncated, IsGroupOf, IsDepiction, IsInside."""
    return [image, "xclick", mid, "1", *corners, *flags.split()]


def parse(data: io.BytesIO, names=NAMES, path="/data/train-annotations-bbox.csv"):
    records = list(parse_boxes(data, path, OPTIONS, names))
    return (
        [r for r in records if isinstance(r, ImageAnnotation)],
        [r for r in records if isinstance(r, ErrorRecord)],
    )


def test_rows_of_an_image_leave_together_with_flags_and_normalized_corners():
    data = boxes_file(
        [
            row("a", flags="0 1 1 0 0"),
            row("a", "/m/0b", flags="0 0 0 0 0"),
            row("b", flags="0 -1 -1 0 0"),
            row("a"),
        ]
    )
    mentions, errors = parse(data)
    assert errors == []
    assert [(m.image, len(m.boxes)) for m in mentions] == [("a.jpg", 2), ("b.jpg", 1), ("a.jpg", 1)]
    first, second = mentions[0].boxes
    assert (first.label, first.xmin, first.xmax, first.ymin, first.ymax) == (
        "Cat",
        0.1,
        0.5,
        0.2,
        0.6,
    )
    assert first.normalized and first.truncated and first.is_crowd is True
    assert (second.label, second.truncated, second.is_crowd) == ("Dog", False, False)
    assert mentions[0].sources == (
        "/data/train-annotations-bbox.csv:2",
        "/data/train-annotations-bbox.csv:3",
    )


def test_bad_rows_are_errors_and_cost_their_box_alone():
    data = boxes_file(
        [
            row("a"),
            row("a", "/m/0zzz"),
            row("a", corners=("x", "0.5", "0.2", "0.6")),
            row("../etc/passwd"),
            row(""),
            row("a", flags="0 0 7 0 0"),
            ["a", "xclick", "/m/0a"],
            row("b\udcff"),
        ]
    )
    mentions, errors = parse(data)
    assert [(m.image, len(m.boxes)) for m in mentions] == [("a.jpg", 1)]
    assert len(mentions[0].sources) == 4  # The rows with an unusable box still name the image.
    where = {e.source.rsplit(":", 1)[1]: e for e in errors}
    assert all(e.objects == 1 for e in errors)
    assert "not in the class descriptions" in where["3"].reason
    assert "XMin is not a number" in where["4"].reason
    assert "outside the images root" in where["5"].reason
    assert where["6"].reason == "ImageID is empty"
    assert "IsGroupOf is not 0, 1 or -1" in where["7"].reason
    assert "does not have the header's 13 columns" in where["8"].reason
    assert "not UTF-8" in where["9"].reason


def test_extra_columns_are_tolerated_and_a_file_without_the_columns_is_one_error():
    header = OPEN_IMAGES_HEADER + XCLICKS
    mentions, errors = parse(boxes_file([row("a") + ["0.1"] * 8], header))
    assert [len(m.boxes) for m in mentions] == [1] and errors == []
    mentions, (error,) = parse(boxes_file([["a", "1"]], ["ImageID", "Score"]))
    assert mentions == [] and error.reason.startswith("missing Open Images columns: LabelName")


def test_without_descriptions_classes_are_named_by_mid():
    (mention,), _ = parse(boxes_file([row("a", "/m/0zzz")]), names={})
    assert mention.boxes[0].label == "/m/0zzz"


def test_rows_stream_one_run_at_a_time():
    """A file of one image's rows past RUN_BOXES leaves in runs of at most RUN_BOXES, and the
    first run leaves before the file is read to its end: what is held is one run."""
    rows = [row(f"{n // 3:06d}") for n in range(60_000)] + [row("big")] * (2 * RUN_BOXES + 5)
    data = boxes_file(rows)
    size = len(data.getvalue())
    records = parse_boxes(data, "/data/train-annotations-bbox.csv", OPTIONS, NAMES)
    first = next(records)
    assert first.image == "000000.jpg" and len(first.boxes) == 3
    assert data.tell() < size / 10
    rest = list(records)
    assert len(rest) == 20_000 - 1 + 3
    assert [len(m.boxes) for m in rest[-3:]] == [RUN_BOXES, RUN_BOXES, 5]


@pytest.mark.parametrize(
    "name, split",
    [
        ("oidv6-train-annotations-bbox.csv", "train"),
        ("validation-annotations-bbox.csv", "validation"),
        ("test-annotations-bbox.csv", "test"),
        ("challenge-2019-train-detection-bbox.csv", "train"),
        ("annotations-bbox.csv", "v7"),
    ],
)
def test_split_of_a_box_file(name, split):
    assert split_of_boxes(f"/d/v7/{name}", "/d") == split


def test_class_descriptions_with_or_without_header_and_shared_names(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text('LabelName,DisplayName\n/m/1,Ball\n/m/2,"Ball"\n/m/3,"Tap, water"\n')
    assert read_descriptions(str(path)) == {
        "/m/1": "Ball (/m/1)",
        "/m/2": "Ball (/m/2)",
        "/m/3": "Tap, water",
    }
    path.write_text("/m/1,Tortoise\n")
    assert read_descriptions(str(path)) == {"/m/1": "Tortoise"}
    path.write_text("/m/1,Tortoise\n/m/1,Turtle\n")
    with pytest.raises(ValueError, match="described twice"):
        read_descriptions(str(path))


def splits_of(images):
    names = sorted(images)
    return {name: ("train" if i % 3 else "validation") for i, name in enumerate(names)}


def test_download_layout_with_source_splits_crowds_and_declared_ids(tmp_path, capsys):
    images = sample_boxes()
    splits = splits_of(images)
    write_open_images(str(tmp_path), splits)
    out = tmp_path / "out"
    code = run_create(
        "--format", "auto", "--annotations", tmp_path / "annotations",
        "--images", tmp_path / "images", "--splits", "source", "--output", out,
    )  # fmt: skip
    assert code == 0
    assert "detected format open-images" in capsys.readouterr().err
    output = read_output(out)
    # Open Images lists images with boxes only.
    listed = {name: entry for name, entry in images.items() if entry["boxes"]}
    want = expected(listed, key=lambda name: f"{splits[name]}/{stem(name)}.jpg")
    assert_boxes(output, want, rename=str.title)
    assert output["label_map"] == {"Circle": 1, "Square": 2, "Triangle": 3}
    assert output["errors"] == [] and all(output["manifest"]["accounting"].values())
    assert set(output["manifest"]["splits"]) == {"train", "validation"}
    for split, examples in output["splits"].items():
        assert {e["image/filename"].decode().split("/")[0] for e in examples} == {split}
    for name, features in extra_features(out, output["manifest"]).items():
        count = len(features["is_crowd"])
        assert features["is_crowd"][:1] == [1] and features["is_crowd"][1:] == [0] * (count - 1)
        assert features["truncated"][1:2] == [1][: count - 1], name


def test_classes_given_without_header_and_images_in_one_folder(tmp_path):
    images = sample_boxes()
    write_open_images(str(tmp_path), dict.fromkeys(images, "validation"), descriptions="v6")
    classes = tmp_path / "annotations" / "class-descriptions-boxable.csv"
    out = tmp_path / "out"
    code = run_create(
        "--format", "open-images", "--annotations",
        tmp_path / "annotations" / "validation-annotations-bbox.csv", "--classes", classes,
        "--images", tmp_path / "images" / "validation", "--output", out,
    )  # fmt: skip
    assert code == 0
    listed = {name: entry for name, entry in images.items() if entry["boxes"]}
    assert_boxes(read_output(out), expected(listed, key=lambda n: f"{stem(n)}.jpg"), str.title)


def test_without_descriptions_mids_name_the_classes_with_a_notice(tmp_path, capsys):
    images = sample_boxes()
    write_open_images(str(tmp_path), dict.fromkeys(images, "train"), descriptions=None)
    out = tmp_path / "out"
    code = run_create(
        "--format", "open-images", "--annotations", tmp_path / "annotations",
        "--images", tmp_path / "images", "--output", out,
    )  # fmt: skip
    assert code == 0
    assert "classes are named by their MIDs" in capsys.readouterr().err
    assert sorted(read_output(out)["label_map"]) == sorted(MIDS.values())


def test_box_files_without_the_header_are_refused(tmp_path, capsys):
    (tmp_path / "train-annotations-bbox.csv").write_text("a,b\n1,2\n")
    code = run_create(
        "--format", "open-images", "--annotations", tmp_path, "--output", tmp_path / "out"
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "not Open Images boxes: the header must name ImageID,Source,LabelName" in err
    assert "found a,b" in err


def test_auto_detects_a_box_file_and_passes_over_other_csvs(tmp_path):
    write_open_images(str(tmp_path), dict.fromkeys(sample_boxes(), "train"))
    # Sorted before the box files: the download's image list, and the class descriptions.
    ids = tmp_path / "annotations" / "image_ids_and_rotation.csv"
    ids.write_text("ImageID,Subset,OriginalURL,Rotation\nshapes-001,train,https://x,0\n")
    assert detect_format(str(tmp_path / "annotations")) == "open-images"
    # Named alone, a CSV of no known kind is taken for the TF CSV, whose check explains.
    assert detect_format(str(ids)) == "csv"


# Any cells in rows of the header's length, and rows of any length.
cells = st.one_of(
    st.sampled_from(["a", "b", "../x", "", "0.5", "1e999", "nan", "-1", "1", "/m/0a"]),
    st.text(max_size=6),
)
rows = st.lists(
    st.lists(cells, min_size=13, max_size=13) | st.lists(cells, max_size=14), max_size=6
)


def box_bytes(rows_: list[list[str]]) -> tuple[bytes, int]:
    return boxes_file(rows_).getvalue(), sum(1 for r in rows_ if any(c.strip() for c in r))


@FUZZ
@given(fuzz_file(rows, box_bytes))
def test_fuzzed_box_files(data):
    records = parse_boxes(io.BytesIO(data[0]), "/data/x-annotations-bbox.csv", OPTIONS, NAMES)
    objects, checked = check(records)
    assert_accounted(data, objects, checked)
