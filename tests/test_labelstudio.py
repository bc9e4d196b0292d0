"""The Label Studio reader on its own: both export layouts, the brush RLE, the image
references Label Studio writes, and hostile values. Runs of the real command are in
test_labelstudio_runs.py."""

from __future__ import annotations

import io
import json
import math
import os
import time
import tracemalloc

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image, ImageDraw
from test_fuzz_readers import (
    FUZZ,
    OPTIONS,
    ROOT,
    assert_accounted,
    check,
    either,
    fields,
    fuzz_file,
    json_values,
    names,
    numbers,
)

from transforms.masks import mask_pixels
from transforms.readers.base import ReaderOptions, guarded
from transforms.readers.detect import sniff_json
from transforms.readers.labelstudio import parse_labelstudio
from transforms.readers.labelstudio_brush import MAX_BRUSH_PIXELS, decode_brush
from transforms.records import ErrorRecord, Extras, ImageAnnotation

CREATED = "2024-05-02T09:14:03.518227Z"


def ls_rle(values, word=8, sizes=(3, 4, 8, 16)) -> list[int]:
    """Label Studio's brush RLE of `values`, written bit by bit from the format's description
    (label-studio-converter's `encode_rle`, thi.ng's rle-pack): equal neighbours as repeat
    runs, the rest as runs of single words."""
    values = [int(v) for v in values]
    bits = f"{len(values):032b}{word - 1:05b}" + "".join(f"{size - 1:04b}" for size in sizes)
    longest = 2 ** sizes[-1]

    def run(flag: str, count: int) -> str:
        index = next(i for i, size in enumerate(sizes) if count - 1 < 2**size)
        return flag + f"{index:02b}" + format(count - 1, f"0{sizes[index]}b")

    i = 0
    while i < len(values):
        j = i
        while j < len(values) and values[j] == values[i] and j - i < longest:
            j += 1
        if j - i >= 2:
            bits += run("1", j - i) + format(values[i], f"0{word}b")
        else:
            j = i + 1
            while j < len(values) and j - i < longest and values[j] != values[j - 1]:
                j += 1
            if j < len(values) and values[j] == values[j - 1] and j - 1 > i:
                j -= 1  # Leave the start of a repeat to the repeat.
            bits += run("0", j - i) + "".join(format(v, f"0{word}b") for v in values[i:j])
        i = j
    bits += "0" * (-len(bits) % 8)
    return [int(bits[k : k + 8], 2) for k in range(0, len(bits), 8)]


def rgba(mask: np.ndarray, color=(255, 0, 0, 255)) -> list[int]:
    """A mask's canvas as Label Studio's editor paints it: the label's colour where the mask
    is, transparent black elsewhere, RGBA values row by row."""
    canvas = np.zeros((*mask.shape, 4), dtype=np.uint8)
    canvas[mask > 0] = color
    return canvas.reshape(-1).tolist()


def parse(document, options: ReaderOptions | None = None, path="/d/export.json"):
    data = document if isinstance(document, bytes) else json.dumps(document).encode()
    records = list(parse_labelstudio(io.BytesIO(data), path, options or ReaderOptions("/d")))
    annotations = [r for r in records if isinstance(r, ImageAnnotation)]
    errors = [r for r in records if isinstance(r, ErrorRecord)]
    return annotations, errors


def rect(x, y, w, h, label="cat", rid="a1", size=(200, 100), rotation=0, kind="rectanglelabels"):
    return {
        "id": rid,
        "type": kind,
        "from_name": "label",
        "to_name": "image",
        "original_width": size[0],
        "original_height": size[1],
        "image_rotation": 0,
        "origin": "manual",
        "value": {"x": x, "y": y, "width": w, "height": h, "rotation": rotation, kind: [label]},
    }


def task(image, results, task_id=1, **annotation) -> dict:
    """A task as Label Studio 1.x's full JSON export writes it."""
    return {
        "id": task_id,
        "annotations": [
            {
                "id": 1000 + task_id,
                "completed_by": 1,
                "result": results,
                "was_cancelled": False,
                "ground_truth": False,
                "created_at": CREATED,
                "updated_at": CREATED,
                "draft_created_at": None,
                "lead_time": 12.5,
                "prediction": {},
                "result_count": 0,
                "unique_id": "5a1c0d6e-4c52-4f0c-9a7e-6a9b2f0f6c11",
                "import_id": None,
                "last_action": None,
                "task": task_id,
                "project": 3,
                "updated_by": 1,
                "parent_prediction": None,
                "parent_annotation": None,
                "last_created_by": None,
                **annotation,
            }
        ],
        "file_upload": "8f3c2a1b-a.jpg",
        "drafts": [],
        "predictions": [],
        "data": {"image": image},
        "meta": {},
        "created_at": CREATED,
        "updated_at": CREATED,
        "inner_id": task_id,
        "total_annotations": 1,
        "cancelled_annotations": 0,
        "total_predictions": 0,
        "comment_count": 0,
        "unresolved_comment_count": 0,
        "last_comment_updated_at": None,
        "project": 3,
        "updated_by": 1,
        "comment_authors": [],
    }


def corners(box) -> tuple:
    return (box.label, *(round(v, 9) for v in (box.xmin, box.ymin, box.xmax, box.ymax)))


# The brush RLE.


@pytest.mark.parametrize("painted", ["mask2rle", "editor"])
def test_brush_rle_decodes_both_ways_label_studio_writes_it(painted):
    mask = np.zeros((30, 40), dtype=np.uint8)
    mask[5:12, 3:30] = 1
    mask[20:29, 31:40] = 1
    mask[0, 0] = mask[29, 39] = 1
    # label-studio-converter's mask2rle repeats each value 4 times; the editor paints RGBA.
    values = np.repeat(mask * 255, 4).tolist() if painted == "mask2rle" else rgba(mask)
    assert np.array_equal(decode_brush(ls_rle(values), 40, 30), mask)


def test_brush_rle_of_random_masks_and_word_sizes():
    generator = np.random.default_rng(7)
    for word, sizes in ((8, (3, 4, 8, 16)), (16, (1, 2, 5, 9)), (3, (2, 2, 2, 2))):
        mask = (generator.random((9, 13)) > 0.6).astype(np.uint8)
        alpha = generator.integers(1, 2**word, size=mask.shape) * mask
        canvas = np.stack([generator.integers(0, 2**word, size=mask.shape)] * 3 + [alpha], -1)
        rle = ls_rle(canvas.reshape(-1).tolist(), word, sizes)
        assert np.array_equal(decode_brush(rle, 13, 9), mask), (word, sizes)


def test_brush_rle_refuses_what_it_cannot_be():
    good = ls_rle(rgba(np.ones((3, 4), dtype=np.uint8)))
    assert decode_brush(good, 4, 3).all()
    with pytest.raises(ValueError, match="holds 48 values, not 5x3x4"):
        decode_brush(good, 5, 3)
    with pytest.raises(ValueError, match="ends before"):
        decode_brush(good[:8], 4, 3)
    with pytest.raises(ValueError, match="shorter than its header"):
        decode_brush(good[:3], 4, 3)
    for values in ([256], [-1], [1.5], ["a"], [None]):
        with pytest.raises(ValueError, match="not a list of bytes"):
            decode_brush(good[:7] + values, 4, 3)
    with pytest.raises(ValueError, match="not a list of bytes"):
        decode_brush("AAAA", 4, 3)
    # A run past the declared count: 4 values declared, one repeat of 8.
    bits = f"{4:032b}{7:05b}" + "0010" * 4 + "1" + "00" + "111" + "11111111"
    bits += "0" * (-len(bits) % 8)
    past = [int(bits[k : k + 8], 2) for k in range(0, len(bits), 8)]
    with pytest.raises(ValueError, match="run past its 4 values"):
        decode_brush(past, 1, 1)


def test_huge_brush_claims_cost_nothing():
    started = time.process_time()
    # 2**32 - 1 values claimed by a 20-byte stream, and a canvas beyond the pixel limit.
    claim = [255, 255, 255, 255] + [0] * 16
    with pytest.raises(ValueError, match="not 1000x1000x4"):
        decode_brush(claim, 1000, 1000)
    side = math.isqrt(MAX_BRUSH_PIXELS) + 1
    with pytest.raises(ValueError, match="more than"):
        decode_brush(claim, side, side)
    # The largest canvas allowed, in a few dozen bytes of repeat runs: decoded in linear time.
    width, height = 10_000, 10_000
    total = width * height * 4
    bits = f"{total:032b}{7:05b}" + "".join(f"{s - 1:04b}" for s in (3, 4, 8, 16))
    bits += ("1" + "11" + "1" * 16 + "0" * 8) * (total // 2**16)
    bits += "1" + "11" + format(total % 2**16 - 1, "016b") + "0" * 8
    bits += "0" * (-len(bits) % 8)
    runs = [int(bits[k : k + 8], 2) for k in range(0, len(bits), 8)]
    assert len(runs) < 25_000
    assert not decode_brush(runs, width, height).any()
    assert time.process_time() - started < 20


# Both layouts.


def test_full_export_rectangles_in_percent_and_the_latest_annotation():
    older = {"result": [rect(0, 0, 10, 10, "dog")], "created_at": "2024-01-01T00:00:00Z"}
    cancelled = {"result": [rect(0, 0, 50, 50, "cancelled")], "was_cancelled": True,
                 "created_at": "2025-01-01T00:00:00Z"}  # fmt: skip
    first = task("a.jpg", [rect(10, 20, 30, 40)])
    first["annotations"] = [older, *first["annotations"], cancelled]
    first["predictions"] = [{"result": [rect(0, 0, 5, 5, "predicted")], "score": 0.9}]
    (annotation,), errors = parse([first])
    assert errors == []
    assert annotation.image == "a.jpg" and annotation.source_id == 1
    assert (annotation.width, annotation.height) == (200, 100)
    (box,) = annotation.boxes
    assert box.normalized and corners(box) == ("cat", 0.1, 0.2, 0.4, 0.6)
    assert box.source == "/d/export.json#task[1]#result[1]"


def test_tasks_never_labeled_give_nothing_and_empty_annotations_are_negatives():
    unlabeled = task("a.jpg", [], task_id=1)
    unlabeled["annotations"] = []
    skipped = task("b.jpg", [rect(1, 1, 5, 5)], task_id=2, was_cancelled=True)
    negative = task("c.jpg", [], task_id=3)
    (annotation,), errors = parse([unlabeled, skipped, negative])
    assert errors == [] and annotation.image == "c.jpg" and annotation.boxes == ()


def test_rotated_rectangles_give_their_extent():
    # 90 degrees about the top-left corner (20, 10) px: the 40 x 10 px box hangs down-left.
    turned = rect(10, 10, 20, 10, rotation=90)
    (annotation,), _ = parse([task("a.jpg", [turned])])
    xmin, ymin, xmax, ymax = corners(annotation.boxes[0])[1:]
    assert (xmin * 200, ymin * 100, xmax * 200, ymax * 100) == pytest.approx((10, 10, 20, 50))
    # 45 degrees: the corners of a 40 x 20 px box turned about (20, 10) px.
    (annotation,), _ = parse([task("a.jpg", [rect(10, 10, 20, 20, rotation=45)])])
    c = math.sqrt(0.5)
    xs = (20, 20 + 40 * c, 20 + 40 * c - 20 * c, 20 - 20 * c)
    ys = (10, 10 + 40 * c, 10 + 40 * c + 20 * c, 10 + 20 * c)
    box = annotation.boxes[0]
    assert (box.xmin * 200, box.xmax * 200) == pytest.approx((min(xs), max(xs)))
    assert (box.ymin * 100, box.ymax * 100) == pytest.approx((min(ys), max(ys)))
    without_size = rect(10, 10, 20, 20, rotation=30)
    del without_size["original_width"]
    _, (error,) = parse([task("a.jpg", [without_size])])
    assert "rotated rectangle needs the region's original_width" in error.reason


def test_polygons_and_brushes_with_masks():
    brush_mask = np.zeros((100, 200), dtype=np.uint8)
    brush_mask[40:60, 150:190] = 1
    polygon = {
        "id": "p1", "type": "polygonlabels", "from_name": "label", "to_name": "image",
        "original_width": 200, "original_height": 100, "image_rotation": 0,
        "value": {"points": [[10, 10], [50, 20], [30, 60]], "closed": True,
                  "polygonlabels": ["leaf"]},
    }  # fmt: skip
    brush = {
        "id": "b1", "type": "brushlabels", "from_name": "tag", "to_name": "image",
        "original_width": 200, "original_height": 100, "image_rotation": 0,
        "value": {"format": "rle", "rle": ls_rle(rgba(brush_mask)), "brushlabels": ["spot"]},
    }  # fmt: skip
    options = ReaderOptions("/d", extras=Extras(masks=True))
    (annotation,), errors = parse([task("a.jpg", [polygon, brush])], options)
    assert errors == []
    leaf, spot = annotation.boxes
    assert corners(leaf) == ("leaf", 0.1, 0.1, 0.5, 0.6)
    # In fractions of the image, as its box is (`Mask`).
    assert leaf.mask.polygons == ((0.1, 0.1, 0.5, 0.2, 0.3, 0.6),)
    assert corners(spot) == ("spot", 0.75, 0.4, 0.95, 0.6)
    assert np.array_equal(mask_pixels(spot.mask, 200, 100), brush_mask)
    (plain,), _ = parse([task("a.jpg", [polygon, brush])])
    assert [box.mask for box in plain.boxes] == [None, None]


def test_json_min_records_one_per_annotation_newest_first():
    def record(annotation_id, boxes, **extra):
        return {
            "image": "/data/upload/3/8f3c2a1b-a.jpg",
            "id": 7,
            **boxes,
            "annotator": 1,
            "annotation_id": annotation_id,
            "created_at": CREATED,
            "updated_at": CREATED,
            "lead_time": 4.1,
            **extra,
        }

    region = {**rect(10, 20, 30, 40)["value"], "original_width": 200, "original_height": 100}
    newest = record(12, {"label": [region], "quality": "good"})
    older = record(11, {"label": [{**region, "rectanglelabels": ["dog"]}]})
    negative = {**record(13, {}), "id": 8, "image": "/data/upload/3/0a1b2c3d-b.jpg"}
    (cat, empty), errors = parse([newest, older, negative])
    assert errors == []
    assert cat.image == "8f3c2a1b-a.jpg" and cat.source_id == 7
    assert [corners(b) for b in cat.boxes] == [("cat", 0.1, 0.2, 0.4, 0.6)]
    assert (cat.width, cat.height) == (200, 100)
    assert empty.image == "0a1b2c3d-b.jpg" and empty.boxes == ()


def test_labels_tags_beside_shapes_and_regions_without_boxes():
    shape = rect(10, 20, 30, 40, kind="rectangle", rid="r1")
    del shape["value"]["rectangle"]
    labels = {**rect(10, 20, 30, 40, rid="r1", kind="labels"), "from_name": "kind"}
    per_region = {**rect(10, 20, 30, 40, rid="r1"), "type": "choices"}
    per_region["value"] = {**shape["value"], "choices": ["occluded"]}
    alone = rect(1, 2, 3, 4, kind="rectangle", rid="r2")
    del alone["value"]["rectangle"]
    point = {"id": "k1", "type": "keypointlabels", "original_width": 200, "original_height": 100,
             "value": {"x": 5, "y": 5, "width": 0.5, "keypointlabels": ["nose"]}}  # fmt: skip
    relation = {"from_id": "r1", "to_id": "k1", "type": "relation", "direction": "right"}
    text = {"id": "t1", "type": "textarea", "value": {"text": ["a note"]}}
    results = [shape, labels, per_region, alone, point, relation, text, "junk"]
    (annotation,), errors = parse([task("a.jpg", results)])
    assert [corners(b) for b in annotation.boxes] == [("cat", 0.1, 0.2, 0.4, 0.6)]
    assert {e.source.rsplit("#", 1)[1]: (e.reason, e.objects) for e in errors} == {
        "result[4]": ("region has no label", 1),
        "result[5]": ("a keypointlabels region is no rectangle, polygon or brush mask", 1),
        "result[8]": ("region is text, not an object", 1),
    }


def test_hostile_values_cost_their_region_or_task():
    def value(**changes):
        return {**rect(10, 10, 10, 10), "value": {**rect(10, 10, 10, 10)["value"], **changes}}

    huge_brush = {"type": "brushlabels", "original_width": 10**6, "original_height": 10**6,
                  "value": {"format": "rle", "rle": [255] * 20, "brushlabels": ["x"]}}  # fmt: skip
    lying_brush = {"type": "brushlabels", "original_width": 4, "original_height": 3,
                   "value": {"format": "rle", "rle": [255] * 20, "brushlabels": ["x"]}}  # fmt: skip
    leaf = {"polygonlabels": ["leaf"]}
    results = [
        value(x=float("nan")),
        value(width="10"),
        value(height=-5),
        value(y=10**400),
        value(rotation=float("inf")),
        value(rectanglelabels=[]),
        value(rectanglelabels="cat"),
        huge_brush,
        lying_brush,
        {**rect(0, 0, 1, 1), "image_rotation": 90},
        value(x=150),  # Outside the image: the box step rejects it, where the size is known.
        {"type": "polygonlabels", "value": {"points": [[1, 2]], **leaf}},
        {"type": "polygonlabels", "value": {"points": [[1, 2], [3], [4, 5]], **leaf}},
    ]
    (annotation,), errors = parse([task("a.jpg", results)])
    reasons = {int(e.source.rsplit("[", 1)[1][:-1]): e.reason for e in errors}
    assert all(e.objects == 1 for e in errors)
    assert [corners(b)[1] for b in annotation.boxes] == [1.5]
    assert sorted(reasons) == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 13]
    assert "x is not a finite number" in reasons[1]
    assert "width is text, not a number" in reasons[2]
    assert "negative width or height" in reasons[3]
    assert "y is not a finite number" in reasons[4]
    assert "rotation is not a finite number" in reasons[5]
    assert "region has no label" in reasons[6]
    assert "rectanglelabels is text, not a list" in reasons[7]
    assert "more than 100000000 pixels" in reasons[8]
    assert "not 4x3x4" in reasons[9]
    assert "image_rotation" in reasons[10]
    assert "fewer than 3" in reasons[12] and "[x, y] pairs" in reasons[13]


def test_malformed_tasks_cost_themselves_and_a_cut_file_the_rest():
    good = task("a.jpg", [rect(1, 1, 5, 5)])
    bad_data = {**task("b.jpg", [rect(1, 1, 5, 5)], task_id=2), "data": ["b.jpg"]}
    no_image = {**task("c.jpg", [rect(1, 1, 5, 5)], task_id=3), "data": {"text": "hello"}}
    (annotation,), errors = parse([good, 17, bad_data, no_image])
    assert annotation.image == "a.jpg"
    assert [(e.source.rsplit("#", 1)[1], e.reason, e.objects) for e in errors] == [
        ("task[2]", "task is a number, not an object", 0),
        ("task[3]", "task data is a list, not an object", 1),
        ("task[4]", "task names no image (data.image)", 1),
    ]
    not_utf8 = json.dumps([good]).encode()[:-1] + b',{"data": {"image": "\xff.jpg"}}]'
    (annotation,), (error,) = parse(not_utf8)
    assert error.reason == "task holds bytes that are not UTF-8 text"
    cut = json.dumps([good, good]).encode()[:-40]
    with pytest.raises(ValueError, match="at character"):
        parse(cut)


# Image references.


def test_image_references_resolve_under_the_images_root(tmp_path):
    root = tmp_path / "images"
    (root / "3").mkdir(parents=True)
    for name in ("8f3c2a1b-a.jpg", "3/0a1b2c3d-b.jpg", "c.jpg", "sub dir/d+e.jpg"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"x")
    options = ReaderOptions(str(root))
    references = {
        "/data/upload/3/8f3c2a1b-a.jpg": "8f3c2a1b-a.jpg",  # As Label Studio stores it.
        "/data/upload/3/0a1b2c3d-b.jpg": "3/0a1b2c3d-b.jpg",  # Its media/upload folder.
        "/data/upload/3/9e8d7c6b-c.jpg": "c.jpg",  # As it was uploaded.
        "/data/upload/3/9e8d7c6b-missing.jpg": "9e8d7c6b-missing.jpg",  # Reported missing.
        "http://localhost:8080/data/upload/3/aa11bb22-c.jpg": "c.jpg",
        "/data/local-files/?d=sub%20dir/d%2Be.jpg": "sub dir/d+e.jpg",
        "/data/local-files/?d=sub dir%5Cd%2Be.jpg": "sub dir/d+e.jpg",
        "http://localhost:8080/data/local-files/?d=c.jpg": "c.jpg",
        "https://example.com/bucket/photos/c.jpg?X-Amz-Signature=abc": "c.jpg",
        "s3://bucket/photos/a%20b.jpg": "a b.jpg",
        "gs://bucket/c.jpg": "c.jpg",
        "c.jpg": "c.jpg",
        f"{root}/c.jpg": "c.jpg",
    }
    tasks = [task(ref, [], task_id=n) for n, ref in enumerate(references, start=1)]
    annotations, errors = parse(tasks, options, path=str(tmp_path / "export.json"))
    assert errors == []
    assert [a.image for a in annotations] == list(references.values())


def test_image_references_never_leave_the_images_root(tmp_path):
    root = tmp_path / "images"
    root.mkdir()
    (tmp_path / "secret.jpg").write_bytes(b"x")
    os.symlink(tmp_path / "secret.jpg", root / "8f3c2a1b-s.jpg")
    escapes = [
        "/data/local-files/?d=../secret.jpg",
        "/data/local-files/?d=%2E%2E/secret.jpg",
        f"/data/local-files/?d={tmp_path}/secret.jpg",
        "/data/local-files/?x=a.jpg",
        "/data/upload/3/..",
        "/data/upload/3/%2E%2E",
        "/data/upload/../../secret.jpg",
        "http://example.com/%2E%2E",
        "http://example.com/",
        "../secret.jpg",
        "..\\secret.jpg",
        f"{tmp_path}/secret.jpg",
        "C:\\secret.jpg",
        "",
        None,
        ["a.jpg"],
    ]
    tasks = [task(ref, [rect(1, 1, 5, 5)], task_id=n) for n, ref in enumerate(escapes, start=1)]
    annotations, errors = parse(tasks, ReaderOptions(str(root)), path=str(tmp_path / "e.json"))
    assert annotations == []
    assert len(errors) == len(escapes) and all(e.objects == 1 for e in errors)
    # A link out of the root is never chosen: the upload's own name is kept for the image step
    # to refuse.
    (linked,), _ = parse([task("/data/upload/3/8f3c2a1b-s.jpg", [])], ReaderOptions(str(root)))
    assert linked.image == "8f3c2a1b-s.jpg"


def test_without_images_names_are_looked_for_beside_the_export(tmp_path):
    (tmp_path / "export").mkdir()
    (tmp_path / "export" / "a.jpg").write_bytes(b"x")
    options = ReaderOptions(str(tmp_path), images_beside_annotations=True)
    path = str(tmp_path / "export" / "tasks.json")
    tasks = [task("/data/upload/1/8f3c2a1b-a.jpg", []), task("/data/local-files/?d=x/b.jpg", [])]
    annotations, _ = parse(tasks, options, path=path)
    assert [a.image for a in annotations] == ["export/a.jpg", "x/b.jpg"]


# Detection and memory.


def test_auto_detection_tells_label_studio_from_createml_and_coco(tmp_path):
    documents = {
        "full.json": [task("a.jpg", [rect(1, 1, 5, 5)])],
        "unlabeled.json": [{"id": 1, "data": {"image": "a.jpg"}, "annotations": []}],
        "min.json": [{"image": "a.jpg", "id": 1, "annotator": 1, "annotation_id": 2}],
        "one.json": task("a.jpg", []),
        "createml.json": [{"image": "a.jpg", "annotations": [{"label": "cat", "coordinates": {}}]}],
        "coco.json": {"images": [], "annotations": [], "categories": []},
    }
    found = {}
    for name, document in documents.items():
        (tmp_path / name).write_text(json.dumps(document, indent=2))
        found[name] = sniff_json(str(tmp_path / name))
    assert found == {
        "full.json": "labelstudio",
        "unlabeled.json": "labelstudio",
        "min.json": "labelstudio",
        "one.json": "labelstudio",
        "createml.json": "createml",
        "coco.json": "coco",
    }


def test_large_exports_are_streamed_one_task_at_a_time(tmp_path):
    path = tmp_path / "big.json"
    padding = "p" * 8000
    with open(path, "w") as handle:
        handle.write("[")
        for number in range(1, 5001):
            item = task(f"{number}.jpg", [rect(1, 1, 5, 5)], task_id=number)
            item["meta"] = {"note": padding}
            handle.write(("," if number > 1 else "") + json.dumps(item))
        handle.write("]")
    size = os.path.getsize(path)
    tracemalloc.start()
    with open(path, "rb") as handle:
        count = sum(
            isinstance(r, ImageAnnotation)
            for r in parse_labelstudio(handle, str(path), ReaderOptions(str(tmp_path)))
        )
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert count == 5000
    # One task and the text buffered around it; json.load would take twice the file's size.
    assert size > 40 << 20 and peak < 8 << 20, (size, peak)


def test_polygon_masks_render_as_coco_polygons_do():
    points = [[10, 10], [50, 20], [30, 60]]
    region = {"type": "polygonlabels", "original_width": 200, "original_height": 100,
              "value": {"points": points, "polygonlabels": ["leaf"]}}  # fmt: skip
    options = ReaderOptions("/d", extras=Extras(masks=True))
    (annotation,), _ = parse([task("a.jpg", [region])], options)
    canvas = Image.new("L", (200, 100), 0)
    pixels = [(x * 2, y) for x, y in points]
    ImageDraw.Draw(canvas).polygon(pixels, fill=1, outline=1)
    rendered = mask_pixels(annotation.boxes[0].mask, 200, 100, normalized=True)
    assert np.array_equal(rendered, np.asarray(canvas)) and rendered.sum() > 500


# Any value in any field.

# A region of each shape read, whose every field may hold anything but its label key.
percent_regions = st.builds(
    lambda kind, value, sizes: {"type": kind, "value": {**value, kind: ["cat"]}, **sizes},
    st.sampled_from(["rectanglelabels", "polygonlabels", "brushlabels"]),
    fields(
        x=numbers,
        y=numbers,
        width=numbers,
        height=numbers,
        rotation=numbers,
        points=st.lists(st.lists(numbers, min_size=2, max_size=2), max_size=4),
        rle=st.lists(st.integers(0, 255), max_size=40),
    ),
    fields(original_width=st.integers(1, 8), original_height=st.integers(1, 8)),
)
references = st.one_of(
    names,
    st.sampled_from(
        ["/data/upload/1/0a1b2c3d-a.jpg", "/data/local-files/?d=../a.jpg", "http://h/%2E%2E"]
    ),
)
fuzz_tasks = st.fixed_dictionaries(
    {
        "annotations": st.lists(
            st.fixed_dictionaries({"result": st.lists(percent_regions)}), min_size=1, max_size=2
        )
    },  # fmt: skip
    optional={"data": either(fields(image=references)), "id": json_values},
)


def fuzz_export(tasks: list[dict]) -> tuple[bytes, int]:
    """A full export and its objects: the regions of each task's last annotation."""
    objects = sum(len(t["annotations"][-1]["result"]) for t in tasks)
    return json.dumps(tasks).encode("utf-8", "surrogatepass"), objects


@FUZZ
@given(fuzz_file(st.lists(fuzz_tasks, max_size=3), fuzz_export))
def test_any_export_gives_records_and_accounts_for_every_region(data):
    parsed = parse_labelstudio(io.BytesIO(data[0]), f"{ROOT}/e.json", OPTIONS)
    objects, records = check(guarded(parsed, f"{ROOT}/e.json", whole_file=True))
    assert_accounted(data, objects, records)
