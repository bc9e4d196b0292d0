"""Writing TFRecord shards per split, with stable membership, in flat memory.

Only annotations travel through shuffles. Each image's split and shard come from hashes of its
key (`splits.py`), the split's shard count from its size (`transforms.shard_count`); a
GroupByKey gathers the small annotation records of each shard, and one `WriteShard` call
reads, decodes, checks and encodes that shard's images in key order and streams them into the
shard file. Image bytes go from the source file straight into the shard
file on every runner: the in-process runner never holds the dataset in memory, a distributed
runner never shuffles image bytes, and the graph has the same few stages for 1 or 1,000 shards.
(One `WriteToTFRecord` per shard costs the in-process runner memory and time that grow faster
than the shard count: 5 GB and 69 s for 3 x 100 shards of 24 images. `WriteToTFRecord` with
`num_shards=N` shuffles the encoded images and assigns shards at random.)

A shard that gets no examples is not written: an empty file helps no reader, and Beam's S3
filesystem cannot write one. A shard is written to a temporary file (under `--temp_location`
when given, else `OUT/.parts/`) and renamed into place when complete, so a retried or failed
worker never leaves a partial shard behind.
"""

from __future__ import annotations

import hashlib
import logging
import os
import uuid
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import GlobalWindows
from apache_beam.utils.windowed_value import WindowedValue

from transforms import progress
from transforms.builds.index import (
    EXAMPLES,
    IndexRow,
    index_path,
)
from transforms.builds.layout import PARTS_DIR, join
from transforms.builds.outputs import delete_path
from transforms.builds.proof import proven_record, proven_shard
from transforms.builds.reuse import (
    JoinPrevious,
    Previous,
    PreviousShards,
    Reuse,
)
from transforms.builds.safe_write import (
    create_new,
    digest_of_file,
    make_folders,
    move_file,
    new_folder,
    root_of,
)
from transforms.choices import POOL_MIN_IMAGES, STAT
from transforms.convert import ImagePlan, convert, plan_images
from transforms.counts import add_counts
from transforms.duplicates import HASHES
from transforms.images.loader import ImageLoader
from transforms.paths import open_regular
from transforms.records import (
    ERRORS,
    ErrorRecord,
    Extras,
    ImageAnnotation,
    excerpt,
)
from transforms.report.facts import Location, example_facts
from transforms.report.stats import DatasetStats
from transforms.shard_count import ShardCounts
from transforms.shard_pool import ShardPool, ShardTask, usable_cores
from transforms.splits import assign_shard, assign_split

_LOG = logging.getLogger(__name__)
STATS = "stats"
# Tag of each shard's statistics for the dataset report (`transforms.report.stats`).
REPORT = "report"


def shard_path(split: str, shard: int, num_shards: int) -> str:
    """The shard's path relative to the output folder; a `<split>.tfrecord-*` glob finds it."""
    return f"{split}/{split}.tfrecord-{shard:05d}-of-{num_shards:05d}"


def parts_dir(output: str, temp_location: str | None, run_id: str) -> str:
    """Where temporary files go: a folder of the run's own under `--temp_location` when given
    (so a run's scratch space is where the operator wants it), else `.parts` in the output
    folder. The name follows from `run_id`, so a later run can remove what a killed one left
    (`transforms.builds.lock`)."""
    if temp_location:
        return FileSystems.join(temp_location, f"odrecords-{run_id}")
    return FileSystems.join(output, PARTS_DIR)


class PartFile:
    """A file of the build, written under a temporary name in `parts` and renamed into place
    when complete, so a retried or failed worker never leaves a partial file; hashed as
    written, since the manifest lists each file's size and sha256 for later runs to replace
    only what this run wrote. It is created on the first write: a file that gets nothing is
    never made (an empty file helps no reader, and Beam's S3 filesystem cannot write one).
    `root` is the output no file of the build leaves (see `transforms.builds.safe_write`)."""

    def __init__(self, root: str, parts: str, label: str):
        self._root = root
        self._parts = parts
        self._temporary = FileSystems.join(parts, f"{label}-{uuid.uuid4().hex}")
        self._reset()

    def _reset(self) -> None:
        self._handle = None
        self._digest = hashlib.sha256()
        self._copied: dict | None = None
        self.size = 0

    def __enter__(self) -> PartFile:
        return self

    def __exit__(self, *_) -> None:
        self._close()

    def _close(self) -> None:
        if self._handle is not None and self._handle is not _CLOSED:
            handle, self._handle = self._handle, _CLOSED
            handle.close()

    def write(self, data: bytes) -> None:
        if self._handle is None:
            self._handle = create_new(root_of(self._root, self._parts), self._temporary)
        self._handle.write(data)
        self._digest.update(data)
        self.size += len(data)

    def copy_from(self, source: str, expected: dict) -> bool:
        """Makes this (still empty) file a copy of `source` if `source` still is the size and
        sha256 `expected` lists; returns whether it did. On local disk the bytes are checked
        as they are copied; on GCS and S3 by reading them once, then the copy is made
        server-side, so the bytes are never uploaded."""
        wanted = {"size": expected["size"], "sha256": expected["sha256"]}
        try:
            if FileSystems.get_scheme(source) is None:
                with open_regular(source) as handle:
                    while chunk := handle.read(_CHUNK):
                        self.write(chunk)
                if {"size": self.size, "sha256": self._digest.hexdigest()} == wanted:
                    return True
            elif digest_of_file(source) == wanted:
                make_folders(root_of(self._root, self._parts), self._parts)
                FileSystems.copy([source], [self._temporary])
                self._handle, self._copied = _CLOSED, wanted
                return True
        except Exception as error:  # Each filesystem raises its own error types.
            _LOG.warning("cannot copy %s: %s", source, excerpt(str(error)))
        self._discard()
        return False

    def _discard(self) -> None:
        self._close()
        if FileSystems.exists(self._temporary):
            delete_path(self._temporary)
        self._reset()

    def publish(self, final: str) -> dict | None:
        """Closes the file and moves it to `final`, in the build's own folder; returns its
        {size, sha256}, or None when nothing was written (and nothing is moved)."""
        if self._handle is None:
            return None
        self._close()
        digest = self._copied or {"size": self.size, "sha256": self._digest.hexdigest()}
        move_file(self._root, self._temporary, final, new_folder, digest)
        _LOG.info("wrote %s", final)
        return digest


# The handle of a part file once closed.
_CLOSED = object()
_CHUNK = 1 << 20


@dataclass(frozen=True)
class ShardSettings:
    """Where shards go and what they hold: `output` folder, `parts` for temporary files,
    `splits` (names → fractions, or None for the source's own), shards per split (None: from
    each split's size, `transforms.shard_count`), the
    extras written per object, the run's name for progress lines (in-process runners
    only, whose workers share the console), the fingerprint of the settings that change
    examples (`transforms.builds.index`), what may be reused of the previous build, and
    whether examples are emitted to compare with it; `root`, the output that no file leaves
    (see `transforms.builds.safe_write`), is `output` when not given; `processes`, how many
    worker processes write shards (`transforms.shard_pool`; 1: this process; None: one per
    core when there are images enough to pay for starting them, `POOL_MIN_IMAGES`)."""

    output: str
    parts: str
    splits: dict[str, float] | None
    num_shards: int | None
    extras: Extras = Extras()
    progress_run: str | None = None
    fingerprint: str = ""
    reuse: Reuse | None = None
    compare: bool = False
    root: str = ""
    processes: int | None = 1

    @property
    def output_root(self) -> str:
        return self.root or self.output


@dataclass
class ShardWritten:
    """What writing one shard gives: its outputs in order (the shard and index files'
    (relative path, digest) and TaggedOutputs, see `WriteShard`) and the counters it adds
    to (Beam's metrics are counted by the step that emits them, which may be another
    process than the one that wrote)."""

    outputs: list = field(default_factory=list)
    counters: Counter = field(default_factory=Counter)


class ShardWriter:
    """Writes one shard and its index file: each image is converted (`transforms.convert`)
    or its previous record proven and copied (`transforms.builds.proof`); this class orders,
    writes, indexes and counts. Plain Python, so the shard writer step runs it in its own
    process or in worker processes (`transforms.shard_pool`). Call `start` once first."""

    def __init__(self, settings: ShardSettings, loader: ImageLoader, threads: bool = True):
        self._settings = settings
        self._loader = loader
        self._threaded = threads

    def start(self) -> None:
        """Sets up the loader and, unless `threads` is off, the threads that read and decode
        (which releases the GIL) a few images ahead; off, as in a worker process of its own
        core reading local files, images are converted one after the other."""
        self._loader.setup()
        self._threads = (os.cpu_count() or 1) if self._threaded else 0
        self._pool = ThreadPoolExecutor(self._threads) if self._threaded else None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()

    def _plan(
        self, items: list[tuple[ImageAnnotation, Previous | None]], label_map: dict[str, int]
    ) -> list[ImagePlan]:
        """Each image's plan (`plan_images`); files looked at in threads, but for local stats:
        a stat is a request on GCS and S3, and `content` reads the file."""
        reuse = self._settings.reuse
        local = FileSystems.get_scheme(self._loader.root) is None
        serial = self._pool is None or (local and reuse is not None and reuse.mode == STAT)
        return plan_images(
            items,
            label_map,
            self._settings.fingerprint,
            reuse,
            self._loader.root,
            map if serial else self._pool.map,
        )

    def _convert(
        self, plan: ImagePlan, label_map: dict[str, int]
    ) -> tuple[bytes, IndexRow] | ErrorRecord:
        return convert(self._loader, plan, label_map, self._settings.extras)

    def _prepared(
        self, plans: list[ImagePlan], label_map: dict[str, int]
    ) -> Iterator[tuple[ImagePlan, tuple[bytes, IndexRow] | ErrorRecord | None]]:
        """(plan, its record and row or the error record that rejects it; None for an image
        to reuse) in the images' order, with a bounded number converting ahead in threads, so
        memory holds a few images, not the shard."""
        if self._pool is None:
            for plan in plans:
                yield plan, None if plan.reused else self._convert(plan, label_map)
            return
        ahead: deque = deque()
        for plan in plans:
            future = None if plan.reused else self._pool.submit(self._convert, plan, label_map)
            ahead.append((plan, future))
            if len(ahead) > 2 * self._threads:
                plan, future = ahead.popleft()
                yield plan, future and future.result()
        for plan, future in ahead:
            yield plan, future and future.result()

    def _emitted(
        self, row: IndexRow, stats: dict, report: DatasetStats, relative: str, written: ShardWritten
    ) -> None:
        """What writing an example emits, from its index row: whether it was converted now or
        its row is replayed, the same errors, counts (added to the shard's `stats`), report
        statistics (added to the shard's `report`, `relative` being the shard's path) and
        hashes, and the example to compare builds with when there is a previous build."""
        report.add(
            example_facts(
                row.split, row.image, row.facts, Location(relative, row.offset, row.length)
            )
        )
        for error in row.errors:
            written.outputs.append(beam.pvalue.TaggedOutput(ERRORS, error))
        add_counts(stats, row.stats)
        written.outputs.append(beam.pvalue.TaggedOutput(HASHES, row.hashed()))
        if self._settings.compare:
            written.outputs.append(beam.pvalue.TaggedOutput(EXAMPLES, row.example()))
        written.counters["objects_written"] += row.stats["splits"][row.split]["objects"]
        written.counters["images"] += 1

    def write(
        self,
        split: str,
        shard: int,
        num_shards: int,
        items: Iterable[tuple[ImageAnnotation, Previous | None]],
        label_map: dict[str, int],
    ) -> ShardWritten:
        """The shard `shard` of the `num_shards` of `split`, with its images `items`
        (annotation, previous example or None), written and published into the build's
        folder."""
        items = sorted(items, key=lambda item: item[0].image)
        relative = shard_path(split, shard, num_shards)
        plans = self._plan(items, label_map)
        reuse = self._settings.reuse
        counts = Counter(reused=0, converted=0)
        written = ShardWritten()
        # The shard's manifest counts and report statistics, summed here: one element per
        # shard, not per image.
        stats: dict = {}
        report = DatasetStats()
        root = self._settings.output_root
        with (
            PartFile(root, self._settings.parts, f"{split}-{shard:05d}") as shard_file,
            PartFile(root, self._settings.parts, f"index-{split}-{shard:05d}") as index_file,
        ):
            proven = proven_shard(
                reuse, relative, plans, self._loader, label_map, self._settings.extras
            )
            copied = proven is not None and shard_file.copy_from(
                join(reuse.folder, relative), reuse.shards[relative]
            )
            if copied:
                written.counters["shards_copied"] += 1
                for row in proven:
                    index_file.write(row.line())
                    self._emitted(row, stats, report, relative, written)
                counts["reused"] = counts["examples"] = len(proven)
            else:
                files = (relative, shard_file, index_file)
                self._write(plans, label_map, files, counts, (stats, report), written)
            written.counters["images_reused"] += counts["reused"]
            written.counters["bytes_written"] += shard_file.size
            written.counters[f"examples_{split}"] += counts.pop("examples", 0)
            digest = shard_file.publish(self._path(relative))
            index_digest = index_file.publish(self._path(index_path(relative)))
        shards = {"copied" if copied else "written": 1} if digest is not None else {}
        add_counts(stats, {"reuse": {"images": dict(counts), "shards": shards}})
        written.outputs.append(beam.pvalue.TaggedOutput(STATS, stats))
        written.outputs.append(beam.pvalue.TaggedOutput(REPORT, report))
        if digest is not None:
            written.outputs.append((relative, digest))
            written.outputs.append((index_path(relative), index_digest))
        return written

    def _write(
        self,
        plans: list[ImagePlan],
        label_map: dict[str, int],
        files: tuple[str, PartFile, PartFile],
        counts: Counter,
        sums: tuple[dict, DatasetStats],
        written: ShardWritten,
    ) -> None:
        """Writes a shard record by record, and each record's index line. `files`: the
        shard's relative path, its file and its index file; `sums`: its manifest counts and
        report statistics."""
        relative, shard_file, index_file = files
        stats, report = sums
        for item in self._records(plans, label_map, counts, stats, written):
            record, row = item
            row = replace(row, offset=shard_file.size)
            shard_file.write(record)
            index_file.write(row.line())
            counts["examples"] += 1
            self._emitted(row, stats, report, relative, written)

    def _records(
        self,
        plans: list[ImagePlan],
        label_map: dict[str, int],
        counts: Counter,
        stats: dict,
        written: ShardWritten,
    ) -> Iterator[tuple[bytes, IndexRow]]:
        """Yields (framed record, its index row at offset 0) per example in the images'
        order; each unchanged image's record is copied from the previous shard when it proves
        itself (`proven_record`), every other image is converted. Counts the images `reused`
        and `converted`; the images rejected go to `written`'s outputs and `stats`."""
        reuse = self._settings.reuse
        previous = PreviousShards(reuse.folder) if reuse else None
        try:
            for plan, converted in self._prepared(plans, label_map):
                if plan.reused is not None:
                    reused = proven_record(
                        previous, plan, self._loader, label_map, self._settings.extras
                    )
                    if reused is not None:
                        counts["reused"] += 1
                        yield reused
                        continue
                    _LOG.warning(
                        "%s: its record in the previous %s is not its current example; "
                        "converted again",
                        plan.annotation.image,
                        plan.reused[0],
                    )
                    converted = self._convert(plan, label_map)
                counts["converted"] += 1
                if isinstance(converted, ErrorRecord):
                    written.outputs.append(beam.pvalue.TaggedOutput(ERRORS, converted))
                    add_counts(stats, {"splits": {plan.annotation.split: {"rejected": 1}}})
                    written.counters["images"] += 1
                    continue
                written.counters["images_read"] += 1
                yield converted
        finally:
            if previous is not None:
                previous.close()

    def _path(self, relative: str) -> str:
        return FileSystems.join(self._settings.output, *relative.split("/"))


class WriteShard(beam.DoFn):
    """((split, shard), [(annotation, previous example or None)]) → (the shard file's relative
    path, its size and sha256) and the same for its index file, if it got examples; plus
    error records (tag `errors`), the manifest counts of its examples and of what was reused
    (tag `stats`), the shard's statistics for the dataset report (tag `report`), each
    example's image hashes (tag `hashes`), from which duplicates are
    found without image bytes ever leaving this step, and, when `compare` is set, (image,
    (split, sha256, annotation)) of each example (tag `examples`), to compare builds with.

    Each shard is written by a `ShardWriter`: in this process, or, with `processes` > 1,
    by worker processes (`transforms.shard_pool`), a few shards at a time, their outputs
    emitted as each is done and the rest when the bundle ends."""

    def __init__(self, settings: ShardSettings, loader: ImageLoader):
        self._settings = settings
        self._loader = loader

    def setup(self) -> None:
        self._writer = ShardWriter(self._settings, self._loader)
        self._writer.start()
        self._processes: ShardPool | None = None
        self._pending: deque[ShardTask] = deque()
        self._cores = usable_cores()  # Once: it reads the container's CPU quota.

    def teardown(self) -> None:
        self._writer.close()
        if self._processes is not None:
            self._processes.close()

    def _workers(self, total: int) -> int:
        """How many processes write shards for a build of `total` images."""
        if self._settings.processes is not None:
            return self._settings.processes
        return self._cores if total >= POOL_MIN_IMAGES else 1

    def _pool(self, count: int) -> ShardPool:
        """The worker processes, started on first use."""
        if self._processes is None:
            self._processes = ShardPool(count, self._settings, self._loader)
        return self._processes

    def process(
        self,
        element: tuple[tuple[str, int], Iterable[tuple[ImageAnnotation, Previous | None]]],
        label_map: dict[str, int],
        total: int,
        shard_counts: dict[str, int],
    ) -> Iterator:
        (split, shard), items = element
        of = shard_counts[split]
        workers = self._workers(total)
        if workers <= 1:
            yield from self._emit(self._writer.write(split, shard, of, items, label_map), total)
            return
        self._total = total
        self._pending.append(self._pool(workers).submit(split, shard, of, list(items), label_map))
        while len(self._pending) > 2 * workers:
            yield from self._emit(self._result(self._pending.popleft()), total)

    def finish_bundle(self) -> Iterator:
        while self._pending:
            task = self._pending.popleft()
            for output in self._emit(self._result(task), self._total):
                if isinstance(output, beam.pvalue.TaggedOutput):
                    yield beam.pvalue.TaggedOutput(output.tag, _windowed(output.value))
                else:
                    yield _windowed(output)

    def _result(self, task: ShardTask) -> ShardWritten:
        """The shard's outputs; written here when its worker process died (a decoder that
        crashed on a file crashes here too, as it would without worker processes)."""
        try:
            return task.result()
        except BrokenProcessPool:
            if task.pool is self._processes:  # Not replaced yet by another shard's.
                self._processes.close(wait=False)
                self._processes = None
            return self._writer.write(
                task.split, task.shard, task.num_shards, task.items, task.label_map
            )

    def _emit(self, written: ShardWritten, total: int) -> Iterator:
        for name, count in written.counters.items():
            if name != "images":
                Metrics.counter("odrecords", name).inc(count)
        if self._settings.progress_run:
            progress.report(self._settings.progress_run, written.counters["images"], total)
        yield from written.outputs


def _windowed(value: object) -> WindowedValue:
    return GlobalWindows.windowed_value(value)


def placed(
    image: ImageAnnotation,
    splits: dict[str, float] | None,
    groups: dict[str, str] | None = None,
) -> ImageAnnotation:
    """The image in its split: from the hash, or the source's when `splits` is None.

    The hash is of the image's name, or, for an image in `groups` (`--duplicates
    same-split`: {image: key of its group of duplicates}), of its group's key, so that the
    whole group lands in one split."""
    if splits is None:
        return image
    split = assign_split((groups or {}).get(image.image, image.image), splits)
    return replace(image, split=split)


def shard_key(
    image: ImageAnnotation, shard_counts: dict[str, int]
) -> tuple[tuple[str, int], ImageAnnotation]:
    """((split, shard), image) of an image `placed` in its split, which has
    `shard_counts[split]` shards; the shard comes from the image's name."""
    return (image.split, assign_shard(image.image, shard_counts[image.split])), image


class WriteShardedTFRecords(beam.PTransform):
    """ImageAnnotations → TFRecord files per split (`transforms.shard_count`), each with its
    index file.

    Outputs (relative path, {"size", "sha256"}) of each shard and index file (main),
    `errors`, `stats`, `hashes` and `examples` (see `WriteShard`). The label map is a side
    input because, when derived from the data, it is known only once every annotation has
    been read; so are `groups`, the images placed by content (`shard_key`), when given.
    `previous`, the previous build's examples as (shard, IndexRow), is joined with the
    images once their shards are known, for the writer to reuse the unchanged ones
    (`transforms.builds.reuse`).
    """

    def __init__(
        self,
        settings: ShardSettings,
        loader: ImageLoader,
        label_map: beam.pvalue.AsSingleton,
        groups: beam.pvalue.AsSingleton | None = None,
        previous: beam.PCollection | None = None,
    ):
        super().__init__()
        self._settings = settings
        self._label_map = label_map
        self._groups = () if groups is None else (groups,)
        self._previous = previous
        self._writer = WriteShard(settings, loader)

    def expand(self, images: beam.PCollection) -> beam.pvalue.DoOutputsTuple:
        total = images | "CountImages" >> beam.combiners.Count.Globally()
        settings = self._settings
        in_splits = images | "AssignSplit" >> beam.Map(placed, settings.splits, *self._groups)
        shard_counts = beam.pvalue.AsDict(
            in_splits | "ShardCounts" >> ShardCounts(settings.num_shards)
        )
        keyed = in_splits | "AssignShard" >> beam.Map(shard_key, shard_counts)
        if self._previous is None:
            paired = keyed | "NoPrevious" >> beam.MapTuple(lambda key, image: (key, (image, None)))
        else:
            paired = keyed | "JoinPrevious" >> JoinPrevious(self._previous)
        return (
            paired
            | "GroupByShard" >> beam.GroupByKey()
            | "WriteShard"
            >> beam.ParDo(
                self._writer, self._label_map, beam.pvalue.AsSingleton(total), shard_counts
            ).with_outputs(ERRORS, STATS, HASHES, EXAMPLES, REPORT, main="files")
        )
