"""Benchmark: `odrecords create` against single-process TFRecordWriter loops.

Builds datasets of the Raccoon images repeated (hard links, so no disk is spent) to each
requested size, then runs, each in its own process so peak RSS is its own:
- `odrecords create` on the local runner (CSV input, 10 shards),
- the loop the TF Models scripts use: read each image, build the tf.train.Example, write it
  with one `tf.io.TFRecordWriter` (verifies nothing), and
- the same loop decoding every image with `tf.io.decode_image`: the single-process
  equivalent of what odrecords guarantees (every image decodes at the size recorded).
Prints images/s and peak RSS for each, and odrecords' speed as a multiple of each loop's.
Usage:

    python tests/benchmarks/bench_create.py [--sizes 2000 10000] [--workdir DIR] [BEAM FLAGS]
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time

RACCOON = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data", "raccoon")


def make_dataset(root: str, size: int) -> tuple[str, str]:
    """root/images with `size` hard-linked copies of the Raccoon images, and their CSV."""
    with open(os.path.join(RACCOON, "data", "raccoon_labels.csv"), newline="") as handle:
        rows = list(csv.DictReader(handle))
    names = sorted({row["filename"] for row in rows})
    images = os.path.join(root, "images")
    os.makedirs(images)
    labels = os.path.join(root, "labels.csv")
    with open(labels, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        for number in range(size):
            source = names[number % len(names)]
            copy = f"{number:06d}-{source}"
            os.link(os.path.join(RACCOON, "images", source), os.path.join(images, copy))
            for row in rows:
                if row["filename"] == source:
                    writer.writerow({**row, "filename": copy})
    return labels, images


def baseline(labels: str, images: str, output: str, decode: bool = False) -> None:
    """The single-process way: one pass, one writer, everything in one Python loop; with
    `decode`, each image is also decoded by TensorFlow, as training will decode it."""
    import tensorflow as tf
    from PIL import Image

    groups: dict[str, list[dict]] = {}
    with open(labels, newline="") as handle:
        for row in csv.DictReader(handle):
            groups.setdefault(row["filename"], []).append(row)
    classes = {"raccoon": 1}

    def feature(kind, values):
        if kind == "bytes":
            return tf.train.Feature(bytes_list=tf.train.BytesList(value=values))
        if kind == "float":
            return tf.train.Feature(float_list=tf.train.FloatList(value=values))
        return tf.train.Feature(int64_list=tf.train.Int64List(value=values))

    with tf.io.TFRecordWriter(output) as writer:
        for filename, rows in groups.items():
            with open(os.path.join(images, filename), "rb") as handle:
                encoded = handle.read()
            width, height = Image.open(os.path.join(images, filename)).size
            if decode:
                tf.io.decode_image(encoded, channels=3, expand_animations=False)
            features = {
                "image/encoded": feature("bytes", [encoded]),
                "image/format": feature("bytes", [b"jpeg"]),
                "image/filename": feature("bytes", [filename.encode()]),
                "image/source_id": feature("bytes", [filename.encode()]),
                "image/key/sha256": feature(
                    "bytes", [hashlib.sha256(encoded).hexdigest().encode()]
                ),
                "image/height": feature("int", [height]),
                "image/width": feature("int", [width]),
                "image/object/bbox/xmin": feature(
                    "float", [float(r["xmin"]) / width for r in rows]
                ),
                "image/object/bbox/ymin": feature(
                    "float", [float(r["ymin"]) / height for r in rows]
                ),
                "image/object/bbox/xmax": feature(
                    "float", [float(r["xmax"]) / width for r in rows]
                ),
                "image/object/bbox/ymax": feature(
                    "float", [float(r["ymax"]) / height for r in rows]
                ),
                "image/object/class/text": feature("bytes", [r["class"].encode() for r in rows]),
                "image/object/class/label": feature("int", [classes[r["class"]] for r in rows]),
            }
            example = tf.train.Example(features=tf.train.Features(feature=features))
            writer.write(example.SerializeToString())


def measure(command: list[str]) -> tuple[float, float]:
    """Runs a command; returns (seconds, peak RSS in MB) of that process alone."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"failed: {' '.join(command)}\n{process.stderr.read().decode()[-2000:]}")
    return seconds, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 10000])
    parser.add_argument("--workdir", help="where datasets and outputs go (default: a temp dir)")
    parser.add_argument(
        "--baseline", nargs=3, metavar=("LABELS", "IMAGES", "OUTPUT"), help=argparse.SUPPRESS
    )
    parser.add_argument("--decode", action="store_true", help=argparse.SUPPRESS)
    args, beam_flags = parser.parse_known_args()
    if args.baseline:
        baseline(*args.baseline, decode=args.decode)
        return
    if not os.path.isdir(RACCOON):
        sys.exit("needs ../shared/data/raccoon beside the project")
    odrecords = os.path.join(os.path.dirname(sys.executable), "odrecords")
    workdir = args.workdir or tempfile.mkdtemp(prefix="odrecords-bench-")
    print(f"{'images':>7} {'tool':<32} {'seconds':>8} {'images/s':>9} {'peak RSS MB':>12}")
    peaks: dict[int, float] = {}
    for size in args.sizes:
        root = os.path.join(workdir, str(size))
        shutil.rmtree(root, ignore_errors=True)
        labels, images = make_dataset(root, size)
        runs = [
            (
                "odrecords create " + " ".join(beam_flags),
                [
                    odrecords,
                    "create",
                    "--format",
                    "csv",
                    "--annotations",
                    labels,
                    "--images",
                    images,
                    "--output",
                    os.path.join(root, "out"),
                    *beam_flags,
                ],
            ),
            *(
                (
                    name,
                    [
                        sys.executable,
                        __file__,
                        "--baseline",
                        labels,
                        images,
                        os.path.join(root, "baseline.tfrecord"),
                        *flags,
                    ],
                )
                for name, flags in (
                    ("single-process TFRecordWriter", []),
                    ("same loop + tf.io.decode_image", ["--decode"]),
                )
            ),
        ]
        times = []
        for name, command in runs:
            seconds, rss = measure(command)
            times.append(seconds)
            if name.startswith("odrecords"):
                peaks[size] = rss
            print(
                f"{size:>7} {name:<32} {seconds:>8.1f} {size / seconds:>9.1f} {rss:>12.0f}",
                flush=True,
            )
        ours, plain, decoding = times
        print(
            f"{size:>7} odrecords: {plain / ours:.2f}x the plain loop (target 0.8x), "
            f"{decoding / ours:.2f}x the decoding loop (target 2.0x)",
            flush=True,
        )
        shutil.rmtree(root)
    if len(peaks) > 1:
        smallest, largest = min(peaks), max(peaks)
        print(
            f"odrecords peak RSS, {largest} against {smallest} images: "
            f"{peaks[largest] / peaks[smallest]:.2f}x (target at most 1.2x)"
        )
    if not args.workdir:
        shutil.rmtree(workdir)


if __name__ == "__main__":
    main()
