"""VGG Image Annotator (VIA) 1.x and 2.x JSON: a project file (`_via_img_metadata` with
`_via_settings` and `_via_attributes`) or an exported annotation file (the metadata alone: an
object keyed `<filename><size>`, each entry with `filename`, `size`, `regions` and
`file_attributes`). VIA 2 keeps `regions` as a list, VIA 1 as an object keyed "0", "1", ...

Each region has `shape_attributes` (its shape) and `region_attributes` (what the user typed
or picked). The class is the value of one region attribute: the one `--class-attribute`
names, else the only one the files have; a checkbox attribute gives the one option ticked.
Regions of files that have no region attribute at all (a single-class dataset such as the
balloon dataset of Mask R-CNN's sample) get the one class a `--classes` file names.

Shapes: `rect` (x, y, width, height) is a box; `polygon` (all_points_x, all_points_y) its
extent, and its mask with `--include-masks`, as COCO polygons; `circle` (cx, cy, r) and
`ellipse` (cx, cy, rx, ry, and theta, its rotation in radians, since VIA 2.0.6) their extent,
and with `--include-masks` the polygon of 72 points VIA's own COCO export draws them as.
`point` and `polyline` regions enclose nothing: they are error records. An entry without
regions is an image without objects. Filenames are looked for beside the JSON file (or under
`--images`); the project's `default_filepath` is not used, and URLs are refused.
"""

from __future__ import annotations

import math
import posixpath
import re
from dataclasses import replace
from typing import Any, BinaryIO

from transforms.paths import UnsafePathError
from transforms.readers.base import (
    Format,
    Parsed,
    ReaderOptions,
    Request,
    Source,
    UnusableSource,
    file_boundary,
    file_format,
    guarded,
    image_key_for,
    locate_files,
    matching_files,
    open_annotations,
    parse_each,
    split_of_file,
    split_of_folder,
)
from transforms.readers.values import json_list, json_object, kind, load_json, number, undecodable
from transforms.records import STAGE_READ, Box, ErrorRecord, ImageAnnotation, Mask, excerpt

METADATA = "_via_img_metadata"
# Points of the polygon a circle or ellipse's mask is drawn as: one every 5 degrees, as
# VIA's COCO export draws them.
ELLIPSE_POINTS = 72
# VIA's default names for its files, which name no split.
_VIA_NAMES = re.compile(r"^via[_-]", re.IGNORECASE)


def split_of_via_file(path: str, root: str) -> str | None:
    """`train.json` → `train`; a file under one of VIA's own names (`via_region_data.json`,
    `via_export_json.json`, `via_project_<date>.json`) stands for its folder, as Mask
    R-CNN's balloon dataset keeps `train/via_region_data.json` and `val/...`."""
    if _VIA_NAMES.match(posixpath.basename(path)):
        return split_of_folder(path, root)
    return split_of_file(path, root)


def metadata_of(document: Any) -> dict:
    """The image entries of a VIA document: a project's `_via_img_metadata`, or the
    document itself for an exported annotation file; raises ValueError for anything else."""
    document = json_object(document, "a VIA file")
    if METADATA in document:
        return json_object(document[METADATA], METADATA)
    if {"project", "file", "metadata"} <= set(document):
        raise ValueError("a VIA 3 project is not read (only VIA 1 and 2 JSON)")
    return document


def _regions(entry: dict) -> list[tuple[str, Any]]:
    """(region index, region) pairs: VIA 2's list or VIA 1's object keyed by index."""
    regions = entry.get("regions")
    if isinstance(regions, dict):
        return list(regions.items())
    return [(str(index), region) for index, region in enumerate(json_list(regions, "regions"))]


def region_attributes(document: Any) -> tuple[set[str], int]:
    """The region attributes a VIA document has (those its regions use and, for a project,
    those it declares in `_via_attributes.region`) and how many regions it has. Unusable
    parts are passed over: the job reports them."""
    names: set[str] = set()
    regions = 0
    if isinstance(document, dict) and isinstance(document.get("_via_attributes"), dict):
        declared = document["_via_attributes"].get("region")
        if isinstance(declared, dict):
            names.update(key for key in declared if isinstance(key, str))
    try:
        entries = metadata_of(document).values()
    except ValueError:
        return names, regions
    for entry in entries:
        try:
            pairs = _regions(entry) if isinstance(entry, dict) else []
        except ValueError:
            continue
        regions += len(pairs)
        for _, region in pairs:
            attributes = region.get("region_attributes") if isinstance(region, dict) else None
            if isinstance(attributes, dict):
                names.update(key for key in attributes if isinstance(key, str))
    return names, regions


def _class(attributes: Any, options: ReaderOptions) -> str:
    """A region's class: its class attribute's value, or the one option ticked of a
    checkbox attribute; without a class attribute, the one class `--classes` names."""
    name = options.class_attribute
    if not name:
        if len(options.class_names) == 1:
            return options.class_names[0]
        raise ValueError("no region attribute names the class")
    value = json_object(attributes, "region_attributes").get(name)
    if isinstance(value, dict):
        ticked = [option for option, on in value.items() if on is True]
        if len(ticked) != 1:
            raise ValueError(f"{len(ticked)} options of {excerpt(repr(name))} are ticked, not 1")
        value = ticked[0]
    if value is None:
        raise ValueError(f"region attribute {excerpt(repr(name))} is missing")
    if not isinstance(value, str):
        raise ValueError(f"region attribute {excerpt(repr(name))} is {kind(value)}, not a class")
    if not value.strip():
        raise ValueError(f"region attribute {excerpt(repr(name))} is empty")
    return value.strip()


def _ellipse(cx: float, cy: float, rx: float, ry: float, theta: float, masks: bool):
    """An ellipse's extent, and the polygon its mask is drawn as (None without masks)."""
    cos, sin = math.cos(theta), math.sin(theta)
    half_width = math.hypot(rx * cos, ry * sin)
    half_height = math.hypot(rx * sin, ry * cos)
    extent = (cx - half_width, cy - half_height, cx + half_width, cy + half_height)
    if not masks:
        return extent, None
    flat: list[float] = []
    for step in range(ELLIPSE_POINTS):
        angle = 2 * math.pi * step / ELLIPSE_POINTS
        flat += [
            cx + rx * math.cos(angle) * cos - ry * math.sin(angle) * sin,
            cy + rx * math.cos(angle) * sin + ry * math.sin(angle) * cos,
        ]
    return extent, Mask(polygons=(tuple(flat),))


def _shape(shape: Any, masks: bool) -> tuple[tuple[float, ...], Mask | None]:
    """A region's extent (xmin, ymin, xmax, ymax) and its mask; raises ValueError."""
    shape = json_object(shape, "shape_attributes")
    name = shape.get("name")

    def value(key: str) -> float:
        return number(shape.get(key), f"{name} {key}")

    if name == "rect":
        x, y = value("x"), value("y")
        return (x, y, x + value("width"), y + value("height")), None
    if name == "polygon":
        xs = [number(v, "polygon x") for v in json_list(shape.get("all_points_x"), "x points")]
        ys = [number(v, "polygon y") for v in json_list(shape.get("all_points_y"), "y points")]
        if len(xs) != len(ys) or len(xs) < 3:
            raise ValueError(f"polygon has {len(xs)} x and {len(ys)} y points, not 3 or more each")
        flat = tuple(v for point in zip(xs, ys, strict=True) for v in point)
        return (min(xs), min(ys), max(xs), max(ys)), Mask(polygons=(flat,)) if masks else None
    if name == "circle":
        return _ellipse(value("cx"), value("cy"), value("r"), value("r"), 0.0, masks)
    if name == "ellipse":
        theta = value("theta") if "theta" in shape else 0.0
        return _ellipse(value("cx"), value("cy"), value("rx"), value("ry"), theta, masks)
    if name in ("point", "polyline"):
        raise ValueError(f"a {name} region encloses nothing: it has no box")
    raise ValueError(f"region shape {excerpt(name)} is not rect, polygon, circle or ellipse")


def _box(region: Any, source: str, options: ReaderOptions) -> Box:
    region = json_object(region, "region")
    label = _class(region.get("region_attributes"), options)
    (xmin, ymin, xmax, ymax), mask = _shape(region.get("shape_attributes"), options.extras.masks)
    return Box(label, xmin, ymin, xmax, ymax, source, mask=mask)


def _entry(entry: dict, source: str, path: str, options: ReaderOptions) -> Parsed:
    regions = _regions(entry)
    if undecodable(entry, keys_only=True):
        reason = "entry has keys holding bytes that are not UTF-8 text; entry skipped"
        yield ErrorRecord(source, None, STAGE_READ, reason, len(regions))
        return
    try:
        key = image_key_for(entry.get("filename"), path, options)
    except UnsafePathError as error:
        yield ErrorRecord(source, None, STAGE_READ, str(error), len(regions))
        return
    boxes, errors = parse_each(
        ((f"{source}#region[{index}]", region) for index, region in regions),
        lambda region, where: _box(region, where, options),
        key,
    )
    yield from errors
    yield ImageAnnotation(key, (source,), boxes)


@file_boundary
def parse_via(data: bytes, path: str, options: ReaderOptions) -> Parsed:
    """Each image entry is its own error boundary, and each region within it."""
    try:
        document = load_json(data.decode("utf-8-sig", errors="replace"))
    except ValueError as error:
        yield ErrorRecord(path, None, STAGE_READ, f"malformed JSON: {excerpt(str(error))}")
        return
    for index, entry in enumerate(metadata_of(document).values(), start=1):
        source = f"{path}#image[{index}]"
        if isinstance(entry, dict):
            yield from guarded(_entry(entry, source, path, options), source)
        else:
            yield ErrorRecord(source, None, STAGE_READ, f"entry is {kind(entry)}, not an object")


def _parse_file(handle: BinaryIO, path: str, options: ReaderOptions) -> Parsed:
    return parse_via(handle.read(), path, options)


def _scan(files: list[str], pattern: str, root: str) -> tuple[set[str], int]:
    """The region attributes and the number of regions of the files that read as JSON; the
    others are left to the job to report."""
    names: set[str] = set()
    regions = 0
    for path in files:
        try:
            with open_annotations(path, pattern, root) as handle:
                document = load_json(handle.read().decode("utf-8-sig", errors="replace"))
        except Exception:  # Any file the job will report: unreadable, malformed, too deep.
            continue
        found, count = region_attributes(document)
        names |= found
        regions += count
    return names, regions


def _locate(request: Request, fmt: Format) -> Source:
    """The JSON files and the region attribute that names classes: the one asked for, else
    the only one the files have. Several, or none for files that have regions (unless a
    --classes file names their one class), are refused with the choices."""
    source = locate_files(request, fmt)
    pattern, root = source.pattern, source.options.annotations_root
    found, regions = _scan(matching_files(pattern), pattern, root)
    names = sorted(found)
    choices = ", ".join(repr(name) for name in names)
    chosen = request.class_attribute
    if chosen:
        if chosen not in names:
            have = f"they have {choices}" if names else "they have none"
            raise UnusableSource(
                f"--class-attribute {chosen!r}: no VIA region has that attribute; {have}"
            )
    elif len(names) == 1:
        chosen = names[0]
    elif names:
        raise UnusableSource(
            f"the VIA regions have several attributes ({choices}): name the one that holds "
            "the class with --class-attribute NAME"
        )
    elif regions and len(request.class_names) != 1:
        raise UnusableSource(
            "the VIA regions have no attribute naming their class: for a dataset of one "
            "class, give its name with --classes FILE (one line)"
        )
    return replace(source, options=replace(source.options, class_attribute=chosen or ""))


FORMAT = file_format("via", "*.json", _parse_file, split_of=split_of_via_file, locate=_locate)
