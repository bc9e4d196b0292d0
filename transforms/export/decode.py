"""tf.train.Example → canonical records: the way back from TFRecords.

Records come from odrecords and from other tools, each with its habits: TF Models' COCO
script (no `class/label`), Dat Tran's TF1 script (`format` `jpg`, no sha256), exports without
`source_id`, an empty `class/text` beside a label, label maps whose readable names sit in
`display_name`, negative images. All of them decode to the same `LoadedImage`, whose boxes
are in pixels like every reader's, so the export writers are the create side's record model
run backwards.
"""

from __future__ import annotations

import hashlib
import io
import math
from dataclasses import dataclass

from PIL import Image

from transforms.masks import cropped_png_pixels, pixels_to_rle
from transforms.records import Box, ImageAnnotation, Keypoint, LoadedImage, Mask

# Coordinates a little past 1 are clipped (some tools overshoot); beyond this they are errors.
MAX_COORDINATE = 1.1
# The largest image side read back: TensorFlow's image ops take sizes as int32.
MAX_SIDE = 2**31 - 1
BYTES, FLOAT, INT64 = "bytes_list", "float_list", "int64_list"
# The kind of list each object key holds.
_OBJECT_KEYS = {
    "is_crowd": INT64,
    "area": FLOAT,
    "difficult": INT64,
    "truncated": INT64,
    "view": BYTES,
    "mask": BYTES,
}
FORMATS = {"jpeg": "jpeg", "jpg": "jpeg", "png": "png"}
# The extension a file of a format gets where PIL's first one is not the usual one.
_USUAL_EXTENSIONS = {"jpeg": ".jpg", "tiff": ".tif"}


class RecordRejected(ValueError):
    """A record that cannot be read back as an image with boxes; the message says why."""


@dataclass(frozen=True)
class DecodedRecord:
    """A record as canonical records: the image with its boxes, its id in the source, the
    sha256 of its image bytes (computed here, never taken from `image/key/sha256`, which is
    untrusted text and would name files), the (class name, label) pair of each box, and the
    objects rejected on their own (source, reason)."""

    image: LoadedImage
    source_id: str
    sha256: str
    class_ids: tuple[tuple[str, int | None], ...] = ()
    object_errors: tuple[tuple[str, str], ...] = ()


def _values(features, key: str, kind: str) -> list:
    """The values of `key`, which must be a `kind` list ("bytes_list", "float_list",
    "int64_list") when present: a record that stores a key as another kind is rejected, as the
    OD API's decoder would fail on it."""
    feature = features.get(key)
    actual = feature.WhichOneof("kind") if feature is not None else None
    if actual is None:
        return []
    if actual != kind:
        raise RecordRejected(f"{key} is a {actual}, expected {kind}")
    return list(getattr(feature, kind).value)


def _text(features, key: str) -> str:
    values = _values(features, key, BYTES)
    return values[0].decode("utf-8", errors="replace") if values else ""


def _size(features, encoded: bytes) -> tuple[int, int]:
    """The image's width and height: from image/width and height when both are positive,
    else measured from the image's header; either way at most MAX_SIDE."""
    width, height = (
        _values(features, "image/width", INT64),
        _values(features, "image/height", INT64),
    )
    if width and height and width[0] > 0 and height[0] > 0:
        size = int(width[0]), int(height[0])
    elif encoded:
        try:
            size = Image.open(io.BytesIO(encoded)).size
        except Exception as error:
            raise RecordRejected(
                f"no image/width and height, and the image is unreadable: {str(error)[:80]}"
            ) from None
    else:
        raise RecordRejected("no image/width and image/height and no image to measure")
    if max(size) > MAX_SIDE:
        raise RecordRejected(f"image size {size[0]}x{size[1]} is beyond {MAX_SIDE} pixels a side")
    return size


def class_name(text: str, label: int | None, names: dict[int, str], ids: dict[str, int]) -> str:
    """An object's class name. With a label map (`names`: id → readable name, `ids`: name or
    display name → id) the label map's readable name for the label, or for the text, the way
    the OD API's decoder looks ids up; without one the text, else the label itself. Raises
    RecordRejected for an object that names no class: neither text nor a label of 1 or more,
    or, with a label map, neither a label nor a text the label map knows."""
    if label is not None and label in names:
        return names[label]
    if text and (text in ids or not names):
        return names.get(ids.get(text, -1), text)
    if names and (text or (label is not None and label >= 1)):
        unknown = [f"label {label}"] if label is not None else []
        unknown += [f"class text {text!r}"] if text else []
        verb = "are" if len(unknown) > 1 else "is"
        raise RecordRejected(f"{' and '.join(unknown)} {verb} not in the label map")
    if label is None or label < 1:
        raise RecordRejected(
            f"object has no class text and label {label}, which names no class "
            "(0 is the Object Detection API's background)"
        )
    return str(label)


def decode_example(
    example, source: str, split: str, names: dict[int, str], ids: dict[str, int]
) -> DecodedRecord:
    """Reads one parsed tf.train.Example; `names` and `ids` come from the label map, if any
    (see `class_name`). Raises RecordRejected when the record as a whole is unusable (a key
    of the wrong kind, object lists of different lengths, no size), and no other exception
    for any Example; an unusable object becomes one of `object_errors`."""
    features = example.features.feature
    encoded = (_values(features, "image/encoded", BYTES) or [b""])[0]
    fmt = image_format(encoded) or FORMATS.get(_text(features, "image/format").lower(), "")
    width, height = _size(features, encoded)
    corners = [
        _values(features, f"image/object/bbox/{k}", FLOAT) for k in ("xmin", "ymin", "xmax", "ymax")
    ]
    texts = [
        t.decode("utf-8", errors="replace")
        for t in _values(features, "image/object/class/text", BYTES)
    ]
    labels = _values(features, "image/object/class/label", INT64)
    count = len(corners[0])
    lists = {"bbox/ymin": corners[1], "bbox/xmax": corners[2], "bbox/ymax": corners[3]}
    if texts:
        lists["class/text"] = texts
    if labels:
        lists["class/label"] = labels
    for key, kind in _OBJECT_KEYS.items():
        values = _values(features, f"image/object/{key}", kind)
        if values:
            lists[key] = values
    unequal = {key: len(values) for key, values in lists.items() if len(values) != count}
    if unequal:
        raise RecordRejected(
            f"object lists differ in length: bbox/xmin has {count}, "
            + ", ".join(f"{key} has {n}" for key, n in unequal.items())
        )
    if count and not texts and not labels:
        raise RecordRejected("objects have neither class/text nor class/label")
    keypoints = _keypoints(features, count)
    boxes, errors, class_ids = [], [], []
    for i in range(count):
        object_source = f"{source}#object[{i + 1}]"
        try:
            box = [corners[k][i] for k in range(4)]
            if not all(-0.0 <= v <= MAX_COORDINATE for v in box):
                raise RecordRejected(f"box {box} has a coordinate outside [0, {MAX_COORDINATE}]")
            if "area" in lists and not math.isfinite(lists["area"][i]):
                raise RecordRejected(f"area {lists['area'][i]} is not a finite number")
            if keypoints and not all(math.isfinite(k.x + k.y) for k in keypoints[i]):
                raise RecordRejected("a keypoint coordinate is not a finite number")
            label = int(labels[i]) if labels else None
            name = class_name(texts[i] if texts else "", label, names, ids)
            mask = lists.get("mask")
            rle = pixels_to_rle(cropped_png_pixels(mask[i], width, height)) if mask else None
        except (RecordRejected, ValueError) as error:
            errors.append((object_source, str(error)))
            continue
        xmin, ymin, xmax, ymax = (min(v, 1.0) for v in box)
        class_ids.append((name, label))
        boxes.append(
            Box(
                label=name,
                xmin=xmin * width,
                ymin=ymin * height,
                xmax=xmax * width,
                ymax=ymax * height,
                source=object_source,
                difficult=bool(lists["difficult"][i]) if "difficult" in lists else False,
                truncated=bool(lists["truncated"][i]) if "truncated" in lists else False,
                view=lists["view"][i].decode("utf-8", errors="replace") if "view" in lists else "",
                is_crowd=bool(lists["is_crowd"][i]) if "is_crowd" in lists else None,
                area=float(lists["area"][i]) if "area" in lists else None,
                mask=Mask(rle_size=tuple(rle["size"]), rle_counts=rle["counts"]) if rle else None,
                keypoints=tuple(
                    Keypoint(k.name, k.x * width, k.y * height, k.visibility) for k in keypoints[i]
                )
                if keypoints
                else (),
            )
        )
    source_id = _text(features, "image/source_id")
    annotation = ImageAnnotation(
        image=_text(features, "image/filename"),
        sources=(source,),
        boxes=tuple(boxes),
        width=width,
        height=height,
        split=split,
    )
    sha256 = hashlib.sha256(encoded).hexdigest() if encoded else ""
    return DecodedRecord(
        LoadedImage(annotation, encoded, fmt, width, height),
        source_id,
        sha256,
        tuple(class_ids),
        tuple(errors),
    )


def decode_record(
    data: bytes, source: str, split: str, names: dict[int, str], ids: dict[str, int], example_type
) -> DecodedRecord:
    """Reads one serialized record as `decode_example` reads a parsed one; `example_type` is
    TensorFlow's `tf.train.Example`, passed in so this module needs no TensorFlow. Raises
    RecordRejected, naming why, whatever is wrong with the bytes: no record, however made,
    raises anything else."""
    try:
        example = example_type.FromString(data)
    except Exception:
        raise RecordRejected("record is not a tf.train.Example") from None
    try:
        return decode_example(example, source, split, names, ids)
    except RecordRejected:
        raise
    except Exception as error:
        raise RecordRejected(
            f"cannot be decoded: {type(error).__name__}: {str(error)[:80]}"
        ) from None


def _format_name(pil_format: str) -> str:
    """PIL's name of a format, lowercased; MPO (a camera's JPEG with extra frames) is JPEG."""
    return "jpeg" if pil_format == "MPO" else pil_format.lower()


def image_format(encoded: bytes) -> str:
    """The format of image bytes ('jpeg', 'png', 'webp', ...) from the bytes themselves, which
    may disagree with `image/format`; '' when there are none or PIL does not recognise them."""
    if not encoded:
        return ""
    try:
        return _format_name(Image.open(io.BytesIO(encoded)).format or "")
    except Exception:
        return ""


def format_of_extension(extension: str) -> str:
    """The image format a file extension (`.JPG`, `.webp`) stands for, or ''."""
    return _format_name(Image.registered_extensions().get(extension.lower(), ""))


def extension_of_format(fmt: str) -> str:
    """The extension a file holding an image of format `fmt` is given."""
    if fmt in _USUAL_EXTENSIONS:
        return _USUAL_EXTENSIONS[fmt]
    extensions = Image.registered_extensions()
    return next((e for e in extensions if _format_name(extensions[e]) == fmt), "")


def _keypoints(features, count: int) -> list[list[Keypoint]]:
    """Keypoints per object (normalized), split evenly as the OD API stores them."""
    xs = _values(features, "image/object/keypoint/x", FLOAT)
    ys = _values(features, "image/object/keypoint/y", FLOAT)
    visibility = _values(features, "image/object/keypoint/visibility", INT64) or [2] * len(xs)
    texts = _values(features, "image/object/keypoint/text", BYTES) or [b""] * len(xs)
    if not xs or not count or len(xs) % count:
        return []
    if not (len(ys) == len(visibility) == len(texts) == len(xs)):
        return []
    per = len(xs) // count
    return [
        [
            Keypoint(texts[j].decode("utf-8", errors="replace"), xs[j], ys[j], int(visibility[j]))
            for j in range(i * per, (i + 1) * per)
            if texts[j] or visibility[j]  # Unnamed invisible points only pad the lists.
        ]
        for i in range(count)
    ]
