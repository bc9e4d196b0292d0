"""What the report needs of one written example, whichever way it was read: from the index
row a build writes beside each shard, or from a record of any TFRecord file."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np


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


def facts_are_typed(value: object) -> bool:
    """Whether an index row's facts have the types `written_facts` gives them: anyone can
    edit an index, and the report must never fail on what it takes from a row."""
    number = (int, float)
    return (
        isinstance(value, dict)
        and type(value.get("width")) is int
        and type(value.get("height")) is int
        and type(value.get("turned")) is bool
        and isinstance(value.get("objects"), list)
        and all(
            isinstance(item, list)
            and len(item) == 5
            and isinstance(item[0], str)
            and all(type(v) in number and math.isfinite(v) for v in item[1:])
            for item in value["objects"]
        )
    )


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
