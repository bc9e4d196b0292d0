"""VGG Image Annotator JSON: projects and exports of VIA 1 and 2 come back from `odrecords
create` as the sample's examples; the class is the region attribute asked for, or the only
one; polygons become masks; bad regions are errors."""

import io
import json
import math

import numpy as np
import pytest
from conftest import read_output, run_create
from export_layouts import (
    assert_boxes,
    expected,
    extra_features,
    via_metadata,
    write_via_project,
)
from format_writers import sample_boxes
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image
from test_fuzz_readers import FUZZ, assert_accounted, check, either, fields, fuzz_file, numbers

from transforms.readers.base import ReaderOptions
from transforms.readers.detect import detect_format
from transforms.readers.via import ELLIPSE_POINTS, parse_via, split_of_via_file
from transforms.records import ErrorRecord, Extras, ImageAnnotation

OPTIONS = ReaderOptions(
    images="/data", images_beside_annotations=True, annotations_root="/data", class_attribute="type"
)
ATTRIBUTES = {"label": {"type": "dropdown", "description": "", "options": {}}}


def parse(document, options=OPTIONS):
    records = list(parse_via(json.dumps(document).encode(), "/data/via.json", options))
    return (
        [r for r in records if isinstance(r, ImageAnnotation)],
        [r for r in records if isinstance(r, ErrorRecord)],
    )


def region(shape: dict, attributes=None) -> dict:
    return {"shape_attributes": shape, "region_attributes": attributes or {"type": "cat"}}


def test_shapes_and_their_extents():
    regions = [
        region({"name": "rect", "x": 1, "y": 2, "width": 10, "height": 20}),
        region({"name": "polygon", "all_points_x": [5, 9, 7], "all_points_y": [1, 1, 8]}),
        region({"name": "circle", "cx": 50, "cy": 40, "r": 5}),
        region({"name": "ellipse", "cx": 50, "cy": 40, "rx": 10, "ry": 4, "theta": math.pi / 2}),
        region({"name": "ellipse", "cx": 50, "cy": 40, "rx": 10, "ry": 4}),  # Before VIA 2.0.6.
    ]
    (annotation,), errors = parse(
        {"a.jpg123": {"filename": "a.jpg", "size": 123, "regions": regions}}
    )
    assert errors == []
    corners = [(b.xmin, b.ymin, b.xmax, b.ymax) for b in annotation.boxes]
    assert np.allclose(
        corners,
        [(1, 2, 11, 22), (5, 1, 9, 8), (45, 35, 55, 45), (46, 30, 54, 50), (40, 36, 60, 44)],
    )
    assert all(b.mask is None for b in annotation.boxes)
    assert annotation.image == "a.jpg"


def test_masks_of_polygons_circles_and_ellipses():
    regions = [
        region({"name": "polygon", "all_points_x": [5, 9, 7], "all_points_y": [1, 1, 8]}),
        region({"name": "ellipse", "cx": 50, "cy": 40, "rx": 10, "ry": 4, "theta": 0.3}),
        region({"name": "rect", "x": 1, "y": 2, "width": 10, "height": 20}),
    ]
    masked = ReaderOptions(class_attribute="type", extras=Extras(masks=True))
    (annotation,), _ = parse({"a": {"filename": "a.jpg", "regions": regions}}, masked)
    polygon, ellipse, rect = annotation.boxes
    assert polygon.mask.polygons == ((5, 1, 9, 1, 7, 8),)
    (points,) = ellipse.mask.polygons
    assert len(points) == 2 * ELLIPSE_POINTS
    xs, ys = points[0::2], points[1::2]
    # The polygon lies within the extent and touches it.
    assert min(xs) >= ellipse.xmin - 1e-9 and max(xs) <= ellipse.xmax + 1e-9
    assert max(ys) - min(ys) > 0.99 * (ellipse.ymax - ellipse.ymin)
    assert rect.mask is None


def test_checkbox_attributes_and_bad_regions_are_errors_alone():
    regions = {  # VIA 1: regions keyed by index.
        "0": region(
            {"name": "rect", "x": 1, "y": 2, "width": 3, "height": 4}, {"type": {"dog": True}}
        ),
        "1": region({"name": "point", "cx": 1, "cy": 2}),
        "2": region({"name": "polyline", "all_points_x": [1, 2], "all_points_y": [1, 2]}),
        "3": region({"name": "rect", "x": 1, "y": 2, "width": 3}),
        "4": region({"name": "rect", "x": 1, "y": 2, "width": 3, "height": 4}, {"other": "x"}),
        "5": region({"name": "rect", "x": 1, "y": 2, "width": 3, "height": 4}, {"type": {}}),
        "6": region({"name": "polygon", "all_points_x": [1, 2], "all_points_y": [1, 2]}),
        "7": region({"name": "hexagon"}),
        "8": region({"name": "rect", "x": 1, "y": 2, "width": 3, "height": 4}, {"type": ""}),
    }
    entries = {
        "a.jpg1": {"filename": "a.jpg", "size": 1, "regions": regions},
        "b": {"filename": "http://x.org/b.jpg", "regions": [region({"name": "rect"})]},
        "c": {"filename": "c.jpg", "regions": []},
        "d": [1],
    }
    annotations, errors = parse(entries)
    assert [(a.image, [b.label for b in a.boxes]) for a in annotations] == [
        ("a.jpg", ["dog"]),
        ("c.jpg", []),
    ]
    reasons = {e.source.split("#", 1)[1]: (e.reason, e.objects) for e in errors}
    assert reasons["image[1]#region[1]"] == ("a point region encloses nothing: it has no box", 1)
    assert "polyline region encloses nothing" in reasons["image[1]#region[2]"][0]
    assert "rect height is null" in reasons["image[1]#region[3]"][0]
    assert reasons["image[1]#region[4]"][0] == "region attribute 'type' is missing"
    assert reasons["image[1]#region[5]"][0] == "0 options of 'type' are ticked, not 1"
    assert "not 3 or more each" in reasons["image[1]#region[6]"][0]
    assert "hexagon" in reasons["image[1]#region[7]"][0]
    assert reasons["image[1]#region[8]"][0] == "region attribute 'type' is empty"
    outside = "image path 'http://x.org/b.jpg' lies outside the images root"
    assert reasons["image[2]"] == (outside, 1)

    assert reasons["image[4]"][0] == "entry is a list, not an object"


def test_a_via_3_project_is_refused_whole():
    _, (error,) = parse({"project": {}, "file": {}, "metadata": {}})
    assert "VIA 3 project is not read" in error.reason


def test_split_of_via_files():
    assert split_of_via_file("/d/train/via_region_data.json", "/d") == "train"
    assert split_of_via_file("/d/val.json", "/d") == "val"


@pytest.mark.parametrize("version", [1, 2])
def test_export_file_with_the_only_attribute(tmp_path, capsys, version):
    images = sample_boxes()
    metadata = via_metadata(str(tmp_path / "data"), images, version=version)
    (tmp_path / "data" / "via_export_json.json").write_text(json.dumps(metadata))
    out = tmp_path / "out"
    code = run_create("--format", "auto", "--annotations", tmp_path / "data", "--output", out)
    assert code == 0
    assert "detected format via" in capsys.readouterr().err
    output = read_output(out)
    assert_boxes(output, expected(images))
    assert output["errors"] == [] and all(output["manifest"]["accounting"].values())


def test_project_with_several_attributes_needs_the_flag(tmp_path, capsys):
    images = sample_boxes()
    metadata = via_metadata(str(tmp_path), images)
    for entry in metadata.values():
        for item in entry["regions"]:
            item["region_attributes"]["colour"] = "red"
    attributes = {**ATTRIBUTES, "colour": {"type": "text"}}
    write_via_project(str(tmp_path / "project.json"), metadata, attributes)
    out = tmp_path / "out"
    args = ["--format", "via", "--annotations", tmp_path / "project.json", "--output", out]
    assert run_create(*args) == 2
    assert (
        "the VIA regions have several attributes ('colour', 'label'): name the one that holds "
        "the class with --class-attribute NAME" in capsys.readouterr().err
    )
    assert run_create(*args, "--class-attribute", "size") == 2
    assert "no VIA region has that attribute; they have 'colour', 'label'" in (
        capsys.readouterr().err
    )
    assert run_create(*args, "--class-attribute", "label") == 0
    assert_boxes(read_output(out), expected(images))
    assert run_create(*args, "--class-attribute", "colour") == 0
    assert set(read_output(out)["label_map"]) == {"red"}


def test_balloon_layout_polygons_as_masks_one_class_from_classes(tmp_path, capsys):
    """Mask R-CNN's balloon sample: `train/` and `val/` each with `via_region_data.json`
    (VIA 1), regions without attributes; the one class comes from --classes."""
    images = sample_boxes()
    names = sorted(images)
    splits = {name: ("val" if i % 3 == 0 else "train") for i, name in enumerate(names)}
    for split in ("train", "val"):
        part = {n: images[n] for n in names if splits[n] == split}
        metadata = via_metadata(
            str(tmp_path / split), part, attribute="", shapes="polygon", version=1
        )
        (tmp_path / split / "via_region_data.json").write_text(json.dumps(metadata))
    args = ["--format", "via", "--annotations", tmp_path, "--splits", "source"]
    assert run_create(*args, "--output", tmp_path / "o") == 2
    assert "give its name with --classes FILE" in capsys.readouterr().err
    (tmp_path / "classes.txt").write_text("balloon\n")
    out = tmp_path / "out"
    code = run_create(
        *args, "--classes", tmp_path / "classes.txt", "--include-masks", "--output", out
    )
    assert code == 0
    output = read_output(out)
    want = expected(images, key=lambda n: f"{splits[n]}/{n}")
    assert_boxes(output, want, rename=lambda _: "balloon")
    assert set(output["splits"]) == {"train", "val"}
    for name, features in extra_features(out, output["manifest"]).items():
        split, file = name.split("/")
        boxes = images[file]["boxes"]
        assert len(features["mask"]) == len(boxes)
        for mask, (_, x0, y0, x1, y1) in zip(features["mask"], boxes, strict=True):
            pixels = np.array(Image.open(io.BytesIO(mask)))
            rows, columns = np.nonzero(pixels)
            # The polygon traced the box: its mask fills the box, to a pixel.
            found = (columns.min(), rows.min(), columns.max() + 1, rows.max() + 1)
            assert np.allclose(found, (x0, y0, x1, y1), atol=1), (name, found)


def test_auto_detects_projects_and_exports(tmp_path):
    metadata = via_metadata(str(tmp_path / "a"), sample_boxes())
    write_via_project(str(tmp_path / "a" / "project.json"), metadata, ATTRIBUTES)
    assert detect_format(str(tmp_path / "a")) == "via"
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "export.json").write_text(json.dumps(metadata))
    assert detect_format(str(tmp_path / "b" / "export.json")) == "via"
    # VIA's CSV export beside its JSON export is no CSV format odrecords reads.
    (tmp_path / "b" / "via_export_csv.csv").write_text(
        "filename,file_size,file_attributes,region_count,region_id,region_shape_attributes,"
        'region_attributes\na.jpg,1,"{}",0,0,"{}","{}"\n'
    )
    assert detect_format(str(tmp_path / "b")) == "via"


shapes = st.one_of(
    fields(name=st.just("rect"), x=numbers, y=numbers, width=numbers, height=numbers),
    fields(
        name=st.just("polygon"),
        all_points_x=st.lists(numbers, max_size=4),
        all_points_y=st.lists(numbers, max_size=4),
    ),
    fields(name=st.sampled_from(["circle", "ellipse", "point"]), cx=numbers, cy=numbers, r=numbers),
)
regions = st.lists(
    fields(
        shape_attributes=shapes,
        region_attributes=fields(type=st.sampled_from(["cat", ""]) | st.just({"dog": True})),
    ),
    max_size=3,
)
entries = st.dictionaries(
    st.text(max_size=5),
    either(fields(filename=st.sampled_from(["a.jpg", "../b.jpg", ""]), regions=regions)),
    max_size=3,
)


def via_bytes(document: dict) -> tuple[bytes, int]:
    objects = 0
    for entry in document.values():
        found = entry.get("regions") if isinstance(entry, dict) else None
        objects += len(found) if isinstance(found, (list, dict)) else 0
    return json.dumps(document).encode(), objects


@FUZZ
@given(fuzz_file(entries, via_bytes))
def test_fuzzed_via_files(data):
    masked = ReaderOptions(class_attribute="type", extras=Extras(masks=True))
    objects, records = check(parse_via(data[0], "/data/via.json", masked))
    assert_accounted(data, objects, records)
