"""Readers: one module per annotation format, each producing the canonical records.

A module that declares a `FORMAT` (see `base.Format`) is a format: adding one means adding a
module here and its test, nothing else.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transforms.readers.base import Format

# The names `formats()` returns, for `odrecords create --help`, which must not import the
# readers (they import Beam); a test checks that the two agree.
FORMAT_NAMES = (
    "coco",
    "createml",
    "csv",
    "cvat",
    "kitti",
    "labelbox",
    "labelme",
    "labelstudio",
    "open-images",
    "retinanet-csv",
    "via",
    "voc",
    "yolo",
    "yolo-keras",
)


def formats() -> dict[str, Format]:
    """Every format, by name, sorted."""
    from transforms.readers.base import Format  # Imports Beam: not at import of the package.

    found: dict[str, Format] = {}
    for module in pkgutil.iter_modules(__path__):
        declared = getattr(importlib.import_module(f"{__name__}.{module.name}"), "FORMAT", None)
        if isinstance(declared, Format):
            found[declared.name] = declared
    return dict(sorted(found.items()))
