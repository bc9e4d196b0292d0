"""EXIF orientation: which way the annotator saw an image, and pixels that agree with it.

A camera stores a portrait photo's pixels sideways and tags it with an EXIF orientation (2-8)
that says how to turn them for display. TensorFlow's decoders, and with them the TF Object
Detection API and TF-Vision, ignore the tag; many annotation tools apply it: browsers do by
default (CSS `image-orientation: from-image`, in every browser since 2020), and with them
browser-based tools such as CVAT, as do LabelMe (`apply_exif_orientation`) and Ultralytics
(`exif_size`). Others show the stored pixels: labelImg (Qt's QImage does not apply the tag),
and Labelbox, which strips the tag on import. Boxes drawn on the turned image land on the
wrong pixels when TensorFlow decodes the stored ones.

So for every image tagged 2-8 the annotation's frame is decided (`OrientationPolicy`), and the
written image is made to hold that frame as TensorFlow decodes it: an annotation drawn on the
displayed image gets the pixels turned and re-encoded; one drawn on the stored pixels keeps
them, and the tag is set to 1 in place (two bytes, pixel data untouched), so that every reader
of the record, viewers and exported copies included, sees the pixels the boxes were drawn on.
Boxes, masks and keypoints are never moved: the pixels follow the annotation.

The tag is read where browsers read it, from the file's header: JPEG's Exif APP1 segment, PNG's
eXIf chunk before the image data (browsers ignore a later one), WebP's EXIF chunk and TIFF's
first IFD. XMP orientation and PNG text chunks, which browsers ignore, are ignored here too.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from PIL import Image

from transforms.choices import AUTO, DISPLAYED, IGNORE, STORED
from transforms.images.jpeg_markers import markers

ORIENTATION_TAG = 0x0112

# Formats whose usual annotation tool shows the stored pixels: Labelbox strips the tag when an
# image is imported, so its boxes are drawn on the stored pixels.
_STORED_FORMATS = frozenset({"labelbox"})

# What turns the stored pixels into the displayed image, for each orientation (as Pillow's
# ImageOps.exif_transpose and browsers do).
_TURN = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
# What gives the stored pixels back from the displayed image.
_UNDO = {
    value: {
        Image.Transpose.ROTATE_270: Image.Transpose.ROTATE_90,
        Image.Transpose.ROTATE_90: Image.Transpose.ROTATE_270,
    }.get(turn, turn)
    for value, turn in _TURN.items()
}
_TIFF_WIDTH, _TIFF_LENGTH = 256, 257
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_EXIF_HEADER = b"Exif\x00\x00"


@dataclass(frozen=True)
class OrientationTag:
    """An orientation tag (2-8) found in an image file: its value and where its two bytes are
    (`offset`, in `byte_order`), and for PNG the span of the eXIf chunk whose CRC follows it."""

    value: int
    offset: int
    byte_order: str
    crc_span: tuple[int, int] | None = None


@dataclass(frozen=True)
class Orientation:
    """What was made of an image's orientation tag. `frame` is the frame the annotation is
    taken to be drawn in: `displayed` (pixels turned), `stored` (pixels kept, tag set to 1), or
    None when the option is `ignore` (nothing changed). `by_size`: the annotation's declared
    size decided the frame, rather than the option's assumption."""

    value: int
    frame: str | None
    by_size: bool = False

    @property
    def turn(self) -> Image.Transpose | None:
        """The transpose that gives the pixels the annotator saw, when they must be turned."""
        return _TURN[self.value] if self.frame == DISPLAYED else None


@dataclass(frozen=True)
class OrientationPolicy:
    """`--exif-orientation`: `auto` decides each image's frame from its declared size where that
    tells, else assumes `assumed`; `displayed` and `stored` assume that frame for every image;
    `ignore` leaves images as they are."""

    option: str = AUTO
    assumed: str | None = DISPLAYED

    @classmethod
    def of(cls, option: str, format_name: str) -> OrientationPolicy:
        """The policy of an option for a source format: under `auto`, images whose size cannot
        tell are taken to be annotated as the format's usual tool shows them."""
        if option == AUTO:
            return cls(AUTO, STORED if format_name in _STORED_FORMATS else DISPLAYED)
        return cls(option, None if option == IGNORE else option)

    def decide(
        self, value: int, stored: tuple[int, int], declared: tuple[int, int] | None
    ) -> Orientation:
        """The frame of an annotation on an image tagged `value`, `stored` (width, height) as
        its pixels are stored, whose annotation declares `declared`.

        Orientations 5-8 swap width and height, so a declared size equal to the stored size
        turned tells that the annotator saw the displayed image, and one equal to the stored
        size that the annotator saw the stored pixels. Flips and 180° (2-4), square images and
        annotations without a size (YOLO, keras-yolo3) cannot tell: the assumption decides."""
        if self.option == IGNORE:
            return Orientation(value, None)
        if self.option == AUTO and value >= 5 and declared and stored[0] != stored[1]:
            if declared == (stored[1], stored[0]):
                return Orientation(value, DISPLAYED, by_size=True)
            if declared == stored:
                return Orientation(value, STORED, by_size=True)
        return Orientation(value, self.assumed)


DEFAULT_POLICY = OrientationPolicy()


def stored_size(image: Image.Image) -> tuple[int, int]:
    """(width, height) of an opened image's pixels as stored. Pillow reports a TIFF's size
    already turned by its orientation tag, and turns its pixels when loading them (for no
    other format), so a TIFF's stored size is read from its own fields."""
    fields = getattr(image, "tag_v2", None)
    if fields is not None and _TIFF_WIDTH in fields and _TIFF_LENGTH in fields:
        return int(fields[_TIFF_WIDTH]), int(fields[_TIFF_LENGTH])
    return image.size


def stored_pixels(image: Image.Image, value: int) -> Image.Image:
    """The loaded pixels as stored in the file, of an image tagged `value`: Pillow's turn of
    a TIFF (which drops the tag from the loaded image's fields) is undone."""
    image.load()
    fields = getattr(image, "tag_v2", None)
    if fields is not None and ORIENTATION_TAG not in fields:
        return image.transpose(_UNDO[value])
    return image


def _tiff_orientation(data: bytes, start: int) -> tuple[int, int, str] | None:
    """(value, offset, byte order) of the orientation entry in the first IFD of the TIFF
    structure at `start`, or None. Damaged structures are None, never an exception."""
    byte_order = {b"II": "<", b"MM": ">"}.get(data[start : start + 2])
    if byte_order is None or len(data) < start + 8:
        return None
    magic, first_ifd = struct.unpack_from(byte_order + "HI", data, start + 2)
    entries = start + first_ifd
    if magic != 42 or entries + 2 > len(data):
        return None
    (count,) = struct.unpack_from(byte_order + "H", data, entries)
    for index in range(count):
        entry = entries + 2 + 12 * index
        if entry + 12 > len(data):
            return None
        tag, kind, number = struct.unpack_from(byte_order + "HHI", data, entry)
        if tag == ORIENTATION_TAG:
            if kind != 3 or number != 1:  # Not one SHORT: no reader takes it for a value.
                return None
            (value,) = struct.unpack_from(byte_order + "H", data, entry + 8)
            return value, entry + 8, byte_order
    return None


def _skip_exif_header(data: bytes, start: int) -> int:
    """Some writers put JPEG's `Exif\\0\\0` before the TIFF header in PNG and WebP too."""
    return start + len(_EXIF_HEADER) if data.startswith(_EXIF_HEADER, start) else start


# Where an EXIF block is: the offset of its TIFF header, the end of the segment or chunk
# holding it, and for PNG the span of the chunk whose CRC follows it.
_Found = tuple[int, int, tuple[int, int] | None]


def _jpeg_exif(data: bytes) -> _Found | None:
    """The TIFF header of the first Exif APP1 segment, looked for before the scan data
    (fill bytes and markers without a length are stepped over)."""
    for marker, position, length in markers(data):
        if marker in (0xD9, 0xDA):  # End of image, start of scan: no header follows.
            return None
        if marker == 0xE1 and data.startswith(_EXIF_HEADER, position + 4):
            return position + 4 + len(_EXIF_HEADER), position + 2 + length, None
    return None


def _png_exif(data: bytes) -> _Found | None:
    """The TIFF header in the eXIf chunk, and the chunk's CRC span; only before the image data,
    as browsers ignore a later eXIf (and reading on would mean reading the whole file)."""
    if not data.startswith(_PNG_SIGNATURE):
        return None
    position = len(_PNG_SIGNATURE)
    while position + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, position)
        if kind == b"IDAT":
            return None
        if kind == b"eXIf":
            start = position + 8
            end = start + length
            return _skip_exif_header(data, start), end, (position + 4, end)
        position += 12 + length
    return None


def _webp_exif(data: bytes) -> _Found | None:
    """The TIFF header in an extended WebP's EXIF chunk."""
    if not (data.startswith(b"RIFF") and data[8:12] == b"WEBP"):
        return None
    position = 12
    while position + 8 <= len(data):
        kind, size = struct.unpack_from("<4sI", data, position)
        if kind == b"EXIF":
            return _skip_exif_header(data, position + 8), position + 8 + size, None
        position += 8 + size + (size & 1)
    return None


_EXIF_FINDERS = {
    "JPEG": _jpeg_exif,
    "MPO": _jpeg_exif,
    "PNG": _png_exif,
    "WEBP": _webp_exif,
    "TIFF": lambda data: (0, len(data), None),
}


def find_orientation(data: bytes, image_format: str | None) -> OrientationTag | None:
    """The orientation tag of an image file in `image_format` (as Pillow names it), when it
    is one that turns or mirrors the image (2-8). Other values, 1 included, mean the pixels
    are shown as stored, as browsers take them; so does a damaged EXIF block. The block is
    read within its segment or chunk, as browsers read it: an offset leading out of it finds
    no tag, and the tag set to 1 is never a byte of another segment."""
    finder = _EXIF_FINDERS.get(image_format or "")
    found = finder(data) if finder else None
    if found is None:
        return None
    start, end, crc_span = found
    entry = _tiff_orientation(data if end >= len(data) else data[:end], start)
    if entry is None or not 2 <= entry[0] <= 8:
        return None
    value, offset, byte_order = entry
    return OrientationTag(value, offset, byte_order, crc_span)


def without_orientation(data: bytes, tag: OrientationTag) -> bytes:
    """The file with its orientation tag set to 1 (stored pixels shown as stored), and for PNG
    its eXIf chunk's CRC recomputed; everything else, pixel data included, is unchanged."""
    patched = bytearray(data)
    struct.pack_into(tag.byte_order + "H", patched, tag.offset, 1)
    if tag.crc_span is not None:
        start, end = tag.crc_span
        struct.pack_into(">I", patched, end, zlib.crc32(patched[start:end]))
    return bytes(patched)


def orientation_counts(image: str, orientation: Orientation) -> dict:
    """What one written example adds to the manifest's `exif_orientation` (summed with the
    other counts)."""
    if orientation.frame is None:
        action, outcome = "untouched", {"untouched": 1}
    elif orientation.frame == DISPLAYED:
        action, outcome = "pixels turned", {"pixels_turned": 1}
    else:
        action, outcome = "stored pixels kept", {"stored_pixels_kept": 1}
    if orientation.frame is not None:
        how = "frame_from_declared_size" if orientation.by_size else "frame_assumed"
        outcome[how] = {orientation.frame: 1}
    return {
        "orientation": {
            "images": 1,
            "by_orientation": {str(orientation.value): 1},
            **outcome,
            "first": [f"{image} ({orientation.value}: {action})"],
        }
    }


def manifest_entry(counts: dict) -> dict:
    """The manifest's `exif_orientation`, every key present, from the summed counts."""

    def frames(key: str) -> dict:
        return {frame: counts.get(key, {}).get(frame, 0) for frame in (DISPLAYED, STORED)}

    return {
        "images": counts.get("images", 0),
        "by_orientation": dict(sorted(counts.get("by_orientation", {}).items())),
        "pixels_turned": counts.get("pixels_turned", 0),
        "stored_pixels_kept": counts.get("stored_pixels_kept", 0),
        "untouched": counts.get("untouched", 0),
        "frame_from_declared_size": frames("frame_from_declared_size"),
        "frame_assumed": frames("frame_assumed"),
        "first": counts.get("first", []),
    }


def summary(entry: dict) -> tuple[str | None, str | None]:
    """The summary's line about oriented images, and a warning when the declared sizes of some
    images show one frame while others, whose size could not tell, were assumed to be in the
    other: one tool usually annotated the whole dataset, so the assumption is likely wrong."""
    if not entry["images"]:
        return None, None
    values = ", ".join(f"{value}: {count}" for value, count in entry["by_orientation"].items())
    done = [
        f"{entry[key]} {text}"
        for key, text in (
            ("pixels_turned", "turned to the displayed image"),
            ("stored_pixels_kept", "kept as stored (tag set to 1)"),
            ("untouched", "left as they are (--exif-orientation ignore)"),
        )
        if entry[key]
    ]
    line = f"exif orientation: {entry['images']} images tagged ({values}): {', '.join(done)}"
    by_size, assumed = entry["frame_from_declared_size"], entry["frame_assumed"]
    for frame, other in ((DISPLAYED, STORED), (STORED, DISPLAYED)):
        if assumed[frame] and by_size[other]:
            warning = (
                f"the declared sizes of {by_size[other]} images show boxes drawn on the "
                f"{other} image, but {assumed[frame]} images whose size cannot tell were "
                f"taken as drawn on the {frame} image; if one tool annotated them all, rerun "
                f"with --exif-orientation {other}"
            )
            return line, warning
    return line, None
