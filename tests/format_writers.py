"""Writes the bundled sample's known boxes in every supported annotation format, so each
reader can be checked against the same ground truth."""

from __future__ import annotations

import csv
import json
import os
import shutil

import yaml
from sample_data import CLASSES, SAMPLE_DIR

# Category ids with gaps, as COCO's own (1-90) have.
COCO_IDS = {"circle": 3, "square": 7, "triangle": 11}


def sample_boxes() -> dict[str, dict]:
    """{filename: {"width", "height", "boxes": [(class, xmin, ymin, xmax, ymax)]}}."""
    images: dict[str, dict] = {}
    with open(os.path.join(SAMPLE_DIR, "labels.csv"), newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            entry = images.setdefault(
                row["filename"],
                {"width": int(row["width"]), "height": int(row["height"]), "boxes": []},
            )
            if row["class"]:
                corners = [int(row[k]) for k in ("xmin", "ymin", "xmax", "ymax")]
                entry["boxes"].append((row["class"], *corners))
    return images


def copy_images(target: str, names) -> None:
    os.makedirs(target, exist_ok=True)
    for name in names:
        shutil.copy(os.path.join(SAMPLE_DIR, "images", name), os.path.join(target, name))


def write_coco(path: str, images: dict[str, dict], first_id: int = 1) -> None:
    document = {
        "info": {"description": "sample"},
        "images": [],
        "annotations": [],
        "categories": [{"id": COCO_IDS[name], "name": name} for name in CLASSES],
    }
    annotation_id = 100
    for number, (name, entry) in enumerate(sorted(images.items()), start=first_id):
        document["images"].append(
            {"id": number, "file_name": name, "width": entry["width"], "height": entry["height"]}
        )
        for label, xmin, ymin, xmax, ymax in entry["boxes"]:
            annotation_id += 1
            document["annotations"].append(
                {
                    "id": annotation_id,
                    "image_id": number,
                    "category_id": COCO_IDS[label],
                    "bbox": [xmin, ymin, xmax - xmin, ymax - ymin],
                    "area": (xmax - xmin) * (ymax - ymin),
                    "iscrowd": 0,
                    "segmentation": [[xmin, ymin, xmax, ymin, xmax, ymax, xmin, ymax]],
                }
            )
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(document, handle)


def write_yolo(root: str, images: dict[str, dict], splits: dict[str, str]) -> None:
    """Ultralytics layout: images/<split>/, labels/<split>/, data.yaml with names as a dict."""
    for name, entry in images.items():
        split = splits[name]
        copy_images(os.path.join(root, "images", split), [name])
        if not entry["boxes"]:
            continue  # No label file: an image without objects.
        os.makedirs(os.path.join(root, "labels", split), exist_ok=True)
        stem = os.path.splitext(name)[0]
        with open(os.path.join(root, "labels", split, f"{stem}.txt"), "w") as handle:
            for label, xmin, ymin, xmax, ymax in entry["boxes"]:
                w, h = entry["width"], entry["height"]
                handle.write(
                    f"{CLASSES.index(label)} {(xmin + xmax) / 2 / w:.10f} "
                    f"{(ymin + ymax) / 2 / h:.10f} {(xmax - xmin) / w:.10f} "
                    f"{(ymax - ymin) / h:.10f}\n"
                )
    config = {
        "path": ".",
        "names": dict(enumerate(CLASSES)),
        **{split: f"images/{split}" for split in sorted(set(splits.values()))},
    }
    with open(os.path.join(root, "data.yaml"), "w") as handle:
        yaml.safe_dump(config, handle)


def write_yolo_keras(path: str, images_root: str, images: dict[str, dict]) -> None:
    with open(path, "w") as handle:
        for name, entry in sorted(images.items()):
            boxes = " ".join(
                f"{xmin},{ymin},{xmax},{ymax},{CLASSES.index(label)}"
                for label, xmin, ymin, xmax, ymax in entry["boxes"]
            )
            handle.write(f"{os.path.join(images_root, name)} {boxes}".rstrip() + "\n")
    with open(os.path.join(os.path.dirname(path), "classes.txt"), "w") as handle:
        handle.write("\n".join(CLASSES) + "\n")


def write_labelbox_ndjson(path: str, images: dict[str, dict]) -> None:
    with open(path, "w") as handle:
        for name, entry in sorted(images.items()):
            objects = [
                {
                    "name": label,
                    "annotation_kind": "ImageBoundingBox",
                    "bounding_box": {
                        "top": ymin,
                        "left": xmin,
                        "height": ymax - ymin,
                        "width": xmax - xmin,
                    },
                }
                for label, xmin, ymin, xmax, ymax in entry["boxes"]
            ]
            row = {
                "data_row": {"id": f"ck{name}", "external_id": name, "row_data": "https://x"},
                "media_attributes": {"width": entry["width"], "height": entry["height"]},
                "projects": {"p1": {"labels": [{"annotations": {"objects": objects}}]}},
            }
            handle.write(json.dumps(row) + "\n")


def write_labelbox_json(path: str, images: dict[str, dict]) -> None:
    rows = [
        {
            "External ID": name,
            "Labeled Data": "https://x",
            "Label": {
                "objects": [
                    {
                        "title": label,
                        "value": label,
                        "bbox": {
                            "top": ymin,
                            "left": xmin,
                            "height": ymax - ymin,
                            "width": xmax - xmin,
                        },
                    }
                    for label, xmin, ymin, xmax, ymax in entry["boxes"]
                ]
            },
        }
        for name, entry in sorted(images.items())
    ]
    with open(path, "w") as handle:
        json.dump(rows, handle)


def write_createml(path: str, images: dict[str, dict]) -> None:
    rows = [
        {
            "image": name,
            "annotations": [
                {
                    "label": label,
                    "coordinates": {
                        "x": (xmin + xmax) / 2,
                        "y": (ymin + ymax) / 2,
                        "width": xmax - xmin,
                        "height": ymax - ymin,
                    },
                }
                for label, xmin, ymin, xmax, ymax in entry["boxes"]
            ],
        }
        for name, entry in sorted(images.items())
    ]
    with open(path, "w") as handle:
        json.dump(rows, handle)


def write_labelme(folder: str, image_folder: str, images: dict[str, dict]) -> None:
    """One JSON per image in `folder`, naming its image relative to the JSON file."""
    os.makedirs(folder, exist_ok=True)
    for name, entry in images.items():
        shapes = [
            {
                "label": label,
                "points": [[xmax, ymax], [xmin, ymin]],  # LabelMe keeps the drawing order.
                "shape_type": "rectangle",
            }
            for label, xmin, ymin, xmax, ymax in entry["boxes"]
        ]
        document = {
            "version": "5.4.1",
            "shapes": shapes,
            "imagePath": os.path.relpath(os.path.join(image_folder, name), folder),
            "imageData": None,
            "imageHeight": entry["height"],
            "imageWidth": entry["width"],
        }
        with open(os.path.join(folder, os.path.splitext(name)[0] + ".json"), "w") as handle:
            json.dump(document, handle)


def write_cvat(path: str, images: dict[str, dict]) -> None:
    """CVAT for images 1.1 as a task export's `annotations.xml` holds it: the labels declared
    under `<meta>`, then an `<image>` with its `<box>`es for each image."""
    labels = "".join(f"<label><name>{name}</name></label>" for name in CLASSES)
    lines = [
        '<?xml version="1.0" encoding="utf-8"?>',
        "<annotations>",
        "  <version>1.1</version>",
        f"  <meta><task><name>sample</name><labels>{labels}</labels></task></meta>",
    ]
    for number, (name, entry) in enumerate(sorted(images.items())):
        lines.append(
            f'  <image id="{number}" name="{name}" width="{entry["width"]}" '
            f'height="{entry["height"]}">'
        )
        for label, xmin, ymin, xmax, ymax in entry["boxes"]:
            lines.append(
                f'    <box label="{label}" occluded="0" source="manual" xtl="{xmin}" '
                f'ytl="{ymin}" xbr="{xmax}" ybr="{ymax}" z_order="0"></box>'
            )
        lines.append("  </image>")
    lines.append("</annotations>")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
