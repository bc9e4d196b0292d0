"""Draws the synthetic sample dataset: images of shapes whose boxes are known exactly.

`python tests/sample_data.py` (re)writes `tests/sample/`: JPEG and PNG images, one Pascal VOC
XML per image and one TF Object Detection CSV for all of them. The drawing is seeded, so the
files are the same on every run. Tests and benchmarks call `draw_dataset` for datasets of
other sizes.
"""

from __future__ import annotations

import csv
import os
import random
from dataclasses import dataclass
from xml.sax.saxutils import escape

from PIL import Image, ImageDraw

CLASSES = ("circle", "square", "triangle")
SAMPLE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sample")


@dataclass(frozen=True)
class DrawnObject:
    label: str
    xmin: int
    ymin: int
    xmax: int
    ymax: int


@dataclass(frozen=True)
class DrawnImage:
    filename: str
    width: int
    height: int
    objects: tuple[DrawnObject, ...]


def _draw_one(rng: random.Random, filename: str) -> tuple[Image.Image, DrawnImage]:
    width, height = rng.choice([(160, 120), (128, 128), (120, 160)])
    top = tuple(rng.randrange(120, 256) for _ in range(3))
    image = Image.new("RGB", (width, height), top)
    draw = ImageDraw.Draw(image)
    for y in range(0, height, 4):  # A gradient, so the background is not trivially flat.
        shade = tuple(max(0, c - y // 3) for c in top)
        draw.rectangle([0, y, width, y + 3], fill=shade)
    objects = []
    for _ in range(rng.randrange(0, 4)):
        label = rng.choice(CLASSES)
        size = rng.randrange(16, min(width, height) // 2)
        x0, y0 = rng.randrange(0, width - size), rng.randrange(0, height - size)
        x1, y1 = x0 + size, y0 + size
        color = tuple(rng.randrange(0, 100) for _ in range(3))
        if label == "circle":
            draw.ellipse([x0, y0, x1 - 1, y1 - 1], fill=color)
        elif label == "square":
            draw.rectangle([x0, y0, x1 - 1, y1 - 1], fill=color)
        else:
            draw.polygon([(x0, y1 - 1), ((x0 + x1) // 2, y0), (x1 - 1, y1 - 1)], fill=color)
        objects.append(DrawnObject(label, x0, y0, x1, y1))
    return image, DrawnImage(filename, width, height, tuple(objects))


def voc_xml(drawn: DrawnImage) -> str:
    """The Pascal VOC annotation of one drawn image, as LabelImg writes it."""
    parts = [
        "<annotation>",
        "  <folder>images</folder>",
        f"  <filename>{escape(drawn.filename)}</filename>",
        f"  <size><width>{drawn.width}</width><height>{drawn.height}</height>"
        "<depth>3</depth></size>",
    ]
    for obj in drawn.objects:
        parts += [
            "  <object>",
            f"    <name>{escape(obj.label)}</name><pose>Unspecified</pose>",
            "    <truncated>0</truncated><difficult>0</difficult>",
            f"    <bndbox><xmin>{obj.xmin}</xmin><ymin>{obj.ymin}</ymin>"
            f"<xmax>{obj.xmax}</xmax><ymax>{obj.ymax}</ymax></bndbox>",
            "  </object>",
        ]
    parts.append("</annotation>")
    return "\n".join(parts) + "\n"


def write_csv(path: str, images: list[DrawnImage]) -> None:
    """TF OD CSV rows; an image without objects gets a row with empty class and corners."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["filename", "width", "height", "class", "xmin", "ymin", "xmax", "ymax"])
        for drawn in images:
            for obj in drawn.objects:
                writer.writerow(
                    [drawn.filename, drawn.width, drawn.height, obj.label]
                    + [obj.xmin, obj.ymin, obj.xmax, obj.ymax]
                )
            if not drawn.objects:
                writer.writerow([drawn.filename, drawn.width, drawn.height, "", "", "", "", ""])


def draw_images(folder: str, filenames: list[str], seed: int = 7) -> list[DrawnImage]:
    """Draws one image per file name into `folder`: PNG for `.png` names, JPEG otherwise."""
    rng = random.Random(seed)
    os.makedirs(folder, exist_ok=True)
    images = []
    for filename in filenames:
        image, drawn = _draw_one(rng, filename)
        path = os.path.join(folder, filename)
        if filename.lower().endswith(".png"):
            image.save(path, "PNG", optimize=True)
        else:
            image.save(path, "JPEG", quality=85)
        images.append(drawn)
    return images


def draw_dataset(root: str, count: int, seed: int = 7) -> list[DrawnImage]:
    """Writes `count` images to root/images, VOC XML to root/annotations and root/labels.csv."""
    names = [f"shapes-{n:03d}.{'png' if n % 5 == 0 else 'jpg'}" for n in range(1, count + 1)]
    images = draw_images(os.path.join(root, "images"), names, seed)
    os.makedirs(os.path.join(root, "annotations"), exist_ok=True)
    for drawn in images:
        stem = os.path.splitext(drawn.filename)[0]
        with open(os.path.join(root, "annotations", f"{stem}.xml"), "w", encoding="utf-8") as out:
            out.write(voc_xml(drawn))
    write_csv(os.path.join(root, "labels.csv"), images)
    return images


if __name__ == "__main__":
    drawn_images = draw_dataset(SAMPLE_DIR, 24)
    print(f"wrote {len(drawn_images)} images to {SAMPLE_DIR}")
