"""Encoding validated images into the tf.train.Example layout of the TF Object Detection API.

Keys and types follow the API's `TfExampleDecoder` and its dataset tools, so the output feeds
`input_path` directly.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np

from transforms.masks import mask_png
from transforms.records import ExampleInput, Extras, Keypoint

if TYPE_CHECKING:
    import tensorflow


NO_EXTRAS = Extras()


def build_example(
    item: ExampleInput, tf: ModuleType, extras: Extras = NO_EXTRAS
) -> tensorflow.train.Example:
    """The tf.train.Example of one image; `tf` is passed in so importing this module is cheap.

    COCO's `is_crowd` and `area` are written when the source gives them. With masks or
    keypoints on, every object gets an entry (an empty mask, no keypoints) so the lists stay
    aligned with the boxes."""
    image = item.image
    key = image.annotation.image.encode("utf-8")

    def ints(values):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=list(values)))

    def floats(values):
        return tf.train.Feature(float_list=tf.train.FloatList(value=list(values)))

    def strings(values):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=list(values)))

    objects = item.objects
    feature = {
        "image/encoded": strings([image.encoded]),
        "image/format": strings([image.format.encode()]),
        "image/filename": strings([key]),
        "image/source_id": strings([key]),
        "image/key/sha256": strings([hashlib.sha256(image.encoded).hexdigest().encode()]),
        "image/height": ints([image.height]),
        "image/width": ints([image.width]),
        "image/object/bbox/xmin": floats(o.xmin for o in objects),
        "image/object/bbox/ymin": floats(o.ymin for o in objects),
        "image/object/bbox/xmax": floats(o.xmax for o in objects),
        "image/object/bbox/ymax": floats(o.ymax for o in objects),
        "image/object/class/text": strings(o.label.encode("utf-8") for o in objects),
        "image/object/class/label": ints(o.label_id for o in objects),
        "image/object/difficult": ints(int(o.box.difficult) for o in objects),
        "image/object/truncated": ints(int(o.box.truncated) for o in objects),
        "image/object/view": strings(o.box.view.encode("utf-8") for o in objects),
    }
    if any(o.box.is_crowd is not None for o in objects):
        feature["image/object/is_crowd"] = ints(int(bool(o.box.is_crowd)) for o in objects)
    if any(o.box.area is not None for o in objects):
        pixels = image.width * image.height
        feature["image/object/area"] = floats(
            o.box.area if o.box.area is not None else (o.xmax - o.xmin) * (o.ymax - o.ymin) * pixels
            for o in objects
        )
    if extras.masks:
        empty = None
        masks = []
        for o in objects:
            if o.mask_png is None and empty is None:
                empty = mask_png(np.zeros((image.height, image.width), dtype=np.uint8))
            masks.append(o.mask_png if o.mask_png is not None else empty)
        feature["image/object/mask"] = strings(masks)
    if extras.keypoints:
        # Every object gets as many entries as the object with the most keypoints, padded with
        # unnamed, invisible points, so the lists split evenly per object as the API expects.
        size = max((len(o.box.keypoints) for o in objects), default=0)
        padding = Keypoint("", 0.0, 0.0, 0)
        points = [
            point
            for o in objects
            for point in (*o.box.keypoints, *[padding] * (size - len(o.box.keypoints)))
        ]
        feature["image/object/keypoint/x"] = floats(p.x / image.width for p in points)
        feature["image/object/keypoint/y"] = floats(p.y / image.height for p in points)
        feature["image/object/keypoint/visibility"] = ints(p.visibility for p in points)
        feature["image/object/keypoint/text"] = strings(p.name.encode("utf-8") for p in points)
        feature["image/object/keypoint/num"] = ints(
            sum(p.visibility > 0 for p in o.box.keypoints) for o in objects
        )
    return tf.train.Example(features=tf.train.Features(feature=feature))


def example_counts(item: ExampleInput, split: str) -> dict:
    """What one written example adds to the manifest's counts (summed by `SumCounts`)."""
    annotation, image = item.image.annotation, item.image
    declared = (annotation.width, annotation.height)
    return {
        "splits": {split: {"examples": 1, "objects": len(item.objects)}},
        "classes": dict(Counter(o.label for o in item.objects)),
        "converted": {image.converted_from: 1} if image.converted_from else {},
        "clipped": item.clipped,
        "size_mismatch": int(
            annotation.width is not None and declared != (image.width, image.height)
        ),
    }
