"""COCO: streaming, the image join, every malformed case, crowd RLE and polygon masks,
keypoints, category renumbering and per-file source splits."""

import io
import json

import apache_beam as beam
import numpy as np
import pycocotools.mask as coco_mask
import pytest
import tensorflow as tf
from conftest import read_output, run_create
from PIL import Image

from transforms.masks import mask_pixels, rle_counts_from_string
from transforms.readers import json_stream
from transforms.readers.base import ReaderOptions, split_of_file
from transforms.readers.coco import OBJECTS, _in_file_order, _StreamCocoFile
from transforms.readers.json_stream import iter_arrays
from transforms.records import Extras, Mask


def test_streaming_reader_yields_elements_across_chunk_boundaries(monkeypatch):
    monkeypatch.setattr(json_stream, "_CHUNK", 5)
    document = {
        "info": {"nested": [1, {"x": "ü"}]},
        "images": [{"id": n, "file_name": f"ä{n}.jpg"} for n in range(4)],
        "annotations": [],
        "categories": [{"id": 123456789, "name": "long id"}],
    }
    data = json.dumps(document, ensure_ascii=False, indent=1).encode()
    got = list(iter_arrays(io.BytesIO(data), {"images", "annotations", "categories"}))
    assert got == [("images", image) for image in document["images"]] + [
        ("categories", {"id": 123456789, "name": "long id"})
    ]


def test_streaming_reader_reports_malformed_json_after_what_came_before():
    data = b'{"images": [{"id": 1}, {"id": 2,, }]}'
    seen = []
    with pytest.raises(ValueError, match="character"):
        for element in iter_arrays(io.BytesIO(data), {"images"}):
            seen.append(element)
    assert seen == [("images", {"id": 1})]


def test_compressed_and_uncompressed_rle_decode_like_pycocotools():
    rng = np.random.default_rng(3)
    mask = np.asfortranarray((rng.random((13, 17)) > 0.6).astype(np.uint8))
    encoded = coco_mask.encode(mask)
    counts = encoded["counts"].decode()
    rle = Mask(rle_size=(13, 17), rle_counts=counts)
    assert np.array_equal(mask_pixels(rle, 17, 13), mask)
    runs = rle_counts_from_string(counts)
    assert np.array_equal(
        mask_pixels(Mask(rle_size=(13, 17), rle_counts=tuple(runs)), 17, 13), mask
    )
    with pytest.raises(ValueError, match="differs"):
        mask_pixels(rle, 13, 17)


def test_split_names_of_coco_and_roboflow_files():
    assert split_of_file("/d/annotations/instances_val2017.json", "/d") == "val2017"
    assert split_of_file("/d/train/_annotations.coco.json", "/d") == "train"
    assert split_of_file("/d/train/_annotations.coco.json", "/d/train") is None
    assert split_of_file("gs://b/person_keypoints_train2017.json", "gs://b") == "train2017"
    assert split_of_file("/d/data/train_labels.csv", "/d") == "train"
    assert split_of_file("/d/valid/_annotations.createml.json", "/d") == "valid"
    assert split_of_file("/d/test/_annotations.txt", "/d") == "test"


def jpeg(path, size=(40, 30)):
    Image.new("RGB", size, (90, 120, 150)).save(path, "JPEG")


@pytest.fixture(scope="module")
def coco_run(tmp_path_factory):
    """One file with every COCO case, converted with masks and keypoints."""
    root = tmp_path_factory.mktemp("coco")
    for name in ("a.jpg", "b.jpg", "neg.jpg", "dup.jpg"):
        jpeg(root / name)
    crowd = np.zeros((30, 40), dtype=np.uint8)
    crowd[5:10, 20:30] = 1
    crowd_rle = coco_mask.encode(np.asfortranarray(crowd))
    document = {
        "images": [
            {"id": 1, "file_name": "a.jpg", "width": 40, "height": 30},
            {"id": 2, "file_name": "b.jpg", "width": 40, "height": 30},
            {"id": 3, "file_name": "neg.jpg", "width": 40, "height": 30},
            {"id": 1, "file_name": "dup.jpg"},
            {"id": 4, "file_name": "a.jpg"},
            {"id": 5, "file_name": "../evil.jpg"},
        ],
        "annotations": [
            {
                "id": 10,
                "image_id": 1,
                "category_id": 1,
                "bbox": [2, 3, 10, 8],
                "area": 61.5,
                "iscrowd": 0,
                "segmentation": [[2, 3, 12, 3, 12, 11, 2, 11]],
                "keypoints": [4, 5, 2, 0, 0, 0],
            },
            {
                "id": 11,
                "image_id": 1,
                "category_id": 2,
                "bbox": [20, 5, 10, 5],
                "area": 50,
                "iscrowd": 1,
                "segmentation": {"size": [30, 40], "counts": crowd_rle["counts"].decode()},
            },
            {"id": 12, "image_id": 2, "category_id": 1, "bbox": [1, 1, 5]},
            {"id": 13, "image_id": 2, "category_id": 99, "bbox": [1, 1, 5, 5]},
            {"id": 14, "image_id": 77, "category_id": 1, "bbox": [1, 1, 5, 5]},
            {"id": 15, "image_id": 2, "category_id": 1, "bbox": [1, 1, 5, 5], "iscrowd": 0},
            {"id": 16, "category_id": 1, "bbox": [1, 1, 5, 5]},
        ],
        "categories": [
            {"id": 1, "name": "person", "keypoints": ["nose", "left_eye"]},
            {"id": 2, "name": "crowd thing"},
            {"id": 7, "name": "never used"},
        ],
    }
    (root / "instances_train.json").write_text(json.dumps(document))
    out = root / "out"
    assert (
        run_create(
            "--format",
            "coco",
            "--annotations",
            root / "instances_train.json",
            "--output",
            out,
            "--include-masks",
            "--include-keypoints",
            "--num-shards",
            "1",
        )
        == 0
    )
    return read_output(out), crowd


def errors_about(output, text):
    return [e for e in output["errors"] if text in e["reason"]]


@pytest.mark.parametrize(
    "text, source_end, objects",
    [
        ("duplicate image id 1", "#image[1]", 0),
        ("duplicate file_name 'a.jpg'", "#image[4]", 0),
        ("outside the images root", "#image[5]", 0),
        ("is not [x, y, width, height]", "#annotation[12]", 1),
        ("unknown category id 99", "#annotation[13]", 1),
        ("unknown image id 77", "#annotation[14]", 1),
        ("annotation has no image_id", "#annotation[16]", 1),
    ],
)
def test_malformed_coco_parts_are_error_records(coco_run, text, source_end, objects):
    output, _ = coco_run
    (error,) = errors_about(output, text)
    assert error["source"].endswith(source_end)
    assert error["objects"] == objects
    assert error["stage"] == "read"


def test_coco_examples_with_crowd_area_masks_and_keypoints(coco_run):
    output, crowd = coco_run
    examples = {e["image/filename"]: e for e in output["splits"]["train"]}
    assert sorted(examples) == [b"a.jpg", b"b.jpg", b"neg.jpg"]
    # COCO's image ids are the source ids, as TF Models' scripts write them.
    assert {name: e["image/source_id"] for name, e in examples.items()} == {
        b"a.jpg": b"1",
        b"b.jpg": b"2",
        b"neg.jpg": b"3",
    }
    assert output["manifest"]["images"]["source_ids"] == {
        "from_source": 3,
        "from_name": 0,
        "reassigned": {"count": 0, "first": []},
    }
    assert output["label_map"] == {"person": 1, "crowd thing": 2}  # Unused 'never used' left out.
    a = examples[b"a.jpg"]
    assert a["image/object/class/label"] == [1, 2]
    assert np.allclose(a["image/object/bbox/xmin"], [2 / 40, 20 / 40])
    assert np.allclose(a["image/object/bbox/ymax"], [11 / 30, 10 / 30])
    raw = raw_examples(output)[b"a.jpg"]
    assert list(raw["image/object/is_crowd"].int64_list.value) == [0, 1]
    assert list(raw["image/object/area"].float_list.value) == [61.5, 50.0]
    masks = [
        tf.io.decode_png(png).numpy()[:, :, 0] for png in raw["image/object/mask"].bytes_list.value
    ]
    assert [m.shape for m in masks] == [(30, 40), (30, 40)]
    assert set(np.unique(masks[0])) == {0, 1}
    assert masks[0][3:12, 2:13].all() and masks[0].sum() == 9 * 11
    assert np.array_equal(masks[1], crowd)
    # The crowd object has no keypoints: padded to the person's two, unnamed and invisible.
    assert np.allclose(raw["image/object/keypoint/x"].float_list.value, [4 / 40, 0, 0, 0])
    assert np.allclose(raw["image/object/keypoint/y"].float_list.value, [5 / 30, 0, 0, 0])
    assert list(raw["image/object/keypoint/visibility"].int64_list.value) == [2, 0, 0, 0]
    assert list(raw["image/object/keypoint/text"].bytes_list.value) == [
        b"nose",
        b"left_eye",
        b"",
        b"",
    ]
    assert list(raw["image/object/keypoint/num"].int64_list.value) == [1, 0]
    # A person without keypoints still carries the category's two, unlabeled, so the lists
    # hold 2 points per box in every example (the OD API's decoder needs [N, 2, 2]).
    b = raw_examples(output)[b"b.jpg"]
    assert list(b["image/object/keypoint/text"].bytes_list.value) == [b"nose", b"left_eye"]
    assert list(b["image/object/keypoint/visibility"].int64_list.value) == [0, 0]
    assert list(b["image/object/keypoint/x"].float_list.value) == [0, 0]
    assert list(b["image/object/keypoint/num"].int64_list.value) == [0]
    neg = raw_examples(output)[b"neg.jpg"]
    assert len(neg["image/object/bbox/xmin"].float_list.value) == 0
    empty = tf.io.decode_png(b["image/object/mask"].bytes_list.value[0]).numpy()
    assert empty.shape == (30, 40, 1) and not empty.any()  # No segmentation: an empty mask.
    assert all(output["manifest"]["accounting"].values())


def raw_examples(output):
    """{filename: feature map} straight from the protos, for keys outside the OD spec."""
    records = tf.data.TFRecordDataset([str(p) for p in sorted((output["dir"] / "train").iterdir())])
    result = {}
    for record in records.as_numpy_iterator():
        feature = tf.train.Example.FromString(record).features.feature
        result[feature["image/filename"].bytes_list.value[0]] = feature
    return result


def test_category_zero_is_renumbered_and_recorded(tmp_path):
    jpeg(tmp_path / "a.jpg")
    document = {
        "images": [{"id": 0, "file_name": "a.jpg"}],
        "annotations": [
            {"id": 1, "image_id": 0, "category_id": 0, "bbox": [1, 1, 5, 5]},
            {"id": 2, "image_id": 0, "category_id": 1, "bbox": [1, 1, 5, 5]},
        ],
        "categories": [{"id": 0, "name": "animals"}, {"id": 1, "name": "cat"}],
    }
    (tmp_path / "a.json").write_text(json.dumps(document))
    assert (
        run_create(
            "--format", "coco", "--annotations", tmp_path / "a.json", "--output", tmp_path / "o"
        )
        == 0
    )
    output = read_output(tmp_path / "o")
    assert output["label_map"] == {"animals": 1, "cat": 2}
    assert output["manifest"]["renumbered_classes"] == {
        "animals": {"source_id": 0, "id": 1},
        "cat": {"source_id": 1, "id": 2},
    }
    assert output["splits"]["train"][0]["image/object/class/label"] == [1, 2]


def test_one_file_per_split_and_an_image_in_two_splits_is_in_both_and_reported(tmp_path):
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        jpeg(tmp_path / name)
    category = [{"id": 1, "name": "cat"}]
    for split, names in (("train", ["a.jpg", "c.jpg"]), ("valid", ["b.jpg", "c.jpg"])):
        (tmp_path / split).mkdir()
        images = [{"id": n, "file_name": name} for n, name in enumerate(names)]
        annotations = [{"id": 1, "image_id": 0, "category_id": 1, "bbox": [1, 1, 9, 9]}]
        (tmp_path / split / "_annotations.coco.json").write_text(
            json.dumps({"images": images, "annotations": annotations, "categories": category})
        )
    code = run_create(
        "--format",
        "coco",
        "--annotations",
        f"{tmp_path}/*/_annotations.coco.json",
        "--images",
        tmp_path,
        "--splits",
        "source",
        "--output",
        tmp_path / "o",
    )
    assert code == 0
    output = read_output(tmp_path / "o")
    assert set(output["splits"]) == {"train", "valid"}
    train = sorted(e["image/filename"] for e in output["splits"]["train"])
    valid = sorted(e["image/filename"] for e in output["splits"]["valid"])
    assert (train, valid) == ([b"a.jpg", b"c.jpg"], [b"b.jpg", b"c.jpg"])
    assert output["errors"] == []
    assert output["manifest"]["images"]["in_several_splits"] == {
        "count": 1,
        "first": ["c.jpg (train, valid)"],
    }
    card = (tmp_path / "o" / "README.md").read_text()
    assert "1 images in several source splits" in card and "`c.jpg (train, valid)`" in card


def streamed_lists(path, options):
    """{image id: [(part, pickled annotations)]}: the lists the streaming step emits."""
    lists = {}
    for item in _StreamCocoFile(str(path), options).process(str(path)):
        if isinstance(item, beam.pvalue.TaggedOutput) and item.tag == OBJECTS:
            (_, image_id), part = item.value
            lists.setdefault(image_id, []).append(part)
    return lists


def streamed_parts(path, options):
    """{image id: [(part, annotation ids)]} of the lists the streaming step emits."""
    return {
        image_id: [
            (part, [a["id"] for a in _in_file_order([(part, pickled)])]) for part, pickled in parts
        ]
        for image_id, parts in streamed_lists(path, options).items()
    }


def test_annotations_flushed_one_by_one_make_the_same_records_as_gathered_whole(
    tmp_path, monkeypatch
):
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        jpeg(tmp_path / name)
    square = [[2, 2, 12, 2, 12, 12, 2, 12]]
    annotations = [  # a.jpg's interleaved with b.jpg's, errors and a repeated id among them.
        {"id": 5, "image_id": 1, "category_id": 1, "bbox": [2, 2, 10, 10], "segmentation": square},
        {"id": 3, "image_id": 2, "category_id": 2, "bbox": [1, 1, 5, 5], "keypoints": [2, 2, 2]},
        {"id": 9, "image_id": 1, "category_id": 2, "bbox": [4, 4, 8, 6], "iscrowd": 1},
        {"id": 4, "image_id": 1, "category_id": 7, "bbox": [1, 1, 5, 5]},
        {"id": 6, "image_id": 2, "category_id": 1, "bbox": [1, 1, 5]},
        {"id": 8, "image_id": 42, "category_id": 1, "bbox": [1, 1, 5, 5]},
        {"id": 5, "image_id": 1, "category_id": 2, "bbox": [20, 10, 6, 6], "area": 30.5},
        {"id": 7, "image_id": 1, "category_id": 1, "bbox": [30, 20, 5, 5]},
    ]
    document = {
        "images": [
            {"id": n, "file_name": name, "width": 40, "height": 30}
            for n, name in ((1, "a.jpg"), (2, "b.jpg"), (3, "c.jpg"))
        ],
        "annotations": annotations,
        "categories": [
            {"id": 1, "name": "cat", "keypoints": ["nose"]},
            {"id": 2, "name": "dog", "keypoints": ["nose"]},
        ],
    }
    path = tmp_path / "instances_train.json"
    path.write_text(json.dumps(document))
    options = ReaderOptions(annotations_root=str(tmp_path), extras=Extras(masks=True))
    whole = streamed_parts(path, options)
    assert whole == {1: [(0, [5, 9, 4, 5, 7])], 2: [(0, [3, 6])], 42: [(0, [8])]}

    def create(name):
        out = tmp_path / name
        flags = ("--include-masks", "--include-keypoints", "--num-shards", "1")
        code = run_create("--format", "coco", "--annotations", path, "--output", out, *flags)
        assert code == 0
        return read_output(out)

    default = create("default")
    monkeypatch.setattr(_StreamCocoFile, "GATHER_BYTES", 0)
    # Every annotation leaves on its own: a.jpg's in five parts, in file order.
    assert streamed_parts(path, options)[1] == [(0, [5]), (2, [9]), (3, [4]), (6, [5]), (7, [7])]
    flushed = create("flushed")

    def records(output):
        files = [
            str(output["dir"] / name) for name in output["manifest"]["splits"]["train"]["files"]
        ]
        return sorted(tf.data.TFRecordDataset(files).as_numpy_iterator())

    assert len(records(default)) == 3
    assert records(flushed) == records(default)
    assert sorted(map(json.dumps, flushed["errors"])) == sorted(map(json.dumps, default["errors"]))
    assert sorted(e["source"].rsplit("#", 1)[1] for e in default["errors"]) == [
        "annotation[4]",
        "annotation[6]",
        "annotation[8]",
    ]
    assert flushed["manifest"]["objects"] == default["manifest"]["objects"]
    examples = {e["image/filename"]: e for e in flushed["splits"]["train"]}
    # All of a.jpg's that can be used, by id, the repeated id's in file order.
    assert examples[b"a.jpg"]["image/object/class/text"] == [b"cat", b"dog", b"cat", b"dog"]
    assert np.allclose(
        examples[b"a.jpg"]["image/object/bbox/xmin"], [2 / 40, 20 / 40, 30 / 40, 4 / 40]
    )
    assert examples[b"c.jpg"]["image/object/class/text"] == []


def test_annotations_gathered_are_bounded_by_their_size_not_their_number(tmp_path, monkeypatch):
    small = [{"id": n, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5]} for n in range(10)]
    huge = [{**a, "bbox": [0.5] * 40_000} for a in small]  # Some 360 kB each, pickled.
    budget = 1_000_000
    monkeypatch.setattr(_StreamCocoFile, "GATHER_BYTES", budget)
    options = ReaderOptions(annotations_root=str(tmp_path))
    for name, annotations in (("small.json", small), ("huge.json", huge)):
        (tmp_path / name).write_text(json.dumps({"images": [], "annotations": annotations}))
    assert streamed_parts(tmp_path / "small.json", options) == {1: [(0, list(range(10)))]}
    (lists,) = streamed_lists(tmp_path / "huge.json", options).values()
    assert [len(pickled) for _, pickled in lists] == [3, 3, 3, 1]
    # Each list left as soon as the one annotation last read took it past the budget.
    assert all(sum(map(len, pickled[:-1])) <= budget for _, pickled in lists)
    assert [a["id"] for a in _in_file_order(lists[::-1])] == list(range(10))


def test_annotation_fields_holding_lone_surrogates_cost_only_what_they_spoil(tmp_path):
    """JSON's `\\udcff` escape decodes to text no UTF-8 coder takes; annotations cross the
    graph pickled, so such an id is carried and such an area is the one error."""
    jpeg(tmp_path / "a.jpg")
    document = {
        "images": [{"id": 1, "file_name": "a.jpg"}],
        "annotations": [
            {"id": "x\udcff", "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5]},
            {"id": 2, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5], "area": "\udcff"},
        ],
        "categories": [{"id": 1, "name": "cat"}],
    }
    (tmp_path / "a.json").write_text(json.dumps(document))
    out = tmp_path / "o"
    assert (
        run_create("--format", "coco", "--annotations", tmp_path / "a.json", "--output", out) == 0
    )
    output = read_output(out)
    (example,) = output["splits"]["train"]
    assert example["image/object/class/text"] == [b"cat"]
    (error,) = output["errors"]
    assert error["source"].endswith("#annotation[2]") and error["objects"] == 1
    assert error["reason"].startswith("area is text, not a number")
