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
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from transforms import progress
from transforms.boxes import check_boxes
from transforms.builds import PARTS_DIR
from transforms.duplicates import HASHES, HashedImage, hash_image
from transforms.encode import EncodeError, build_example, example_counts
from transforms.images import ImageLoader, ImageRejected
from transforms.orientation import orientation_counts
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
from transforms.tfrecord import frame

_LOG = logging.getLogger(__name__)
STATS = "stats"


def shard_path(split: str, shard: int, num_shards: int) -> str:
    """The shard's path relative to the output folder; a `<split>.tfrecord-*` glob finds it."""
    return f"{split}/{split}.tfrecord-{shard:05d}-of-{num_shards:05d}"


def parts_dir(output: str, temp_location: str | None) -> str:
    """Where temporary files go: a new folder under `--temp_location` when given (so a run's
    scratch space is where the operator wants it), else `.parts` in the build folder."""
    if temp_location:
        return FileSystems.join(temp_location, f"odrecords-{uuid.uuid4().hex}")
    return FileSystems.join(output, PARTS_DIR)


def ensure_dir(path: str) -> None:
    """Creates a folder if missing; object stores have no folders and need nothing."""
    if not FileSystems.exists(path):
        try:
            FileSystems.mkdirs(path)
        except OSError:
            if not FileSystems.exists(path):  # Another worker may have made it meanwhile.
                raise


class PartFile:
    """A file of the build, written under a temporary name in `parts` and renamed into place
    when complete, so a retried or failed worker never leaves a partial file; hashed as
    written, since the manifest lists each file's size and sha256 for later runs to replace
    only what this run wrote. It is created on the first write: a file that gets nothing is
    never made (an empty file helps no reader, and Beam's S3 filesystem cannot write one)."""

    def __init__(self, parts: str, label: str):
        self._parts = parts
        self._temporary = FileSystems.join(parts, f"{label}-{uuid.uuid4().hex}")
        self._handle = None
        self._open = False
        self._digest = hashlib.sha256()
        self.size = 0

    def __enter__(self) -> PartFile:
        return self

    def __exit__(self, *_) -> None:
        self._close()

    def _close(self) -> None:
        if self._open:
            self._open = False
            self._handle.close()

    def write(self, data: bytes) -> None:
        if self._handle is None:
            ensure_dir(self._parts)
            self._handle = FileSystems.create(self._temporary)
            self._open = True
        self._handle.write(data)
        self._digest.update(data)
        self.size += len(data)

    def publish(self, final: str) -> dict | None:
        """Closes the file and moves it to `final`; returns its {size, sha256}, or None when
        nothing was written (and nothing is moved)."""
        if self._handle is None:
            return None
        self._close()
        ensure_dir(FileSystems.split(final)[0])
        FileSystems.rename([self._temporary], [final])
        _LOG.info("wrote %s", final)
        return {"size": self.size, "sha256": self._digest.hexdigest()}


@dataclass(frozen=True)
class ShardSettings:
    """Where shards go and what they hold: `output` folder, `parts` for temporary files,
    `splits` (names → fractions, or None for the source's own), shards per split, the
    extras written per object, and the run's name for progress lines (in-process runners
    only, whose workers share the console)."""

    output: str
    parts: str
    splits: dict[str, float] | None
    num_shards: int
    extras: Extras = Extras()
    progress_run: str | None = None


class WriteShard(beam.DoFn):
    """((split, shard), annotations) → (the shard file's relative path, its size and sha256)
    if it got examples, plus error records (tag `errors`), the manifest counts of each example
    (tag `stats`) and each example's image hashes (tag `hashes`), from which duplicates are
    found without image bytes ever leaving this step."""

    def __init__(self, settings: ShardSettings, loader: ImageLoader):
        self._settings = settings
        self._loader = loader
        self._images = Metrics.counter("odrecords", "images_read")
        self._objects = Metrics.counter("odrecords", "objects_written")
        self._bytes = Metrics.counter("odrecords", "bytes_written")

    def setup(self) -> None:
        import tensorflow as tf

        self._tf = tf
        self._loader.setup()
        # Reading and decoding (which releases the GIL) run a few images ahead in threads.
        self._threads = os.cpu_count() or 1
        self._pool = ThreadPoolExecutor(self._threads)

    def teardown(self) -> None:
        self._pool.shutdown()

    def _load(self, annotation: ImageAnnotation) -> tuple[LoadedImage, HashedImage] | Exception:
        """The loaded image and its hashes, or whatever stopped it, returned rather than
        raised: it runs in a thread, and its failure is the image's, handled with the image's
        other failures. The hashes are computed here, in parallel, from the bytes written."""
        try:
            image = self._loader.load(annotation)
            return image, hash_image(annotation.image, annotation.split, image.encoded)
        except Exception as error:
            return error

    def _loaded(self, images: list[ImageAnnotation]) -> Iterator[tuple]:
        """(annotation, (LoadedImage, HashedImage) or Exception) in the images' order, with a
        bounded number loading ahead, so memory holds a few images, not the shard."""
        ahead: deque = deque()
        for annotation in images:
            ahead.append((annotation, self._pool.submit(self._load, annotation)))
            if len(ahead) > 2 * self._threads:
                annotation, future = ahead.popleft()
                yield annotation, future.result()
        for annotation, future in ahead:
            yield annotation, future.result()

    def _example(
        self, annotation: ImageAnnotation, image: LoadedImage, label_map: dict
    ) -> tuple[bytes, ExampleInput, dict, list[ErrorRecord]]:
        """The serialized example of one loaded image, the checked input it was built from, its
        manifest counts and its rejected boxes."""
        example, box_errors = check_boxes(image, label_map)
        # Deterministic serialization orders the feature map by key; otherwise the order
        # depends on the process, and shards written by different workers would differ.
        serialized = build_example(example, self._tf, self._settings.extras).SerializeToString(
            deterministic=True
        )
        counts = example_counts(example, annotation.split)
        if image.orientation is not None:
            counts |= orientation_counts(annotation.image, image.orientation)
        return serialized, example, counts, box_errors

    def _records(
        self, images: list[ImageAnnotation], label_map: dict[str, int], total: int
    ) -> Iterator:
        """Yields serialized examples, and TaggedOutputs for errors and counts.

        Each image is one error boundary: anything that goes wrong while loading, checking or
        encoding it (a damaged file, a value the example cannot hold, a failure no check
        foresaw) rejects that image with all its boxes and the shard goes on. Nothing of an
        image is emitted before all of it succeeded, so its boxes are never counted twice
        and the shard never holds half an example."""
        for annotation, loaded in self._loaded(images):
            if self._settings.progress_run:
                progress.report(self._settings.progress_run, 1, total)
            try:
                if isinstance(loaded, Exception):
                    raise loaded
                image, hashed = loaded
                serialized, example, counts, box_errors = self._example(
                    annotation, image, label_map
                )
            except Exception as error:
                yield beam.pvalue.TaggedOutput(
                    ERRORS, ErrorRecord.for_image(annotation, _image_reason(error))
                )
                yield beam.pvalue.TaggedOutput(
                    STATS, {"splits": {annotation.split: {"rejected": 1}}}
                )
                continue
            self._images.inc()
            for box_error in box_errors:
                yield beam.pvalue.TaggedOutput(ERRORS, box_error)
            self._objects.inc(len(example.objects))
            yield serialized
            yield beam.pvalue.TaggedOutput(STATS, counts)
            yield beam.pvalue.TaggedOutput(HASHES, hashed)

    def process(
        self,
        element: tuple[tuple[str, int], Iterable[ImageAnnotation]],
        label_map: dict[str, int],
        total: int,
    ) -> Iterator:
        (split, shard), images = element
        images = sorted(images, key=lambda image: image.image)
        relative = shard_path(split, shard, self._settings.num_shards)
        with PartFile(self._settings.parts, f"{split}-{shard:05d}") as shard_file:
            for item in self._records(images, label_map, total):
                if not isinstance(item, bytes):
                    yield item
                    continue
                record = frame(item)
                shard_file.write(record)
                Metrics.counter("odrecords", f"examples_{split}").inc()
                self._bytes.inc(len(record))
            digest = shard_file.publish(self._path(relative))
        if digest is not None:
            yield relative, digest

    def _path(self, relative: str) -> str:
        return FileSystems.join(self._settings.output, *relative.split("/"))


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
    """ImageAnnotations → `num_shards` TFRecord files per split.

    Outputs (relative path, {"size", "sha256"}) of each shard file (main), `errors`, `stats`
    and `hashes`. The label map is a side input because, when derived from the data, it is
    known only once every annotation has been read; so are `groups`, the images placed by
    content (`shard_key`), when given.
    """

    def __init__(
        self,
        settings: ShardSettings,
        loader: ImageLoader,
        label_map: beam.pvalue.AsSingleton,
        groups: beam.pvalue.AsSingleton | None = None,
    ):
        super().__init__()
        self._settings = settings
        self._label_map = label_map
        self._groups = () if groups is None else (groups,)
        self._writer = WriteShard(settings, loader)

    def expand(self, images: beam.PCollection) -> beam.pvalue.DoOutputsTuple:
        total = images | "CountImages" >> beam.combiners.Count.Globally()
        settings = self._settings
        return (
            images
            | "AssignShard"
            >> beam.Map(shard_key, settings.splits, settings.num_shards, *self._groups)
            | "GroupByShard" >> beam.GroupByKey()
            | "WriteShard"
            >> beam.ParDo(
                self._writer, self._label_map, beam.pvalue.AsSingleton(total)
            ).with_outputs(ERRORS, STATS, HASHES, main="files")
        )
