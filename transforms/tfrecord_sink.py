"""Writing N TFRecord shards per split, with stable membership, in flat memory.

Only annotations travel through shuffles. Each image's split and shard come from hashes of its
key (`splits.py`); a GroupByKey gathers the small annotation records of each shard, and one
`WriteShard` call reads, decodes, checks and encodes that shard's images in key order and
streams them into the shard file. Image bytes go from the source file straight into the shard
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
from dataclasses import dataclass, replace

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from transforms import progress
from transforms.boxes import check_boxes
from transforms.builds.index import (
    EXAMPLES,
    FileIdentity,
    IndexRow,
    annotation_fingerprint,
    example_fingerprint,
    index_path,
    sources_fingerprint,
    used_labels,
)
from transforms.builds.layout import PARTS_DIR, join
from transforms.builds.outputs import delete_path
from transforms.builds.reuse import (
    JoinPrevious,
    Previous,
    PreviousShards,
    Reuse,
    covers_whole,
    file_sha256,
    file_stat,
    identity,
    recorded_image,
    reusable,
    unchanged,
)
from transforms.builds.safe_write import (
    create_new,
    digest_of_file,
    make_folders,
    move_file,
    new_folder,
    root_of,
)
from transforms.choices import STAT
from transforms.counts import add_counts
from transforms.duplicates import HASHES, HashedImage, perceptual_hash
from transforms.encode import EncodeError, build_example, example_counts
from transforms.images.loader import ImageLoader, ImageRejected
from transforms.images.orientation import orientation_counts
from transforms.images.verify import declared_size
from transforms.paths import open_regular
from transforms.records import (
    ERRORS,
    ErrorRecord,
    ExampleInput,
    Extras,
    ImageAnnotation,
    LoadedImage,
    excerpt,
)
from transforms.splits import assign_shard, assign_split
from transforms.tfrecord import frame, payload

_LOG = logging.getLogger(__name__)
STATS = "stats"


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
    `splits` (names → fractions, or None for the source's own), shards per split, the
    extras written per object, the run's name for progress lines (in-process runners
    only, whose workers share the console), the fingerprint of the settings that change
    examples (`transforms.builds.index`), what may be reused of the previous build, and
    whether examples are emitted to compare with it; `root`, the output that no file leaves
    (see `transforms.builds.safe_write`), is `output` when not given."""

    output: str
    parts: str
    splits: dict[str, float] | None
    num_shards: int
    extras: Extras = Extras()
    progress_run: str | None = None
    fingerprint: str = ""
    reuse: Reuse | None = None
    compare: bool = False
    root: str = ""

    @property
    def output_root(self) -> str:
        return self.root or self.output


@dataclass(frozen=True)
class _Plan:
    """One image of a shard: its annotation, its fingerprints, and the previous example to
    copy (with this build's identities of its files), if it is unchanged."""

    annotation: ImageAnnotation
    fingerprint: str
    annotation_fingerprint: str
    sources: str
    reused: Previous | None


@dataclass(frozen=True)
class _Converted:
    """A loaded image, its hashes and the identities of its files, taken before reading."""

    image: LoadedImage
    hashed: HashedImage
    files: tuple[FileIdentity | None, ...]


class WriteShard(beam.DoFn):
    """((split, shard), [(annotation, previous example or None)]) → (the shard file's relative
    path, its size and sha256) and the same for its index file, if it got examples; plus
    error records (tag `errors`), the manifest counts of its examples and of what was reused
    (tag `stats`), each example's image hashes (tag `hashes`), from which duplicates are
    found without image bytes ever leaving this step, and, when `compare` is set, (image,
    (split, sha256, annotation)) of each example (tag `examples`), to compare builds with."""

    def __init__(self, settings: ShardSettings, loader: ImageLoader):
        self._settings = settings
        self._loader = loader
        self._images = Metrics.counter("odrecords", "images_read")
        self._reused = Metrics.counter("odrecords", "images_reused")
        self._copied = Metrics.counter("odrecords", "shards_copied")
        self._objects = Metrics.counter("odrecords", "objects_written")
        self._bytes = Metrics.counter("odrecords", "bytes_written")

    def setup(self) -> None:
        self._loader.setup()
        # Reading and decoding (which releases the GIL) run a few images ahead in threads.
        self._threads = os.cpu_count() or 1
        self._pool = ThreadPoolExecutor(self._threads)

    def teardown(self) -> None:
        self._pool.shutdown()

    def _paths(self, annotation: ImageAnnotation) -> list[str]:
        """The files an image's bytes may come from: the one its key names, and the
        annotation file that embeds it. Only their identities are taken from these paths;
        the loader reads images under its own rules (no link out of the images root)."""
        key = FileSystems.join(self._loader.root, *annotation.image.split("/"))
        return [key] + ([annotation.embedded_in] if annotation.embedded_in else [])

    def _convert(self, annotation: ImageAnnotation) -> _Converted | Exception:
        """The loaded image, its hashes and its files' identities, or whatever stopped it,
        returned rather than raised: it runs in a thread, and its failure is the image's,
        handled with the image's other failures. Files are looked at before they are read,
        so a file changed meanwhile never passes for the one converted. The hashes are
        computed here, in parallel, from the bytes written."""
        try:
            paths = self._paths(annotation)
            at = [file_stat(path) for path in paths]
            try:
                stored = self._loader.read_stored(annotation.image)
            except ImageRejected:
                stored = None
            image = self._loader.load(annotation, stored)
            if stored is None:
                key_sha = None
            elif image.encoded is stored:  # The file's bytes are written as they are.
                key_sha = image.sha256
            else:
                key_sha = hashlib.sha256(stored).hexdigest()
            shas = [key_sha, *[file_sha256(path) for path in paths[1:]]]
            files = tuple(identity(*pair) for pair in zip(at, shas, strict=True))
            hashed = HashedImage(
                annotation.image,
                annotation.split,
                image.sha256,
                perceptual_hash(image.encoded, preview=image.preview),
            )
            return _Converted(image, hashed, files)
        except Exception as error:
            return error

    def _plan(
        self, items: list[tuple[ImageAnnotation, Previous | None]], label_map: dict[str, int]
    ) -> list[_Plan]:
        """Each image's fingerprints, and its previous example when unchanged (files looked
        at in threads, but for local stats: a stat is a request on GCS and S3, and `content`
        reads the file)."""
        plans = []
        for annotation, previous in items:
            try:
                annotation_print = annotation_fingerprint(annotation)
                fingerprint = example_fingerprint(
                    self._settings.fingerprint,
                    annotation_print,
                    used_labels(annotation, label_map),
                )
                sources = sources_fingerprint(annotation)
            except Exception:  # Values no check vetted: the image is converted, never reused.
                annotation_print = fingerprint = sources = ""
            if self._settings.reuse is None:
                previous = None
            plans.append(
                _Plan(
                    annotation,
                    fingerprint,
                    annotation_print,
                    sources,
                    reusable(previous, fingerprint),
                )
            )
        if self._settings.reuse is None:
            return plans
        mode = self._settings.reuse.mode

        def checked(plan: _Plan) -> _Plan:
            if plan.reused is None:
                return plan
            shard, row = plan.reused
            row = unchanged(mode, self._paths(plan.annotation), row)
            return replace(plan, reused=None if row is None else (shard, row))

        local = FileSystems.get_scheme(self._loader.root) is None
        if local and mode == STAT:  # A local stat costs less than handing it to a thread.
            return [checked(plan) for plan in plans]
        return list(self._pool.map(checked, plans))

    def _prepared(
        self, plans: list[_Plan]
    ) -> Iterator[tuple[_Plan, _Converted | Exception | None]]:
        """(plan, the converted image or what stopped it; None for an image to reuse) in the
        images' order, with a bounded number converting ahead, so memory holds a few
        images, not the shard."""
        ahead: deque = deque()
        for plan in plans:
            future = None if plan.reused else self._pool.submit(self._convert, plan.annotation)
            ahead.append((plan, future))
            if len(ahead) > 2 * self._threads:
                plan, future = ahead.popleft()
                yield plan, future and future.result()
        for plan, future in ahead:
            yield plan, future and future.result()

    def _example(
        self, annotation: ImageAnnotation, image: LoadedImage, label_map: dict
    ) -> tuple[bytes, ExampleInput, dict, list[ErrorRecord]]:
        """The serialized example of one loaded image, the checked input it was built from, its
        manifest counts and its rejected boxes."""
        example, box_errors = check_boxes(image, label_map)
        # Deterministic serialization orders the feature map by key; otherwise the order
        # depends on the process, and shards written by different workers would differ.
        serialized = build_example(example, self._settings.extras).SerializeToString(
            deterministic=True
        )
        counts = example_counts(example, annotation.split)
        if image.orientation is not None:
            counts |= orientation_counts(annotation.image, image.orientation)
        return serialized, example, counts, box_errors

    def _converted_row(
        self, plan: _Plan, converted: _Converted | Exception, label_map: dict[str, int]
    ) -> tuple[bytes, IndexRow] | ErrorRecord:
        """The framed record of a converted image and its index row (offset 0), or the error
        record that rejects the image.

        Each image is one error boundary: anything that goes wrong while loading, checking or
        encoding it (a damaged file, a value the example cannot hold, a failure no check
        foresaw) rejects that image with all its boxes and the shard goes on. Nothing of an
        image is emitted before all of it succeeded, so its boxes are never counted twice
        and the shard never holds half an example."""
        annotation = plan.annotation
        try:
            if isinstance(converted, Exception):
                raise converted
            serialized, _, counts, box_errors = self._example(
                annotation, converted.image, label_map
            )
            record = frame(serialized)
            row = IndexRow(
                image=annotation.image,
                split=annotation.split,
                offset=0,
                length=len(record),
                fingerprint=plan.fingerprint,
                annotation=plan.annotation_fingerprint,
                sources=plan.sources,
                files=converted.files,
                sha256=converted.hashed.sha256,
                phash=converted.hashed.phash,
                stats=counts,
                errors=tuple(box_errors),
            )
            # A later build replays the row as it reads back; it must read back as it is.
            if IndexRow.from_line(row.line()) != row:
                raise ValueError("its index row does not read back as written")
        except Exception as error:
            return ErrorRecord.for_image(annotation, _image_reason(error))
        return record, row

    def _proven(
        self, previous: PreviousShards, plan: _Plan, label_map: dict[str, int]
    ) -> tuple[bytes, IndexRow] | None:
        """The previous record of an unchanged image and the index row this build writes for
        it (at the previous offset), when the record's own bytes prove it is the image's
        current example: the record's image is the image file's current bytes, kept as
        stored (so its verdict, size and orientation are what converting it would give; its
        size is the one its header declares), and the example built from it with the
        current annotation, label map and settings is the record. Images written otherwise
        (converted, turned) are converted again. The row's sources, box errors
        and counts are made from the current input, as converting the image would make
        them; None when nothing is proven (the record is missing, damaged, another image's,
        stale or not what the row says)."""
        shard, row = plan.reused
        annotation = plan.annotation
        record = previous.record(shard, row.offset, row.length)
        if record is None:
            return None
        try:
            stored = self._loader.read(annotation)
            image = recorded_image(annotation, record, self._loader.max_pixels)
            if image.encoded != stored or declared_size(stored) != (image.width, image.height):
                return None  # Not the current file's own bytes, at the size its header says.
            image = replace(
                image,
                orientation=self._loader.kept_orientation(
                    annotation, stored, image.format, (image.width, image.height)
                ),
            )
            serialized, _, counts, box_errors = self._example(annotation, image, label_map)
        except Exception:  # Whatever the record holds, it proves nothing.
            return None
        if serialized != payload(record) or image.sha256 != row.sha256:
            return None
        return record, replace(
            row,
            files=_identities(row.files, annotation, image.sha256),
            image=annotation.image,
            split=annotation.split,
            length=len(record),
            fingerprint=plan.fingerprint,
            annotation=plan.annotation_fingerprint,
            sources=plan.sources,
            stats=counts,
            errors=tuple(box_errors),
        )

    def _proven_shard(
        self, relative: str, plans: list[_Plan], label_map: dict[str, int]
    ) -> list[IndexRow] | None:
        """The index rows of a shard to copy whole: its images' examples are, in order, all of
        the same-named previous shard's records (`covers_whole`), each proven (`_proven`).
        None when the shard cannot be copied whole."""
        reuse = self._settings.reuse
        listed = reuse and reuse.shards.get(relative)
        if not covers_whole(relative, [plan.reused for plan in plans], listed):
            return None
        previous = PreviousShards(reuse.folder)
        try:
            rows = []
            for plan in plans:
                reused = self._proven(previous, plan, label_map)
                if reused is None:
                    return None
                rows.append(reused[1])
            return rows
        finally:
            previous.close()

    def _emitted(self, row: IndexRow, stats: dict) -> Iterator[beam.pvalue.TaggedOutput]:
        """What writing an example emits, from its index row: whether it was converted now or
        its row is replayed, the same errors, counts (added to the shard's `stats`) and
        hashes, and the example to compare builds with when there is a previous build."""
        for error in row.errors:
            yield beam.pvalue.TaggedOutput(ERRORS, error)
        add_counts(stats, row.stats)
        yield beam.pvalue.TaggedOutput(HASHES, row.hashed())
        if self._settings.compare:
            yield beam.pvalue.TaggedOutput(EXAMPLES, row.example())
        self._objects.inc(row.stats["splits"][row.split]["objects"])

    def process(
        self,
        element: tuple[tuple[str, int], Iterable[tuple[ImageAnnotation, Previous | None]]],
        label_map: dict[str, int],
        total: int,
    ) -> Iterator:
        (split, shard), items = element
        items = sorted(items, key=lambda item: item[0].image)
        relative = shard_path(split, shard, self._settings.num_shards)
        plans = self._plan(items, label_map)
        reuse = self._settings.reuse
        counts = Counter(reused=0, converted=0)
        # The shard's manifest counts, summed here: one element per shard, not per image.
        stats: dict = {}
        root = self._settings.output_root
        with (
            PartFile(root, self._settings.parts, f"{split}-{shard:05d}") as shard_file,
            PartFile(root, self._settings.parts, f"index-{split}-{shard:05d}") as index_file,
        ):
            proven = self._proven_shard(relative, plans, label_map)
            copied = proven is not None and shard_file.copy_from(
                join(reuse.folder, relative), reuse.shards[relative]
            )
            if copied:
                self._copied.inc()
                for row in proven:
                    self._report(total)
                    index_file.write(row.line())
                    yield from self._emitted(row, stats)
                counts["reused"] = counts["examples"] = len(proven)
            else:
                yield from self._write(
                    plans, label_map, total, shard_file, index_file, counts, stats
                )
            self._reused.inc(counts["reused"])
            self._bytes.inc(shard_file.size)
            Metrics.counter("odrecords", f"examples_{split}").inc(counts.pop("examples", 0))
            digest = shard_file.publish(self._path(relative))
            index_digest = index_file.publish(self._path(index_path(relative)))
        shards = {"copied" if copied else "written": 1} if digest is not None else {}
        add_counts(stats, {"reuse": {"images": dict(counts), "shards": shards}})
        yield beam.pvalue.TaggedOutput(STATS, stats)
        if digest is not None:
            yield relative, digest
            yield index_path(relative), index_digest

    def _write(
        self,
        plans: list[_Plan],
        label_map: dict[str, int],
        total: int,
        shard_file: PartFile,
        index_file: PartFile,
        counts: Counter,
        stats: dict,
    ) -> Iterator:
        """Writes a shard record by record, and each record's index line."""
        for item in self._records(plans, label_map, total, counts, stats):
            if not isinstance(item, tuple):
                yield item
                continue
            record, row = item
            row = replace(row, offset=shard_file.size)
            shard_file.write(record)
            index_file.write(row.line())
            counts["examples"] += 1
            yield from self._emitted(row, stats)

    def _records(
        self,
        plans: list[_Plan],
        label_map: dict[str, int],
        total: int,
        counts: Counter,
        stats: dict,
    ) -> Iterator:
        """Yields (framed record, its index row at offset 0) per example in the images'
        order, and TaggedOutputs for the images rejected: each unchanged image's record is
        copied from the previous shard when it proves itself (`_proven`), every other image
        is converted. Counts the images `reused` and `converted`, and adds the rejected ones to
        `stats`."""
        previous = PreviousShards(self._settings.reuse.folder) if self._settings.reuse else None
        try:
            for plan, converted in self._prepared(plans):
                self._report(total)
                if plan.reused is not None:
                    reused = self._proven(previous, plan, label_map)
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
                    converted = self._convert(plan.annotation)
                counts["converted"] += 1
                written = self._converted_row(plan, converted, label_map)
                if isinstance(written, ErrorRecord):
                    yield beam.pvalue.TaggedOutput(ERRORS, written)
                    add_counts(stats, {"splits": {plan.annotation.split: {"rejected": 1}}})
                    continue
                self._images.inc()
                yield written
        finally:
            if previous is not None:
                previous.close()

    def _report(self, total: int) -> None:
        if self._settings.progress_run:
            progress.report(self._settings.progress_run, 1, total)

    def _path(self, relative: str) -> str:
        return FileSystems.join(self._settings.output, *relative.split("/"))


def _identities(
    files: tuple[FileIdentity | None, ...], annotation: ImageAnnotation, sha256: str
) -> tuple[FileIdentity | None, ...]:
    """A reused image's file identities with the sha256 its files hold now (under `stat` the
    row's own were taken on trust): `sha256` of the bytes read for it, from the file its key
    names or, when that is missing, the annotation file that embeds it (hashed whole)."""
    first, *rest = files
    if first is not None:
        return (replace(first, sha256=sha256), *rest)
    if annotation.embedded_in is not None and rest and rest[0] is not None:
        return (first, replace(rest[0], sha256=file_sha256(annotation.embedded_in)), *rest[1:])
    return files


def _image_reason(error: Exception) -> str:
    """The reason an image was rejected: the message of the checks that name the problem,
    or the kind of failure and a short excerpt of its message."""
    if isinstance(error, ImageRejected | EncodeError):
        return str(error)
    return f"cannot convert the image: {type(error).__name__}: {excerpt(str(error))}"


def shard_key(
    image: ImageAnnotation,
    splits: dict[str, float] | None,
    num_shards: int,
    groups: dict[str, str] | None = None,
) -> tuple[tuple[str, int], ImageAnnotation]:
    """((split, shard), image): the split from the hash, or the source's when `splits` is None.

    The hash is of the image's name, or, for an image in `groups` (`--duplicates
    same-split`: {image: key of its group of duplicates}), of its group's key, so that the
    whole group lands in one split. The shard always comes from the name."""
    if splits is None:
        split = image.split
    else:
        split = assign_split((groups or {}).get(image.image, image.image), splits)
    return (split, assign_shard(image.image, num_shards)), replace(image, split=split)


class WriteShardedTFRecords(beam.PTransform):
    """ImageAnnotations → `num_shards` TFRecord files per split, each with its index file.

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
        keyed = images | "AssignShard" >> beam.Map(
            shard_key, settings.splits, settings.num_shards, *self._groups
        )
        if self._previous is None:
            paired = keyed | "NoPrevious" >> beam.MapTuple(lambda key, image: (key, (image, None)))
        else:
            paired = keyed | "JoinPrevious" >> JoinPrevious(self._previous)
        return (
            paired
            | "GroupByShard" >> beam.GroupByKey()
            | "WriteShard"
            >> beam.ParDo(
                self._writer, self._label_map, beam.pvalue.AsSingleton(total)
            ).with_outputs(ERRORS, STATS, HASHES, EXAMPLES, main="files")
        )
