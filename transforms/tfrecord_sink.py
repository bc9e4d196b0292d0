"""Writing exactly N TFRecord shards per split, with stable membership, in flat memory.

Only annotations travel through shuffles. Each image's split and shard come from hashes of its
key (`splits.py`); a CoGroupByKey against the list of every (split, shard) gathers the small
annotation records of each shard, so even a shard without examples gets its group. One
`WriteShard` call then reads, decodes, checks and encodes that shard's images in key order and
streams them into the shard file. Image bytes go from the source file straight into the shard
file on every runner: the in-process runner never holds the dataset in memory, a distributed
runner never shuffles image bytes, and the graph has the same few stages for 1 or 1,000 shards.
(One `WriteToTFRecord` per shard costs the in-process runner memory and time that grow faster
than the shard count: 5 GB and 69 s for 3 x 100 shards of 24 images. `WriteToTFRecord` with
`num_shards=N` shuffles the encoded images and assigns shards at random.)

A shard is written to a temporary file under `OUT/.parts/` and renamed into place when
complete, so a retried or failed worker never leaves a partial shard behind.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import replace

import apache_beam as beam
import google_crc32c
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from transforms.boxes import check_boxes
from transforms.encode import build_example, example_counts
from transforms.images import ImageLoader, ImageRejected
from transforms.records import ERRORS, STAGE_IMAGE, ErrorRecord, ImageAnnotation
from transforms.splits import assign_shard, assign_split

PARTS_DIR = ".parts"
STATS = "stats"


def shard_path(split: str, shard: int, num_shards: int) -> str:
    """The shard's path relative to the output folder; a `<split>.tfrecord-*` glob finds it."""
    return f"{split}/{split}.tfrecord-{shard:05d}-of-{num_shards:05d}"


def _masked_crc(data: bytes) -> bytes:
    crc = google_crc32c.value(data)
    return struct.pack("<I", (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF)


def tfrecord(data: bytes) -> bytes:
    """One record in TFRecord framing: length, masked CRC32C of the length, data, its CRC."""
    length = struct.pack("<Q", len(data))
    return length + _masked_crc(length) + data + _masked_crc(data)


def ensure_dir(path: str) -> None:
    """Creates a folder if missing; object stores have no folders and need nothing."""
    if not FileSystems.exists(path):
        try:
            FileSystems.mkdirs(path)
        except OSError:
            if not FileSystems.exists(path):  # Another worker may have made it meanwhile.
                raise


class WriteShard(beam.DoFn):
    """((split, shard), {"images": annotations}) → the shard file's relative path, plus error
    records (tag `errors`) and the manifest counts of each example (tag `stats`)."""

    def __init__(
        self,
        output: str,
        num_shards: int,
        loader: ImageLoader,
        include_masks: bool,
        include_keypoints: bool,
    ):
        self._output = output
        self._num_shards = num_shards
        self._loader = loader
        self._include_masks = include_masks
        self._include_keypoints = include_keypoints
        self._examples = Metrics.counter("odrecords", "examples_written")
        self._bytes = Metrics.counter("odrecords", "bytes_written")
        self._image_errors = Metrics.counter("odrecords", "errors_image")
        self._box_errors = Metrics.counter("odrecords", "errors_box")

    def setup(self) -> None:
        import tensorflow as tf

        self._tf = tf
        self._loader.setup()

    def _records(self, images: list[ImageAnnotation], label_map: dict[str, int]) -> Iterator:
        """Yields serialized examples, and TaggedOutputs for errors and counts."""
        for annotation in images:
            try:
                image = self._loader.load(annotation)
            except ImageRejected as error:
                self._image_errors.inc()
                source = ";".join(annotation.sources)
                yield beam.pvalue.TaggedOutput(
                    ERRORS,
                    ErrorRecord(
                        source, annotation.image, STAGE_IMAGE, str(error), len(annotation.boxes)
                    ),
                )
                continue
            example, box_errors = check_boxes(image, label_map)
            for box_error in box_errors:
                self._box_errors.inc()
                yield beam.pvalue.TaggedOutput(ERRORS, box_error)
            yield build_example(
                example, self._tf, self._include_masks, self._include_keypoints
            ).SerializeToString()
            yield beam.pvalue.TaggedOutput(STATS, example_counts(example, annotation.split))

    def process(
        self,
        element: tuple[tuple[str, int], dict[str, Iterable[ImageAnnotation]]],
        label_map: dict[str, int],
    ) -> Iterator:
        (split, shard), grouped = element
        images = sorted(grouped["images"], key=lambda image: image.image)
        relative = shard_path(split, shard, self._num_shards)
        final = FileSystems.join(self._output, *relative.split("/"))
        parts = FileSystems.join(self._output, PARTS_DIR)
        temporary = FileSystems.join(parts, f"{split}-{shard:05d}-{uuid.uuid4().hex}")
        ensure_dir(parts)
        with FileSystems.create(temporary) as handle:
            for item in self._records(images, label_map):
                if isinstance(item, bytes):
                    record = tfrecord(item)
                    handle.write(record)
                    self._examples.inc()
                    self._bytes.inc(len(record))
                else:
                    yield item
        ensure_dir(FileSystems.split(final)[0])
        FileSystems.rename([temporary], [final])
        yield relative


class WriteShardedTFRecords(beam.PTransform):
    """ImageAnnotations → `num_shards` TFRecord files per split.

    Outputs the shard files' relative paths (main), `errors` and `stats`. `splits` maps names
    to fractions, or is None to keep each image's source split (`--splits source`). The label
    map is a side input because, when derived from the data, it is known only once every
    annotation has been read.
    """

    def __init__(
        self,
        output: str,
        split_names: list[str],
        splits: dict[str, float] | None,
        num_shards: int,
        loader: ImageLoader,
        label_map: beam.pvalue.AsSingleton,
        include_masks: bool = False,
        include_keypoints: bool = False,
    ):
        super().__init__()
        self._label_map = label_map
        self._output = output
        self._split_names = split_names
        self._splits = splits
        self._num_shards = num_shards
        self._loader = loader
        self._include_masks = include_masks
        self._include_keypoints = include_keypoints

    def _key(self, image: ImageAnnotation) -> tuple[tuple[str, int], ImageAnnotation]:
        split = image.split if self._splits is None else assign_split(image.image, self._splits)
        return (split, assign_shard(image.image, self._num_shards)), replace(image, split=split)

    def expand(self, images: beam.PCollection) -> beam.pvalue.DoOutputsTuple:
        every_shard = images.pipeline | "EveryShard" >> beam.Create(
            [((s, n), None) for s in self._split_names for n in range(self._num_shards)]
        )
        return (
            {"images": images | "AssignShard" >> beam.Map(self._key), "shard": every_shard}
            | "GroupByShard" >> beam.CoGroupByKey()
            | "WriteShard"
            >> beam.ParDo(
                WriteShard(
                    self._output,
                    self._num_shards,
                    self._loader,
                    self._include_masks,
                    self._include_keypoints,
                ),
                self._label_map,
            ).with_outputs(ERRORS, STATS, main="files")
        )
