"""RetinaNet CSV: keras-retinanet's files and Roboflow's export come back from `odrecords
create` as the sample's examples, with the classes file's ids; negatives stay images without
objects; bad rows are errors; a RetinaNet file given as the TF CSV is refused with a hint."""

import csv
import io
import zipfile

import pytest
from conftest import read_output, run_create
from export_layouts import assert_boxes, expected, write_retinanet
from format_writers import sample_boxes
from hypothesis import given
from hypothesis import strategies as st
from test_fuzz_readers import FUZZ, assert_accounted, check, fuzz_file

from transforms.readers.base import ReaderOptions
from transforms.readers.detect import detect_format
from transforms.readers.retinanet_csv import parse_retinanet, read_classes
from transforms.records import ErrorRecord, ImageAnnotation

OPTIONS = ReaderOptions(images="/data", images_beside_annotations=True, annotations_root="/data")
CLASSES = {"cat": 0, "dog": 1}


def rows_file(rows: list[list[str]]) -> io.BytesIO:
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    return io.BytesIO(buffer.getvalue().encode("utf-8", "surrogatepass"))


def parse(rows, classes=CLASSES, path="/data/sub/annotations.csv"):
    records = list(parse_retinanet(rows_file(rows), path, OPTIONS, classes))
    return (
        [r for r in records if isinstance(r, ImageAnnotation)],
        [r for r in records if isinstance(r, ErrorRecord)],
    )


def test_rows_negatives_and_paths_relative_to_the_file():
    mentions, errors = parse(
        [
            ["img/a.jpg", "1", "2", "30", "40", "cat"],
            ["/data/b.jpg", "1.5", "2", "3", "4", "dog", "extra"],
            ["img/c.jpg", "", "", "", "", ""],
        ]
    )
    assert errors == []
    assert [(m.image, [(b.label, b.xmin, b.ymax) for b in m.boxes]) for m in mentions] == [
        ("sub/img/a.jpg", [("cat", 1.0, 40.0)]),
        ("b.jpg", [("dog", 1.5, 4.0)]),
        ("sub/img/c.jpg", []),
    ]


def test_bad_rows_are_errors_and_a_header_row_is_passed_over():
    mentions, errors = parse(
        [
            ["path", "x1", "y1", "x2", "y2", "class_name"],
            ["a.jpg", "1", "2", "3", "4", "bird"],
            ["a.jpg", "1", "two", "3", "4", "cat"],
            ["a.jpg", "1", "2", "3", "4", ""],
            ["a.jpg", "1", "2", "3"],
            ["../../etc/passwd", "1", "2", "3", "4", "cat"],
            ["a\udcff.jpg", "1", "2", "3", "4", "cat"],
        ]
    )
    assert [(m.image, m.boxes) for m in mentions] == [("sub/a.jpg", ())] * 3
    reasons = {e.source.rsplit(":", 1)[1]: (e.reason, e.objects) for e in errors}
    assert reasons["2"] == ("class 'bird' is not in the classes file", 1)
    assert reasons["3"] == ("y1 is not a number: 'two'", 1)
    assert reasons["4"] == ("the class is empty", 1)
    assert reasons["5"][0].startswith("row has 4 columns, not path,x1,y1,x2,y2,class_name")
    assert "outside the images root" in reasons["6"][0]
    assert reasons["7"] == ("row holds bytes that are not UTF-8 text", 1)


def test_the_classes_file_itself_is_passed_over():
    assert parse([["cat", "0"]], path="/data/classes.csv") == ([], [])


def test_classes_file(tmp_path):
    path = tmp_path / "classes.csv"
    path.write_text("cow,0\ncat,1\n\nbird,2\n")
    assert read_classes(str(path)) == {"cow": 0, "cat": 1, "bird": 2}
    for text, problem in [
        ("cow,0\ncat,0\n", "or id 0 twice"),
        ("cow,-1\n", "negative"),
        ("cow,x\n", "class id is not an integer"),
        ("cow\n", "is not class_name,id"),
    ]:
        path.write_text(text)
        with pytest.raises(ValueError, match=problem):
            read_classes(str(path))


def sample_splits():
    names = sorted(sample_boxes())
    return {name: ("valid" if i % 3 == 0 else "train") for i, name in enumerate(names)}


def test_roboflow_export_with_source_splits_and_declared_ids(tmp_path, capsys):
    images = sample_boxes()
    splits = sample_splits()
    for split in ("train", "valid"):
        write_retinanet(
            str(tmp_path / split), {n: e for n, e in images.items() if splits[n] == split}
        )
    (tmp_path / "README.roboflow.txt").write_text("Exported from roboflow.com\n")
    out = tmp_path / "out"
    args = ["--format", "auto", "--annotations", tmp_path, "--splits", "source", "--output", out]
    assert run_create(*args) == 0
    assert "detected format retinanet-csv" in capsys.readouterr().err
    output = read_output(out)
    assert_boxes(output, expected(images, key=lambda n: f"{splits[n]}/{n}"))
    # Ids are the classes file's + 1: keras-retinanet's 0 is the label map's background.
    assert output["label_map"] == {"circle": 1, "square": 2, "triangle": 3}
    assert output["errors"] == [] and all(output["manifest"]["accounting"].values())
    assert set(output["splits"]) == {"train", "valid"}


def test_keras_retinanet_files_with_given_classes_and_images(tmp_path, capsys):
    images = sample_boxes()
    write_retinanet(str(tmp_path / "data"), images, roboflow=False)
    (tmp_path / "data" / "classes.csv").rename(tmp_path / "my_classes.csv")
    (tmp_path / "my_classes.csv").write_text("triangle,4\nsquare,7\ncircle,9\n")
    out = tmp_path / "out"
    code = run_create(
        "--format", "retinanet-csv", "--annotations", tmp_path / "data" / "annotations.csv",
        "--classes", tmp_path / "my_classes.csv", "--images", tmp_path / "data", "--output", out,
    )  # fmt: skip
    assert code == 0
    output = read_output(out)
    assert_boxes(output, expected(images))
    assert output["label_map"] == {"triangle": 5, "square": 8, "circle": 10}


def test_without_classes_file_classes_are_named_in_order_with_a_notice(tmp_path, capsys):
    images = sample_boxes()
    write_retinanet(str(tmp_path), images, roboflow=False)
    (tmp_path / "classes.csv").unlink()
    out = tmp_path / "out"
    assert run_create("--format", "retinanet-csv", "--annotations", tmp_path, "--output", out) == 0
    assert "found no _classes.csv or classes.csv beside the annotations" in capsys.readouterr().err
    assert read_output(out)["label_map"] == {"circle": 1, "square": 2, "triangle": 3}


def test_wrong_formats_are_refused_with_the_right_one(tmp_path, capsys):
    write_retinanet(str(tmp_path), sample_boxes())
    annotations = tmp_path / "_annotations.csv"
    code = run_create("--format", "csv", "--annotations", annotations, "--output", tmp_path / "o")
    assert code == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line == (
        f"odrecords create: error: {annotations}: not a TF Object Detection CSV: its header must "
        "name filename,width,height,class,xmin,ymin,xmax,ymax; found shapes-001.jpg,,,,,; "
        "with no header and 6 columns it may be RetinaNet CSV: --format retinanet-csv"
    )
    tf_csv = tmp_path / "tf.csv"
    tf_csv.write_text("filename,width,height,class,xmin,ymin,xmax,ymax\na.jpg,1,1,cat,0,0,1,1\n")
    code = run_create(
        "--format", "retinanet-csv", "--annotations", tf_csv, "--output", tmp_path / "o"
    )
    assert code == 2
    assert "it is a TF Object Detection CSV: --format csv" in capsys.readouterr().err


@pytest.mark.parametrize("fmt", ["retinanet-csv", "auto", "coco"])
def test_a_zip_is_refused_unread(tmp_path, capsys, fmt):
    archive = tmp_path / "dataset.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.writestr("train/_annotations.csv", "a.jpg,1,2,3,4,cat\n")
    code = run_create("--format", fmt, "--annotations", archive, "--output", tmp_path / "o")
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"odrecords create: error: --annotations {archive} is a .zip archive: unzip it first"
    ]
    assert not (tmp_path / "o").exists()


def test_auto_tells_csv_formats_apart_and_passes_over_class_lists(tmp_path):
    write_retinanet(str(tmp_path), sample_boxes(), roboflow=False)
    assert detect_format(str(tmp_path)) == "retinanet-csv"
    assert detect_format(str(tmp_path / "annotations.csv")) == "retinanet-csv"


cells = st.one_of(
    st.sampled_from(["a.jpg", "../x.jpg", "", "1", "2.5", "nan", "1e999", "cat", "dog", "bird"]),
    st.text(max_size=6),
)
rows = st.lists(st.lists(cells, min_size=6, max_size=6) | st.lists(cells, max_size=8), max_size=6)


def retinanet_bytes(rows_: list[list[str]]) -> tuple[bytes, int]:
    objects = 0
    for index, row in enumerate(r for r in rows_ if any(c.strip() for c in r)):
        corners = [c.strip().lower() for c in row[1:5]]
        header = index == 0 and corners in (
            ["x1", "y1", "x2", "y2"],
            ["xmin", "ymin", "xmax", "ymax"],
        )
        objects += not header and any(c.strip() for c in row[1:6])
    return rows_file(rows_).getvalue(), objects


@FUZZ
@given(fuzz_file(rows, retinanet_bytes))
def test_fuzzed_retinanet_files(data):
    records = parse_retinanet(io.BytesIO(data[0]), "/data/a.csv", OPTIONS, CLASSES)
    objects, checked = check(records)
    assert_accounted(data, objects, checked)
