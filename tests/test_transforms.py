"""Grouping, box validation, split assignment and the sharded sink, each on its own."""

import glob
import os
import re

import apache_beam as beam
import pytest
import tensorflow as tf
from apache_beam.testing.util import assert_that, equal_to
from conftest import local_pipeline

from transforms.boxes import BoxRejected, ValidateBoxes, normalize_box
from transforms.grouping import GroupByImage
from transforms.records import Box, EncodedExample, ImageAnnotation, LoadedImage
from transforms.splits import assign_shard, assign_split, parse_splits
from transforms.tfrecord_sink import WriteShardedTFRecords


def box(xmin, ymin, xmax, ymax, label="cat", source="s"):
    return Box(label, xmin, ymin, xmax, ymax, source)


def test_group_by_image_merges_mentions_in_source_order():
    mentions = [
        ImageAnnotation("a.jpg", ("f.csv:10",), (box(5, 5, 6, 6, source="f.csv:10"),)),
        ImageAnnotation("b.jpg", ("f.csv:3",), ()),
        ImageAnnotation("a.jpg", ("f.csv:9",), (box(1, 1, 2, 2, source="f.csv:9"),), 100, 50),
    ]
    with local_pipeline() as pipeline:
        merged = pipeline | beam.Create(mentions) | GroupByImage()
        assert_that(
            merged,
            equal_to(
                [
                    ImageAnnotation(
                        "a.jpg",
                        ("f.csv:9", "f.csv:10"),
                        (box(1, 1, 2, 2, source="f.csv:9"), box(5, 5, 6, 6, source="f.csv:10")),
                        100,
                        50,
                    ),
                    ImageAnnotation("b.jpg", ("f.csv:3",), ()),
                ]
            ),
        )


def test_normalize_box_divides_by_the_measured_size_and_clips():
    assert normalize_box(box(10, 5, 50, 25), 100, 50) == ((0.1, 0.1, 0.5, 0.5), False)
    assert normalize_box(box(-10, 5, 150, 60), 100, 50) == ((0.0, 0.1, 1.0, 1.0), True)


@pytest.mark.parametrize(
    "corners, reason",
    [
        ((50, 5, 10, 25), "inverted"),
        ((10, 30, 50, 25), "inverted"),
        ((10, 5, 10, 25), "empty"),
        ((200, 5, 300, 25), "outside"),
        ((float("nan"), 5, 10, 25), "non-finite"),
    ],
)
def test_normalize_box_rejects_what_clipping_cannot_repair(corners, reason):
    with pytest.raises(BoxRejected, match=reason):
        normalize_box(box(*corners), 100, 50)


def test_validate_boxes_keeps_the_good_boxes_of_an_image():
    annotation = ImageAnnotation(
        "a.jpg",
        ("a.xml",),
        (box(10, 5, 50, 25), box(50, 5, 10, 25, source="bad"), box(1, 1, 2, 2, "dog", "dog")),
    )
    image = LoadedImage(annotation, b"", "jpeg", 100, 50)
    outputs = list(ValidateBoxes().process(image, {"cat": 3}))
    errors = [o.value for o in outputs if isinstance(o, beam.pvalue.TaggedOutput)]
    (example,) = [o for o in outputs if not isinstance(o, beam.pvalue.TaggedOutput)]
    assert [(o.label_id, o.xmin, o.ymax) for o in example.objects] == [(3, 0.1, 0.5)]
    assert [(e.source, e.stage, e.objects) for e in errors] == [
        ("bad", "box", 1),
        ("dog", "box", 1),
    ]
    assert "not in the label map" in errors[1].reason


def test_parse_splits():
    assert parse_splits("train=0.8,valid=0.1,test=0.1") == {"train": 0.8, "valid": 0.1, "test": 0.1}
    for spec, message in [
        ("train=0.5", "sum to 0.5"),
        ("a=0.5,a=0.5", "twice"),
        ("a b=1", "NAME=FRACTION"),
        ("a=x", "non-numeric"),
        ("a=0,b=1", "(0, 1]"),
    ]:
        with pytest.raises(ValueError, match=re.escape(message)):
            parse_splits(spec)


def test_split_assignment_is_stable_balanced_and_survives_new_images():
    splits = {"train": 0.8, "test": 0.2}
    keys = [f"img-{n}.jpg" for n in range(5000)]
    first = {key: assign_split(key, splits) for key in keys[:4000]}
    again = {key: assign_split(key, splits) for key in keys}
    assert all(again[key] == split for key, split in first.items())
    share = sum(split == "train" for split in again.values()) / len(keys)
    assert 0.78 < share < 0.82
    shards = [assign_shard(key, 4) for key in keys]
    assert sorted(set(shards)) == [0, 1, 2, 3]
    assert min(shards.count(n) for n in range(4)) > 1150


@pytest.mark.parametrize("shuffle", [False, True])
def test_sink_writes_exactly_n_shards_with_stable_membership(tmp_path, shuffle):
    def example(n):
        key = f"k{n}"
        features = {
            "image/source_id": tf.train.Feature(bytes_list=tf.train.BytesList(value=[key.encode()]))
        }
        data = tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()
        return EncodedExample("train" if n % 3 else "test", assign_shard(key, 3), data)

    examples = [example(n) for n in range(40)]
    with local_pipeline() as pipeline:
        files = (
            pipeline
            | beam.Create(examples)
            | WriteShardedTFRecords(str(tmp_path), ["train", "test", "empty"], 3, shuffle)
        )
        assert_that(
            files,
            equal_to(
                [
                    f"{s}/{s}.tfrecord-0000{n}-of-00003"
                    for s in ("train", "test", "empty")
                    for n in range(3)
                ]
            ),
        )
    assert not os.path.exists(tmp_path / ".parts" / "train-00000-00000-of-00001")
    for split in ("train", "test", "empty"):
        for shard in range(3):
            path = tmp_path / split / f"{split}.tfrecord-0000{shard}-of-00003"
            ids = {
                tf.train.Example.FromString(record.numpy())
                .features.feature["image/source_id"]
                .bytes_list.value[0]
                for record in tf.data.TFRecordDataset([str(path)])
            }
            expected = {
                f"k{n}".encode()
                for n, e in enumerate(examples)
                if e.split == split and e.shard == shard
            }
            assert ids == expected
    assert sorted(glob.glob(str(tmp_path / "*" / "*.tfrecord-*"))) == sorted(
        str(tmp_path / s / f"{s}.tfrecord-0000{n}-of-00003")
        for s in ("train", "test", "empty")
        for n in range(3)
    )


def test_load_validate_encode_in_a_pipeline_route_errors_to_their_outputs(tmp_path):
    from PIL import Image

    from transforms.encode import STATS, EncodeExamples
    from transforms.images import LoadImages

    Image.new("RGB", (100, 50), (9, 9, 9)).save(tmp_path / "a.png")
    mentions = [
        ImageAnnotation("a.png", ("a.xml",), (box(10, 5, 50, 25), box(9, 9, 1, 1, source="bad"))),
        ImageAnnotation("gone.png", ("g.xml",), (box(1, 1, 2, 2),)),
    ]
    with local_pipeline() as pipeline:
        loaded = (
            pipeline
            | beam.Create(mentions)
            | beam.ParDo(LoadImages(str(tmp_path), 10_000, 10_000)).with_outputs(
                "errors", main="images"
            )
        )
        labels = pipeline | "Labels" >> beam.Create([{"cat": 1}])
        checked = loaded.images | beam.ParDo(
            ValidateBoxes(), beam.pvalue.AsSingleton(labels)
        ).with_outputs("errors", main="examples")
        encoded = checked.examples | beam.ParDo(EncodeExamples({"train": 1.0}, 2)).with_outputs(
            STATS, main="examples"
        )
        assert_that(
            loaded.errors | "ImageErrors" >> beam.Map(lambda e: (e.image, e.stage, e.objects)),
            equal_to([("gone.png", "image", 1)]),
            label="image errors",
        )
        assert_that(
            checked.errors | "BoxErrors" >> beam.Map(lambda e: (e.source, e.stage)),
            equal_to([("bad", "box")]),
            label="box errors",
        )
        assert_that(
            encoded.examples
            | "Parsed"
            >> beam.Map(
                lambda e: (
                    e.split,
                    e.shard == assign_shard("a.png", 2),
                    list(
                        tf.train.Example.FromString(e.data)
                        .features.feature["image/object/bbox/xmax"]
                        .float_list.value
                    ),
                )
            ),
            equal_to([("train", True, [0.5])]),
            label="examples",
        )
        assert_that(
            encoded[STATS],
            equal_to(
                [
                    {
                        "splits": {"train": {"examples": 1, "objects": 1}},
                        "classes": {"cat": 1},
                        "converted": {},
                        "clipped": 0,
                        "size_mismatch": 0,
                    }
                ]
            ),
            label="stats",
        )


def test_assemble_concatenates_the_parts_of_one_shard(tmp_path):
    from transforms.tfrecord_sink import _AssembleShard

    parts = []
    for number in range(2):
        path = str(tmp_path / f"part-{number}")
        with tf.io.TFRecordWriter(path) as writer:
            writer.write(f"record-{number}".encode())
        parts.append(path)
    (relative,) = _AssembleShard(str(tmp_path), 4).process((("test", 3), reversed(parts)))
    assert relative == "test/test.tfrecord-00003-of-00004"
    records = list(tf.data.TFRecordDataset(str(tmp_path / relative)).as_numpy_iterator())
    assert records == [b"record-0", b"record-1"]
    assert not any(os.path.exists(part) for part in parts)
