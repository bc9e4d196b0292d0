"""Benchmark: a scheduled rebuild after a small change, with and without reuse, and what
a rebuild costs: fixed + per unchanged image + per changed image.

At each size, builds a dataset of the Raccoon images repeated (`bench_create.make_dataset`,
hard links), converts it in full, then writes 1% of the images again as JPEGs of another
quality (new files, so the linked originals are untouched) and rebuilds it twice from copies
of the first output: with `--reuse stat` (the default) and with `--reuse off`; then once more
with nothing changed. Each run is its own `odrecords create` process tree, so its figures are
its own; the process also reports how long its imports took and how long the pipeline ran.
Prints seconds, CPU-seconds, peak RSS and the rebuild/full ratio at each size; then fits the
rebuild's cost, time = F + U * unchanged + C * changed: F and U from the rebuilds with nothing
changed at the sizes given (two at least), C from the rebuild after the 1% change at the
largest, and models the rebuild/full ratio of a 1% change at 100,000 images (measured too if
100000 is one of the sizes). With `--profile`, one more rebuild with nothing changed at the
largest size is profiled (so slower, and kept out of the fit) to show where its time goes.
Usage:

    python tests/benchmarks/bench_incremental.py [--sizes 2000 10000] [--workdir DIR]
        [--profile] [BEAM FLAGS]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from bench_create import RACCOON, make_dataset  # noqa: E402
from process_tree import measure as measure_tree  # noqa: E402

_TIMES = "odrecords-bench-times:"


def in_process(args: list[str], profile: str | None) -> None:
    """Runs `odrecords create` in this process as the command does, printing how long the
    imports (Beam; TensorFlow only if an image needs it) and the rest took; with `profile`,
    the rest's profile is written there."""
    start = time.perf_counter()
    from pipelines import cli

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import pipelines.create  # noqa: F401

    imported = time.perf_counter()
    profiler = cProfile.Profile() if profile else None
    if profiler:
        profiler.enable()
    code = cli.main(["create", *args])
    if profiler:
        profiler.disable()
        profiler.dump_stats(profile)
    done = time.perf_counter()
    print(f"{_TIMES} {imported - start:.2f} {done - imported:.2f}", file=sys.stderr)
    sys.exit(code)


def measure(args: list[str], profile: str | None = None) -> dict:
    """Runs create in a process of its own; returns its seconds, import and pipeline seconds,
    CPU-seconds of its process tree, and peak RSS in MB (its largest process)."""
    command = [
        sys.executable,
        __file__,
        "--in-process",
        *(["--profile-to", profile] if profile else []),
        "--",
        *args,
    ]
    run = measure_tree(command)
    imports, pipeline = (float(x) for x in run.stderr.rsplit(_TIMES, 1)[1].split())
    return {
        "seconds": run.seconds,
        "imports": imports,
        "run": pipeline,
        "cpu": run.cpu,
        "rss": run.rss_mb,
    }


def change_images(images: str, every: int) -> int:
    """Writes every `every`-th image again as a JPEG of another quality, as a new file (the
    originals are hard links into the Raccoon dataset). Returns how many."""
    from PIL import Image

    names = sorted(os.listdir(images))[::every]
    for name in names:
        path = os.path.join(images, name)
        buffer = io.BytesIO()
        Image.open(path).convert("RGB").save(buffer, "JPEG", quality=80)
        temporary = path + ".new"
        with open(temporary, "wb") as handle:
            handle.write(buffer.getvalue())
        os.replace(temporary, path)
    return len(names)


def fit_line(points: dict[int, float]) -> tuple[float, float]:
    """Least squares of time = fixed + per_image * images; returns (fixed, per_image)."""
    count = len(points)
    mean_x = sum(points) / count
    mean_y = sum(points.values()) / count
    slope = sum((x - mean_x) * (y - mean_y) for x, y in points.items()) / sum(
        (x - mean_x) ** 2 for x in points
    )
    return mean_y - slope * mean_x, slope


def cost_model(
    full: dict[int, float], unchanged: dict[int, float], changed: dict[int, tuple[int, float]]
) -> None:
    """Fits the rebuild's cost and the full build's, and models a 1% change at 100,000 images
    (and shows the measured one, if that is one of the sizes). Times are the whole process's:
    what a scheduled rebuild costs."""
    size, count = 100_000, 1000
    if size in changed:
        rebuild = changed[size][1]
        print(
            f"measured at {size} images, {changed[size][0]} changed: rebuild {rebuild:.0f} s, "
            f"full build {full[size]:.0f} s: the rebuild is {rebuild / full[size]:.0%} of the "
            "full build (target <= 20%)"
        )
    if len(unchanged) < 2:
        print("the cost model needs two sizes at least (--sizes)")
        return
    fixed, per_unchanged = fit_line(unchanged)
    largest = max(changed)
    measured, seconds = changed[largest]
    per_changed = (seconds - fixed - per_unchanged * (largest - measured)) / measured
    full_fixed, full_per_image = fit_line(full)
    print(
        f"rebuild cost = F + U * unchanged images + C * changed images: F = {fixed:.1f} s "
        f"fixed, U = {per_unchanged * 1e3:.3f} ms per unchanged image, "
        f"C = {per_changed * 1e3:.3f} ms per changed image"
    )
    print(
        f"  (F and U from the rebuilds with nothing changed at {', '.join(map(str, unchanged))}"
        f" images, C from the rebuild with {measured} of {largest} changed)"
    )
    print(
        f"full build = {full_fixed:.1f} s + {full_per_image * 1e3:.3f} ms per image "
        f"(at {', '.join(map(str, full))} images)"
    )
    rebuild = fixed + per_unchanged * (size - count) + per_changed * count
    whole = full_fixed + full_per_image * size
    print(
        f"modelled at {size} images, {count} changed: rebuild {rebuild:.0f} s, full build "
        f"{whole:.0f} s: the rebuild is {rebuild / whole:.0%} of the full build (target <= 20%)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 10000])
    parser.add_argument("--workdir", help="where the dataset and outputs go (default: a temp dir)")
    parser.add_argument(
        "--profile", action="store_true", help="profile one more rebuild, nothing changed"
    )
    parser.add_argument("--in-process", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--profile-to", help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args()
    rest = [arg for arg in rest if arg != "--"]
    if args.in_process:
        in_process(rest, args.profile_to)
        return
    if not os.path.isdir(RACCOON):
        sys.exit("needs ../shared/data/raccoon beside the project")
    workdir = args.workdir or tempfile.mkdtemp(prefix="odrecords-bench-")
    print(
        f"{'run':<44} {'seconds':>8} {'imports':>8} {'pipeline':>9} {'CPU s':>7} "
        f"{'peak RSS MB':>12}"
    )

    def show(name: str, result: dict) -> None:
        print(
            f"{name:<44} {result['seconds']:>8.1f} {result['imports']:>8.1f} "
            f"{result['run']:>9.1f} {result['cpu']:>7.1f} {result['rss']:>12.0f}",
            flush=True,
        )

    full_seconds: dict[int, float] = {}
    unchanged_seconds: dict[int, float] = {}
    changed_seconds: dict[int, tuple[int, float]] = {}
    for size in sorted(set(args.sizes)):
        root = os.path.join(workdir, str(size))
        shutil.rmtree(root, ignore_errors=True)
        labels, images = make_dataset(root, size)
        out = os.path.join(root, "out")
        common = ["--format", "csv", "--annotations", labels, "--images", images, *rest]
        full = measure([*common, "--output", out])
        show(f"full build, {size} images", full)
        shutil.copytree(out, out + "-off")
        changed = change_images(images, 100)
        reused = measure([*common, "--output", out])
        show(f"rebuild, {changed} of {size} changed, reuse stat", reused)
        off = measure([*common, "--output", out + "-off", "--reuse", "off"])
        show(f"rebuild, {changed} of {size} changed, reuse off", off)
        unchanged = measure([*common, "--output", out])
        show(f"rebuild, none of {size} changed, reuse stat", unchanged)
        print(
            f"rebuild with reuse / full build at {size} images: "
            f"{reused['seconds'] / full['seconds']:.0%} of the process time, "
            f"{reused['run'] / full['run']:.0%} of the pipeline time",
            flush=True,
        )
        full_seconds[size] = full["seconds"]
        unchanged_seconds[size] = unchanged["seconds"]
        changed_seconds[size] = (changed, reused["seconds"])
        if args.profile and size == max(args.sizes):
            # Kept out of the fit: the profiled run is slower, by cProfile's own cost.
            profile = os.path.join(root, "rebuild.prof")
            show(
                f"rebuild, none of {size} changed, profiled",
                measure([*common, "--output", out], profile),
            )
            stats = pstats.Stats(profile)
            print("odrecords' own steps in the profiled rebuild (cumulative):")
            stats.sort_stats("cumulative").print_stats(r"transforms/|pipelines/", 20)
            print("where the time is spent (own time):")
            stats.sort_stats("tottime").print_stats(20)
        shutil.rmtree(root)
    cost_model(full_seconds, unchanged_seconds, changed_seconds)
    if not args.workdir:
        shutil.rmtree(workdir)


if __name__ == "__main__":
    main()
