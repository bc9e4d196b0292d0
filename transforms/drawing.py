"""Drawing an image with its boxes and class names, the one way both `odrecords inspect
--render` (contact sheets) and the dataset report (thumbnails) show examples."""

from __future__ import annotations

import colorsys
import io
import math
import zlib

from PIL import Image, ImageDraw, ImageFont

from transforms.choices import DEFAULT_MAX_IMAGE_PIXELS

FONT = ImageFont.load_default()
BACKGROUND = (32, 32, 32)
# The most pixels decoded to draw one image, whatever Pillow's own limit (which a build
# raises to its --max_image_pixels): a rejected image, drawn from its source file, may be a
# decompression bomb, a PNG of a few kilobytes that decodes to gigabytes.
MAX_DRAWN_PIXELS = DEFAULT_MAX_IMAGE_PIXELS


def class_color(name: str) -> tuple[int, int, int]:
    """A stable, saturated colour per class name, the same in every picture."""
    hue = (zlib.crc32(name.encode("utf-8", "replace")) % 360) / 360
    return tuple(int(c * 255) for c in colorsys.hsv_to_rgb(hue, 0.9, 1.0))


def boxed_tile(encoded: bytes, objects: list[tuple[str, list[float]]], size: int) -> Image.Image:
    """The image scaled into a `size` square tile with its boxes (normalized corners) drawn; a
    grey tile that says so for an image PIL cannot decode or that is larger than
    MAX_DRAWN_PIXELS once drafted. Boxes are drawn as the records hold
    them, within reason: corners in either order, clamped to the tile; boxes with a NaN or
    infinite corner are left out."""
    tile = Image.new("RGB", (size, size), BACKGROUND)
    draw = ImageDraw.Draw(tile)
    try:
        image = Image.open(io.BytesIO(encoded))
        image.draft("RGB", (size, size))  # A JPEG decodes at 1/2 to 1/8 scale, still >= size.
        if image.width * image.height > MAX_DRAWN_PIXELS:
            raise ValueError(f"{image.width}x{image.height} px, too large to draw")
        image.thumbnail((size, size))
        image = image.convert("RGB")
    except Exception as error:  # PIL raises many types for damaged or unusual images.
        draw.text((8, 8), f"cannot draw:\n{str(error)[:60]}", fill="white", font=FONT)
        return tile
    left, top = (size - image.width) // 2, (size - image.height) // 2
    tile.paste(image, (left, top))
    for name, (xmin, ymin, xmax, ymax) in objects:
        if not all(math.isfinite(v) for v in (xmin, ymin, xmax, ymax)):
            continue
        xs = sorted(min(max(left + x * image.width, 0), size) for x in (xmin, xmax))
        ys = sorted(min(max(top + y * image.height, 0), size) for y in (ymin, ymax))
        box = [xs[0], ys[0], xs[1], ys[1]]
        name = name[:40]
        draw.rectangle(box, outline=class_color(name), width=2)
        text_box = draw.textbbox((box[0] + 2, box[1] + 1), name, font=FONT)
        draw.rectangle(text_box, fill=class_color(name))
        draw.text((box[0] + 2, box[1] + 1), name, fill=(0, 0, 0), font=FONT)
    return tile
