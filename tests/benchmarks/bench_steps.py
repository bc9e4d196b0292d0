"""Benchmark: what one image costs in `odrecords create`, step by step, and how much of it
can run on more than one core of one process.

Runs the shard writer's own per-image work (`WriteShard`: read, check and verify the image,
hash it, check its boxes, encode and frame the example, make its index row) on the Raccoon
JPEGs, and times:
- each step alone, on one core;
- the whole per-image work in 1 and in 2 threads, as the shard writer runs it: the part that
  does not get faster with a second thread holds Python's GIL (Amdahl);
- Beam's own cost per element and per step on the in-process runner (a chain of `Map`s,
  and a `GroupByKey` of annotation records).
Together with the whole-process figures of `bench_create.py`, these bound what one process
can reach on a given number of cores. Usage:

    python tests/benchmarks/bench_steps.py [--images 2000]
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import apache_beam as beam
from bench_create import RACCOON

from transforms.convert import ImagePlan, convert, encode
from transforms.duplicates import perceptual_hash
from transforms.images.loader import ImageLoader
from transforms.images.verify import decode
from transforms.records import Box, Extras, ImageAnnotation


def annotations(count: int) -> list[ImageAnnotation]:
    """`count` annotations of the Raccoon images, repeated, with their CSV boxes."""
    boxes: dict[str, list[Box]] = {}
    with open(os.path.join(RACCOON, "data", "raccoon_labels.csv"), newline="") as handle:
        for number, row in enumerate(csv.DictReader(handle)):
            boxes.setdefault(row["filename"], []).append(
                Box(
                    row["class"],
                    *(float(row[key]) for key in ("xmin", "ymin", "xmax", "ymax")),
                    source=f"labels.csv:{number + 2}",
                )
            )
    names = sorted(boxes)
    return [
        ImageAnnotation(
            image=names[number % len(names)],
            sources=(f"labels.csv:{number}",),
            boxes=tuple(boxes[names[number % len(names)]]),
            split="train",
            source_id=number + 1,
        )
        for number in range(count)
    ]


def per_image(seconds: float, count: int) -> str:
    return f"{seconds / count * 1000:7.3f} ms"


def timed(work: Callable[[], object]) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def beam_costs(count: int) -> tuple[float, float]:
    """Seconds per element of one more `Map` step, and of a `GroupByKey` of annotation
    records, on the in-process runner (the difference of two pipelines, so start-up and
    graph costs cancel)."""
    items = annotations(count)

    def chain(steps: int, group: bool) -> float:
        def run() -> None:
            with beam.Pipeline(runner="FnApiRunner") as pipeline:
                values = pipeline | beam.Create(items, reshuffle=False)
                for step in range(steps):
                    values = values | f"Step{step}" >> beam.Map(lambda item: item)
                if group:
                    values = values | beam.Map(lambda item: (item.image, item)) | beam.GroupByKey()

        return timed(run)

    base = min(chain(1, False) for _ in range(2))
    more = min(chain(11, False) for _ in range(2))
    grouped = min(chain(1, True) for _ in range(2))
    return (more - base) / 10 / count, (grouped - base) / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    args = parser.parse_args()
    count = args.images
    loader = ImageLoader(os.path.join(RACCOON, "images"), 1 << 30, 1 << 28)
    loader.setup()
    label_map = {"raccoon": 1}
    items = annotations(count)
    plans = [ImagePlan(item, "", "", "", None) for item in items]
    extras = Extras()

    def whole(plan: ImagePlan) -> object:
        return convert(loader, plan, label_map, extras)

    list(map(whole, plans[:200]))  # Warm the page cache and the imports.
    stored = [loader.read_stored(item.image) for item in items]
    loaded = [loader.load(item, data) for item, data in zip(items, stored, strict=True)]
    steps = {
        "read the file": lambda: [loader.read_stored(item.image) for item in items],
        "verify: strict scaled decode": lambda: [decode(data) for data in stored],
        "load: header, limits, verify": lambda: [
            loader.load(item, data) for item, data in zip(items, stored, strict=True)
        ],
        "sha256 of the bytes": lambda: [
            hashlib.sha256(image.encoded).hexdigest() for image in loaded
        ],
        "perceptual hash of the decode": lambda: [
            perceptual_hash(image.encoded, preview=image.preview) for image in loaded
        ],
        "boxes, example (encode)": lambda: [
            encode(item, image, label_map, extras)
            for item, image in zip(items, loaded, strict=True)
        ],
        "load, hash, example, record, index row": lambda: [whole(plan) for plan in plans],
    }
    print(f"{count} Raccoon JPEGs, per image, one core:")
    for name, work in steps.items():
        seconds = min(timed(work) for _ in range(3))
        print(f"  {name:<36} {per_image(seconds, count)}")
    for threads in (1, 2):
        with ThreadPoolExecutor(threads) as pool:
            seconds = min(timed(lambda: list(pool.map(whole, plans))) for _ in range(3))
        print(f"  whole per-image work, {threads} thread(s): {per_image(seconds, count)}")
        if threads == 1:
            one = seconds
    serial = 2 * seconds / one - 1  # Amdahl: t2 = t1 * (serial + (1 - serial) / 2)
    print(
        f"  part that holds the GIL (does not speed up with a second thread): "
        f"{serial:.0%}, {per_image(serial * one, count)}"
    )
    step, group = beam_costs(count)
    print(f"Beam in-process runner, per element: one more Map step {step * 1e6:.1f} µs, "
          f"a GroupByKey of annotation records {group * 1e6:.1f} µs")  # fmt: skip


if __name__ == "__main__":
    main()
