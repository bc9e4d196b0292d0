"""What the report needs of one written example, whichever way it was read: from the index
row a build writes beside each shard, or from a record of any TFRecord file."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from transforms.export.decode import MAX_SIDE
from transforms.records import writable_text


@dataclass(frozen=True)
class Location:
    """Where an example lies: its TFRecord file and the byte range of its framed record, so a
    sampled example can be read again to draw it without holding its image."""

    path: str
    offset: int
    length: int


@dataclass(frozen=True)
class ObjectFacts:
    """One object as written: its class name and pixel corners in the written image."""

    label: str
    xmin: float
    ymin: float
    xmax: float
    ymax: float


@dataclass(frozen=True)
class ExampleFacts:
    """One written example: its split and image name (`image/filename`), the written image's
    size, its objects, where it lies, and whether its pixels were turned for EXIF
    orientation (False when not known, as for records another tool wrote)."""

    split: str
    image: str
    width: int
    height: int
    objects: tuple[ObjectFacts, ...]
    location: Location
    turned: bool = False


def written_facts(width: int, height: int, turned: bool, objects: Iterable) -> dict:
    """The facts of an example as its index row keeps them (JSON): a later build that reuses
    the example replays them, as it replays the row's counts. `objects` are (class,
    normalized corners); they are kept in pixels of the written image, from the float32
    corners the example holds, so the report of a build and of its records read back agree."""
    kept = []
    for label, *corners in objects:
        xmin, ymin, xmax, ymax = (float(value) for value in np.float32(corners))
        kept.append([label, xmin * width, ymin * height, xmax * width, ymax * height])
    return {"width": width, "height": height, "turned": turned, "objects": kept}


def facts_are_valid(value: object) -> bool:
    """Whether an index row's facts are what `written_facts` gives: its types, a size TensorFlow
    can hold (1 to MAX_SIDE a side), class names UTF-8 can write, and corners inside the image
    (boxes are clipped to it before they are written). Anyone can edit an index, and the
    report must never fail on, nor count, what it takes from a row: a corner of 1e308 or
    10**400, a width of 0 or 2**70 make the row's facts invalid and the row refused."""
    if not (
        isinstance(value, dict)
        and _side(value.get("width"))
        and _side(value.get("height"))
        and type(value.get("turned")) is bool
        and isinstance(value.get("objects"), list)
    ):
        return False
    width, height = value["width"], value["height"]
    return all(
        isinstance(item, list)
        and len(item) == 5
        and writable_text(item[0])
        and all(
            type(corner) in (int, float) and 0 <= corner <= side
            for corner, side in zip(item[1:], (width, height, width, height), strict=True)
        )
        for item in value["objects"]
    )


def _side(value: object) -> bool:
    return type(value) is int and 1 <= value <= MAX_SIDE


def example_facts(split: str, image: str, facts: dict, location: Location) -> ExampleFacts:
    """An example's facts from those its index row keeps (`written_facts`)."""
    return ExampleFacts(
        split=split,
        image=image,
        width=facts["width"],
        height=facts["height"],
        objects=tuple(ObjectFacts(*item) for item in facts["objects"]),
        location=location,
        turned=facts["turned"],
    )
