"""Stable split and shard assignment from a hash of the image key.

No random draw: an image's split and shard depend only on its own key, so reruns, other
runners and datasets that grow keep every existing image where it was.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import replace

import apache_beam as beam

from transforms.records import ERRORS, ErrorRecord, ImageAnnotation

_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


def parse_splits(spec: str) -> dict[str, float]:
    """`train=0.8,valid=0.1,test=0.1` → {name: fraction}; fractions must sum to 1."""
    splits: dict[str, float] = {}
    for part in spec.split(","):
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or not _NAME.match(name):
            raise ValueError(
                f"split {part!r} is not NAME=FRACTION (NAME of letters, digits, _ or -)"
            )
        if name in splits:
            raise ValueError(f"split {name!r} is given twice")
        try:
            fraction = float(value)
        except ValueError:
            raise ValueError(f"split {name!r} has a non-numeric fraction {value!r}") from None
        if not 0 < fraction <= 1:
            raise ValueError(f"split {name!r} has fraction {fraction}; it must be in (0, 1]")
        splits[name] = fraction
    if abs(sum(splits.values()) - 1) > 1e-6:
        raise ValueError(f"split fractions sum to {sum(splits.values()):g}, not 1")
    return splits


def _unit_hash(key: str, purpose: str) -> float:
    """A number in [0, 1) that depends only on the key (and what it is used for)."""
    digest = hashlib.sha256(f"{purpose}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign_split(key: str, splits: dict[str, float]) -> str:
    """The split whose cumulative fraction range holds the key's hash."""
    point = _unit_hash(key, "split")
    upper = 0.0
    for name, fraction in splits.items():
        upper += fraction
        if point < upper:
            return name
    return name  # Rounding left the point just above the last bound.


def assign_shard(key: str, num_shards: int) -> int:
    """A shard index independent of the split hash, so shards are balanced within a split."""
    return int(_unit_hash(key, "shard") * num_shards)


class RequireSourceSplit(beam.DoFn):
    """With `--splits source`: rejects images the source puts in no split."""

    def process(self, image: ImageAnnotation) -> Iterator:
        if image.split:
            yield image
            return
        yield beam.pvalue.TaggedOutput(
            ERRORS, ErrorRecord.for_image(image, "the source puts the image in no split")
        )


def in_each_split(image: ImageAnnotation) -> Iterator[ImageAnnotation]:
    """An annotation the source lists in several splits, once in each: read and counted
    once, but a model trained on one split and evaluated on another sees it in both, as the
    source asks (and the manifest reports as leakage)."""
    if not image.other_splits:
        yield image
        return
    for split in (image.split, *image.other_splits):
        yield replace(image, split=split, other_splits=())
