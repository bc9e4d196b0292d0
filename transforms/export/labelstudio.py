"""Label Studio's JSON task format, written from canonical records.

Each image is a task whose one annotation holds a `rectanglelabels` region per box, in
percent of the image size with `original_width` and `original_height`, as Label Studio's
full export writes them, so the file imports into a project labeled with the default object
detection template (`<RectangleLabels name="label" toName="image">`, `<Image name="image"
value="$image">`) and reads back with `odrecords create --format labelstudio`. An image
without boxes gets an annotation without regions: a negative example, not an unlabeled task.

`data.image` is a local-files reference, `/data/local-files/?d=images/<name>`: relative to
the export folder, which Label Studio serves when it is (or lies in) its local files document
root. Masks are not written: records carry them as pixels, and a brush or polygon region
would replace the box Label Studio shows.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from urllib.parse import quote

from transforms.export.writers import IMAGES_DIR, NamedRecord

# The control and object tag names of Label Studio's object detection template.
FROM_NAME, TO_NAME = "label", "image"
LOCAL_FILES = "/data/local-files/?d="


def image_reference(name: str) -> str:
    """The local-files reference of the image `DIR/images/<name>`, percent-encoded as Label
    Studio makes them, so `+`, `&` and `#` in a name survive its query string."""
    return LOCAL_FILES + quote(f"{IMAGES_DIR}/{name}", safe="/")


def _percent(value: float, size: int) -> float:
    """A pixel value as percent of the image size, to 6 decimals: finer than the float32
    fractions records hold, and short."""
    return round(value / size * 100, 6)


def _task(named: NamedRecord) -> dict:
    image = named.record.image
    width, height = image.width, image.height
    result = []
    for number, box in enumerate(image.annotation.boxes, start=1):
        result.append(
            {
                "id": f"box{number}",
                "type": "rectanglelabels",
                "from_name": FROM_NAME,
                "to_name": TO_NAME,
                "original_width": width,
                "original_height": height,
                "image_rotation": 0,
                "value": {
                    "x": _percent(box.xmin, width),
                    "y": _percent(box.ymin, height),
                    "width": _percent(box.xmax - box.xmin, width),
                    "height": _percent(box.ymax - box.ymin, height),
                    "rotation": 0,
                    "rectanglelabels": [box.label],
                },
            }
        )
    return {
        "data": {"image": image_reference(named.name)},
        "annotations": [{"result": result, "was_cancelled": False, "ground_truth": False}],
    }


def labelstudio_document(records: list[NamedRecord]) -> Iterator[str]:
    """The tasks of one split as a JSON list, in text chunks, one task a line. Tasks have no
    `id`: Label Studio numbers the tasks it imports itself."""
    yield "["
    for number, named in enumerate(records):
        yield ("," if number else "") + "\n" + json.dumps(_task(named), ensure_ascii=False)
    yield "\n]\n"
