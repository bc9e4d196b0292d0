"""Writing examples into exactly N shards per split, with stable membership, in flat memory.

Each example's shard comes from a hash of its image key (see `splits.py`). The examples are
partitioned by (split, shard), and every partition is written by its own `WriteToTFRecord`
into a part file under `OUT/.parts/`; a last step moves each part to its final name
`OUT/<split>/<split>.tfrecord-SSSSS-of-NNNNN` (or concatenates several parts of one shard,
which is valid because TFRecord framing is per record).

How the parts are written depends on the runner:
- On the local runner (`shuffle=False`) each partition's sink writes per bundle
  (`num_shards=0`). The sink is fused with image loading and encoding, so image bytes go
  straight from the source file into the shard file and never sit in a shuffle buffer, which
  the in-process runner would keep in memory for the whole dataset.
- On distributed runners (`shuffle=True`) each partition's sink uses `num_shards=1`: a
  GroupByKey on the runner's disk-backed shuffle sends one shard to one worker, which writes
  one file with one open writer, however many workers and bundles produced its examples.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.io.tfrecordio import WriteToTFRecord

PARTS_DIR = ".parts"
_COPY_CHUNK = 16 * 1024 * 1024


def shard_path(split: str, shard: int, num_shards: int) -> str:
    """The shard's path relative to the output folder; a `<split>.tfrecord-*` glob finds it."""
    return f"{split}/{split}.tfrecord-{shard:05d}-of-{num_shards:05d}"


def ensure_dir(path: str) -> None:
    """Creates a folder if missing; object stores have no folders and need nothing."""
    if not FileSystems.exists(path):
        try:
            FileSystems.mkdirs(path)
        except OSError:
            if not FileSystems.exists(path):  # Another worker may have made it meanwhile.
                raise


class _AssembleShard(beam.DoFn):
    """((split, shard), part paths) → the final shard file's path relative to the output."""

    def __init__(self, output: str, num_shards: int):
        self._output = output
        self._num_shards = num_shards

    def process(self, element: tuple[tuple[str, int], Iterable[str]]) -> Iterator[str]:
        (split, shard), parts = element
        parts = sorted(parts)
        relative = shard_path(split, shard, self._num_shards)
        final = FileSystems.join(self._output, *relative.split("/"))
        ensure_dir(FileSystems.split(final)[0])
        if len(parts) == 1:
            FileSystems.rename(parts, [final])
        else:
            with FileSystems.create(final) as target:
                for part in parts:
                    with FileSystems.open(part) as source:
                        while chunk := source.read(_COPY_CHUNK):
                            target.write(chunk)
            FileSystems.delete(parts)
        yield relative


class WriteShardedTFRecords(beam.PTransform):
    """EncodedExamples → `num_shards` TFRecord files per split; outputs their relative paths."""

    def __init__(self, output: str, splits: list[str], num_shards: int, shuffle: bool):
        super().__init__()
        self._output = output
        self._splits = splits
        self._num_shards = num_shards
        self._shuffle = shuffle

    def expand(self, examples: beam.PCollection) -> beam.PCollection:
        index = {split: position for position, split in enumerate(self._splits)}
        partitions = examples | "BySplitAndShard" >> beam.Partition(
            lambda example, _: index[example.split] * self._num_shards + example.shard,
            len(self._splits) * self._num_shards,
        )
        parts_dir = FileSystems.join(self._output, PARTS_DIR)
        written = []
        for number, partition in enumerate(partitions):
            split, shard = self._splits[number // self._num_shards], number % self._num_shards
            label = f"{split}-{shard:05d}"
            written.append(
                partition
                | f"Bytes[{label}]" >> beam.Map(lambda example: example.data)
                | f"Write[{label}]"
                >> WriteToTFRecord(
                    FileSystems.join(parts_dir, label),
                    num_shards=1 if self._shuffle else 0,
                    shard_name_template="-SSSSS-of-NNNNN",
                )
                | f"Key[{label}]" >> beam.Map(lambda path, key=(split, shard): (key, path))
            )
        return (
            written
            | "AllParts" >> beam.Flatten()
            | "PartsOfShard" >> beam.GroupByKey()
            | "Assemble" >> beam.ParDo(_AssembleShard(self._output, self._num_shards))
        )
