"""TFRecord framing against golden bytes written by TensorFlow's own writer, both ways."""

from __future__ import annotations

import gzip
import io

import tensorflow as tf

from transforms.tfrecord import frame, is_framed, iter_framed_records, iter_records, open_records

RECORDS = [b"", b"x", bytes(range(256)) * 300, b"\x00" * 5]


def _written_by_tensorflow(path, options=None) -> bytes:
    with tf.io.TFRecordWriter(str(path), options) as writer:
        for record in RECORDS:
            writer.write(record)
    return path.read_bytes()


def test_frame_writes_the_bytes_tensorflow_writes(tmp_path):
    golden = _written_by_tensorflow(tmp_path / "golden.tfrecord")
    assert b"".join(frame(record) for record in RECORDS) == golden


def test_frame_reads_back_with_tensorflow(tmp_path):
    path = tmp_path / "ours.tfrecord"
    path.write_bytes(b"".join(frame(record) for record in RECORDS))
    assert list(tf.data.TFRecordDataset(str(path)).as_numpy_iterator()) == RECORDS


def test_iter_records_reads_tensorflow_files_plain_and_gzip(tmp_path):
    plain = tmp_path / "plain.tfrecord"
    _written_by_tensorflow(plain)
    packed = tmp_path / "packed.tfrecord.gz"
    _written_by_tensorflow(packed, tf.io.TFRecordOptions(compression_type="GZIP"))
    assert gzip.decompress(packed.read_bytes()) == plain.read_bytes()
    for path in (plain, packed):
        with open_records(str(path)) as stream:
            assert [(i, data, None) for i, data in enumerate(RECORDS)] == list(iter_records(stream))


def test_iter_records_reports_damage_with_the_record_index(tmp_path):
    golden = bytearray(_written_by_tensorflow(tmp_path / "golden.tfrecord"))
    third = len(frame(RECORDS[0])) + len(frame(RECORDS[1])) + 12 + 10
    flipped = bytearray(golden)
    flipped[third] ^= 0xFF  # Inside the third record's data: that record alone is lost.
    assert [problem for _, _, problem in iter_records(io.BytesIO(bytes(flipped)))] == [
        None,
        None,
        "record data fails its CRC check",
        None,
    ]
    truncated = bytes(golden[: third + 5])
    assert list(iter_records(io.BytesIO(truncated)))[-1] == (
        2,
        None,
        "file ends inside a record (truncated)",
    )


def test_framed_records_are_located_even_past_a_damaged_one(tmp_path):
    golden = bytearray(_written_by_tensorflow(tmp_path / "golden.tfrecord"))
    third = len(frame(RECORDS[0])) + len(frame(RECORDS[1])) + 12 + 10
    golden[third] ^= 0xFF
    located = list(iter_framed_records(io.BytesIO(bytes(golden))))
    assert [length for _, _, length, _, _ in located] == [len(frame(r)) for r in RECORDS]
    for _, offset, length, data, _ in located:
        framed = bytes(golden[offset : offset + length])
        assert is_framed(framed) == (data is not None)
        if data is not None:
            assert framed == frame(data)
