"""Benchmark: a scheduled rebuild after a small change, with and without reuse.

Builds a dataset of the Raccoon images repeated (`bench_create.make_dataset`, hard links),
converts it in full, then writes 1% of the images again as JPEGs of another quality (new
files, so the linked originals are untouched) and rebuilds it twice from copies of the first
output: with `--reuse stat` (the default) and with `--reuse off`; then once more with
nothing changed, which shows what a rebuild costs besides converting images. Each run is its own
`odrecords create` process, so its peak RSS is its own; the process also reports how long its
imports took and how long the pipeline ran. Prints seconds, peak RSS, the rebuild/full
ratio, and with `--profile` where the time of the last rebuild goes (it is profiled, so
slower).
Usage:

    python tests/benchmarks/bench_incremental.py [--size 10000] [--workdir DIR] [BEAM FLAGS]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from bench_create import RACCOON, make_dataset  # noqa: E402

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
    and peak RSS in MB."""
    command = [
        sys.executable,
        __file__,
        "--in-process",
        *(["--profile-to", profile] if profile else []),
        "--",
        *args,
    ]
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stderr = process.stderr.read().decode()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"failed: {' '.join(command)}\n{stderr[-2000:]}")
    imports, run = (float(x) for x in stderr.rsplit(_TIMES, 1)[1].split())
    return {"seconds": seconds, "imports": imports, "run": run, "rss": usage.ru_maxrss / 1024}


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--size", type=int, default=10000)
    parser.add_argument("--workdir", help="where the dataset and outputs go (default: a temp dir)")
    parser.add_argument("--profile", action="store_true", help="profile the reusing rebuild")
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
    root = os.path.join(workdir, str(args.size))
    shutil.rmtree(root, ignore_errors=True)
    labels, images = make_dataset(root, args.size)
    out = os.path.join(root, "out")
    common = ["--format", "csv", "--annotations", labels, "--images", images, *rest]
    print(f"{'run':<34} {'seconds':>8} {'imports':>8} {'pipeline':>9} {'peak RSS MB':>12}")

    def show(name: str, result: dict) -> None:
        print(
            f"{name:<34} {result['seconds']:>8.1f} {result['imports']:>8.1f} "
            f"{result['run']:>9.1f} {result['rss']:>12.0f}",
            flush=True,
        )

    full = measure([*common, "--output", out])
    show(f"full build, {args.size} images", full)
    shutil.copytree(out, out + "-off")
    changed = change_images(images, 100)
    profile = os.path.join(root, "rebuild.prof") if args.profile else None
    reused = measure([*common, "--output", out])
    show(f"rebuild, {changed} changed, reuse stat", reused)
    off = measure([*common, "--output", out + "-off", "--reuse", "off"])
    show(f"rebuild, {changed} changed, reuse off", off)
    show("rebuild, nothing changed, reuse stat", measure([*common, "--output", out], profile))
    print(
        f"rebuild with reuse / full build: {reused['seconds'] / full['seconds']:.0%} of the "
        f"process time, {reused['run'] / full['run']:.0%} of the pipeline time"
    )
    if profile:  # The profiled run is slower than the measured one: cProfile's own cost.
        stats = pstats.Stats(profile)
        print("odrecords' own steps in the profiled rebuild (cumulative):")
        stats.sort_stats("cumulative").print_stats(r"transforms/|pipelines/", 20)
        print("where the time is spent (own time):")
        stats.sort_stats("tottime").print_stats(20)
    if not args.workdir:
        shutil.rmtree(workdir)


if __name__ == "__main__":
    main()
