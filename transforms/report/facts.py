"""What the report needs of one written example, whichever way it was read: from the index
row a build writes beside each shard, or from a record of any TFRecord file."""

from __future__ import annotations

from dataclasses import dataclass


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
