"""Benchmark: `odrecords create --format coco` on a COCO file of train2017's scale, beside
TF Model Garden's converter.

Writes a COCO instances file with 118,287 images and 860,001 annotations (polygon
segmentations included, as in the real file, so it is about as large), the images being hard
links to a few Raccoon JPEGs, then runs, each in its own process tree:
- `odrecords create` on it (100 shards), and
- the converter the TF Model Garden ships (official/vision/data/create_coco_tf_record.py with
  its tfrecord_lib), written here after it: it loads the whole file with `json.load`, indexes
  the annotations by image id, builds every tf.train.Example in a `multiprocessing.Pool`
  (`starmap`, which returns them all at once) from the image bytes as read, without decoding
  them, taking sizes from the JSON, and writes example i to shard i % 100, one
  `tf.io.TFRecordWriter` per shard.
Prints for each the wall time, images/s, CPU-seconds of the process tree, cores busy and peak
RSS (the largest process, and summed over the tree), and odrecords' speed and memory against
their targets. Generating the file takes a while: `--keep` reuses one already in --workdir.
Usage:

    python tests/benchmarks/bench_coco.py [--images 118287] [--annotations 860001]
        [--workdir DIR [--keep]] [--only odrecords|baseline] [--cores N] [--processes 2]
        [--include-masks] [BEAM FLAGS]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import multiprocessing
import os
import random
import shutil
import sys
import tempfile
from collections import defaultdict

from bench_create import RACCOON
from PIL import Image
from process_tree import Usage, measure

CATEGORY_IDS = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21]
SHARDS = 100
_WRITTEN = "converter-written:"


def write_coco(root: str, images: int, annotations: int) -> str:
    """Streams the JSON out element by element; returns its path. The file appears only
    once whole, so `--keep` never reuses one cut short."""
    rng = random.Random(11)
    sources = [os.path.join(RACCOON, "images", f"raccoon-{n}.jpg") for n in (1, 2, 3, 4)]
    sizes = [Image.open(path).size for path in sources]
    image_dir = os.path.join(root, "images")
    os.makedirs(image_dir)
    path = os.path.join(root, "instances_train2017.json")
    with open(path + ".partial", "w") as out:
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
    os.replace(path + ".partial", path)
    return path


def mask_png(segmentation: list, height: int, width: int, crowd: int) -> bytes:
    """The converter's instance mask: the polygons (or RLE) rasterised by pycocotools, their
    union unless a crowd, as a PNG."""
    import numpy as np
    from pycocotools import mask

    binary = mask.decode(mask.frPyObjects(segmentation, height, width))
    if not crowd:
        binary = np.amax(binary, axis=2)
    buffer = io.BytesIO()
    Image.fromarray(binary).save(buffer, format="PNG")
    return buffer.getvalue()


def converter_example(image: dict, image_dir: str, objects: list[dict], names: dict, masks: bool):
    """The converter's example of one image: its bytes as read, its size as the JSON says, its
    boxes normalised (those empty or past the image's edge skipped). Returns the example and
    how many boxes were skipped."""
    import tensorflow as tf

    def feature(kind: str, values: list):
        if kind == "bytes":
            return tf.train.Feature(bytes_list=tf.train.BytesList(value=values))
        if kind == "float":
            return tf.train.Feature(float_list=tf.train.FloatList(value=values))
        return tf.train.Feature(int64_list=tf.train.Int64List(value=values))

    height, width = image["height"], image["width"]
    with open(os.path.join(image_dir, image["file_name"]), "rb") as handle:
        encoded = handle.read()
    kept = []
    for annotation in objects:
        x, y, w, h = annotation["bbox"]
        if w > 0 and h > 0 and x + w <= width and y + h <= height:
            kept.append(annotation)
    features = {
        "image/height": feature("int", [height]),
        "image/width": feature("int", [width]),
        "image/filename": feature("bytes", [image["file_name"].encode()]),
        "image/source_id": feature("bytes", [str(image["id"]).encode()]),
        "image/key/sha256": feature("bytes", [hashlib.sha256(encoded).hexdigest().encode()]),
        "image/encoded": feature("bytes", [encoded]),
        "image/format": feature("bytes", [b"jpg"]),
    }
    if kept:
        boxes = [a["bbox"] for a in kept]
        features |= {
            "image/object/bbox/xmin": feature("float", [x / width for x, _, _, _ in boxes]),
            "image/object/bbox/xmax": feature("float", [(x + w) / width for x, _, w, _ in boxes]),
            "image/object/bbox/ymin": feature("float", [y / height for _, y, _, _ in boxes]),
            "image/object/bbox/ymax": feature("float", [(y + h) / height for _, y, _, h in boxes]),
            "image/object/class/text": feature(
                "bytes", [names[a["category_id"]].encode() for a in kept]
            ),
            "image/object/class/label": feature("int", [a["category_id"] for a in kept]),
            "image/object/is_crowd": feature("int", [a["iscrowd"] for a in kept]),
            "image/object/area": feature("float", [a["area"] for a in kept]),
        }
        if masks:
            features["image/object/mask"] = feature(
                "bytes",
                [mask_png(a["segmentation"], height, width, a["iscrowd"]) for a in kept],
            )
    example = tf.train.Example(features=tf.train.Features(feature=features))
    return example, len(objects) - len(kept)


def convert(annotations: str, image_dir: str, prefix: str, processes: int, masks: bool) -> None:
    """TF Model Garden's converter: everything in memory, examples built in a pool of
    processes and written by this one, round-robin over the shards."""
    import tensorflow as tf

    with open(annotations) as handle:
        coco = json.load(handle)
    names = {category["id"]: category["name"] for category in coco["categories"]}
    by_image: dict[int, list[dict]] = defaultdict(list)
    for annotation in coco["annotations"]:
        by_image[annotation["image_id"]].append(annotation)
    jobs = ((image, image_dir, by_image[image["id"]], names, masks) for image in coco["images"])
    writers = [
        tf.io.TFRecordWriter(f"{prefix}-{shard:05d}-of-{SHARDS:05d}.tfrecord")
        for shard in range(SHARDS)
    ]
    pool = multiprocessing.Pool(processes)
    skipped = 0
    examples = pool.starmap(converter_example, jobs)
    for index, (example, dropped) in enumerate(examples):
        skipped += dropped
        writers[index % SHARDS].write(example.SerializeToString())
    pool.close()
    pool.join()
    for writer in writers:
        writer.close()
    print(f"{_WRITTEN} {len(examples)} {skipped}", file=sys.stderr)


def show(name: str, images: int, run: Usage) -> None:
    """One line of the table."""
    print(
        f"{name:<34} {run.seconds:>7.1f} {images / run.seconds:>9.1f} {run.cpu:>7.1f} "
        f"{run.cores:>6.2f} {run.rss_mb:>7.0f} {run.tree_rss_mb:>8.0f}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--images", type=int, default=118_287)
    parser.add_argument("--annotations", type=int, default=860_001)
    parser.add_argument("--workdir", help="where the dataset and output go (default: temp)")
    parser.add_argument(
        "--keep", action="store_true", help="reuse the COCO file already generated in --workdir"
    )
    parser.add_argument("--only", choices=["odrecords", "baseline"], help="run only this one")
    parser.add_argument("--cores", type=int, help="run every command on this many cores")
    parser.add_argument(
        "--processes", type=int, default=2, help="the converter's pool (its default: all cores)"
    )
    parser.add_argument("--converter", nargs=3, help=argparse.SUPPRESS)
    args, flags = parser.parse_known_args()
    masks = "--include-masks" in flags
    if args.converter:
        convert(*args.converter, processes=args.processes, masks=masks)
        return
    if not os.path.isdir(RACCOON):
        sys.exit("needs ../shared/data/raccoon beside the project")
    workdir = args.workdir or tempfile.mkdtemp(prefix="odrecords-coco-")
    root = os.path.join(workdir, f"coco-{args.images}-{args.annotations}")
    annotations = os.path.join(root, "instances_train2017.json")
    kept = args.keep and os.path.exists(annotations)
    if not kept:
        shutil.rmtree(root, ignore_errors=True)
        os.makedirs(root)
        write_coco(root, args.images, args.annotations)
    size_mb = os.path.getsize(annotations) / 1e6
    print(
        f"COCO file: {size_mb:.0f} MB, {args.images} images, {args.annotations} annotations"
        + (" (reused)" if kept else "")
    )
    if args.cores:
        print(f"every run on {args.cores} core(s): taskset -c 0-{args.cores - 1}")
    if flags:
        print(f"odrecords create runs with {' '.join(flags)}")
    print("RSS MB: the largest process's peak; tree MB: the peak of the tree's summed RSS")
    print(
        f"{'run':<34} {'wall s':>7} {'images/s':>9} {'CPU s':>7} {'cores':>6} {'RSS MB':>7} "
        f"{'tree MB':>8}"
    )
    images = os.path.join(root, "images")
    out, converted = os.path.join(root, "out"), os.path.join(root, "converter")
    ours = theirs = None
    if args.only != "baseline":
        shutil.rmtree(out, ignore_errors=True)
        odrecords = os.path.join(os.path.dirname(sys.executable), "odrecords")
        command = [
            odrecords, "create", "--format", "coco", "--annotations", annotations,
            "--images", images, "--output", out, "--num-shards", str(SHARDS), *flags,
        ]  # fmt: skip
        ours = measure(command, args.cores)
        show("odrecords create", args.images, ours)
        with open(os.path.join(out, "manifest.json")) as handle:
            manifest = json.load(handle)
        shutil.rmtree(out)
    if args.only != "odrecords":
        shutil.rmtree(converted, ignore_errors=True)
        os.makedirs(converted)
        command = [
            sys.executable, __file__, "--converter", annotations, images,
            os.path.join(converted, "train"), "--processes", str(args.processes),
            *(["--include-masks"] if masks else []),
        ]  # fmt: skip
        theirs = measure(command, args.cores)
        show(f"TF Model Garden converter, Pool({args.processes})", args.images, theirs)
        shutil.rmtree(converted)
    if ours:
        print(
            f"odrecords examples: {manifest['images']['written']}, "
            f"objects: {manifest['objects']['written']}, errors: {manifest['errors']['count']}"
        )
    if theirs:
        written, skipped = theirs.stderr.rsplit(_WRITTEN, 1)[1].split()
        print(f"converter examples: {written}, boxes skipped: {skipped}")
    if ours and theirs:
        print(
            f"odrecords: {theirs.seconds / ours.seconds:.2f}x the converter's speed "
            f"(target >= 1.0x) at {ours.tree_rss_mb * 2**20 / 1e9:.2f} GB peak "
            "(target <= 1.5 GB)"
        )
    elif ours:
        print(f"odrecords: {ours.tree_rss_mb * 2**20 / 1e9:.2f} GB peak (target <= 1.5 GB)")
    if not args.workdir:
        shutil.rmtree(workdir)


if __name__ == "__main__":
    main()
