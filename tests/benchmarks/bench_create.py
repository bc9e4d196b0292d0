"""Benchmark: `odrecords create` against single-process TFRecordWriter loops.

Builds datasets of the Raccoon images repeated (hard links, so no disk is spent) to each
requested size, then runs, each in its own process tree so its figures are its own:
- `odrecords create` on the local runner (CSV input, 10 shards),
- the loop the TF Models scripts use: read each image, build the tf.train.Example, write it
  with one `tf.io.TFRecordWriter` (verifies nothing), and
- the same loop decoding every image with `tf.io.decode_image`: the single-process
  equivalent of what odrecords guarantees (every image decodes at the size recorded).
Prints for each its wall time, images/s, CPU-seconds of the process tree, cores busy (CPU per
wall second) and peak RSS (the largest process, and summed over the tree: Beam's
multi-process mode has workers), then odrecords against the decoding loop's targets and its
memory growth from the smallest to the largest size. `--cores N` runs everything on N cores
(taskset); `--only odrecords` skips the loops; `--model` also runs odrecords on 1 and on 2
cores at the largest size and fits Amdahl's law to them to model more cores. Usage:

    python tests/benchmarks/bench_create.py [--sizes 2000 10000] [--workdir DIR]
        [--cores N] [--only odrecords] [--model] [BEAM FLAGS]
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import os
import shutil
import sys
import tempfile

from process_tree import Usage, measure

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


def odrecords_command(labels: str, images: str, output: str, beam_flags: list[str]) -> list[str]:
    """`odrecords create` of the CSV dataset into `output`, which must not exist yet (else
    it would be a rebuild)."""
    shutil.rmtree(output, ignore_errors=True)
    odrecords = os.path.join(os.path.dirname(sys.executable), "odrecords")
    return [
        odrecords, "create", "--format", "csv", "--annotations", labels, "--images", images,
        "--output", output, *beam_flags,
    ]  # fmt: skip


def loop_command(labels: str, images: str, output: str, decode: bool) -> list[str]:
    """This script, running one of the single-process loops."""
    return [
        sys.executable, __file__, "--baseline", labels, images, output,
        *(["--decode"] if decode else []),
    ]  # fmt: skip


def show(size: int, name: str, run: Usage) -> None:
    """One line of the table."""
    print(
        f"{size:>7} {name:<34} {run.seconds:>7.1f} {size / run.seconds:>9.1f} {run.cpu:>7.1f} "
        f"{run.cores:>6.2f} {run.rss_mb:>7.0f} {run.tree_rss_mb:>8.0f}",
        flush=True,
    )


def against_loops(size: int, ours: Usage, plain: Usage | None, decoding: Usage | None) -> None:
    """odrecords' figures against its targets, which are set by the decoding loop: the
    single-process way to guarantee what odrecords guarantees."""
    if decoding:
        print(
            f"{size:>7} CPU: odrecords {ours.cpu:.1f} s = {ours.cpu / decoding.cpu:.2f}x "
            "the decoding loop (target <= 0.6x)"
        )
    print(f"{size:>7} cores busy: {ours.cores:.2f} (target >= 1.7)")
    if decoding:
        print(
            f"{size:>7} wall: {decoding.seconds / ours.seconds:.2f}x faster than the decoding "
            "loop (target >= 2x)"
        )
    if plain:
        print(
            f"{size:>7} wall: {plain.seconds / ours.seconds:.2f}x the speed of the loop that "
            "checks nothing"
        )


def amdahl(size: int, one: Usage, two: Usage) -> None:
    """Fits wall(n) = S + P/n to the runs on 1 and 2 cores (S: the serial seconds, P: the
    CPU-seconds that spread over cores) and prints what it predicts for more cores. Two
    points fit it exactly, so it holds only as far as the work keeps its shape: it ignores
    that more workers cost more to start and to feed."""
    parallel = 2 * (one.seconds - two.seconds)
    serial = one.seconds - parallel
    print(
        f"Amdahl's law from odrecords at {size} images on 1 core ({one.seconds:.1f} s) and "
        f"2 cores ({two.seconds:.1f} s): wall(n) = S + P/n with S = {serial:.1f} s serial, "
        f"P = {parallel:.1f} s parallel"
    )
    if serial <= 0 or parallel <= 0:
        print("  (2 cores were not between 1x and 2x as fast as 1: the law does not fit)")
        return
    for cores in (8, 16, 64):
        seconds = serial + parallel / cores
        print(f"  {cores:>2} cores: {seconds:>6.1f} s, {size / seconds:>7.0f} images/s (modelled)")
    print(f"  at most {size / serial:.0f} images/s however many cores (modelled)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 10000])
    parser.add_argument("--workdir", help="where datasets and outputs go (default: a temp dir)")
    parser.add_argument("--cores", type=int, help="run every command on this many cores")
    parser.add_argument("--only", choices=["odrecords"], help="run only odrecords, no loops")
    parser.add_argument(
        "--model", action="store_true", help="fit Amdahl's law to 1 and 2 cores, largest size"
    )
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
    workdir = args.workdir or tempfile.mkdtemp(prefix="odrecords-bench-")
    ours_name = "odrecords create"
    if beam_flags:
        print(f"odrecords create runs with {' '.join(beam_flags)}")
    if args.cores:
        print(f"every run on {args.cores} core(s): taskset -c 0-{args.cores - 1}")
    print("RSS MB: the largest process's peak; tree MB: the peak of the tree's summed RSS")
    print(
        f"{'images':>7} {'run':<34} {'wall s':>7} {'images/s':>9} {'CPU s':>7} {'cores':>6} "
        f"{'RSS MB':>7} {'tree MB':>8}"
    )
    peaks: dict[int, Usage] = {}
    for size in args.sizes:
        root = os.path.join(workdir, str(size))
        shutil.rmtree(root, ignore_errors=True)
        labels, images = make_dataset(root, size)
        out = os.path.join(root, "out")
        ours = measure(odrecords_command(labels, images, out, beam_flags), args.cores)
        peaks[size] = ours
        show(size, ours_name, ours)
        loops: list[Usage | None] = [None, None]
        if args.only != "odrecords":
            for number, (name, decode) in enumerate(
                (("single-process TFRecordWriter", False), ("same loop + tf.io.decode_image", True))
            ):
                command = loop_command(labels, images, os.path.join(root, "loop.tfrecord"), decode)
                loops[number] = measure(command, args.cores)
                show(size, name, loops[number])
        against_loops(size, ours, *loops)
        if args.model and size == max(args.sizes):
            runs = {}
            for cores in (1, 2):
                if args.cores == cores:
                    runs[cores] = ours
                    continue
                command = odrecords_command(labels, images, f"{out}-{cores}", beam_flags)
                runs[cores] = measure(command, cores)
                show(size, f"{ours_name}, {cores} core{'s' * (cores > 1)}"[:34], runs[cores])
            amdahl(size, runs[1], runs[2])
        shutil.rmtree(root)
    if len(peaks) > 1:
        smallest, largest = peaks[min(peaks)], peaks[max(peaks)]
        print(
            f"odrecords peak memory, {max(peaks)} against {min(peaks)} images: "
            f"{largest.tree_rss_mb / smallest.tree_rss_mb:.2f}x summed over its processes "
            f"({largest.tree_rss_mb:.0f} MB), {largest.rss_mb / smallest.rss_mb:.2f}x its largest "
            f"process ({largest.rss_mb:.0f} MB) (target <= 1.2x)"
        )
    if not args.workdir:
        shutil.rmtree(workdir)


if __name__ == "__main__":
    main()
