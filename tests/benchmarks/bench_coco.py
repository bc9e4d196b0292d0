"""Benchmark: `odrecords create --format coco` on a COCO file of train2017's scale.

Writes a COCO instances file with 118,287 images and 860,001 annotations (polygon
segmentations included, as in the real file, so it is about as large), the images being hard
links to a few Raccoon JPEGs, then runs `odrecords create` on it in its own process and prints
the file size, wall time and peak RSS. Usage:

    python tests/benchmarks/bench_coco.py [--images 118287] [--annotations 860001]
        [--workdir DIR] [--include-masks] [BEAM FLAGS]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile

from bench_create import RACCOON, measure
from PIL import Image

CATEGORY_IDS = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21]


def write_coco(root: str, images: int, annotations: int) -> str:
    """Streams the JSON out element by element; returns its path."""
    rng = random.Random(11)
    sources = [os.path.join(RACCOON, "images", f"raccoon-{n}.jpg") for n in (1, 2, 3, 4)]
    sizes = [Image.open(path).size for path in sources]
    image_dir = os.path.join(root, "images")
    os.makedirs(image_dir)
    path = os.path.join(root, "instances_train2017.json")
    with open(path, "w") as out:
        out.write('{"info": {"description": "generated"}, "licenses": [], "images": [')
        for number in range(1, images + 1):
            which = number % len(sources)
            name = f"{number:012d}.jpg"
            os.link(sources[which], os.path.join(image_dir, name))
            width, height = sizes[which]
            record = {"id": number, "file_name": name, "width": width, "height": height}
            out.write(("," if number > 1 else "") + json.dumps(record))
        out.write('], "annotations": [')
        for number in range(1, annotations + 1):
            image_id = rng.randrange(1, images + 1)
            width, height = sizes[image_id % len(sources)]
            x, y = rng.uniform(0, width / 2), rng.uniform(0, height / 2)
            w, h = rng.uniform(4, width / 2), rng.uniform(4, height / 2)
            polygon = []
            for step in range(24):  # 24 points: the size of COCO's typical polygons.
                polygon += [round(x + w * (step % 6) / 5, 2), round(y + h * (step // 6) / 3, 2)]
            record = {
                "id": number,
                "image_id": image_id,
                "category_id": rng.choice(CATEGORY_IDS),
                "bbox": [round(x, 2), round(y, 2), round(w, 2), round(h, 2)],
                "area": round(w * h, 2),
                "iscrowd": 0,
                "segmentation": [polygon],
            }
            out.write(("," if number > 1 else "") + json.dumps(record))
        categories = [{"id": i, "name": f"class-{i}", "supercategory": "x"} for i in CATEGORY_IDS]
        out.write('], "categories": ' + json.dumps(categories) + "}")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=118_287)
    parser.add_argument("--annotations", type=int, default=860_001)
    parser.add_argument("--workdir", help="where the dataset and output go (default: temp)")
    args, flags = parser.parse_known_args()
    if not os.path.isdir(RACCOON):
        sys.exit("needs ../shared/data/raccoon beside the project")
    workdir = args.workdir or tempfile.mkdtemp(prefix="odrecords-coco-")
    root = os.path.join(workdir, "coco")
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(root)
    annotations = write_coco(root, args.images, args.annotations)
    size_mb = os.path.getsize(annotations) / 1e6
    odrecords = os.path.join(os.path.dirname(sys.executable), "odrecords")
    command = [
        odrecords, "create", "--format", "coco", "--annotations", annotations,
        "--images", os.path.join(root, "images"), "--output", os.path.join(root, "out"),
        "--num-shards", "100", *flags,
    ]  # fmt: skip
    seconds, rss = measure(command)
    print(f"COCO file: {size_mb:.0f} MB, {args.images} images, {args.annotations} annotations")
    print(f"odrecords create {' '.join(flags)}: {seconds:.0f} s, "
          f"{args.images / seconds:.0f} images/s, peak RSS {rss:.0f} MB")  # fmt: skip
    with open(os.path.join(root, "out", "manifest.json")) as handle:
        manifest = json.load(handle)
    print(f"examples: {manifest['images']['written']}, objects: {manifest['objects']['written']}, "
          f"errors: {manifest['errors']['count']}")  # fmt: skip
    if not args.workdir:
        shutil.rmtree(workdir)


if __name__ == "__main__":
    main()
