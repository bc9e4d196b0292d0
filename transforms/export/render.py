"""Pictures of a dataset: contact sheets of examples with their boxes, and a class histogram.

They are written into the folder given by the rule of `transforms.builds.safe_write`: never
through a link, and over a file of the names they take only when it is a picture drawn here, which
says so in a PNG text chunk (a mark that recognises, not authenticates)."""

from __future__ import annotations

import io
import os
import re
from collections import Counter

from apache_beam.io.filesystems import FileSystems
from PIL import Image, ImageDraw, PngImagePlugin

from transforms.builds.safe_write import check_place, write_file
from transforms.drawing import FONT, boxed_tile, class_color

TILE = 256
GRID = 4
_MARK = ("Software", "odrecords inspect --render")
# The names of the pictures, which are all this writes.
_NAMES = re.compile(r"classes\.png|examples-\d{3,}\.png")


def _drawn_here(folder: str, relative: str) -> bool:
    """Whether the picture at `relative` in `folder` was drawn here (carries the mark)."""
    try:
        with Image.open(FileSystems.join(folder, relative), formats=["PNG"]) as image:
            return image.text.get(_MARK[0]) == _MARK[1]
    except Exception:  # PIL raises many types for files that are no PNG.
        return False


def check_folder(folder: str) -> None:
    """Raises UnsafeWrite (`transforms.builds.safe_write`) when a picture could not be written into
    `folder`: a link, or a file not drawn here, at a name the pictures take."""
    names = ["classes.png"]
    if FileSystems.get_scheme(folder) is None and os.path.isdir(folder):
        names += [name for name in sorted(os.listdir(folder)) if _NAMES.fullmatch(name)]
    for name in names:
        check_place(folder, FileSystems.join(folder, name), lambda r: _drawn_here(folder, r))


def _save(image: Image.Image, folder: str, name: str) -> str:
    path = FileSystems.join(folder, name)
    buffer = io.BytesIO()
    info = PngImagePlugin.PngInfo()
    info.add_text(*_MARK)
    image.save(buffer, "PNG", pnginfo=info)
    write_file(folder, path, [buffer.getvalue()], lambda r: _drawn_here(folder, r))
    return path


def contact_sheets(samples: list[tuple[bytes, list]], folder: str) -> list[str]:
    """Draws (image bytes, [(class, normalized corners)]) in sheets of 4 x 4; returns paths."""
    paths = []
    per_sheet = GRID * GRID
    for number, start in enumerate(range(0, len(samples), per_sheet), start=1):
        sheet = Image.new("RGB", (GRID * TILE, GRID * TILE), (0, 0, 0))
        for position, (encoded, objects) in enumerate(samples[start : start + per_sheet]):
            row, column = divmod(position, GRID)
            sheet.paste(boxed_tile(encoded, objects, TILE), (column * TILE, row * TILE))
        paths.append(_save(sheet, folder, f"examples-{number:03d}.png"))
    return paths


def class_histogram(classes: Counter, folder: str) -> str:
    """Horizontal bars of objects per class, most frequent first."""
    rows = classes.most_common() or [("(no objects)", 0)]
    label_width, bar_width, row_height = 220, 500, 22
    image = Image.new("RGB", (label_width + bar_width + 80, 30 + row_height * len(rows)), "white")
    draw = ImageDraw.Draw(image)
    draw.text((10, 8), "objects per class", fill="black", font=FONT)
    largest = max(count for _, count in rows) or 1
    for index, (name, count) in enumerate(rows):
        y = 30 + index * row_height
        draw.text((10, y + 4), name[:32], fill="black", font=FONT)
        length = int(bar_width * count / largest)
        draw.rectangle(
            [label_width, y + 3, label_width + length, y + row_height - 3], fill=class_color(name)
        )
        draw.text((label_width + length + 6, y + 4), str(count), fill="black", font=FONT)
    return _save(image, folder, "classes.png")
