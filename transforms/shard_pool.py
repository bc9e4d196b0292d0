"""Worker processes that write shards, for the shard writer on a local runner.

Beam's in-process runner runs every step in one Python process, and converting an image
(`transforms.convert`) holds Python's GIL for over half of its time
(`tests/benchmarks/bench_steps.py`), so threads alone keep little more than one core busy.
Here whole shards are written by worker processes, a few at a time: each writes its shard
and index files itself, so image bytes never travel between processes, and sends back only
what the step emits (file digests, error records, counts, hashes). Each shard's files are
the same bytes whichever process writes them: a shard is a pure function of its images, the
label map and the settings.

The workers start from a fork server that has imported the writing code once (`spawn`
where there is none), never by forking the runner's process and its threads, so they get
what the runner's process holds only from it: the pipeline's options, with which Beam's
filesystems reach object stores (an S3 endpoint and credentials, say). They live no longer
than the pool: closed, or its process gone (killed, out of memory), they stop at once; Ctrl-C
is the runner's to handle, which then closes the pool.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import os
import signal
import threading
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import forkserver
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING

from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from transforms.builds.reuse import Previous
from transforms.images.loader import ImageLoader
from transforms.records import ImageAnnotation

if TYPE_CHECKING:
    from transforms.tfrecord_sink import ShardSettings, ShardWriter, ShardWritten

# The shard writer of a worker process, made when it starts.
_WRITER: ShardWriter | None = None


def _start(
    settings: ShardSettings,
    loader: ImageLoader,
    options: PipelineOptions | None,
    pool_open: Connection,
) -> None:
    from transforms.tfrecord_sink import ShardWriter  # It runs this pool: imported once started.

    global _WRITER
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_stop_when_closed, args=(pool_open,), daemon=True).start()
    if options is not None:
        FileSystems.set_options(options)
    # A worker has a core of its own: threads would only contend for it, unless images
    # come from an object store, whose latency they hide.
    remote = FileSystems.get_scheme(loader.root) is not None
    _WRITER = ShardWriter(settings, loader, threads=remote)
    _WRITER.start()


def _stop_when_closed(pool_open: Connection) -> None:
    """Ends this worker, whatever it is writing, once nothing holds the other end of
    `pool_open`: the pool closed it, or its process is gone. A shard left unfinished was never
    emitted; its part file is the build's to remove."""
    with contextlib.suppress(EOFError, OSError):
        pool_open.recv_bytes()  # Nothing is ever sent.
    os._exit(1)


def _write(
    split: str, shard: int, num_shards: int, items: list, label_map: dict[str, int]
) -> ShardWritten:
    return _WRITER.write(split, shard, num_shards, items, label_map)


def usable_cores(cpu_max: str = "/sys/fs/cgroup/cpu.max") -> int:
    """The cores this process may run on: its affinity (as `taskset` sets it), or all, and no
    more than a container's CPU quota allows (cgroup v2 `cpu.max`, as Docker's `--cpus` and
    Kubernetes' CPU limits set it, rounded up)."""
    if hasattr(os, "sched_getaffinity"):
        cores = len(os.sched_getaffinity(0))
    else:
        cores = os.cpu_count() or 1
    try:
        with open(cpu_max) as handle:
            quota, period = handle.read().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass  # No cgroup v2 quota here.
    return cores


def _context() -> multiprocessing.context.BaseContext:
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["transforms.tfrecord_sink"])
    return context


def prepare() -> None:
    """Starts the fork server now, in the background, so that it imports the writing code
    while the runner reads annotations rather than when the first shard is written."""
    if isinstance(_context(), multiprocessing.context.ForkServerContext):
        forkserver.ensure_running()


@dataclass
class ShardTask:
    """A shard submitted to the workers of `pool`, with what it takes to write it again
    elsewhere."""

    split: str
    shard: int
    num_shards: int
    items: list[tuple[ImageAnnotation, Previous | None]]
    label_map: dict[str, int]
    future: Future
    pool: ShardPool

    def result(self) -> ShardWritten:
        """The shard's `ShardWritten`; raises BrokenProcessPool if its worker died."""
        return self.future.result()


class ShardPool:
    """`count` worker processes writing shards with `settings` and `loader`."""

    def __init__(self, count: int, settings: ShardSettings, loader: ImageLoader):
        context = _context()
        pool_open, self._open = context.Pipe(duplex=False)
        # The options Beam gave this process's filesystems; it has no public getter.
        options = FileSystems._pipeline_options
        self._executor = ProcessPoolExecutor(
            count,
            mp_context=context,
            initializer=_start,
            initargs=(settings, loader, options, pool_open),
        )

    def submit(
        self, split: str, shard: int, num_shards: int, items: list, label_map: dict[str, int]
    ) -> ShardTask:
        future = self._executor.submit(_write, split, shard, num_shards, items, label_map)
        return ShardTask(split, shard, num_shards, items, label_map, future, self)

    def close(self, wait: bool = True) -> None:
        """Stops the workers at once, and `wait`s for them to exit (unless the pool broke):
        the step closes the pool when no shard is pending, or when it failed or was
        interrupted, when what they write is not wanted and must not appear after the build's
        files are removed."""
        self._open.close()
        self._executor.shutdown(wait=wait, cancel_futures=True)
