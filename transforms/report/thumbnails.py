"""The report's pictures: a small JPEG of each sampled example with its boxes, read back from
the record the example was written to, so the statistics need never hold an image."""

from __future__ import annotations

import io
import zlib
from collections.abc import Iterable, Iterator
from itertools import groupby
from operator import itemgetter
from typing import BinaryIO

from google.protobuf.message import DecodeError

from transforms.drawing import boxed_tile
from transforms.example_proto import Example
from transforms.tfrecord import is_framed, open_records, payload

SIZE = 200
# Small enough that a page of a few hundred thumbnails stays a few megabytes.
_QUALITY = 75


def thumbnail(
    encoded: bytes,
    objects: Iterable[tuple[str, float, float, float, float]],
    width: int,
    height: int,
) -> bytes:
    """A JPEG of at most SIZE px square of the image with its objects, (class, xmin, ymin, xmax,
    ymax) in pixels of the written `width` x `height` image, boxed and named; a grey tile that
    says so when the image does not decode."""
    normalized = (
        [
            (name, [xmin / width, ymin / height, xmax / width, ymax / height])
            for name, xmin, ymin, xmax, ymax in objects
        ]
        if width > 0 and height > 0
        else []
    )
    buffer = io.BytesIO()
    boxed_tile(encoded, normalized, SIZE).save(buffer, "JPEG", quality=_QUALITY, optimize=True)
    return buffer.getvalue()


def _encoded_images(path: str, places: list[tuple[int, int]]) -> Iterator[bytes | None]:
    """`image/encoded` of the record at each (offset, length) of `places`, in increasing
    offset, or None where it cannot be read. The file is opened once and read forwards: a
    GZIP file can only seek by decompressing, and from its start each time it seeks back."""
    try:
        stream = open_records(path)
    except OSError:
        yield from (None for _ in places)
        return
    with stream:
        for offset, length in places:
            yield _encoded_at(stream, offset, length)


def _encoded_at(stream: BinaryIO, offset: int, length: int) -> bytes | None:
    try:
        stream.seek(offset)
        record = stream.read(length)
        if not is_framed(record):
            return None
        feature = Example.FromString(payload(record)).features.feature.get("image/encoded")
    except (OSError, EOFError, zlib.error, ValueError, DecodeError):
        return None
    if feature is None or not feature.bytes_list.value:
        return None
    return feature.bytes_list.value[0]


def read_sampled(sample: list[dict]) -> dict[str, bytes]:
    """Thumbnails of sampled examples (stats.json's SAMPLE), keyed "split/image"; an example
    whose record cannot be read back is left out, and the page says it has no picture."""
    wanted: dict[str, dict] = {}
    for example in sample:
        wanted.setdefault(f"{example['split']}/{example['image']}", example)
    place = itemgetter("path", "offset")
    ordered = sorted(wanted.items(), key=lambda item: place(item[1]["location"]))
    thumbnails = {}
    for path, group in groupby(ordered, key=lambda item: item[1]["location"]["path"]):
        group = list(group)
        places = [(e["location"]["offset"], e["location"]["length"]) for _, e in group]
        for (key, example), encoded in zip(group, _encoded_images(path, places), strict=True):
            if encoded is not None:
                thumbnails[key] = thumbnail(
                    encoded, example["objects"], example["width"], example["height"]
                )
    return thumbnails
