"""Property-based fuzzing of the way back from TFRecords: any tf.train.Example (every key the
decoder reads, of any kind, any length, any value) and any bytes give decoded records, or
RecordRejected and object errors, never another exception, and every object is accounted
for. Derandomized and bounded, so every run tries the same inputs in a few seconds."""

from __future__ import annotations

import gzip
import io
import json
import math

import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree
from test_export import jpeg_bytes, png_bytes

from pipelines.export import _candidate_name, _fits
from pipelines.flags import EXPORT_FORMATS
from pipelines.inspect_records import Inspector
from transforms.export.decode import DecodedRecord, RecordRejected, decode_example
from transforms.export.labelstudio import labelstudio_document
from transforms.export.writers import (
    NamedRecord,
    coco_document,
    csv_text,
    cvat_document,
    voc_xml,
    yolo_labels,
)
from transforms.label_map import categories_from_counts
from transforms.tfrecord import frame, iter_records

FUZZ = settings(
    max_examples=150,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

KEYS = [
    "image/encoded",
    "image/format",
    "image/filename",
    "image/source_id",
    "image/width",
    "image/height",
    *(f"image/object/bbox/{k}" for k in ("xmin", "ymin", "xmax", "ymax")),
    "image/object/class/text",
    "image/object/class/label",
    *(f"image/object/{k}" for k in ("is_crowd", "area", "difficult", "truncated", "view", "mask")),
    *(f"image/object/keypoint/{k}" for k in ("x", "y", "visibility", "text")),
]
JPEG, PNG, MASK = jpeg_bytes(), png_bytes(), png_bytes(40, 30)

byte_values = st.one_of(
    st.sampled_from([JPEG, PNG, MASK, b"", b"cat", b"../x.jpg", b"a/b.jpg", b"\xff\xfe\x00"]),
    st.binary(max_size=24),
    st.text(max_size=300).map(lambda text: text.encode("utf-8", "surrogatepass")),
)
float_values = st.one_of(
    st.sampled_from([0.0, 0.1, 0.5, 0.9, 1.0, 1.05, -0.0]),
    st.floats(width=32),  # NaN, infinities and extremes included.
)
int_values = st.one_of(
    st.sampled_from([0, 1, 2, 30, 40, -1]),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
)


def _feature(kind: str, values: list) -> tf.train.Feature:
    if kind == "bytes":
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=values))
    if kind == "float":
        return tf.train.Feature(float_list=tf.train.FloatList(value=values))
    if kind == "int64":
        return tf.train.Feature(int64_list=tf.train.Int64List(value=values))
    return tf.train.Feature()  # A feature with no list at all.


features = st.one_of(
    st.builds(_feature, st.just("bytes"), st.lists(byte_values, max_size=4)),
    st.builds(_feature, st.just("float"), st.lists(float_values, max_size=4)),
    st.builds(_feature, st.just("int64"), st.lists(int_values, max_size=4)),
    st.just(_feature("none", [])),
)


def _plausible() -> dict[str, tf.train.Feature]:
    """A sound record with two objects, so that mutations reach every step of decoding."""
    return {
        "image/encoded": _feature("bytes", [JPEG]),
        "image/format": _feature("bytes", [b"jpeg"]),
        "image/filename": _feature("bytes", [b"a.jpg"]),
        "image/width": _feature("int64", [40]),
        "image/height": _feature("int64", [30]),
        **{
            f"image/object/bbox/{k}": _feature("float", [v, v + 0.3])
            for k, v in (("xmin", 0.1), ("ymin", 0.2), ("xmax", 0.5), ("ymax", 0.6))
        },
        "image/object/class/text": _feature("bytes", [b"cat", b"dog"]),
        "image/object/class/label": _feature("int64", [1, 2]),
        "image/object/area": _feature("float", [10.0, 20.0]),
        "image/object/mask": _feature("bytes", [MASK, MASK]),
        "image/object/keypoint/x": _feature("float", [0.2, 0.3]),
        "image/object/keypoint/y": _feature("float", [0.2, 0.3]),
    }


@st.composite
def examples(draw) -> tf.train.Example:
    """A plausible record with some keys replaced or dropped, or a record of random keys."""
    base = _plausible() if draw(st.booleans()) else {}
    changes = draw(st.dictionaries(st.sampled_from(KEYS), features, max_size=6))
    for key in draw(st.lists(st.sampled_from(KEYS), max_size=3)):
        base.pop(key, None)
    return tf.train.Example(features=tf.train.Features(feature={**base, **changes}))


def _object_count(example: tf.train.Example) -> int:
    feature = example.features.feature.get("image/object/bbox/xmin")
    kind = feature.WhichOneof("kind") if feature is not None else None
    return len(getattr(feature, kind).value) if kind else 0


def _strict_json(text: str):
    """Parses JSON as strict readers do: NaN and Infinity are not JSON."""

    def refuse(name: str):
        raise ValueError(f"{name} in JSON")

    return json.loads(text, parse_constant=refuse)


@FUZZ
@given(examples(), st.sampled_from([({}, {}), ({1: "cat"}, {"cat": 1})]))
def test_any_example_decodes_or_is_rejected_and_every_object_is_accounted_for(example, label_map):
    names, ids = label_map
    try:
        record = decode_example(example, "f#record[0]", "train", names, ids)
    except RecordRejected as error:
        assert str(error)
        return
    assert isinstance(record, DecodedRecord)
    image = record.image
    assert len(image.annotation.boxes) + len(record.object_errors) == _object_count(example)
    assert 0 < image.width < 2**31 and 0 < image.height < 2**31
    for box in image.annotation.boxes:
        values = [box.xmin, box.ymin, box.xmax, box.ymax, box.area or 0.0]
        values += [v for k in box.keypoints for v in (k.x, k.y)]
        assert all(math.isfinite(v) for v in values)
    # Whatever decoded, every writer writes it: valid JSON, names that fit a filesystem.
    categories = categories_from_counts([(pair, 1) for pair in record.class_ids])
    for fmt in EXPORT_FORMATS:
        name = _candidate_name(record, fmt)
        assert _fits(fmt, name) and not name.startswith(("/", "../"))
        named = NamedRecord(name, record)
        _strict_json("".join(coco_document([named], categories)))
        _strict_json("".join(labelstudio_document([named])))
        voc_xml(named)
        etree.fromstring("".join(cvat_document([named], categories)).encode("utf-8"))
        csv_text([named])
        yolo_labels(named, categories)


@FUZZ
@given(examples())
def test_inspect_checks_any_example_without_an_exception(example):
    inspector = Inspector({}, {})
    stream = io.BytesIO(frame(example.SerializeToString()))
    list(inspector.inspect_stream("fuzz.tfrecord", stream))
    assert inspector.report.examples == 1


RECORDS = [b"", b"x", bytes(range(256)) * 3, b"\x00" * 40]
FRAMED = b"".join(frame(record) for record in RECORDS)


def _check_items(items: list) -> None:
    """Indexes count from 0; each item holds a record or a problem; a problem that ends the
    file comes last."""
    assert [index for index, _, _ in items] == list(range(len(items)))
    for number, (_, data, problem) in enumerate(items):
        assert (data is None) != (problem is None)
        if problem and problem != "record data fails its CRC check":
            assert number == len(items) - 1


@FUZZ
@given(st.binary(max_size=300))
def test_any_bytes_give_records_or_problems(data):
    _check_items(list(iter_records(io.BytesIO(data))))


@FUZZ
@given(st.integers(0, len(FRAMED) - 1), st.integers(1, 255), st.integers(0, len(FRAMED)))
def test_a_changed_byte_or_a_cut_never_passes_for_a_record(position, change, length):
    damaged = bytearray(FRAMED)
    damaged[position] ^= change
    for data in (bytes(damaged), FRAMED[:length]):
        items = list(iter_records(io.BytesIO(data)))
        _check_items(items)
        for index, record, _ in items:
            assert record is None or record == RECORDS[index]


@FUZZ
@given(st.lists(st.tuples(st.integers(10, 10_000), st.integers(0, 255)), min_size=1, max_size=4))
def test_corrupt_gzip_gives_problems(changes):
    packed = bytearray(gzip.compress(FRAMED * 20))
    for position, value in changes:
        packed[position % len(packed)] = value
    items = list(iter_records(gzip.GzipFile(fileobj=io.BytesIO(bytes(packed)))))
    _check_items(items)
