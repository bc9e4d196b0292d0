"""The `tf.train.Example` message classes without TensorFlow.

Importing TensorFlow costs seconds and half a gigabyte in every process, and building and
serializing examples needs none of it: the classes here are made at run time from the same
schema as TensorFlow's `tensorflow/core/example/example.proto` and `feature.proto` (package
`tensorflow`, proto3, same field numbers and types, packed numeric lists), so an example
serializes to the same bytes and TensorFlow parses it as its own.
`tests/test_example_proto.py` checks schema and bytes against `tf.train.Example`.
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_FIELD = descriptor_pb2.FieldDescriptorProto


def _build_pool() -> descriptor_pool.DescriptorPool:
    # A private pool and file name: TensorFlow's own classes, when it is imported too, live in
    # the default pool under `tensorflow/core/example/...` and do not clash with these.
    proto = descriptor_pb2.FileDescriptorProto(
        name="odrecords_example.proto", package="tensorflow", syntax="proto3"
    )
    for name, kind in (
        ("BytesList", _FIELD.TYPE_BYTES),
        ("FloatList", _FIELD.TYPE_FLOAT),
        ("Int64List", _FIELD.TYPE_INT64),
    ):
        field = proto.message_type.add(name=name).field.add(
            name="value", number=1, label=_FIELD.LABEL_REPEATED, type=kind
        )
        if kind != _FIELD.TYPE_BYTES:
            field.options.packed = True  # proto3's default; stated, as feature.proto does.
    feature = proto.message_type.add(name="Feature")
    feature.oneof_decl.add(name="kind")
    for number, name in enumerate(["bytes_list", "float_list", "int64_list"], start=1):
        feature.field.add(
            name=name,
            number=number,
            label=_FIELD.LABEL_OPTIONAL,
            type=_FIELD.TYPE_MESSAGE,
            type_name=f".tensorflow.{name.replace('_list', '').capitalize()}List",
            oneof_index=0,
        )
    features = proto.message_type.add(name="Features")
    entry = features.nested_type.add(name="FeatureEntry")
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, label=_FIELD.LABEL_OPTIONAL, type=_FIELD.TYPE_STRING)
    entry.field.add(
        name="value",
        number=2,
        label=_FIELD.LABEL_OPTIONAL,
        type=_FIELD.TYPE_MESSAGE,
        type_name=".tensorflow.Feature",
    )
    features.field.add(
        name="feature",
        number=1,
        label=_FIELD.LABEL_REPEATED,
        type=_FIELD.TYPE_MESSAGE,
        type_name=".tensorflow.Features.FeatureEntry",
    )
    proto.message_type.add(name="Example").field.add(
        name="features",
        number=1,
        label=_FIELD.LABEL_OPTIONAL,
        type=_FIELD.TYPE_MESSAGE,
        type_name=".tensorflow.Features",
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return pool


_POOL = _build_pool()


def _message(name: str) -> type:
    return message_factory.GetMessageClass(_POOL.FindMessageTypeByName(f"tensorflow.{name}"))


BytesList = _message("BytesList")
FloatList = _message("FloatList")
Int64List = _message("Int64List")
Feature = _message("Feature")
Features = _message("Features")
Example = _message("Example")
