"""Grouping, box validation, split assignment and the sharded sink, each on its own."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import apache_beam as beam
import pytest
import tensorflow as tf
from apache_beam.testing.util import assert_that, equal_to
from conftest import local_pipeline

from transforms.boxes import BoxRejected, check_boxes, normalize_box
from transforms.counts import SumCounts
from transforms.grouping import GroupByImage
from transforms.records import Box, ImageAnnotation, LoadedImage, compact_sources
from transforms.splits import RequireSourceSplit, assign_shard, assign_split, parse_splits
from transforms.tfrecord_sink import ShardSettings, WriteShardedTFRecords


def box(xmin, ymin, xmax, ymax, label="cat", source="s"):
    return Box(label, xmin, ymin, xmax, ymax, source)


def test_group_by_image_merges_mentions_in_source_order():
    mentions = [
        ImageAnnotation("a.jpg", ("f.csv:10",), (box(5, 5, 6, 6, source="f.csv:10"),)),
        ImageAnnotation("b.jpg", ("f.csv:3",), ()),
        ImageAnnotation("a.jpg", ("f.csv:9",), (box(1, 1, 2, 2, source="f.csv:9"),), 100, 50),
    ]
    with local_pipeline() as pipeline:
        merged = pipeline | beam.Create(mentions) | GroupByImage()
        assert_that(
            merged,
            equal_to(
                [
                    ImageAnnotation(
                        "a.jpg",
                        ("f.csv:9", "f.csv:10"),
                        (box(1, 1, 2, 2, source="f.csv:9"), box(5, 5, 6, 6, source="f.csv:10")),
                        100,
                        50,
                    ),
                    ImageAnnotation("b.jpg", ("f.csv:3",), ()),
                ]
            ),
        )


def test_normalize_box_divides_by_the_measured_size_and_clips():
    assert normalize_box(box(10, 5, 50, 25), 100, 50) == ((0.1, 0.1, 0.5, 0.5), False)
    assert normalize_box(box(-10, 5, 150, 60), 100, 50) == ((0.0, 0.1, 1.0, 1.0), True)


@pytest.mark.parametrize(
    "corners, reason",
    [
        ((50, 5, 10, 25), "inverted"),
        ((10, 30, 50, 25), "inverted"),
        ((10, 5, 10, 25), "empty"),
        ((200, 5, 300, 25), "outside"),
        ((float("nan"), 5, 10, 25), "non-finite"),
    ],
)
def test_normalize_box_rejects_what_clipping_cannot_repair(corners, reason):
    with pytest.raises(BoxRejected, match=reason):
        normalize_box(box(*corners), 100, 50)


def test_check_boxes_keeps_the_good_boxes_of_an_image():
    annotation = ImageAnnotation(
        "a.jpg",
        ("a.xml",),
        (box(10, 5, 50, 25), box(50, 5, 10, 25, source="bad"), box(1, 1, 2, 2, "dog", "dog")),
    )
    image = LoadedImage(annotation, b"", "jpeg", 100, 50)
    example, errors = check_boxes(image, {"cat": 3})
    assert [(o.label_id, o.xmin, o.ymax) for o in example.objects] == [(3, 0.1, 0.5)]
    assert [(e.source, e.stage, e.objects) for e in errors] == [
        ("bad", "box", 1),
        ("dog", "box", 1),
    ]
    assert "not in the label map" in errors[1].reason


@pytest.mark.parametrize(
    "sources, compact",
    [
        ([f"a.csv:{n}" for n in (9, 2, 5, 3, 7, 8, 6, 5)], "a.csv:2,3,5-9"),
        (["x.xml"], "x.xml"),
        (
            ["b.csv:4", "x.xml", "a.csv:10", "c.json#image[3]", "a.csv:9"],
            "a.csv:9,10;b.csv:4;c.json#image[3];x.xml",
        ),  # fmt: skip
        (
            ["gs://bucket/rows.csv:12", "gs://bucket/rows.csv:11", "gs://bucket/rows.csv:13"],
            "gs://bucket/rows.csv:11-13",
        ),  # fmt: skip
    ],
)
def test_compact_sources_names_each_file_once(sources, compact):
    assert compact_sources(sources) == compact
    assert compact_sources(reversed(sources)) == compact


def test_an_image_in_no_source_split_is_one_error_naming_each_file_once():
    rows = tuple(f"a.csv:{n}" for n in range(2, 42))
    image = ImageAnnotation("x.jpg", rows, tuple(box(1, 1, 2, 2, source=r) for r in rows))
    (output,) = RequireSourceSplit().process(image)
    assert output.value.to_json() == {
        "source": "a.csv:2-41",
        "image": "x.jpg",
        "stage": "image",
        "reason": "the source puts the image in no split",
        "objects": 40,
    }


def test_parse_splits():
    assert parse_splits("train=0.8,valid=0.1,test=0.1") == {"train": 0.8, "valid": 0.1, "test": 0.1}
    for spec, message in [
        ("train=0.5", "sum to 0.5"),
        ("a=0.5,a=0.5", "twice"),
        ("a b=1", "NAME=FRACTION"),
        ("a=x", "non-numeric"),
        ("a=0,b=1", "(0, 1]"),
    ]:
        with pytest.raises(ValueError, match=re.escape(message)):
            parse_splits(spec)


def test_split_assignment_is_stable_balanced_and_survives_new_images():
    splits = {"train": 0.8, "test": 0.2}
    keys = [f"img-{n}.jpg" for n in range(5000)]
    first = {key: assign_split(key, splits) for key in keys[:4000]}
    again = {key: assign_split(key, splits) for key in keys}
    assert all(again[key] == split for key, split in first.items())
    share = sum(split == "train" for split in again.values()) / len(keys)
    assert 0.78 < share < 0.82
    shards = [assign_shard(key, 4) for key in keys]
    assert sorted(set(shards)) == [0, 1, 2, 3]
    assert min(shards.count(n) for n in range(4)) > 1150


def test_sink_writes_n_shards_with_stable_membership(tmp_path):
    from PIL import Image

    from transforms.images.loader import ImageLoader
    from transforms.tfrecord_sink import STATS

    images = tmp_path / "images"
    images.mkdir()
    annotations = []
    for n in range(12):
        Image.new("RGB", (20, 10), (n, n, n)).save(images / f"k{n}.png")
        boxes = (box(1, 1, 5, 5),) if n != 3 else (box(5, 1, 1, 5, source="bad"),)
        annotations.append(ImageAnnotation(f"k{n}.png", (f"a{n}",), boxes))
    annotations.append(ImageAnnotation("missing.png", ("m",), (box(1, 1, 2, 2),)))
    splits = {"train": 0.5, "test": 0.5}
    members = {
        (split, shard): sorted(
            a.image
            for a in annotations[:12]
            if assign_split(a.image, splits) == split and assign_shard(a.image, 3) == shard
        )
        for split in splits
        for shard in range(3)
    }
    with local_pipeline() as pipeline:
        labels = pipeline | "Labels" >> beam.Create([{"cat": 1}])
        written = (
            pipeline
            | beam.Create(annotations)
            | WriteShardedTFRecords(
                ShardSettings(
                    output=str(tmp_path / "out"),
                    parts=str(tmp_path / "parts"),
                    splits=splits,
                    num_shards=3,
                ),
                ImageLoader(str(images), 10_000, 10_000),
                beam.pvalue.AsSingleton(labels),
            )
        )
        shards = [f"{s}/{s}.tfrecord-0000{n}-of-00003" for (s, n), ids in members.items() if ids]
        assert_that(
            written.files | "Paths" >> beam.Map(lambda file: file[0]),
            equal_to(shards + [f"index/{shard}.jsonl" for shard in shards]),
            label="files",
        )
        assert_that(
            written.errors | beam.Map(lambda e: (e.source, e.stage)),
            equal_to([("bad", "box"), ("m", "image")]),
            label="errors",
        )
        assert_that(
            written[STATS]
            | "SumStats" >> beam.CombineGlobally(SumCounts())
            | beam.Map(
                lambda c: tuple(
                    sum(s.get(key, 0) for s in c["splits"].values())
                    for key in ("examples", "rejected")
                )
            ),
            equal_to([(12, 1)]),  # Each example written, and "m" rejected.
            label="stats",
        )
        missing = (assign_split("missing.png", splits), assign_shard("missing.png", 3))
        assert_that(  # One count per shard written, and one for a shard "m" would be alone in.
            written[STATS] | "StatsPerShard" >> beam.combiners.Count.Globally(),
            equal_to([len(shards) + (not members[missing])]),
            label="stats per shard",
        )
    for (split, shard), expected in members.items():
        path = tmp_path / "out" / split / f"{split}.tfrecord-0000{shard}-of-00003"
        if not expected:
            assert not path.exists()  # No empty shard files.
            continue
        ids = [
            tf.train.Example.FromString(record.numpy())
            .features.feature["image/filename"]
            .bytes_list.value[0]
            .decode()
            for record in tf.data.TFRecordDataset([str(path)])
        ]
        assert ids == expected  # In key order, so reruns write identical bytes.
    assert not list((tmp_path / "parts").iterdir())  # Every temporary file was renamed.


def _sink_output(tmp_path, name: str, loader, processes: int) -> tuple[dict, list, dict]:
    """(shard and index file bytes by path, error records, summed stats) of writing 40
    images (one with a bad box, one missing) into 2 splits x 3 shards."""
    from transforms.tfrecord_sink import STATS

    annotations = [
        ImageAnnotation(f"k{n}.png", (f"a{n}",), (box(1, 1, 5, 5 + n % 4),)) for n in range(40)
    ]
    annotations[3] = ImageAnnotation("k3.png", ("a3",), (box(5, 1, 1, 5, source="bad"),))
    annotations.append(ImageAnnotation("missing.png", ("m",), (box(1, 1, 2, 2),)))
    out = tmp_path / name
    with local_pipeline() as pipeline:
        labels = pipeline | "Labels" >> beam.Create([{"cat": 1}])
        written = (
            pipeline
            | beam.Create(annotations)
            | WriteShardedTFRecords(
                ShardSettings(
                    output=str(out),
                    parts=str(tmp_path / f"{name}-parts"),
                    splits={"train": 0.5, "test": 0.5},
                    num_shards=3,
                    processes=processes,
                ),
                loader,
                beam.pvalue.AsSingleton(labels),
            )
        )
        errors = written.errors | beam.Map(lambda e: (e.source, e.stage, e.reason))
        stats = written[STATS] | "SumStats" >> beam.CombineGlobally(SumCounts())
        errors | "Errors" >> beam.io.WriteToText(str(tmp_path / f"{name}-errors"))
        stats | "Stats" >> beam.io.WriteToText(str(tmp_path / f"{name}-stats"))
    files = {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    text = {
        kind: sorted(
            line
            for path in tmp_path.glob(f"{name}-{kind}*")
            for line in path.read_text().splitlines()
        )
        for kind in ("errors", "stats")
    }
    return files, text["errors"], text["stats"]


def test_worker_processes_write_the_same_shards_and_survive_a_dying_worker(tmp_path):
    """Shards written by worker processes are the bytes one process writes, with the same
    errors and counts; a worker that dies on an image (as a crashing decoder would) loses
    nothing: its shard is written again in the step's own process."""
    from crashing_loader import CrashingLoader
    from PIL import Image

    from transforms.images.loader import ImageLoader

    images = tmp_path / "images"
    images.mkdir()
    for n in range(40):
        Image.new("RGB", (20, 10), (n, 2 * n, 3 * n)).save(images / f"k{n}.png")
    one = _sink_output(tmp_path, "one", ImageLoader(str(images), 10_000, 10_000), 1)
    assert len(one[0]) == 12 and len(one[1]) == 2  # 6 shards and their index files.
    two = _sink_output(tmp_path, "two", ImageLoader(str(images), 10_000, 10_000), 2)
    assert two == one
    crashing = CrashingLoader(str(images), 10_000, 10_000, fatal="k7.png")
    assert _sink_output(tmp_path, "crash", crashing, 2) == one


# Starts shard worker processes on images in a folder, then: `killed`, dies (SIGKILL) while
# they write a slow shard, having printed their pids; `interrupted`, gets Ctrl-C (SIGINT to
# its process group) while they wait for work, and stops them. Arguments: MODE FOLDER.
WORKERS = """
import multiprocessing, os, signal, sys, time
from PIL import Image
from crashing_loader import SlowLoader
from transforms.records import Box, ImageAnnotation
from transforms.shard_pool import ShardPool
from transforms.tfrecord_sink import ShardSettings
mode, folder = sys.argv[1:]
os.makedirs(f"{folder}/images")
items = []
for n in range(20):
    Image.new("RGB", (8, 8)).save(f"{folder}/images/k{n}.png")
    box = Box("cat", 1, 1, 5, 5, "s")
    items.append((ImageAnnotation(f"k{n}.png", (f"a{n}",), (box,), split="train"), None))
settings = ShardSettings(f"{folder}/out", f"{folder}/parts", None, 1)
loader = SlowLoader(f"{folder}/images", 10_000, 10_000, delay=0.5 if mode == "killed" else 0)
pool = ShardPool(2, settings, loader)
task = pool.submit("train", 0, 1, items, {"cat": 1})
if mode == "killed":
    time.sleep(2)
    print(*[child.pid for child in multiprocessing.active_children()], flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
task.result()
try:
    os.killpg(0, signal.SIGINT)
    time.sleep(10)
except KeyboardInterrupt:
    pool.close()
    print("interrupted")
"""


def _run_workers(tmp_path, mode: str) -> tuple[int, str, str]:
    """Runs WORKERS in a session of its own, so that it and its processes alone get Ctrl-C;
    (exit code, stdout, stderr). Its output goes to files: a worker left behind would hold
    a pipe open."""
    tests = Path(__file__).resolve().parent
    path = os.pathsep.join([str(tests.parent), str(tests), os.environ.get("PYTHONPATH", "")])
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    with out.open("w") as stdout, err.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-c", WORKERS, mode, str(tmp_path)],
            env={**os.environ, "PYTHONPATH": path},
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
        )
        code = process.wait(timeout=120)
    return code, out.read_text(), err.read_text()


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"  # Not a zombie.
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="reads /proc")
def test_worker_processes_stop_when_the_process_that_started_them_dies(tmp_path):
    """A runner killed while its workers write (SIGKILL, an OOM kill, a scheduler's timeout)
    leaves no process behind, nor one that goes on writing into the build it abandoned."""
    code, stdout, stderr = _run_workers(tmp_path, "killed")
    assert code == -signal.SIGKILL, stderr
    pids = [int(pid) for pid in stdout.split()]
    assert pids
    deadline = time.monotonic() + 5  # The shard alone would take 10 s.
    try:
        while any(map(_running, pids)):
            assert time.monotonic() < deadline, f"left running: {pids}"
            time.sleep(0.1)
    finally:
        for pid in filter(_running, pids):
            os.kill(pid, signal.SIGKILL)
    assert not (tmp_path / "out").exists()


def test_worker_processes_leave_ctrl_c_to_the_runner(tmp_path):
    """Ctrl-C reaches the workers too (one process group); waiting for work, they neither
    die with a traceback each nor keep the runner from stopping them."""
    code, stdout, stderr = _run_workers(tmp_path, "interrupted")
    assert code == 0, stderr
    assert stdout.split() == ["interrupted"]
    assert "Traceback" not in stderr, stderr


def test_closing_the_worker_processes_stops_a_shard_they_are_writing(tmp_path):
    """Closing the workers (the step's teardown, after a failure or Ctrl-C) stops them at
    once, rather than after the shards they are writing: nothing of those is wanted then,
    and nothing is written once they are closed."""
    from crashing_loader import SlowLoader
    from PIL import Image

    from transforms.shard_pool import ShardPool

    (tmp_path / "images").mkdir()
    items = []
    for n in range(20):
        Image.new("RGB", (8, 8)).save(tmp_path / "images" / f"k{n}.png")
        annotation = ImageAnnotation(f"k{n}.png", (f"a{n}",), (box(1, 1, 5, 5),), split="train")
        items.append((annotation, None))
    settings = ShardSettings(str(tmp_path / "out"), str(tmp_path / "parts"), None, 1)
    pool = ShardPool(2, settings, SlowLoader(str(tmp_path / "images"), 10_000, 10_000, delay=0.3))
    task = pool.submit("train", 0, 1, items, {"cat": 1})
    time.sleep(2)  # The shard takes 6 s.
    started = time.monotonic()
    pool.close()
    assert time.monotonic() - started < 3
    assert task.future.done()
    time.sleep(1)
    assert not (tmp_path / "out").exists()


def test_progress_lines_report_done_total_and_rate(capsys):
    from transforms import progress

    progress.report("run-a", 5, 20, interval=0)
    progress.report("run-a", 5, 20, interval=0)
    progress.report("run-b", 1, 3, interval=3600)  # Another run, not due yet.
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(",")[0] for line in lines] == [
        "progress: 5/20 images",
        "progress: 10/20 images",
    ]


@pytest.mark.parametrize(
    "cpu_max, most", [("max 100000", None), ("150000 100000", 2), ("50000 100000", 1), ("", None)]
)
def test_worker_processes_fit_a_container_cpu_quota(tmp_path, cpu_max, most):
    import os

    from transforms.shard_pool import usable_cores

    quota = tmp_path / "cpu.max"
    quota.write_text(cpu_max)
    affinity = len(os.sched_getaffinity(0))
    assert usable_cores(str(quota)) == (affinity if most is None else min(affinity, most))
    assert usable_cores(str(tmp_path / "none")) == affinity
