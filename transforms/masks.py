"""Instance masks: COCO and YOLO polygons and run-length encodings → PNG masks of 0/1 pixels,
and masks back to the polygon outlines YOLO segmentation labels hold.

The PNG layout is the one TF Models' `create_coco_tf_record.py` writes to
`image/object/mask`: one single-channel PNG per object, the full image size. Polygons are
drawn as Pillow and Ultralytics draw them: a vertex at (x, y) marks the pixel in column
floor(x), row floor(y), and the pixels under the outline are part of the mask.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw, UnidentifiedImageError

from transforms.records import Mask

# Deflate expands data at most 1032-fold and a pixel takes at least one bit, so no PNG holds
# more pixels than this per byte.
_PNG_PIXELS_PER_BYTE = 8 * 1032


# Characters one number of a compressed RLE may take: 12 hold 60 bits, where a run of any
# real mask needs at most 7. pycocotools decodes into a C long; a longer number is not COCO's,
# and accumulating it would cost time quadratic in its length.
_RLE_NUMBER_CHARACTERS = 12


def rle_counts_from_string(text: str) -> list[int]:
    """Decodes COCO's compressed RLE string (pycocotools' `rleFrString`) into run lengths, in
    time and memory linear in the string: each number is at most 12 characters long, or
    ValueError."""
    counts: list[int] = []
    position = 0
    while position < len(text):
        value, shift, more = 0, 0, True
        while more:
            if position >= len(text):
                raise ValueError("compressed RLE ends inside a number")
            if shift == _RLE_NUMBER_CHARACTERS:
                raise ValueError(
                    f"compressed RLE has a number longer than {_RLE_NUMBER_CHARACTERS} characters"
                )
            code = ord(text[position]) - 48
            value |= (code & 0x1F) << (5 * shift)
            more = bool(code & 0x20)
            position += 1
            shift += 1
            if not more and code & 0x10:
                value |= -1 << (5 * shift)
        if len(counts) > 2:
            value += counts[-2]
        counts.append(value)
    return counts


def mask_pixels(mask: Mask, width: int, height: int, normalized: bool = False) -> np.ndarray:
    """The mask as a height x width uint8 array of 0 and 1; raises ValueError when the mask
    does not fit the image. Run lengths are checked to cover exactly the image before any
    pixel is made, so memory is the image's size whatever the runs claim. `normalized`:
    polygon coordinates are fractions of the image size (YOLO), scaled to pixels and rounded
    to a thousandth of one, so that a vertex float32 put a hair below a pixel's edge still
    marks that pixel."""
    if mask.rle_counts is not None:
        if mask.rle_size != (height, width):
            raise ValueError(
                f"mask size {mask.rle_size} differs from the image's {(height, width)}"
            )
        counts = mask.rle_counts
        runs = rle_counts_from_string(counts) if isinstance(counts, str) else list(counts)
        if any(run < 0 for run in runs) or sum(runs) != width * height:
            raise ValueError("mask run lengths do not cover the image")
        flat = np.repeat(np.arange(len(runs)) % 2, runs).astype(np.uint8)
        return flat.reshape((width, height)).T.copy()  # COCO runs are column-major.
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    for polygon in mask.polygons:
        if len(polygon) < 6 or len(polygon) % 2:
            raise ValueError("a mask polygon needs at least three x, y points")
        points = list(zip(polygon[::2], polygon[1::2], strict=True))
        if normalized:
            points = [(round(x * width, 3), round(y * height, 3)) for x, y in points]
        draw.polygon(points, fill=1, outline=1)
    return np.asarray(canvas, dtype=np.uint8)


def rle_counts_to_string(counts: list[int]) -> str:
    """Encodes run lengths as COCO's compressed RLE string (pycocotools' `rleToString`)."""
    characters = []
    for index, count in enumerate(counts):
        value = count - counts[index - 2] if index > 2 else count
        more = True
        while more:
            code = value & 0x1F
            value >>= 5
            more = value != -1 if code & 0x10 else value != 0
            if more:
                code |= 0x20
            characters.append(chr(code + 48))
    return "".join(characters)


def pixels_to_rle(pixels: np.ndarray) -> dict:
    """A 0/1 mask as COCO's compressed RLE: {"size": [h, w], "counts": str}, column-major."""
    flat = (pixels.T.reshape(-1) > 0).astype(np.int8)
    changes = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate(([0], changes, [flat.size]))
    runs = np.diff(bounds).tolist()
    if flat.size and flat[0] == 1:
        runs = [0] + runs  # COCO runs start with a run of zeros.
    height, width = pixels.shape
    return {"size": [height, width], "counts": rle_counts_to_string(runs)}


def png_pixels(data: bytes) -> np.ndarray:
    """A PNG mask as a 0/1 uint8 array."""
    return (np.asarray(Image.open(io.BytesIO(data)).convert("L")) > 0).astype(np.uint8)


def cropped_png_pixels(data: bytes, width: int, height: int) -> np.ndarray:
    """An untrusted PNG mask that must be `width` x `height`, as a 0/1 uint8 array; raises
    ValueError. The size is checked from the header before anything is decoded, and a PNG
    claiming more pixels than its bytes can hold is refused, so memory stays proportional to
    the input."""
    try:
        image = Image.open(io.BytesIO(data), formats=["PNG"])
    except UnidentifiedImageError:
        raise ValueError("mask is not a PNG image") from None
    except Exception as error:  # PIL raises many types for a malformed header.
        raise ValueError(f"cannot read the mask PNG's header: {error}") from None
    if image.size != (width, height):
        raise ValueError(f"mask is {image.width}x{image.height} but its box is {width}x{height}")
    if width * height > _PNG_PIXELS_PER_BYTE * len(data):
        raise ValueError(f"a {len(data)}-byte PNG cannot hold a {width}x{height} mask")
    try:
        return (np.asarray(image.convert("L")) > 0).astype(np.uint8)
    except Exception as error:
        raise ValueError(f"cannot decode the mask PNG: {error}") from None


def placed_rle(pixels: np.ndarray, left: int, top: int, width: int, height: int) -> str:
    """COCO's compressed RLE of a `width` x `height` mask that is 0 but for `pixels`, placed
    with its top-left corner at (left, top); what falls outside is cut off.

    Works on the runs of ones of each placed column, never on the whole image, so a small
    mask costs little however large the image claims to be.
    """
    rows, columns = pixels.shape
    x0, y0 = max(left, 0), max(top, 0)
    x1, y1 = max(min(left + columns, width), x0), max(min(top + rows, height), y0)
    inside = pixels[y0 - top : y1 - top, x0 - left : x1 - left]
    # Each placed column, with a 0 above and below, so every run of ones has a start and an end.
    steps = np.diff(np.pad(inside.T.astype(np.int8), ((0, 0), (1, 1))), axis=1)
    starts = zip(*(axis.tolist() for axis in np.nonzero(steps == 1)), strict=True)
    ends = zip(*(axis.tolist() for axis in np.nonzero(steps == -1)), strict=True)
    runs: list[int] = []
    position = 0  # Column-major index where the last run of ones ended.
    for (column, start), (_, end) in zip(starts, ends, strict=True):
        begin = (x0 + column) * height + y0 + start
        if runs and begin == position:  # Goes on from the bottom of the previous column.
            runs[-1] += end - start
        else:
            runs += [begin - position, end - start]
        position = (x0 + column) * height + y0 + end
    if position < width * height:
        runs.append(width * height - position)
    return rle_counts_to_string(runs)


def mask_png(pixels: np.ndarray) -> bytes:
    """A 0/1 mask array as PNG bytes."""
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buffer, "PNG")
    return buffer.getvalue()


# The 8 neighbours of a pixel, clockwise as seen on screen (rows grow downwards) from east.
_NEIGHBOURS = ((1, 0), (1, 1), (0, 1), (-1, 1), (-1, 0), (-1, -1), (0, -1), (1, -1))
_DIRECTION = {step: index for index, step in enumerate(_NEIGHBOURS)}
_WEST = 4


def _trace(pixels: np.ndarray, start: tuple[int, int]) -> list[tuple[int, int]]:
    """The outer boundary of the 8-connected part of `pixels` that holds `start`, its first
    pixel in row order, as the (x, y) of its boundary pixels clockwise (Moore-neighbour
    tracing, stopped when the first step would be taken again)."""
    height, width = pixels.shape
    x, y = start
    back = _WEST  # The background pixel examined last, as a direction from (x, y).
    outline = [start]
    first = None
    while True:
        for turn in range(1, 9):
            direction = (back + turn) % 8
            dx, dy = _NEIGHBOURS[direction]
            if 0 <= x + dx < width and 0 <= y + dy < height and pixels[y + dy, x + dx]:
                break
        else:
            return outline  # A lone pixel.
        if first is None:
            first = direction
        elif (x, y) == start and direction == first:
            return outline[:-1]
        bx, by = _NEIGHBOURS[(direction - 1) % 8]
        back = _DIRECTION[(bx - dx, by - dy)]
        x, y = x + dx, y + dy
        outline.append((x, y))


def _corners(outline: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """A closed outline without the points where it goes on in the same direction."""
    if len(outline) < 3:
        return outline
    kept = []
    for index, (x, y) in enumerate(outline):
        px, py = outline[index - 1]
        nx, ny = outline[(index + 1) % len(outline)]
        if (x - px, y - py) != (nx - x, ny - y):
            kept.append((x, y))
    return kept or outline[:1]


def _parts(pixels: np.ndarray) -> list[list[tuple[int, int]]]:
    """The outlines of the mask's 8-connected parts, in the row order of their first pixels;
    a part inside another's hole is left out, as holes are."""
    remaining = pixels.astype(bool)
    parts = []
    position = 0
    flat = remaining.reshape(-1)  # A view: clearing `remaining` clears it.
    while True:
        found = np.flatnonzero(flat[position:])
        if not found.size:
            return parts
        position += int(found[0])
        start = (position % pixels.shape[1], position // pixels.shape[1])
        outline = _trace(remaining, start)
        parts.append(_corners(outline))
        if len(outline) >= 3:
            covered = Image.new("L", (pixels.shape[1], pixels.shape[0]), 0)
            ImageDraw.Draw(covered).polygon(outline, fill=1, outline=1)
            remaining &= ~np.asarray(covered, dtype=bool)
        xs, ys = zip(*outline, strict=True)
        remaining[list(ys), list(xs)] = False


def _joined(parts: list[list[tuple[int, int]]]) -> list[tuple[int, int]]:
    """Several outlines as one, as Ultralytics' converter joins a COCO object's polygons:
    each part is entered and left at its points nearest the next part, and the way back
    retraces those bridges, which enclose nothing."""
    if len(parts) == 1:
        return parts[0]
    head: list[tuple[int, int]] = []
    tail: list[tuple[int, int]] = []
    entry = 0
    for index, part in enumerate(parts):
        part = part[entry:] + part[:entry]
        if index == len(parts) - 1:
            return head + part + part[:1] + tail
        here, there = np.asarray(part), np.asarray(parts[index + 1])
        distances = ((here[:, None, :] - there[None, :, :]) ** 2).sum(axis=2)
        leave, entry = (int(i) for i in np.unravel_index(np.argmin(distances), distances.shape))
        head += part[: leave + 1]
        tail = part[leave:] + part[:1] + tail
    return head + tail


def mask_outline(pixels: np.ndarray) -> list[tuple[int, int]]:
    """The outline of a 0/1 mask as one polygon of pixel (x, y) points, [] for an empty mask:
    drawn again (`mask_pixels`) it gives back the mask, but for its holes, which are filled,
    and, for a mask in several parts, the bridges that join them."""
    rows, columns = np.nonzero(pixels)
    if not rows.size:
        return []
    top, left = int(rows.min()), int(columns.min())
    crop = pixels[top : int(rows.max()) + 1, left : int(columns.max()) + 1]
    return [(x + left, y + top) for x, y in _joined(_parts(crop))]
