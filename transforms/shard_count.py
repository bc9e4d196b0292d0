"""How many shards a split is written in: from its size, unless `--num-shards` says.

TFDS aims at 64 MiB to 1 GiB per shard: files that large are read at full speed from any
storage, and few enough that a small split is not scattered over many files (35 images in
10 files of 3 or 4 each helps no reader). The size of a split is estimated from its image
count, known once its images are placed, so the count is a pure function of the data: the
same on every runner and every rerun. A build large enough for worker processes to write
its shards (`POOL_MIN_IMAGES`) gets shards enough to keep them busy, whatever size that
makes them: a shard is the unit of work of the shard writer."""

from __future__ import annotations

import math

import apache_beam as beam

from transforms.choices import (
    EXAMPLE_BYTES,
    PARALLEL_SHARD_IMAGES,
    PARALLEL_SHARDS,
    POOL_MIN_IMAGES,
    TARGET_SHARD_BYTES,
)


def shards_for(images: int) -> int:
    """The shards of a split of `images` images."""
    by_size = math.ceil(images * EXAMPLE_BYTES / TARGET_SHARD_BYTES)
    parallel = (
        min(PARALLEL_SHARDS, images // PARALLEL_SHARD_IMAGES) if images >= POOL_MIN_IMAGES else 1
    )
    return max(1, by_size, parallel)


class ShardCounts(beam.PTransform):
    """ImageAnnotations placed in their splits → (split, shard count) of each split that has
    images: `num_shards` when given, else `shards_for` its image count."""

    def __init__(self, num_shards: int | None):
        super().__init__()
        self._num_shards = num_shards

    def expand(self, images: beam.PCollection) -> beam.PCollection:
        num_shards = self._num_shards
        return (
            images
            | "KeyBySplit" >> beam.Map(lambda image: (image.split, 1))
            | "CountPerSplit" >> beam.CombinePerKey(sum)
            | "ShardsPerSplit"
            >> beam.MapTuple(lambda split, count: (split, num_shards or shards_for(count)))
        )
