"""CVAT for images and for video 1.1 XML, laid out as CVAT exports them (`annotations.xml`
beside `images/`), through the real commands and read back with TensorFlow: shapes, masks,
attributes, declared classes, tracks, project subsets, `--format auto`, the way back
(`export --format cvat`) and hostile files."""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from conftest import SAMPLE, example_boxes, read_examples, read_output, run_create
from lxml import etree
from PIL import Image
from test_create_boundaries import finished

from pipelines import export
from transforms.masks import mask_pixels
from transforms.readers.base import ReaderOptions
from transforms.readers.cvat import mask_runs, shape_box
from transforms.readers.detect import detect_format
from transforms.records import Extras

FIXTURES = Path(__file__).parent / "cvat"
WIDTH, HEIGHT = 64, 48


def picture(path: Path, fmt: str = "JPEG", seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, fmt)


def task_export(folder: Path) -> Path:
    """CVAT's "CVAT for images 1.1" task export, unzipped: annotations.xml and images/."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(FIXTURES / "task_annotations.xml", folder / "annotations.xml")
    names = ["street_000.jpg", "street_001.jpg", "north/street_002.jpg", "street_003.jpg"]
    for seed, name in enumerate(names):
        picture(folder / "images" / name, seed=seed)
    return folder


def video_export(folder: Path) -> Path:
    """CVAT's "CVAT for video 1.1" export of a video task: frames as images/frame_NNNNNN.PNG."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(FIXTURES / "video_annotations.xml", folder / "annotations.xml")
    for frame in range(4):
        picture(folder / "images" / f"frame_{frame:06d}.PNG", "PNG", seed=frame)
    return folder


def create(*args) -> int:
    return run_create(*[str(arg) for arg in args], "--num-shards", "1")


def by_name(result: dict) -> dict[str, dict]:
    return {
        example["image/filename"].decode(): example
        for examples in result["splits"].values()
        for example in examples
    }


def pixel_boxes(example: dict) -> list[tuple]:
    """(class, xmin, ymin, xmax, ymax) in pixels, rounded to 2 decimals, sorted."""
    return sorted(
        (label, *(round(v * s, 2) for v, s in zip(corners, (WIDTH, HEIGHT) * 2, strict=True)))
        for label, *corners in example_boxes(example)
    )


def reasons(result: dict) -> dict[str, tuple[str, int]]:
    return {e["source"].rsplit("/", 1)[-1]: (e["reason"], e["objects"]) for e in result["errors"]}


def test_a_cvat_task_export_gives_boxes_attributes_and_declared_classes(tmp_path):
    folder = task_export(tmp_path / "task")
    out = tmp_path / "out"
    code = create(
        "--format", "cvat", "--annotations", folder, "--output", out, "--keep-empty-classes"
    )  # fmt: skip
    assert code == 0
    result = finished(out)
    examples = by_name(result)
    assert sorted(examples) == [
        "images/north/street_002.jpg",
        "images/street_000.jpg",
        "images/street_001.jpg",
        "images/street_003.jpg",
    ]
    street0 = examples["images/street_000.jpg"]
    assert pixel_boxes(street0) == [
        ("car", 4.5, 6.0, 30.25, 28.0),
        ("person", 38.0, 10.0, 52.0, 40.0),
    ]
    assert street0["image/object/difficult"] == [1, 0]  # In the file's order: car, then person.
    assert street0["image/object/view"] == [b"", b"walking"]
    # The mask's box is the extent of its pixels (left 10 + 1, top 8 + 1, 3 x 3); the ellipse's
    # its centre and radii; the box turned by 90 degrees about its centre, its new extent.
    assert pixel_boxes(examples["images/street_001.jpg"]) == [
        ("car", 30.0, 18.0, 50.0, 30.0),
        ("person", 11.0, 9.0, 14.0, 12.0),
    ]
    assert pixel_boxes(examples["images/north/street_002.jpg"]) == [("car", 25.0, 9.0, 35.0, 29.0)]
    assert examples["images/street_003.jpg"]["image/object/bbox/xmin"] == []
    # Classes in <meta>'s order; tag labels and a skeleton's points are not classes.
    assert result["label_map"] == {
        "car": 1,
        "person": 2,
        "road_line": 3,
        "wheel": 4,
        "bicycle": 5,
        "face": 6,
    }
    # The polyline, the points and the skeleton have no box: an error record each.
    lost = {source.split("#", 1)[1]: value for source, value in reasons(result).items()}
    assert lost == {
        "image[0].shape[3]": ("a CVAT <polyline> has no box", 1),
        "image[1].shape[3]": ("a CVAT <points> has no box", 1),
        "image[2].shape[2]": ("a CVAT <skeleton> has no box", 1),
    }
    manifest = result["manifest"]
    assert manifest["objects"]["written"] == 5
    assert manifest["inputs"]["format"] == "cvat"


def test_masks_are_the_polygons_and_the_rle_bitmaps(tmp_path):
    folder = task_export(tmp_path / "task")
    out = tmp_path / "out"
    assert (
        create("--format", "cvat", "--annotations", folder, "--output", out, "--include-masks") == 0
    )
    features = {
        "image/filename": tf.io.FixedLenFeature((), tf.string),
        "image/object/class/text": tf.io.VarLenFeature(tf.string),
        "image/object/mask": tf.io.VarLenFeature(tf.string),
    }
    manifest = read_output(out)["manifest"]
    masks = {}
    for record in tf.data.TFRecordDataset(
        [str(out / f) for f in manifest["splits"]["train"]["files"]]
    ):
        parsed = tf.io.parse_single_example(record, features)
        classes = tf.sparse.to_dense(parsed["image/object/class/text"]).numpy().tolist()
        pngs = tf.sparse.to_dense(parsed["image/object/mask"]).numpy().tolist()
        for label, png in zip(classes, pngs, strict=True):
            name = parsed["image/filename"].numpy().decode()
            masks[(name, label.decode())] = np.asarray(Image.open(io.BytesIO(png))) > 0
    expected = np.zeros((HEIGHT, WIDTH), dtype=bool)
    expected[9, 11:13] = expected[10, 11:14] = expected[11, 12] = True  # rle 6, 2, 3, 3, 3, 1, 2
    assert (masks[("images/street_001.jpg", "person")] == expected).all()
    polygon = masks[("images/street_000.jpg", "person")]
    assert polygon[25, 45] and not polygon[5, 5]
    rows, columns = np.nonzero(polygon)
    assert (columns.min(), rows.min(), columns.max(), rows.max()) == (38, 10, 52, 40)
    # Boxes and ellipses carry no mask: an empty one is written for them.
    assert not masks[("images/street_000.jpg", "car")].any()


def reference_runs(bitmap: np.ndarray) -> list[int]:
    """CVAT's run lengths of a bitmap, row by row, starting with a run of 0s."""
    runs, value, count = [], 0, 0
    for pixel in bitmap.reshape(-1):
        if pixel == value:
            count += 1
        else:
            runs.append(count)
            value, count = pixel, 1
    return runs + [count]


@pytest.mark.parametrize("seed", range(12))
def test_mask_rle_decodes_as_cvat_encodes_it(seed):
    rng = np.random.default_rng(seed)
    height, width = rng.integers(1, 9, size=2)
    bitmap = rng.random((height, width)) < rng.choice([0.1, 0.5, 0.9])
    bitmap[rng.integers(height), rng.integers(width)] = True
    left, top = rng.integers(0, 5, size=2)
    rle = ", ".join(str(run) for run in reference_runs(bitmap.astype(np.uint8)))
    element = etree.fromstring(
        f'<mask label="m" rle="{rle}" left="{left}" top="{top}" width="{width}" height="{height}"/>'
    )
    options = ReaderOptions(extras=Extras(masks=True))
    box = shape_box(element, "m", "x", (20, 16), options)
    placed = np.zeros((16, 20), dtype=np.uint8)
    placed[top : top + height, left : left + width] = bitmap
    assert (mask_pixels(box.mask, 20, 16) == placed).all()
    rows, columns = np.nonzero(placed)
    assert (box.xmin, box.ymin, box.xmax, box.ymax) == (
        columns.min(), rows.min(), columns.max() + 1, rows.max() + 1,
    )  # fmt: skip


def test_the_documented_mask_example_covers_its_box():
    """The `<mask>` of CVAT's XML format page: 13 x 15 pixels."""
    rle = (
        "3, 5, 7, 7, 5, 9, 3, 11, 2, 11, 2, 12, 1, 12, 1, 26, 1, 12, 1, 12, 2, 11, 3, 9, 5, 7, 7, "
        "5, 3"
    )
    runs, extent = mask_runs(rle, 13, 15)
    assert sum(runs) == 13 * 15 and extent == (0, 0, 13, 15)
    with pytest.raises(ValueError, match="covers 195 pixels, not its 13 x 16"):
        mask_runs(rle, 13, 16)


def test_a_cvat_video_export_gives_one_image_per_frame(tmp_path):
    folder = video_export(tmp_path / "video")
    out = tmp_path / "out"
    assert (
        create("--format", "cvat", "--annotations", folder / "annotations.xml", "--output", out)
        == 0
    )
    result = finished(out)
    examples = by_name(result)
    assert {name: pixel_boxes(example) for name, example in examples.items()} == {
        "images/frame_000000.PNG": [("car", 2.0, 3.0, 20.0, 15.0)],
        "images/frame_000001.PNG": [
            ("car", 4.0, 3.0, 22.0, 15.0),
            ("person", 30.0, 10.0, 40.0, 30.0),
        ],
        "images/frame_000002.PNG": [],  # Every track is outside.
        "images/frame_000003.PNG": [],  # No track reaches it.
    }
    # The points track: one error record, for its two shapes inside the frame.
    (error,) = result["errors"]
    assert error["source"].endswith("annotations.xml#track[2]")
    assert error["objects"] == 2 and "<points> has no box" in error["reason"]
    assert result["manifest"]["objects"]["written"] == 3


def project_export(folder: Path) -> Path:
    """A CVAT project export: `<meta><project>` with its labels and subsets, every image
    naming its subset, images in images/<subset>/."""
    folder.mkdir(parents=True, exist_ok=True)
    images = [("Train", "a.jpg"), ("Train", "b.jpg"), ("Validation", "a.jpg")]
    for seed, (subset, name) in enumerate(images):
        picture(folder / "images" / subset / name, seed=seed)
    body = "".join(
        f'  <image id="{number}" name="{name}" subset="{subset}" task_id="{task}" '
        f'width="{WIDTH}" height="{HEIGHT}">\n'
        f'    <box label="cat" source="manual" occluded="0" xtl="1.00" ytl="2.00" '
        f'xbr="{10 + number}.00" ybr="12.00" z_order="0">\n    </box>\n  </image>\n'
        for number, (subset, name) in enumerate(images)
        for task in [3 if subset == "Train" else 4]
    )
    meta = [
        "<project>", "<id>2</id>", "<name>pets</name>", "<tasks>",
        "<task>", "<id>3</id>", "<subset>Train</subset>", "</task>",
        "<task>", "<id>4</id>", "<subset>Validation</subset>", "</task>",
        "</tasks>", "<subsets>Train\nValidation</subsets>", "<labels>",
        "<label>", "<name>dog</name>", "</label>", "<label>", "<name>cat</name>", "</label>",
        "</labels>", "</project>", "<dumped>2024-05-16 11:00:00+00:00</dumped>",
    ]  # fmt: skip
    (folder / "annotations.xml").write_text(
        '<?xml version="1.0" encoding="utf-8"?>\n<annotations>\n  <version>1.1</version>\n'
        "  <meta>\n"
        + "".join(f"    {line}\n" for line in meta)
        + "  </meta>\n"
        + body
        + "</annotations>\n"
    )
    return folder


def test_a_project_export_keeps_its_subsets_as_source_splits(tmp_path):
    folder = project_export(tmp_path / "project")
    out = tmp_path / "out"
    code = create(
        "--format", "cvat", "--annotations", folder, "--output", out, "--splits", "source"
    )
    assert code == 0
    result = finished(out)
    names = {
        split: sorted(e["image/filename"].decode() for e in examples)
        for split, examples in result["splits"].items()
    }
    assert names == {
        "Train": ["images/Train/a.jpg", "images/Train/b.jpg"],
        "Validation": ["images/Validation/a.jpg"],
    }
    assert result["label_map"] == {"cat": 2}  # Declared second; dog has no objects.


def test_the_class_can_come_from_an_attribute(tmp_path):
    folder = task_export(tmp_path / "task")
    out = tmp_path / "out"
    code = create(
        "--format", "cvat", "--annotations", folder, "--output", out, "--class-attribute", "model",
        "--keep-empty-classes",
    )  # fmt: skip
    assert code == 0
    result = finished(out)
    classes = sorted(
        label for example in by_name(result).values() for label, *_ in example_boxes(example)
    )
    assert classes == ["hatchback", "person", "person", "sedan", "van"]
    # car's attribute lists its values; labels without the attribute are classes themselves.
    assert list(result["label_map"]) == [
        "sedan", "hatchback", "van", "person", "road_line", "wheel", "bicycle", "face",
    ]  # fmt: skip
    assert result["manifest"]["options"]["class_attribute"] == "model"


def test_class_attribute_is_refused_for_other_formats(tmp_path, capsys):
    code = create(
        "--format", "voc", "--annotations", f"{SAMPLE}/annotations", "--output", tmp_path / "o",
        "--class-attribute", "model",
    )  # fmt: skip
    assert code == 2
    assert "--class-attribute is read by --format cvat and via only" in capsys.readouterr().err


def test_auto_recognises_cvat_and_voc_refuses_it(tmp_path, capsys):
    folder = task_export(tmp_path / "task")
    video = video_export(tmp_path / "video")
    assert detect_format(str(folder)) == "cvat"
    assert detect_format(str(video / "annotations.xml")) == "cvat"
    assert detect_format(f"{SAMPLE}/annotations") == "voc"
    assert create("--format", "auto", "--annotations", folder, "--output", tmp_path / "a") == 0
    assert "detected format cvat" in capsys.readouterr().err
    code = create("--format", "voc", "--annotations", folder, "--output", tmp_path / "v")
    assert code == 2
    err = capsys.readouterr().err
    assert "is CVAT XML (root <annotations>), not Pascal VOC: use --format cvat" in err


def run_export(*args) -> int:
    return export.main([str(arg) for arg in args])


def test_create_export_cvat_create_gives_the_same_boxes_and_classes(tmp_path):
    first = tmp_path / "first"
    code = create(
        "--format", "voc", "--annotations", f"{SAMPLE}/annotations", "--images",
        f"{SAMPLE}/images", "--output", first, "--splits", "train=0.75,val=0.25",
    )  # fmt: skip
    assert code == 0
    exported = tmp_path / "cvat"
    assert run_export("--input", first, "--format", "cvat", "--output", exported) == 0
    assert sorted(p.name for p in exported.iterdir()) == [
        "annotations.xml",
        "export.json",
        "images",
    ]
    again = tmp_path / "again"
    code = create(
        "--format", "auto", "--annotations", exported, "--output", again, "--splits", "source"
    )  # fmt: skip
    assert code == 0
    before, after = finished(first), finished(again)
    assert after["label_map"] == before["label_map"]
    assert sorted(after["splits"]) == sorted(before["splits"]) == ["train", "val"]
    for split in ("train", "val"):
        old = {e["image/filename"].decode(): example_boxes(e) for e in before["splits"][split]}
        new = {
            e["image/filename"].decode().removeprefix("images/"): example_boxes(e)
            for e in after["splits"][split]
        }
        assert new == old
    boxes = sum(len(b) for split in before["splits"].values() for b in map(example_boxes, split))
    assert boxes > 20 and after["manifest"]["objects"]["written"] == boxes
    assert not after["errors"]


def test_the_export_declares_attributes_and_is_cvat_xml(tmp_path):
    first = tmp_path / "first"
    assert (
        create("--format", "cvat", "--annotations", task_export(tmp_path / "t"), "--output", first)
        == 0
    )
    exported = tmp_path / "cvat"
    assert run_export("--input", first, "--format", "cvat", "--output", exported) == 0
    root = etree.parse(str(exported / "annotations.xml")).getroot()
    assert root.tag == "annotations" and root.findtext("version") == "1.1"
    labels = root.findall("meta/task/labels/label")
    assert [label.findtext("name") for label in labels] == ["car", "person"]
    assert [a.findtext("name") for a in labels[0].findall("attributes/attribute")] == [
        "difficult",
        "pose",
    ]
    images = root.findall("image")
    assert [image.get("name") for image in images] == [
        "images/north/street_002.jpg",
        "images/street_000.jpg",
        "images/street_001.jpg",
        "images/street_003.jpg",
    ]
    assert all(image.get("subset") == "train" for image in images)
    car = images[1].find("box")
    assert (car.get("label"), car.get("xtl"), car.get("ybr")) == ("car", "4.5", "28")
    assert {a.get("name"): a.text for a in car.findall("attribute")} == {
        "difficult": "true",
        "pose": None,
    }
    again = tmp_path / "again"
    assert create("--format", "cvat", "--annotations", exported, "--output", again) == 0
    examples = by_name(finished(again))
    assert examples["images/images/street_000.jpg"]["image/object/difficult"] == [1, 0]
    assert examples["images/images/street_000.jpg"]["image/object/view"] == [b"", b"walking"]


def test_images_resolve_under_images_and_beside_the_xml_without_it(tmp_path):
    folder = task_export(tmp_path / "task")
    out = tmp_path / "with_images"
    code = create(
        "--format", "cvat", "--annotations", folder / "annotations.xml", "--images",
        folder / "images", "--output", out,
    )  # fmt: skip
    assert code == 0
    assert "street_000.jpg" in by_name(finished(out))
    # The XML alone beside its images (no images/ folder).
    flat = tmp_path / "flat"
    shutil.copytree(folder / "images", flat)
    shutil.copy(folder / "annotations.xml", flat / "task.xml")
    out = tmp_path / "flat_out"
    assert create("--format", "cvat", "--annotations", flat / "task.xml", "--output", out) == 0
    assert sorted(by_name(finished(out)))[0] == "north/street_002.jpg"


def hostile(tmp_path: Path, body: str, prologue: str = "", *args: str) -> tuple[int, dict]:
    """A CVAT file holding `body` after its meta, beside images/a.jpg; runs create on it."""
    picture(tmp_path / "images" / "a.jpg")
    (tmp_path / "annotations.xml").write_text(
        f'<?xml version="1.0" encoding="utf-8"?>\n{prologue}<annotations><version>1.1</version>'
        "<meta><task><labels><label><name>cat</name></label></labels></task></meta>"
        f'<image id="0" name="a.jpg" width="{WIDTH}" height="{HEIGHT}">'
        '<box label="cat" xtl="1" ytl="1" xbr="9" ybr="9"/></image>' + body + "</annotations>"
    )
    out = tmp_path / "out"
    code = create(
        "--format", "cvat", "--annotations", tmp_path / "annotations.xml", "--output", out, *args
    )
    return code, finished(out)


def test_external_entities_are_never_read(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-VALUE")
    prologue = f'<!DOCTYPE annotations [<!ENTITY xxe SYSTEM "file://{secret}">]>\n'
    body = (
        '<image id="1" name="b.jpg" width="64" height="48">'
        '<box label="cat" xtl="2" ytl="2" xbr="8" ybr="8"><attribute name="pose">&xxe;</attribute>'
        "</box></image>"
    )
    picture(tmp_path / "images" / "b.jpg")
    code, result = hostile(tmp_path, body, prologue)
    assert code == 0
    assert not result["errors"]
    assert result["manifest"]["objects"]["written"] == 2
    assert by_name(result)["images/b.jpg"]["image/object/view"] == [b""]


def test_an_entity_expansion_bomb_ends_the_file_where_it_is_used(tmp_path):
    laughs = '<!ENTITY lol "lollollollollollollollollollol">' + "".join(
        f'<!ENTITY lol{n} "{("&lol" + str(n - 1) + ";" if n > 1 else "&lol;") * 10}">'
        for n in range(1, 10)
    )
    prologue = f"<!DOCTYPE annotations [{laughs}]>\n"
    body = (
        '<image id="1" name="b.jpg"><box label="cat" xtl="2" ytl="2" xbr="8" ybr="8">'
        '<attribute name="pose">&lol9;</attribute></box></image>'
    )
    code, result = hostile(tmp_path, body, prologue)
    assert code == 0
    (error,) = result["errors"]
    assert "amplification" in error["reason"] and "rest of the file was skipped" in error["reason"]
    assert result["manifest"]["objects"]["written"] == 1  # The image before it.


def test_path_escapes_cost_their_image(tmp_path):
    outside = tmp_path / "outside.jpg"
    picture(outside)
    names = ["../../outside.jpg", str(outside), "images/../../../outside.jpg", "", ".", "link.jpg"]
    body = "".join(
        f'<image id="{n + 1}" name="{name}" subset="../.."><box label="cat" xtl="1" ytl="1" '
        'xbr="5" ybr="5"/></image>'
        for n, name in enumerate(names)
    )
    (tmp_path / "d" / "images").mkdir(parents=True)
    (tmp_path / "d" / "images" / "link.jpg").symlink_to(outside)
    code, result = hostile(tmp_path / "d", body)
    assert code == 0
    assert result["manifest"]["objects"]["written"] == 1
    lost = {e["source"].rsplit("#", 1)[1]: (e["reason"], e["objects"]) for e in result["errors"]}
    assert sorted(lost) == [f"image[{n}]" for n in range(1, 7)]
    assert all(objects == 1 for _, objects in lost.values())
    assert all("outside" in reason or "names a folder" in reason for reason, _ in lost.values())
    assert "link that leads outside the images root" in lost["image[6]"][0]


def test_hostile_values_cost_their_shape(tmp_path):
    shapes = [
        '<box label="cat" xtl="inf" ytl="1" xbr="9" ybr="9"/>',
        f'<box label="cat" xtl="{"9" * 400}" ytl="1" xbr="9" ybr="9"/>',
        '<box label="" xtl="1" ytl="1" xbr="9" ybr="9"/>',
        '<polygon label="cat" points="1,1;2,2"/>',
        '<polygon label="cat" points="1,1;2;3,3"/>',
        '<mask label="cat" rle="0, 99999999999999999999" left="0" top="0" width="4" height="4"/>',
        '<mask label="cat" rle="1, 2" left="0" top="0" width="4" height="4"/>',
        '<mask label="cat" rle="16" left="0" top="0" width="4" height="4"/>',
        '<mask label="cat" rle="0, 1" left="0" top="0" width="1" height="1"/>',
        '<mask label="cat" rle="0, 4000000000000" left="0" top="0" width="2000000" '
        'height="2000000"/>',
        '<box label="cat" xtl="1" ytl="1" xbr="9" ybr="9" rotation="1e999"/>',
    ]
    body = '<image id="1" name="b.jpg" width="64" height="48">' + "".join(shapes) + "</image>"
    picture(tmp_path / "images" / "b.jpg")
    code, result = hostile(tmp_path, body, "", "--include-masks")
    assert code == 0
    found = {e["source"].rsplit(".", 1)[1]: (e["reason"], e["objects"]) for e in result["errors"]}
    assert set(found) == {f"shape[{n}]" for n in (*range(1, 9), 10, 11)}
    assert all(objects == 1 for _, objects in found.values())
    assert "larger than 100,000,000" in found["shape[10]"][0]
    assert "covers more than its 4 x 4" in found["shape[6]"][0]
    assert "no pixel set" in found["shape[8]"][0]
    # The 1 x 1 mask at the image's corner is the one object written from b.jpg.
    assert pixel_boxes(by_name(result)["images/b.jpg"]) == [("cat", 0.0, 0.0, 1.0, 1.0)]
    assert result["manifest"]["objects"]["written"] == 2


def test_malformed_deep_and_oversized_xml_ends_the_file_not_the_job(tmp_path):
    deep = "<x>" * 100_000 + "</x>" * 100_000
    code, result = hostile(tmp_path / "deep", deep)
    assert code == 0
    (error,) = result["errors"]
    assert (
        error["reason"].startswith("malformed XML")
        and "rest of the file was skipped" in error["reason"]
    )
    assert result["manifest"]["objects"]["written"] == 1  # The image before it.

    points = ";".join(["1,1"] * 3_000_000)  # 12 MB: beyond libxml2's 10 MB limit.
    body = f'<image id="1" name="b.jpg"><polygon label="cat" points="{points}"/></image>'
    code, result = hostile(tmp_path / "huge", body)
    assert code == 0
    (error,) = result["errors"]
    assert error["reason"] == (
        "a start tag, text or comment holds more than 10,000,000 bytes; "
        "the rest of the file was skipped"
    )
    assert result["manifest"]["objects"]["written"] == 1

    (tmp_path / "bytes").mkdir()
    (tmp_path / "bytes" / "annotations.xml").write_bytes(
        b'<annotations><version>1.1</version><image id="0" name="\xff.jpg"/></annotations>'
    )
    out = tmp_path / "bytes_out"
    code = create("--format", "cvat", "--annotations", tmp_path / "bytes", "--output", out)
    assert code == 1  # Nothing to write.
    (error,) = finished(out)["errors"]
    assert error["reason"].startswith("malformed XML")


def test_a_root_that_is_not_cvat_is_one_error(tmp_path):
    (tmp_path / "a.xml").write_text("<annotation><filename>a.jpg</filename></annotation>")
    out = tmp_path / "out"
    assert create("--format", "cvat", "--annotations", tmp_path / "a.xml", "--output", out) == 1
    (error,) = finished(out)["errors"]
    assert error["reason"] == "root element is <annotation>, not CVAT's <annotations>; file skipped"


def test_read_examples_sees_what_the_manifest_counts(tmp_path):
    """The TFRecords of a task export hold as many boxes as the manifest says were written."""
    folder = task_export(tmp_path / "task")
    out = tmp_path / "out"
    assert create("--format", "cvat", "--annotations", folder, "--output", out) == 0
    manifest = read_output(out)["manifest"]
    files = [os.path.join(out, f) for f in manifest["splits"]["train"]["files"]]
    boxes = sum(len(e["image/object/bbox/xmin"]) for e in read_examples(files))
    assert boxes == manifest["objects"]["written"] == 5


def test_without_subsets_a_file_per_folder_is_a_split_and_one_file_is_refused(tmp_path, capsys):
    task_export(tmp_path / "data" / "train")
    task_export(tmp_path / "data" / "val")
    out = tmp_path / "out"
    code = create(
        "--format",
        "cvat",
        "--annotations",
        tmp_path / "data",
        "--output",
        out,
        "--splits",
        "source",
    )
    assert code == 0
    result = finished(out)
    assert {split: len(examples) for split, examples in result["splits"].items()} == {
        "train": 4,
        "val": 4,
    }
    assert "train/images/street_000.jpg" in by_name(result)
    single = task_export(tmp_path / "single")
    code = create(
        "--format",
        "cvat",
        "--annotations",
        single,
        "--output",
        tmp_path / "o",
        "--splits",
        "source",
    )
    assert code == 2
    assert "these cvat annotations carry no splits" in capsys.readouterr().err
