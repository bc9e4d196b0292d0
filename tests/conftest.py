"""Shared helpers: running `odrecords create` in-process and reading its output back with
TensorFlow, the way the TF Object Detection API reads it."""

from __future__ import annotations

import json
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402
from apache_beam.testing.test_pipeline import TestPipeline  # noqa: E402
from browser import chromium_binary  # noqa: E402
from google.protobuf import text_format  # noqa: E402

from pipelines import create  # noqa: E402
from transforms.label_map import StringIntLabelMap  # noqa: E402

RACCOON = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "raccoon")
SAMPLE = os.path.join(os.path.dirname(__file__), "sample")

# The TF Object Detection API's feature spec (tf_example_decoder.py) for what odrecords writes.
OD_FEATURES = {
    "image/encoded": tf.io.FixedLenFeature((), tf.string),
    "image/format": tf.io.FixedLenFeature((), tf.string),
    "image/filename": tf.io.FixedLenFeature((), tf.string),
    "image/source_id": tf.io.FixedLenFeature((), tf.string),
    "image/key/sha256": tf.io.FixedLenFeature((), tf.string),
    "image/height": tf.io.FixedLenFeature((), tf.int64),
    "image/width": tf.io.FixedLenFeature((), tf.int64),
    "image/object/bbox/xmin": tf.io.VarLenFeature(tf.float32),
    "image/object/bbox/ymin": tf.io.VarLenFeature(tf.float32),
    "image/object/bbox/xmax": tf.io.VarLenFeature(tf.float32),
    "image/object/bbox/ymax": tf.io.VarLenFeature(tf.float32),
    "image/object/class/text": tf.io.VarLenFeature(tf.string),
    "image/object/class/label": tf.io.VarLenFeature(tf.int64),
    "image/object/difficult": tf.io.VarLenFeature(tf.int64),
    "image/object/truncated": tf.io.VarLenFeature(tf.int64),
    "image/object/view": tf.io.VarLenFeature(tf.string),
}


def local_pipeline() -> TestPipeline:
    """A TestPipeline on the in-process runner, which needs no network."""
    return TestPipeline(runner="FnApiRunner")


def run_create(*args: str) -> int:
    """Runs `odrecords create` in this process and returns its exit code."""
    return create.main([str(arg) for arg in args])


def example_boxes(example: dict) -> list[tuple]:
    """An example's (class text, xmin, ymin, xmax, ymax) tuples, sorted."""
    return sorted(
        zip(
            [t.decode() for t in example["image/object/class/text"]],
            example["image/object/bbox/xmin"],
            example["image/object/bbox/ymin"],
            example["image/object/bbox/xmax"],
            example["image/object/bbox/ymax"],
            strict=True,
        )
    )


def read_examples(paths: list[str]) -> list[dict]:
    """Parses TFRecord files with the OD API feature spec into plain Python values."""
    examples = []
    for record in tf.data.TFRecordDataset(paths):
        parsed = tf.io.parse_single_example(record, OD_FEATURES)
        example = {}
        for key, value in parsed.items():
            if isinstance(value, tf.SparseTensor):
                value = tf.sparse.to_dense(value)
            value = value.numpy()
            example[key] = value.tolist() if hasattr(value, "tolist") else value
        examples.append(example)
    return examples


def build_folder(output) -> Path:
    """Where a run's files are: `output` once published there, else the one build folder a run
    that did not publish (nothing written, too many errors) left in it."""
    output = Path(output)
    if (output / "manifest.json").exists():
        return output
    (folder,) = (output / ".builds").iterdir()
    return folder


def read_output(output) -> dict:
    """Manifest, label map (parsed as protobuf text), errors and examples of an output folder."""
    with open(os.path.join(output, "manifest.json"), encoding="utf-8") as handle:
        manifest = json.load(handle)
    label_map = StringIntLabelMap()
    with open(os.path.join(output, manifest["label_map"]), encoding="utf-8") as handle:
        text_format.Parse(handle.read(), label_map)
    errors = []
    for name in manifest["errors"]["files"]:
        with open(os.path.join(output, name), encoding="utf-8") as handle:
            errors += [json.loads(line) for line in handle]
    splits = {
        name: read_examples([os.path.join(output, f) for f in split["files"]])
        for name, split in manifest["splits"].items()
    }
    return {
        "dir": Path(output),
        "manifest": manifest,
        "label_map": {item.name: item.id for item in label_map.item},
        "errors": errors,
        "splits": splits,
    }


def pair_names(text: str) -> tuple[str, str]:
    """The names of a duplicate pair as the manifest gives it: `a.jpg (train) = b.jpg (valid)`
    or `a.jpg (train) ~ b.jpg (valid) (2 bits apart)` → ("a.jpg", "b.jpg")."""
    parts = text.split(" (")
    return parts[0], parts[1].split(" ", 2)[2]


@pytest.fixture
def chromium() -> str:
    """Headless Chromium's binary (`browser.chromium_binary`)."""
    return chromium_binary()
