"""The dataset report page: thumbnails read back from written records, the page rendered from a
stats.json made by hand from the bundled sample, then opened in headless Chromium: it draws
something, its text holds every class with its counts, and it asks the network for nothing.
Names from the data are hostile here: a class and a file name that are HTML."""

from __future__ import annotations

import bisect
import csv
import hashlib
import io
import json
import math
import os
from collections import Counter, defaultdict

import numpy as np
import pytest
from browser import PageText, drawn, open_page, page_requests
from PIL import Image

from transforms.drawing import BACKGROUND, class_color
from transforms.example_proto import BytesList, Example, Feature, Features
from transforms.report.page import CLASS_TILES_MANY, MAX_CLASS_PANELS, render_page
from transforms.report.thumbnails import SIZE, read_sampled, thumbnail
from transforms.tfrecord import frame

SAMPLE = os.path.join(os.path.dirname(__file__), "sample")
HOSTILE_CLASS = "<img src=x onerror=alert(1)>"
HOSTILE_IMAGE = "<script>alert(1)</script>.jpg"
EDGES = {
    "objects_per_image": [0, 1, 2, 3, 4, 5, 6, 11, 21, 51, 101],
    "box_width_px": [0, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096],
    "aspect_ratio": [0, 0.125, 0.25, 0.5, 0.75, 1.333, 2, 4, 8],
    "image_width_px": [
        0,
        64,
        128,
        256,
        320,
        416,
        512,
        640,
        800,
        1024,
        1280,
        1600,
        2048,
        4096,
        8192,
    ],
}
EDGES["box_height_px"] = EDGES["box_width_px"]
EDGES["image_height_px"] = EDGES["image_width_px"]


def _examples() -> list[dict]:
    """The bundled sample as written examples: shapes-001..016 in train, the rest in val, whose
    triangles are left unlabelled (a class missing from a split); the squares are called by a
    hostile class name, and one val image by a hostile file name."""
    rows = defaultdict(list)
    sizes = {}
    with open(os.path.join(SAMPLE, "labels.csv"), newline="") as handle:
        for row in csv.DictReader(handle):
            sizes[row["filename"]] = (int(row["width"]), int(row["height"]))
            if row["class"]:
                name = HOSTILE_CLASS if row["class"] == "square" else row["class"]
                box = [float(row[key]) for key in ("xmin", "ymin", "xmax", "ymax")]
                rows[row["filename"]].append([name, *box])
    examples = []
    for number, (filename, (width, height)) in enumerate(sorted(sizes.items()), start=1):
        split = "train" if number <= 16 else "val"
        objects = rows[filename]
        if split == "val":
            objects = [item for item in objects if item[0] != "triangle"]
        examples.append(
            {
                "split": split,
                "image": HOSTILE_IMAGE if number == 24 else filename,
                "file": filename,
                "width": width,
                "height": height,
                "objects": objects,
            }
        )
    return examples


def _write_records(examples: list[dict], folder) -> None:
    """Writes each example's image into its split's TFRecord file, noting its location."""
    for split in sorted({example["split"] for example in examples}):
        path = str(folder / f"{split}.tfrecord")
        with open(path, "wb") as handle:
            for example in (e for e in examples if e["split"] == split):
                with open(os.path.join(SAMPLE, "images", example["file"]), "rb") as image:
                    encoded = image.read()
                message = Example(
                    features=Features(
                        feature={
                            "image/encoded": Feature(bytes_list=BytesList(value=[encoded])),
                            "image/filename": Feature(
                                bytes_list=BytesList(value=[example["image"].encode()])
                            ),
                        }
                    )
                )
                record = frame(message.SerializeToString())
                example["location"] = {
                    "path": path,
                    "offset": handle.tell(),
                    "length": len(record),
                }
                handle.write(record)


def _histogram(values: list[float], edges: list[float]) -> dict:
    counts = [0] * len(edges)
    for value in values:
        counts[bisect.bisect_right(edges, value) - 1] += 1
    return {"edges": edges, "counts": counts}


def _grid(boxes: list[tuple[float, float, float, float, int, int]], cells: int, cover: bool):
    """Box centres (or, with `cover`, every cell a box covers) on a cells x cells grid."""
    grid = [[0] * cells for _ in range(cells)]
    for xmin, ymin, xmax, ymax, width, height in boxes:
        if cover:
            columns = range(int(xmin / width * cells), math.ceil(xmax / width * cells))
            rows = range(int(ymin / height * cells), math.ceil(ymax / height * cells))
        else:
            columns = [min(int((xmin + xmax) / 2 / width * cells), cells - 1)]
            rows = [min(int((ymin + ymax) / 2 / height * cells), cells - 1)]
        for row in rows:
            for column in columns:
                grid[row][column] += 1
    return grid


def _area(item: list) -> float:
    return (item[3] - item[1]) * (item[4] - item[2])


def _near(colour: tuple, other: tuple, within: int) -> bool:
    return sum(abs(a - b) for a, b in zip(colour, other, strict=True)) < within


def _pixels(image: Image.Image) -> list[tuple[int, int, int]]:
    return [tuple(pixel) for pixel in np.asarray(image.convert("RGB")).reshape(-1, 3).tolist()]


def _sample_entry(example: dict) -> dict:
    return {key: example[key] for key in ("split", "image", "width", "height", "objects")} | {
        "location": example["location"]
    }


def _order(example: dict) -> str:
    return hashlib.sha256(f"{example['split']}/{example['image']}".encode()).hexdigest()


def _stats(examples: list[dict]) -> dict:
    """stats.json (version 1) of the examples, by the schema's rules."""
    classes = ["circle", "triangle", HOSTILE_CLASS]
    splits = {}
    for split in sorted({example["split"] for example in examples}):
        chosen = [example for example in examples if example["split"] == split]
        objects = [(o, e) for e in chosen for o in e["objects"]]
        instances = Counter(o[0] for o, _ in objects)
        holding = Counter(name for e in chosen for name in {o[0] for o in e["objects"]})
        most = max(instances.values())
        widths = [o[3] - o[1] for o, _ in objects]
        heights = [o[4] - o[2] for o, _ in objects]
        areas = [w * h for w, h in zip(widths, heights, strict=True)]
        sizes = Counter(f"{e['width']}x{e['height']}" for e in chosen)
        boxes = [(*o[1:], e["width"], e["height"]) for o, e in objects]
        splits[split] = {
            "images": len(chosen),
            "objects": len(objects),
            "negatives": sum(1 for e in chosen if not e["objects"]),
            "rejected_images": 1 if split == "train" else 0,
            "rejected_objects": 0,
            "duplicates": 1,
            "classes": {
                name: {
                    "instances": instances[name],
                    "images": holding[name],
                    "share": instances[name] / len(objects),
                }
                for name in classes
            },
            "missing_classes": [name for name in classes if not instances[name]],
            "imbalanced_classes": [name for name in classes if 0 < instances[name] < 0.1 * most],
            "histograms": {
                "objects_per_image": _histogram(
                    [len(e["objects"]) for e in chosen], EDGES["objects_per_image"]
                ),
                "box_width_px": _histogram(widths, EDGES["box_width_px"]),
                "box_height_px": _histogram(heights, EDGES["box_height_px"]),
                "aspect_ratio": _histogram(
                    [w / h for w, h in zip(widths, heights, strict=True)], EDGES["aspect_ratio"]
                ),
                "image_width_px": _histogram([e["width"] for e in chosen], EDGES["image_width_px"]),
                "image_height_px": _histogram(
                    [e["height"] for e in chosen], EDGES["image_height_px"]
                ),
            },
            "area": {
                "small": sum(1 for a in areas if a < 32**2),
                "medium": sum(1 for a in areas if 32**2 <= a < 96**2),
                "large": sum(1 for a in areas if a >= 96**2),
            },
            "image_sizes": sorted(sizes.items(), key=lambda item: (-item[1], item[0]))[:20],
            "other_image_sizes": 0,
            "centres": _grid(boxes, 16, cover=False),
        }
    everything = [(o, e) for e in examples for o in e["objects"]]
    smallest = min(
        everything, key=lambda item: (item[0][3] - item[0][1]) * (item[0][4] - item[0][2])
    )
    (name, *box), owner = smallest
    ordered = sorted(examples, key=_order)
    return {
        "version": 1,
        "classes": classes,
        "splits": splits,
        "centres": {
            "all": _grid([(*o[1:], e["width"], e["height"]) for o, e in everything], 16, False),
            "by_class": {
                c: _grid(
                    [(*o[1:], e["width"], e["height"]) for o, e in everything if o[0] == c],
                    16,
                    False,
                )
                for c in classes
            },
        },
        "boxes": {
            "all": _grid([(*o[1:], e["width"], e["height"]) for o, e in everything], 64, True)
        },
        "outliers": {
            "tiny": {
                "count": 1,
                "first": [
                    {
                        "split": owner["split"],
                        "image": owner["image"],
                        "class": name,
                        "box": box,
                        "width": owner["width"],
                        "height": owner["height"],
                        "why": f"{box[2] - box[0]:g}x{box[3] - box[1]:g} px",
                    }
                ],
            },
            "near_full_frame": {"count": 0, "first": []},
            "unusual_size": {"count": 0, "first": []},
        },
        "turned": {"count": 1, "first": ["shapes-003.jpg"]},
        "sample": {
            "by_split": {
                split: [_sample_entry(e) for e in ordered if e["split"] == split][:24]
                for split in splits
            },
            "by_class": {
                c: [_sample_entry(e) for e in ordered if c in {o[0] for o in e["objects"]}][:8]
                for c in classes
            },
        },
        "rejected": {
            "count": 1,
            "first": [
                {"source": "broken.jpg", "reason": "image does not decode", "split": "train"}
            ],
        },
        "duplicates": {
            "pairs": [
                {
                    "kind": "near",
                    "a": "shapes-002.jpg",
                    "b": "shapes-019.jpg",
                    "splits": ["train", "val"],
                    "across": True,
                }
            ],
            "count": 1,
            "across_splits": 1,
        },
        "source": {"kind": "create", "inputs": ["tests/sample/annotations", "tests/sample/images"]},
    }


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """(stats, thumbnails, path of report.html) for the sample, thumbnails read back from the
    records written for it."""
    folder = tmp_path_factory.mktemp("report")
    examples = _examples()
    _write_records(examples, folder)
    stats = json.loads(json.dumps(_stats(examples)))  # As the page gets it: read from JSON.
    sampled = [e for entries in stats["sample"]["by_split"].values() for e in entries]
    thumbnails = read_sampled(sampled) | {"train/broken.jpg": thumbnail(b"not an image", [], 1, 1)}
    path = folder / "report.html"
    path.write_text(render_page(stats, thumbnails), encoding="utf-8")
    return stats, thumbnails, path


def test_a_thumbnail_is_a_small_jpeg_with_its_boxes_drawn():
    with open(os.path.join(SAMPLE, "images", "shapes-004.jpg"), "rb") as handle:
        encoded = handle.read()
    drawn = Image.open(io.BytesIO(thumbnail(encoded, [("circle", 15, 39, 65, 89)], 160, 120)))
    plain = Image.open(io.BytesIO(thumbnail(encoded, [], 160, 120)))
    assert drawn.format == plain.format == "JPEG" and max(drawn.size) <= SIZE
    colour = class_color("circle")
    # The outline, 2 px around a 50 x 50 px box, blurred by JPEG, is in the class's colour.
    boxed = sum(_near(pixel, colour, 90) for pixel in _pixels(drawn))
    unboxed = sum(_near(pixel, colour, 90) for pixel in _pixels(plain))
    assert boxed - unboxed > 150


def test_an_image_that_does_not_decode_gives_a_grey_tile_that_says_so():
    tile = Image.open(io.BytesIO(thumbnail(b"\xff\xd8 broken", [("a", 0, 0, 5, 5)], 10, 10)))
    colours = Counter(_pixels(tile))
    ((most, _),) = colours.most_common(1)
    assert max(tile.size) <= SIZE and _near(most, BACKGROUND, 12)
    assert len(colours) > 2  # The words saying so.


def test_read_sampled_reads_each_record_back_and_skips_what_cannot_be_read(tmp_path):
    examples = _examples()[:3]
    _write_records(examples, tmp_path)
    sample = [_sample_entry(e) for e in examples]
    broken = dict(sample[1], location=dict(sample[1]["location"], offset=1))
    missing = dict(sample[2], location=dict(sample[2]["location"], path=str(tmp_path / "none")))
    thumbnails = read_sampled([sample[0], broken, missing])
    assert list(thumbnails) == [f"{sample[0]['split']}/{sample[0]['image']}"]
    picture = Image.open(io.BytesIO(thumbnails[f"train/{examples[0]['image']}"]))
    with Image.open(os.path.join(SAMPLE, "images", examples[0]["file"])) as original:
        # The image itself, not a grey tile: its centre pixel is the original's.
        centre = original.convert("RGB").getpixel((original.width // 2, original.height // 2))
    got = picture.convert("RGB").getpixel((SIZE // 2, SIZE // 2))
    assert _near(got, centre, 60)


def test_names_from_the_data_are_escaped(report):
    _, _, path = report
    page = path.read_text(encoding="utf-8")
    assert HOSTILE_CLASS not in page and HOSTILE_IMAGE not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;.jpg" in page
    assert "<script" not in page.lower()


def test_the_page_loads_nothing_from_elsewhere(report):
    _, _, path = report
    page = path.read_text(encoding="utf-8")
    assert "http:" not in page and "https:" not in page
    tags = PageText.parse(page).tags
    links = [attrs[key] for _, attrs in tags for key in ("src", "href") if key in attrs]
    assert links and all(link.startswith(("data:", "#")) for link in links), links
    assert "url(" not in page  # No CSS resource either.


def test_the_page_says_which_splits_miss_a_class_and_what_was_turned(report):
    stats, _, path = report
    text = PageText.of(path.read_text(encoding="utf-8"))
    assert stats["splits"]["val"]["missing_classes"] == ["triangle"]
    assert "no ground truth at evaluation" in text
    assert "shapes-003.jpg" in text and "broken.jpg" in text and "image does not decode" in text
    assert "leak across splits" in text


def test_a_page_of_600_classes_stays_small_and_says_what_it_leaves_out(report):
    stats, thumbnails, _ = report
    many = json.loads(json.dumps(stats))
    names = [f"class {number}" for number in range(600)]
    entry = many["sample"]["by_split"]["train"][0]
    many["classes"] = names
    many["centres"]["by_class"] = {name: many["centres"]["all"] for name in names}
    many["sample"]["by_class"] = {
        name: [dict(entry, image=f"{name} {n}.jpg") for n in range(8)] for name in names
    }
    for values in many["splits"].values():
        values["classes"] = {name: {"instances": 1, "images": 1, "share": 0.001} for name in names}
        values["missing_classes"] = values["imbalanced_classes"] = []
    picture = thumbnails[f"train/{entry['image']}"]
    pictures = {f"train/{name} {n}.jpg": picture for name in names for n in range(8)}
    page = render_page(many, pictures)
    drawn = page.count("data:image/jpeg")
    assert drawn <= MAX_CLASS_PANELS * CLASS_TILES_MANY + 2 * 24
    assert len(page) - drawn * len(picture) * 4 / 3 < 2_000_000
    assert f"first {MAX_CLASS_PANELS} of 600" in PageText.of(page)
    assert "class 599" in page  # The class table still lists every class.


def test_chromium_draws_the_page_and_it_requests_nothing(chromium, report, tmp_path):
    _, _, path = report
    screenshot, net_log = tmp_path / "page.png", tmp_path / "net.json"
    open_page(
        chromium,
        path,
        tmp_path,
        f"--screenshot={screenshot}",
        "--window-size=1280,2400",
        f"--log-net-log={net_log}",
    )
    assert drawn(screenshot)
    assert page_requests(net_log) == []


def test_the_request_check_sees_a_page_that_reaches_out(chromium, tmp_path):
    """The net log check of the test above can fail: a page with a remote image is caught."""
    page = tmp_path / "leaky.html"
    page.write_text('<html><body><img src="http://127.0.0.1:9/x.png"></body></html>')
    net_log = tmp_path / "net.json"
    open_page(chromium, page, tmp_path, "--dump-dom", f"--log-net-log={net_log}")
    assert page_requests(net_log) == ["http://127.0.0.1:9/x.png"]


def test_chromium_shows_every_class_with_its_counts(chromium, report, tmp_path):
    stats, _, path = report
    dom = PageText.parse(open_page(chromium, path, tmp_path, "--dump-dom").stdout)
    assert not [tag for tag, attrs in dom.tags if tag == "script" or "onerror" in attrs]
    rows = {row[0]: row for row in dom.rows if row}
    splits = list(stats["splits"])
    for name in stats["classes"]:
        row = rows[name]
        for index, split in enumerate(splits):
            counts = stats["splits"][split]["classes"][name]
            instances, images, share = row[1 + 3 * index : 4 + 3 * index]
            assert instances.split()[0] == f"{counts['instances']:,}"
            assert images == f"{counts['images']:,}"
            assert share == f"{counts['share'] * 100:.1f}%"
