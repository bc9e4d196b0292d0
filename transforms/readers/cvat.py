"""CVAT for images 1.1 XML, and CVAT for video 1.1, as CVAT exports them (`annotations.xml`).

A CVAT export holds `annotations.xml` and, beside it, an `images/` folder (a project's keeps
one sub-folder per subset, `images/Train/...`, and names each image's `subset`). Image names
resolve against `--images`, else against that `images/` folder, else the XML's own folder.

In an `<image>`, a `<box>` is a box (turned by its `rotation`, the extent of the turned box);
a `<polygon>` and an `<ellipse>` become their extent; a `<mask>` the extent of its pixels.
With `--include-masks` a polygon is the object's mask, as COCO polygons are, and so is a
mask's bitmap. Points, polylines, cuboids and skeletons have no box: each is an error record
for one object. Tags label the whole image and are no objects. Of the attributes, those the
records have a place for are kept: `difficult`, `truncated`, `pose` (or `view`) and
`is_crowd`; `occluded` and `z_order` have none. Classes are the labels `<meta>` declares,
numbered in their order, so classes without objects are known; `--class-attribute NAME`
takes an object's class from its attribute NAME instead (its label where it has none), and
declares the values `<meta>` lists for that attribute.

CVAT for video keeps `<track>`s, each with its shape on every frame; frame N is the image
`frame_00000N.<ext>` (CVAT writes `.PNG`), and a shape marked `outside="1"` is not on it.
Every frame file found is an image, negative when nothing is on it.

Files are streamed: each `<image>` and `<track>` is let go of once read, and where a file
breaks, what came before is kept. Annotation files are untrusted: the parser resolves no
external entities and no entity in text, loads no DTD and opens no network connection, and
libxml2's limits on entity expansion, depth and text size stay on.
"""

from __future__ import annotations

import math
import posixpath
import re
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import replace
from typing import BinaryIO

import numpy as np
from apache_beam.io.filesystems import FileSystems
from lxml import etree

from transforms.choices import DEFAULT_MAX_IMAGE_PIXELS
from transforms.masks import placed_rle
from transforms.paths import UnsafePathError, image_key_under, open_regular
from transforms.readers.base import (
    Format,
    Parsed,
    ParseFiles,
    ReaderOptions,
    Request,
    Source,
    UnusableSource,
    annotations_root,
    guarded,
    is_folder,
    locate_files,
    matching_files,
    open_annotations,
    parse_each,
    split_of_file,
)
from transforms.readers.values import declared_size, parse_number, parse_whole
from transforms.readers.yolo import IMAGE_EXTENSIONS
from transforms.records import (
    STAGE_READ,
    Box,
    ClassDeclaration,
    ErrorRecord,
    ImageAnnotation,
    Mask,
    excerpt,
)

_PARSER_OPTIONS = {
    "resolve_entities": False,
    "no_network": True,
    "load_dtd": False,
    "dtd_validation": False,
    "huge_tree": False,
    "remove_comments": True,
    "remove_pis": True,
}
_NO_BOX = ("points", "polyline", "cuboid", "skeleton")
_SHAPES = ("box", "polygon", "ellipse", "mask", *_NO_BOX)
# What CVAT names a frame of a video task, and the extension it gives the frame's file.
_FRAME = re.compile(r"frame_(\d+)")
_FRAME_EXTENSION = ".PNG"
_CHUNK_BYTES = 1 << 16
# libxml2's own limit on a text or attribute value, without `huge_tree`.
_MAX_SILENT_BYTES = 10_000_000
_RUNS = re.compile(r"\s*\d+(?:\s*,\s*\d+)*\s*")
# A run longer than this has more digits than any mask inside an int64 pixel count.
_RUN_DIGITS = 19
# The most pixels a mask's bitmap may have: as many as an image may by default.
MAX_MASK_PIXELS = DEFAULT_MAX_IMAGE_PIXELS
_TRUE = ("1", "true", "yes")
# Sniffing: the first element of an XML file, after its declaration, comments and DOCTYPE.
_SNIFF_BYTES = 1 << 16
_PROLOGUE = re.compile(r"\s*(<\?.*?\?>|<!--.*?-->|<!DOCTYPE[^>\[]*(\[.*?\])?\s*>)", re.S)


def looks_like_cvat(path: str) -> bool:
    """Whether an XML file is CVAT's: its root is `<annotations>` and `<version>` or `<meta>`
    follows, where Pascal VOC's root is `<annotation>`. Reads the first 64 KiB at most."""
    with open_regular(path) as handle:
        head = handle.read(_SNIFF_BYTES).decode("utf-8-sig", errors="replace")
    position = 0
    while match := _PROLOGUE.match(head, position):
        position = match.end()
    root = re.match(r"\s*<annotations[\s>]", head[position:])
    return bool(root) and bool(re.search(r"<(version|meta)[\s>]", head[position + root.end() :]))


def _release(element: etree._Element) -> None:
    """Lets go of an element read, and of the siblings before it, so a file's elements are
    never all held at once."""
    element.clear(keep_tail=False)
    parent = element.getparent()
    if parent is not None:
        while element.getprevious() is not None:
            del parent[0]


def _children(element: etree._Element, tags: Iterable[str]) -> list[etree._Element]:
    """Child elements with one of `tags`; entity references left unresolved are not."""
    return [child for child in element if isinstance(child.tag, str) and child.tag in tags]


def _number(element: etree._Element, name: str) -> float:
    value = element.get(name)
    if value is None:
        raise ValueError(f"<{element.tag}> has no {name}")
    return parse_number(value, f"{name} of <{element.tag}>")


def _whole(element: etree._Element, name: str, least: int) -> int:
    value = element.get(name)
    if value is None:
        raise ValueError(f"<{element.tag}> has no {name}")
    number = parse_whole(value, f"{name} of <{element.tag}>")
    if number < least:
        raise ValueError(f"{name} of <{element.tag}> is {number}, less than {least}")
    return number


def _turned(
    cx: float, cy: float, half_width: float, half_height: float, degrees: float
) -> tuple[float, float, float, float]:
    """The extent of a box centred on (cx, cy), turned by `degrees` about its centre."""
    cos, sin = abs(math.cos(math.radians(degrees))), abs(math.sin(math.radians(degrees)))
    across = half_width * cos + half_height * sin
    down = half_width * sin + half_height * cos
    return cx - across, cy - down, cx + across, cy + down


def _box_extent(element: etree._Element) -> tuple[float, float, float, float]:
    corners = [_number(element, name) for name in ("xtl", "ytl", "xbr", "ybr")]
    rotation = _number(element, "rotation") if element.get("rotation") else 0.0
    if not rotation:
        return corners[0], corners[1], corners[2], corners[3]
    xtl, ytl, xbr, ybr = corners
    return _turned((xtl + xbr) / 2, (ytl + ybr) / 2, (xbr - xtl) / 2, (ybr - ytl) / 2, rotation)


def _ellipse_extent(element: etree._Element) -> tuple[float, float, float, float]:
    cx, cy, rx, ry = (_number(element, name) for name in ("cx", "cy", "rx", "ry"))
    rotation = math.radians(_number(element, "rotation") if element.get("rotation") else 0.0)
    across = math.hypot(rx * math.cos(rotation), ry * math.sin(rotation))
    down = math.hypot(rx * math.sin(rotation), ry * math.cos(rotation))
    return cx - across, cy - down, cx + across, cy + down


def _points(element: etree._Element) -> tuple[float, ...]:
    """`points="x0,y0;x1,y1;..."` as a flat x, y list."""
    text = element.get("points")
    if not text:
        raise ValueError(f"<{element.tag}> has no points")
    flat: list[float] = []
    for pair in text.split(";"):
        x, comma, y = pair.partition(",")
        if not comma or "," in y:
            raise ValueError(f"point {excerpt(repr(pair))} of <{element.tag}> is not x,y")
        flat += [parse_number(x, "point x"), parse_number(y, "point y")]
    return tuple(flat)


def mask_runs(text: str | None, width: int, height: int) -> tuple[array, tuple[int, ...]]:
    """CVAT's mask `rle`: run lengths, comma-separated, of the `width` x `height` bitmap read
    row by row from its top-left pixel, starting with a run of 0s (cvat-sdk's `encode_mask`).
    Returns the runs and the extent (left, top, right, bottom) of the pixels set, in the
    bitmap, right and bottom exclusive; raises ValueError. One pass, in memory of 8 bytes a
    run, whatever the runs claim."""
    if text is None or not _RUNS.fullmatch(text):
        raise ValueError("rle of <mask> is not comma-separated run lengths")
    area = width * height
    runs = array("q")
    left, top, right, bottom = width, height, -1, -1
    position = 0
    for index, match in enumerate(re.finditer(r"\d+", text)):
        digits = match.group()
        run = int(digits) if len(digits) <= _RUN_DIGITS else area + 1
        if run > area - position:
            raise ValueError(f"rle of <mask> covers more than its {width} x {height} pixels")
        if index % 2 and run:
            first_row, first_column = divmod(position, width)
            last_row, last_column = divmod(position + run - 1, width)
            top, bottom = min(top, first_row), max(bottom, last_row)
            if first_row == last_row:
                left, right = min(left, first_column), max(right, last_column)
            else:  # A run across rows covers the last column of one and the first of the next.
                left, right = 0, width - 1
        position += run
        runs.append(run)
    if position != area:
        raise ValueError(f"rle of <mask> covers {position} pixels, not its {width} x {height}")
    if right < 0:
        raise ValueError("<mask> has no pixel set")
    return runs, (left, top, right + 1, bottom + 1)


def _mask_box(
    element: etree._Element, size: tuple[int | None, int | None], masks: bool
) -> tuple[tuple[float, float, float, float], Mask | None]:
    """A `<mask>`: the extent of its pixels and, with `masks`, the bitmap placed on the image
    (cut off at its edges) as COCO's RLE, which needs the image's declared size."""
    left, top = _whole(element, "left", 0), _whole(element, "top", 0)
    width, height = _whole(element, "width", 1), _whole(element, "height", 1)
    runs, (x0, y0, x1, y1) = mask_runs(element.get("rle"), width, height)
    extent = (float(left + x0), float(top + y0), float(left + x1), float(top + y1))
    if not masks:
        return extent, None
    image_width, image_height = size
    if not (image_width and image_height and image_width > 0 and image_height > 0):
        raise ValueError("<mask> needs the image's width and height")
    if width * height > MAX_MASK_PIXELS:
        raise ValueError(f"<mask> of {width} x {height} pixels is larger than {MAX_MASK_PIXELS:,}")
    values = (np.arange(len(runs)) % 2).astype(np.uint8)
    bitmap = np.repeat(values, np.frombuffer(runs, dtype=np.int64)).reshape(height, width)
    counts = placed_rle(bitmap, left, top, image_width, image_height)
    return extent, Mask(rle_size=(image_height, image_width), rle_counts=counts)


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in _TRUE


def _attributes(element: etree._Element) -> dict[str, str]:
    """A shape's `<attribute name="...">value</attribute>` children."""
    found: dict[str, str] = {}
    for child in _children(element, ("attribute",)):
        name = child.get("name")
        if name is not None:
            found[name] = child.text or ""
    return found


def shape_box(
    element: etree._Element,
    label: str | None,
    source: str,
    size: tuple[int | None, int | None],
    options: ReaderOptions,
) -> Box:
    """One shape as a Box; raises ValueError for a shape without a box or with values that
    cannot be read."""
    kind = element.tag
    if kind in _NO_BOX:
        raise ValueError(f"a CVAT <{kind}> has no box")
    attributes = _attributes(element)
    lowered = {name.strip().lower(): value for name, value in attributes.items()}
    if options.class_attribute:
        label = attributes.get(options.class_attribute) or label
    if not label:
        raise ValueError(f"<{kind}> has no label")
    mask = None
    if kind == "box":
        extent = _box_extent(element)
    elif kind == "ellipse":
        extent = _ellipse_extent(element)
    elif kind == "polygon":
        flat = _points(element)
        if len(flat) < 6:
            raise ValueError(f"<polygon> has {len(flat) // 2} points; it needs three")
        extent = (min(flat[::2]), min(flat[1::2]), max(flat[::2]), max(flat[1::2]))
        mask = Mask(polygons=(flat,)) if options.extras.masks else None
    else:
        extent, mask = _mask_box(element, size, options.extras.masks)
    crowd = lowered.get("is_crowd", lowered.get("iscrowd"))
    return Box(
        label,
        *extent,
        source,
        difficult=_flag(lowered.get("difficult")),
        truncated=_flag(lowered.get("truncated")),
        view=(lowered.get("pose") or lowered.get("view") or "").strip(),
        is_crowd=None if crowd is None else _flag(crowd),
        mask=mask,
    )


def _plain_name(text: str | None) -> bool:
    """Whether a subset names one folder (`Train`), not a path."""
    return bool(text) and text not in (".", "..") and not re.search(r"[/\\\x00]", text)


def image_split(subset: str | None, path: str, options: ReaderOptions) -> str | None:
    """An image's source split: its `subset` (CVAT projects), else its file's
    (`split_of_file`); None without `--splits source`."""
    if not options.source_splits:
        return None
    return subset or split_of_file(path, options.annotations_root)


class _CvatFile:
    """Reads one CVAT XML file, element by element: `<meta>` gives the declared classes,
    each `<image>` an annotation, each `<track>` one per frame it is on; each is its own
    error boundary."""

    def __init__(self, path: str, options: ReaderOptions):
        self._path = path
        self._options = options
        self._base: str | None = None
        self._folders: dict[str, str] = {}
        self._frame_files: dict[str, dict[int, str]] = {}
        self._frame_folders: dict[str, str | None] = {}
        self._seen: set[tuple[str, str | None]] = set()
        self._mode = ""
        self._frame_size: tuple[int | None, int | None] = (None, None)
        self._images = 0
        self._tracks = 0

    # Where images are.

    def _folder(self, subset: str | None) -> str:
        """The folder names are relative to: `--images`, else `images/` beside the XML when
        it is a folder, else the XML's folder; within it, the subset's folder when there is
        one (a CVAT project's `images/Train/`)."""
        if self._base is None:
            if self._options.images_beside_annotations:
                beside = posixpath.dirname(self._path)
                images = FileSystems.join(beside, "images")
                self._base = images if is_folder(images) else beside
            else:
                self._base = self._options.images
        if not _plain_name(subset):
            return self._base
        if subset not in self._folders:
            folder = FileSystems.join(self._base, subset)
            self._folders[subset] = folder if is_folder(folder) else self._base
        return self._folders[subset]

    def _frames(self, folder: str) -> dict[int, str]:
        """{frame number: file name} of the `frame_NNNNNN.<ext>` images in `folder`."""
        if folder not in self._frame_files:
            found: dict[int, str] = {}
            pattern = FileSystems.join(folder, "frame_*")
            for metadata in FileSystems.match([pattern])[0].metadata_list:
                name = posixpath.basename(metadata.path)
                stem, extension = posixpath.splitext(name)
                match = _FRAME.fullmatch(stem)
                if match and extension.lower() in IMAGE_EXTENSIONS:
                    found.setdefault(int(match[1]), name)
            self._frame_files[folder] = found
        return self._frame_files[folder]

    def _key(self, name: str, subset: str | None) -> str:
        """The key of the image `name`; a video frame's name without extension (CVAT names
        them so in a video task's image export) is its frame file. Raises UnsafePathError."""
        folder = self._folder(subset)
        frame = _FRAME.fullmatch(name)
        if frame:
            name = self._frames(folder).get(int(frame[1]), name)
        return image_key_under(name, self._options.images, folder, fallback=False)

    def _frame_key(self, frame: int, subset: str | None, split: str | None) -> str:
        folder = self._folder(subset)
        self._frame_folders.setdefault(folder, split)
        name = self._frames(folder).get(frame, f"frame_{frame:06d}{_FRAME_EXTENSION}")
        return image_key_under(name, self._options.images, folder, fallback=False)

    # Elements.

    def meta(self, meta: etree._Element) -> Parsed:
        """The classes `<meta>` declares (a task's, job's or project's labels), numbered in
        their order; with a class attribute, the values it lists for it instead."""
        self._mode = (meta.findtext(".//mode") or "").strip()
        sizes = meta.findall(".//original_size")
        if len(sizes) == 1:
            self._frame_size = (
                declared_size(sizes[0].findtext("width")),
                declared_size(sizes[0].findtext("height")),
            )
        labels = None
        for part in ("project", "task", "job"):
            labels = meta.find(f"{part}/labels")
            if labels is not None:
                break
        names: list[str] = []
        for label in _children(labels, ("label",)) if labels is not None else []:
            if (label.findtext("parent") or "").strip() or label.findtext("type") == "tag":
                continue  # A skeleton's point, or a label of whole images.
            names += self._declared(label)
        for number, name in enumerate(dict.fromkeys(names), start=1):
            yield ClassDeclaration(name, number, f"{self._path}#label[{number}]")

    def _declared(self, label: etree._Element) -> list[str]:
        wanted = self._options.class_attribute
        for spec in label.findall("attributes/attribute") if wanted else ():
            if spec.findtext("name") == wanted:
                return [value for value in (spec.findtext("values") or "").split("\n") if value]
        return [label.findtext("name") or ""]

    def image(self, element: etree._Element, source: str, shapes: list) -> Parsed:
        self._images += 1
        name = element.get("name")
        if name is None:
            raise ValueError("<image> has no name")
        subset = element.get("subset")
        try:
            key = self._key(name, subset)
        except UnsafePathError as error:
            yield ErrorRecord(source, excerpt(name), STAGE_READ, str(error), len(shapes))
            return
        split = image_split(subset, self._path, self._options)
        if (key, split) in self._seen:
            reason = f"duplicate image name {excerpt(repr(name))}"
            yield ErrorRecord(source, key, STAGE_READ, reason, len(shapes))
            return
        self._seen.add((key, split))
        size = declared_size(element.get("width")), declared_size(element.get("height"))
        boxes, errors = parse_each(
            ((f"{source}.shape[{index}]", shape) for index, shape in enumerate(shapes, start=1)),
            lambda shape, where: shape_box(shape, shape.get("label"), where, size, self._options),
            key,
        )
        yield from errors
        yield ImageAnnotation(key, (source,), boxes, *size, split=split)

    def track(self, element: etree._Element, source: str, shapes: list) -> Parsed:
        """One annotation for each frame the track is on (its `shapes`, those not outside);
        shapes without a box are one error record for the track."""
        self._tracks += 1
        label, subset = element.get("label"), element.get("subset")
        split = image_split(subset, self._path, self._options)
        without_box: dict[str, int] = {}
        for shape in shapes:
            if shape.tag in _NO_BOX:
                without_box[shape.tag] = without_box.get(shape.tag, 0) + 1
                continue
            where = f"{source}.frame[{excerpt(shape.get('frame'), 12)}]"
            yield from guarded(self._tracked(shape, label, subset, split, where), where, None, 1)
        for kind, count in without_box.items():
            reason = f"a CVAT <{kind}> has no box: the track's {count} shapes were skipped"
            yield ErrorRecord(source, None, STAGE_READ, reason, count)

    def _tracked(
        self,
        shape: etree._Element,
        label: str | None,
        subset: str | None,
        split: str | None,
        where: str,
    ) -> Parsed:
        """A track's shape on one frame, as an annotation of that frame; its source names the
        track and the frame, so the frame's annotations from other tracks stay apart."""
        key = self._frame_key(_whole(shape, "frame", 0), subset, split)
        box = shape_box(shape, label, where, self._frame_size, self._options)
        yield ImageAnnotation(key, (where,), (box,), *self._frame_size, split=split)

    def frames(self) -> Parsed:
        """Every frame file of a video's folders as an image, negative unless a track is on
        it (the tracks' annotations of it are merged with this one)."""
        if not (self._tracks or (self._mode == "interpolation" and not self._images)):
            return
        if not self._frame_folders:
            self._frame_folders[self._folder(None)] = image_split(None, self._path, self._options)
        for folder, split in self._frame_folders.items():
            for number, name in sorted(self._frames(folder).items()):
                key = image_key_under(name, self._options.images, folder, fallback=False)
                source = f"{self._path}#frame[{number}]"
                yield ImageAnnotation(key, (source,), (), *self._frame_size, split=split)


def _element_source(path: str, element: etree._Element, index: int) -> str:
    number = element.get("id")
    return f"{path}#{element.tag}[{excerpt(number, 24) if number is not None else index}]"


def _events(handle: BinaryIO) -> Iterator[tuple[str, etree._Element]]:
    """The parser's ("start" or "end", element) events, read a chunk at a time. Where the XML
    breaks, the events before it still come (lxml's `iterparse` would drop those of the
    chunk it breaks in), then the XMLSyntaxError. Fed a chunk at a time, libxml2 holds a
    start tag or text whole before it checks its size, so input that gives no event for
    `_MAX_SILENT_BYTES` is refused here: what a file holds at once stays bounded."""
    parser = etree.XMLPullParser(events=("start", "end"), **_PARSER_OPTIONS)
    silent = 0
    try:
        while chunk := handle.read(_CHUNK_BYTES):
            parser.feed(chunk)
            events = list(parser.read_events())
            silent = 0 if events else silent + len(chunk)
            if silent > _MAX_SILENT_BYTES:
                raise ValueError(
                    f"a start tag, text or comment holds more than {_MAX_SILENT_BYTES:,} bytes"
                )
            yield from events
        parser.close()
    except etree.XMLSyntaxError:
        yield from parser.read_events()
        raise
    yield from parser.read_events()


def _records(handle: BinaryIO, path: str, options: ReaderOptions) -> Parsed:
    reader = _CvatFile(path, options)
    index = 0
    for event, element in _events(handle):
        parent = element.getparent()
        if event == "start":
            if parent is None and element.tag != "annotations":
                tag = excerpt(str(element.tag))
                raise ValueError(f"root element is <{tag}>, not CVAT's <annotations>")
            continue
        if parent is None or parent.getparent() is not None:
            continue  # The root's end, or an element inside one of its children.
        if element.tag == "meta":
            yield from guarded(reader.meta(element), f"{path}#meta")
        elif element.tag in ("image", "track"):
            index += 1
            source = _element_source(path, element, index)
            shapes = _children(element, _SHAPES)
            if element.tag == "track":  # A track's shape marked outside is not on its frame.
                shapes = [s for s in shapes if s.get("outside", "0").strip() != "1"]
            parse = reader.image if element.tag == "image" else reader.track
            yield from guarded(parse(element, source, shapes), source, None, len(shapes))
        _release(element)
    yield from reader.frames()


def parse_cvat(handle: BinaryIO, path: str, options: ReaderOptions) -> Parsed:
    """The file's annotations, class declarations and error records; malformed XML ends the
    file where it is found, what came before it read."""
    try:
        yield from _records(handle, path, options)
    except etree.XMLSyntaxError as error:
        raise ValueError(f"malformed XML: {excerpt(str(error))}") from None


def _subsets(path: str, pattern: str, root: str) -> tuple[set[str], bool]:
    """The `subset`s a file's images and tracks name, and whether some name none; as far as
    the file can be read (the reader reports what cannot)."""
    found: set[str] = set()
    unnamed = False
    try:
        with open_annotations(path, pattern, root) as handle:
            for event, element in _events(handle):
                parent = element.getparent()
                if event == "start" or parent is None or parent.getparent() is not None:
                    continue  # Only the ends of the root's children are looked at.
                if element.tag not in ("image", "track"):
                    continue
                subset = element.get("subset")
                if subset:
                    found.add(subset)
                else:
                    unnamed = True
                _release(element)
    except (OSError, ValueError, etree.LxmlError):
        unnamed = True
    return found, unnamed


def _locate(request: Request, fmt: Format) -> Source:
    """The XML files; with source splits, their images' subsets (CVAT projects) or, for
    images without one, the split each file stands for."""
    plain = locate_files(replace(request, source_splits=False), fmt)
    options = replace(
        plain.options,
        source_splits=request.source_splits,
        class_attribute=request.class_attribute or "",
    )
    if not request.source_splits:
        return Source(plain.pattern, options)
    root = annotations_root(plain.pattern)
    names: set[str] = set()
    for path in matching_files(plain.pattern):
        subsets, unnamed = _subsets(path, plain.pattern, root)
        names |= {subset for subset in subsets if _plain_name(subset)}
        split = split_of_file(path, root) if unnamed else None
        if split is not None:
            names.add(split)
    if not names:
        raise UnusableSource(
            f"--splits source: these cvat annotations carry no splits (no image names a "
            f"subset, and the files lie directly in {root}); give fractions instead"
        )
    return Source(plain.pattern, options, tuple(sorted(names)))


def _read(pattern: str, options: ReaderOptions) -> ParseFiles:
    # Splits are each image's own (`image_split`), never only its file's.
    return ParseFiles(pattern, parse_cvat, options, lambda path, root: None)


FORMAT = Format(name="cvat", folder_glob="*.xml", reader=_read, locate=_locate)
