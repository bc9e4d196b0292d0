"""YOLO, keras-yolo3, Labelbox, CreateML and LabelMe readers on small malformed inputs."""

import json

import pytest
import yaml

from transforms.readers.base import ReaderOptions
from transforms.readers.createml import parse_createml
from transforms.readers.labelbox import parse_labelbox
from transforms.readers.labelme import parse_labelme
from transforms.readers.yolo import label_path, load_dataset, parse_yolo_labels
from transforms.readers.yolo_keras import parse_keras_line
from transforms.records import ErrorRecord, Extras, ImageAnnotation


def split(records):
    records = list(records)
    errors = [r for r in records if isinstance(r, ErrorRecord)]
    annotations = [r for r in records if isinstance(r, ImageAnnotation)]
    return annotations, errors


def test_yolo_lines_convert_exactly_and_bad_lines_are_errors():
    text = "0 0.5 0.5 0.2 0.4\n\n1 0.5 0.5 0.2\n7 0.5 0.5 0.1 0.1\n0 1.2 0.5 0.1 0.1\n0 a b c d\n"
    (annotation,), errors = split(parse_yolo_labels(text, "l.txt", "x.jpg", ("a", "b"), "train"))
    (box,) = annotation.boxes
    assert (box.xmin, box.ymin, box.xmax, box.ymax, box.normalized) == (0.4, 0.3, 0.6, 0.7, True)
    assert annotation.split == "train"
    assert [(e.source, e.objects) for e in errors] == [
        ("l.txt:3", 1),
        ("l.txt:4", 1),
        ("l.txt:5", 1),
        ("l.txt:6", 1),
    ]
    assert "has 4 fields" in errors[0].reason
    assert "class index 7" in errors[1].reason
    assert "outside [0, 1]" in errors[2].reason


def test_yolo_segmentation_lines_are_polygons_beside_box_lines():
    """Ultralytics' -seg labels, `class x1 y1 ... xn yn`: the box is the polygon's extent, the
    polygon the mask with masks on; box lines in the same file stay boxes."""
    text = (
        "1 0.25 0.5 0.75 0.25 0.5 0.875\n"  # A triangle.
        "0 0.5 0.5 0.2 0.4\n"  # A box beside it.
        "0 0.1 0.1 0.3 0.1 0.3 0.3 0.1 0.3 1.004 0.2\n"  # Reaching past the edge, tolerated.
        "0 0.1 0.1 0.3 0.1 0.3\n"  # Six fields: five values make no pairs.
        "0 0.1 0.1\n"  # One point.
        "0 0.1 0.1 0.3 0.1 0.3 0.3 1.2 0.5\n"  # A point far outside.
        "2 0.1 0.1 0.3 0.1 0.3 0.3\n"  # No class 2.
        "0 0.1 0.1 0.3 x 0.3 0.3\n"
    )
    (annotation,), errors = split(
        parse_yolo_labels(text, "l.txt", "x.jpg", ("a", "b"), "train", masks=True)
    )
    triangle, box, wide = annotation.boxes
    assert (triangle.label, triangle.xmin, triangle.ymin, triangle.xmax, triangle.ymax) == (
        "b", 0.25, 0.25, 0.75, 0.875,
    )  # fmt: skip
    assert triangle.normalized and triangle.mask.polygons == ((0.25, 0.5, 0.75, 0.25, 0.5, 0.875),)
    assert box.mask is None and (box.xmin, box.xmax) == (0.4, 0.6)
    assert (wide.xmin, wide.xmax) == (0.1, 1.004) and len(wide.mask.polygons[0]) == 10
    reasons = {e.source: e.reason for e in errors}
    assert sorted(reasons) == [f"l.txt:{n}" for n in range(4, 9)]
    assert all(e.objects == 1 for e in errors)
    assert (
        reasons["l.txt:4"].startswith("line has 6 fields")
        and "make no x y pairs" in reasons["l.txt:4"]
    )
    assert reasons["l.txt:5"].endswith("a polygon needs 3 or more points")
    assert reasons["l.txt:6"] == "point 4 (1.2, 0.5) is outside [0, 1]"
    assert "class index 2" in reasons["l.txt:7"]
    assert reasons["l.txt:8"] == "y2 is not a number: 'x'"
    (plain,), _ = split(parse_yolo_labels(text, "l.txt", "x.jpg", ("a", "b"), "train"))
    assert plain.boxes[0].mask is None and len(plain.boxes) == 3


def test_yolo_label_paths_follow_ultralytics_and_darknet():
    assert label_path("/d/images/train/a.b.jpg") == "/d/labels/train/a.b.txt"
    assert label_path("/d/images/x/images/a.png") == "/d/images/x/labels/a.txt"
    assert label_path("/d/obj/a.jpg") == "/d/obj/a.txt"


@pytest.mark.parametrize("names", [["cat", "dog"], {0: "cat", 1: "dog"}])
def test_data_yaml_names_as_list_or_dict_and_roboflow_paths(tmp_path, names):
    (tmp_path / "train" / "images").mkdir(parents=True)
    (tmp_path / "valid" / "images").mkdir(parents=True)
    (tmp_path / "data.yaml").write_text(
        yaml.safe_dump({"train": "../train/images", "val": "valid/images", "names": names})
    )
    dataset = load_dataset(str(tmp_path))
    assert dataset.names == ("cat", "dog")
    assert dataset.sources == (
        ("train", f"{tmp_path}/train/images"),
        ("val", f"{tmp_path}/valid/images"),
    )


def test_darknet_folder_takes_names_from_obj_names(tmp_path):
    (tmp_path / "obj.names").write_text("cat\ndog\n\n")
    dataset = load_dataset(str(tmp_path))
    assert (dataset.names, dataset.sources) == (("cat", "dog"), ((None, str(tmp_path)),))
    (tmp_path / "unnamed").mkdir()
    with pytest.raises(ValueError, match="--classes"):
        load_dataset(str(tmp_path / "unnamed"))
    with pytest.raises(ValueError, match="does not exist"):
        load_dataset(str(tmp_path / "nothing"))


def test_keras_lines():
    options = ReaderOptions(images="/data/images", class_names=("cat", "dog"))
    line = "/data/images/a.jpg 1,2,30,40,1 5,5,9,x,0 1,2,3,4,9 1,2,3"
    (annotation,), errors = split(parse_keras_line(line, "t.txt:1", options, "/data"))
    assert annotation.image == "a.jpg"
    assert [(b.label, b.xmax) for b in annotation.boxes] == [("dog", 30.0)]
    assert [e.source for e in errors] == ["t.txt:1#box[2]", "t.txt:1#box[3]", "t.txt:1#box[4]"]
    _, (outside,) = split(parse_keras_line("/etc/a.jpg 1,2,3,4,0", "t:2", options, "/data"))
    assert "outside the images root" in outside.reason and outside.objects == 1


def test_labelbox_ndjson_rejects_unboxed_objects_and_rows_without_ids():
    rows = [
        {
            "data_row": {"external_id": "a.jpg"},
            "projects": {
                "p": {
                    "labels": [
                        {
                            "annotations": {
                                "objects": [
                                    {
                                        "name": "cat",
                                        "bounding_box": {
                                            "top": 1,
                                            "left": 2,
                                            "height": 3,
                                            "width": 4,
                                        },
                                    },
                                    {
                                        "name": "dot",
                                        "annotation_kind": "ImagePoint",
                                        "point": {"x": 1, "y": 2},
                                    },
                                    {
                                        "name": "poly",
                                        "polygon": [
                                            {"x": 1, "y": 1},
                                            {"x": 5, "y": 1},
                                            {"x": 3, "y": 4},
                                        ],
                                    },
                                ]
                            }
                        }
                    ]
                }
            },
        },
        {"data_row": {}, "projects": {}},
    ]
    data = ("\n".join(json.dumps(r) for r in rows) + "\nnot json\n").encode()
    (annotation,), errors = split(
        parse_labelbox(data, "e.ndjson", ReaderOptions(extras=Extras(masks=True)))
    )
    assert [(b.label, b.xmin, b.ymin, b.xmax, b.ymax) for b in annotation.boxes] == [
        ("cat", 2, 1, 6, 4),
        ("poly", 1, 1, 5, 4),
    ]
    assert annotation.boxes[1].mask.polygons == ((1, 1, 5, 1, 3, 4),)
    assert [e.source for e in errors] == ["e.ndjson:1#object[2]", "e.ndjson:2", "e.ndjson:3"]
    assert "ImagePoint" in errors[0].reason


def test_labelbox_json_skipped_rows_are_images_without_objects():
    data = json.dumps([{"External ID": "a.jpg", "Label": "Skip"}]).encode()
    (annotation,), errors = split(parse_labelbox(data, "e.json", ReaderOptions()))
    assert (annotation.image, annotation.boxes, errors) == ("a.jpg", (), [])


def test_createml_errors():
    rows = [
        {
            "image": "a.jpg",
            "annotations": [
                {"label": "cat", "coordinates": {"x": 10, "y": 10, "width": 4, "height": 2}},
                {"label": "cat", "coordinates": {"x": 1}},
            ],
        },
        {"annotations": [{"label": "cat"}]},
    ]
    (annotation,), errors = split(parse_createml(json.dumps(rows).encode(), "c.json"))
    assert [(b.xmin, b.ymin, b.xmax, b.ymax) for b in annotation.boxes] == [(8, 9, 12, 11)]
    assert [(e.source, e.objects) for e in errors] == [
        ("c.json#image[1]#annotation[2]", 1),
        ("c.json#image[2]", 1),
    ]
    (error,) = parse_createml(b"{", "bad.json")
    assert "malformed JSON" in error.reason


def test_labelme_shapes(tmp_path):
    document = {
        "imagePath": "../img/a.jpg",
        "shapes": [
            {"label": "r", "points": [[10, 20], [2, 4]], "shape_type": "rectangle"},
            {"label": "p", "points": [[1, 1], [5, 1], [3, 4]], "shape_type": "polygon"},
            {"label": "c", "points": [[10, 10], [13, 14]], "shape_type": "circle"},
            {"label": "pt", "points": [[1, 1]], "shape_type": "point"},
        ],
    }
    options = ReaderOptions(images=str(tmp_path))
    path = f"{tmp_path}/json/a.json"
    (annotation,), (error,) = split(parse_labelme(json.dumps(document).encode(), path, options))
    assert annotation.image == "img/a.jpg"
    assert [(b.label, b.xmin, b.ymin, b.xmax, b.ymax) for b in annotation.boxes] == [
        ("r", 2, 4, 10, 20),
        ("p", 1, 1, 5, 4),
        ("c", 5, 5, 15, 15),
    ]
    assert annotation.boxes[1].mask is None  # Masks only with --include-masks.
    assert error.source == f"{path}#shape[4]" and "point shape" in error.reason
    escape = {**document, "imagePath": "../../../etc/passwd"}
    (outside,) = parse_labelme(json.dumps(escape).encode(), path, options)
    assert outside.stage == "read" and outside.objects == 4
