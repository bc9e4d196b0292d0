"""Encoding validated images into the tf.train.Example layout of the TF Object Detection API.

Keys and types follow the API's `TfExampleDecoder` and its dataset tools, so the output feeds
`input_path` directly.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable

import numpy as np

from transforms.example_proto import BytesList, Example, Feature, Features, FloatList, Int64List
from transforms.masks import mask_png
from transforms.records import (
    INT64_MAX,
    INT64_MIN,
    ExampleInput,
    Extras,
    Keypoint,
    excerpt,
    writable_text,
)
from transforms.source_ids import source_id_of

NO_EXTRAS = Extras()
FLOAT32_MAX = float(np.finfo(np.float32).max)


class EncodeError(ValueError):
    """A value a tf.train.Example cannot hold; the message names the feature and the value."""


def writable_int(value: object) -> bool:
    """Whether `value` fits an int64 feature."""
    return isinstance(value, int) and INT64_MIN <= value <= INT64_MAX


def writable_float(value: object) -> bool:
    """Whether `value` is a finite number that stays finite as a float32 feature: protobuf
    would store NaN, infinity and 1e300 (which becomes infinity) without a word."""
    if not isinstance(value, (int, float)):
        return False
    try:
        number = float(value)
    except OverflowError:  # An int beyond any float.
        return False
    return math.isfinite(number) and abs(number) <= FLOAT32_MAX


def _ints(key: str, values: Iterable) -> list[int]:
    values = list(values)
    for value in values:
        if not writable_int(value):
            raise EncodeError(f"{key}: {excerpt(value)} is not an integer in the int64 range")
    return [int(value) for value in values]  # Flags are bools.


def _floats(key: str, values: Iterable) -> list[float]:
    values = list(values)
    for value in values:
        if not writable_float(value):
            raise EncodeError(f"{key}: {excerpt(value)} is not a finite float32")
    return values


def _bytes(key: str, values: Iterable) -> list[bytes]:
    values = list(values)
    for value in values:
        if not isinstance(value, bytes) and not writable_text(value):
            raise EncodeError(f"{key}: {excerpt(value)} is not UTF-8 text")
    return [value if isinstance(value, bytes) else value.encode("utf-8") for value in values]


def build_example(item: ExampleInput, extras: Extras = NO_EXTRAS) -> Example:
    """The tf.train.Example of one image, built without TensorFlow (`transforms.example_proto`).

    COCO's `is_crowd` and `area` are written when the source gives them. With masks or
    keypoints on, every object gets an entry (an empty mask, invisible keypoints) so the
    lists stay aligned with the boxes. Raises EncodeError, naming the feature, for a value
    the example cannot hold (an int beyond int64, a non-finite float, text that is not
    UTF-8) rather than let protobuf fail or, for floats, silently write NaN or infinity."""
    image = item.image
    key = image.annotation.image
    objects = item.objects
    ints = {
        "image/height": [image.height],
        "image/width": [image.width],
        "image/object/class/label": [o.label_id for o in objects],
        "image/object/difficult": [o.box.difficult for o in objects],
        "image/object/truncated": [o.box.truncated for o in objects],
    }
    floats = {
        "image/object/bbox/xmin": [o.xmin for o in objects],
        "image/object/bbox/ymin": [o.ymin for o in objects],
        "image/object/bbox/xmax": [o.xmax for o in objects],
        "image/object/bbox/ymax": [o.ymax for o in objects],
    }
    strings = {
        "image/encoded": [image.encoded],
        "image/format": [image.format],
        "image/filename": [key],
        # A number: TF-Vision's evaluation reads it as int64 (see `transforms.source_ids`).
        "image/source_id": [str(source_id_of(image.annotation))],
        "image/key/sha256": [image.sha256],
        "image/object/class/text": [o.label for o in objects],
        "image/object/view": [o.box.view for o in objects],
    }
    if any(o.box.is_crowd is not None for o in objects):
        ints["image/object/is_crowd"] = [int(bool(o.box.is_crowd)) for o in objects]
    if any(o.box.area is not None for o in objects):
        pixels = image.width * image.height
        floats["image/object/area"] = [
            o.box.area if o.box.area is not None else (o.xmax - o.xmin) * (o.ymax - o.ymin) * pixels
            for o in objects
        ]
    if extras.masks:
        empty = None
        masks = []
        for o in objects:
            if o.mask_png is None and empty is None:
                empty = mask_png(np.zeros((image.height, image.width), dtype=np.uint8))
            masks.append(o.mask_png if o.mask_png is not None else empty)
        strings["image/object/mask"] = masks
    if extras.keypoints:
        # Every object gets as many entries as the object with the most keypoints, padded with
        # unnamed, invisible points, so the lists split evenly per object as the API expects.
        # (The COCO reader already pads every object to the dataset's largest category, so
        # that all examples hold the same count, the decoder's `num_keypoints`.)
        size = max((len(o.box.keypoints) for o in objects), default=0)
        padding = Keypoint("", 0.0, 0.0, 0)
        points = [
            point
            for o in objects
            for point in (*o.box.keypoints, *[padding] * (size - len(o.box.keypoints)))
        ]
        floats["image/object/keypoint/x"] = [p.x / image.width for p in points]
        floats["image/object/keypoint/y"] = [p.y / image.height for p in points]
        ints["image/object/keypoint/visibility"] = [p.visibility for p in points]
        strings["image/object/keypoint/text"] = [p.name for p in points]
        ints["image/object/keypoint/num"] = [
            sum(p.visibility > 0 for p in o.box.keypoints) for o in objects
        ]
    feature = {
        **{
            name: Feature(int64_list=Int64List(value=_ints(name, values)))
            for name, values in ints.items()
        },
        **{
            name: Feature(float_list=FloatList(value=_floats(name, values)))
            for name, values in floats.items()
        },
        **{
            name: Feature(bytes_list=BytesList(value=_bytes(name, values)))
            for name, values in strings.items()
        },
    }
    return Example(features=Features(feature=feature))


def example_counts(item: ExampleInput, split: str) -> dict:
    """What one written example adds to the manifest's counts (summed by `SumCounts`)."""
    annotation, image = item.image.annotation, item.image
    declared = (annotation.width, annotation.height)
    # Keypoints per object (the encoder pads every object to the most), for the card's
    # `num_keypoints`: {count: examples}.
    points = max((len(o.box.keypoints) for o in item.objects), default=0)
    return {
        "keypoints_per_object": {str(points): 1} if points else {},
        "splits": {split: {"examples": 1, "objects": len(item.objects)}},
        "classes": dict(Counter(o.label for o in item.objects)),
        "converted": {image.converted_from: 1} if image.converted_from else {},
        "clipped": item.clipped,
        "size_mismatch": int(
            annotation.width is not None and declared != (image.width, image.height)
        ),
    }
