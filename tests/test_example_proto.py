"""The Example messages built without TensorFlow (`transforms.example_proto`) against
TensorFlow's own: the same schema, the same bytes for the same values, and parsed by
`tf.io.parse_single_example` as written."""

from __future__ import annotations

import math
from unittest import mock

import numpy as np
import tensorflow as tf
from google.protobuf import descriptor_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tensorflow.core.example import example_pb2, feature_pb2

from transforms import example_proto
from transforms.encode import FLOAT32_MAX, build_example
from transforms.masks import mask_png
from transforms.records import (
    Box,
    ExampleInput,
    Extras,
    ImageAnnotation,
    Keypoint,
    LabeledObject,
    LoadedImage,
)

PROPERTY = settings(
    max_examples=150,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
MESSAGES = ["BytesList", "FloatList", "Int64List", "Feature", "Features", "Example"]
TF_CLASSES = {name: getattr(tf.train, name) for name in MESSAGES}


def _schema(message: descriptor_pb2.DescriptorProto) -> list:
    """What decides a message's wire format: each field's name, number, label, type, message
    type, packing and oneof, and the nested map entries the same way."""
    fields = [
        (f.name, f.number, f.label, f.type, f.type_name, f.options.packed, f.oneof_index)
        for f in message.field
    ]
    nested = [(n.name, n.options.map_entry, _schema(n)) for n in message.nested_type]
    return [fields, nested, [o.name for o in message.oneof_decl]]


def _schemas(module) -> dict:
    proto = descriptor_pb2.FileDescriptorProto()
    module.DESCRIPTOR.file.CopyToProto(proto)
    return proto.package, proto.syntax, {m.name: _schema(m) for m in proto.message_type}


def test_the_schema_is_tensorflows():
    ours = _schemas(example_proto.Example)
    package, syntax, tensorflows = _schemas(feature_pb2.Feature)
    tensorflows.update(_schemas(example_pb2.Example)[2])
    assert ours[:2] == (package, syntax) == ("tensorflow", "proto3")
    assert ours[2] == {name: tensorflows[name] for name in MESSAGES}


int64s = st.integers(-(2**63), 2**63 - 1)
float32s = st.floats(-FLOAT32_MAX, FLOAT32_MAX, allow_nan=False) | st.sampled_from(
    [0.0, -0.0, 1e-45, 0.1, 3.4028234663852886e38]
)
values = st.one_of(
    st.tuples(st.just("int64_list"), st.lists(int64s, max_size=5)),
    st.tuples(st.just("float_list"), st.lists(float32s, max_size=5)),
    st.tuples(st.just("bytes_list"), st.lists(st.binary(max_size=8), max_size=5)),
)
feature_maps = st.dictionaries(st.text(max_size=10), values, max_size=6)


def _example(classes: dict, features: dict):
    lists = {"int64_list": "Int64List", "float_list": "FloatList", "bytes_list": "BytesList"}
    return classes["Example"](
        features=classes["Features"](
            feature={
                key: classes["Feature"](**{kind: classes[lists[kind]](value=items)})
                for key, (kind, items) in features.items()
            }
        )
    )


@PROPERTY
@given(feature_maps)
def test_any_features_serialize_as_tensorflows(features):
    ours = _example(vars(example_proto), features)
    theirs = _example(TF_CLASSES, features)
    assert ours.SerializeToString(deterministic=True) == theirs.SerializeToString(
        deterministic=True
    )
    assert tf.train.Example.FromString(ours.SerializeToString()) == theirs


@PROPERTY
@given(st.dictionaries(st.from_regex(r"[a-z/]{1,12}", fullmatch=True), values, min_size=1))
def test_tensorflow_parses_them_as_written(features):
    serialized = _example(vars(example_proto), features).SerializeToString(deterministic=True)
    dtypes = {"int64_list": tf.int64, "float_list": tf.float32, "bytes_list": tf.string}
    spec = {key: tf.io.VarLenFeature(dtypes[kind]) for key, (kind, _) in features.items()}
    parsed = tf.io.parse_single_example(serialized, spec)
    for key, (kind, items) in features.items():
        read = parsed[key].values.numpy().tolist()
        if kind == "float_list":
            items = np.array(items, dtype=np.float32).tolist()
        assert read == items


def _as_tensorflow_builds(item: ExampleInput, extras: Extras) -> bytes:
    """The bytes of the same example built by the same code with `tf.train`'s classes."""
    with mock.patch.multiple("transforms.encode", **TF_CLASSES):
        return build_example(item, extras).SerializeToString(deterministic=True)


texts = st.text(max_size=6)
coordinates = st.floats(0, 1)
keypoints = st.builds(Keypoint, texts, st.floats(0, 64), st.floats(0, 48), st.integers(0, 2))
boxes = st.builds(
    Box,
    label=texts,
    xmin=coordinates,
    ymin=coordinates,
    xmax=coordinates,
    ymax=coordinates,
    source=st.just("a.xml"),
    difficult=st.booleans(),
    truncated=st.booleans(),
    view=texts,
    is_crowd=st.none() | st.booleans(),
    area=st.none() | st.floats(0, 3000),
    keypoints=st.lists(keypoints, max_size=3).map(tuple),
)
MASK = mask_png(np.eye(48, 64, dtype=np.uint8))
objects = st.builds(
    LabeledObject,
    label=texts,
    label_id=st.integers(1, 2**31 - 1),
    xmin=coordinates,
    ymin=coordinates,
    xmax=coordinates,
    ymax=coordinates,
    box=boxes,
    mask_png=st.none() | st.just(MASK),
)
images = st.builds(
    LoadedImage,
    annotation=st.builds(
        ImageAnnotation,
        image=st.text(min_size=1, max_size=8),
        sources=st.just(("a.xml",)),
        source_id=st.none() | st.integers(0, 2**63 - 1),
    ),
    encoded=st.binary(min_size=1, max_size=64),
    format=st.sampled_from(["jpeg", "png"]),
    width=st.just(64),
    height=st.just(48),
)


@PROPERTY
@given(
    st.builds(ExampleInput, images, st.lists(objects, max_size=4).map(tuple)),
    st.builds(Extras, st.booleans(), st.booleans()),
)
def test_the_encoder_writes_tensorflows_bytes(item, extras):
    ours = build_example(item, extras)
    assert ours.SerializeToString(deterministic=True) == _as_tensorflow_builds(item, extras)
    for feature in ours.features.feature.values():
        assert all(math.isfinite(value) for value in feature.float_list.value)
