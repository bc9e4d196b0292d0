"""Saying in one line why a job failed, and finding an output that cannot be written before
the job starts, for every command that writes.

Beam reports a worker's error as a traceback of errors wrapped in errors; a user needs what
failed and where, and the exit code. `-v` still logs the whole traceback.
"""

from __future__ import annotations

import errno
import re
import uuid
from collections.abc import Iterator
from concurrent.futures.process import _RemoteTraceback

from apache_beam.io.filesystems import FileSystems

from pipelines.flags import UsageError
from transforms.builds.outputs import delete_path
from transforms.builds.safe_write import write_file
from transforms.records import excerpt


def failure_line(error: BaseException, where: str) -> str:
    """One line for a job that failed: the error first raised, the path it names or else the
    folder being written, and the step it was raised in."""
    errors = list(wrapped(error))
    first = errors[-1]
    steps = re.findall(r"\[while running '([^']+)'\]", "\n".join(map(str, errors)))
    if isinstance(first, OSError) and first.strerror:
        what = f"{first.strerror} ({errno.errorcode.get(first.errno, first.errno)})"
        path = first.filename or where
    else:
        what = re.sub(r" \[while running '[^']+'\]", "", str(first)) or type(first).__name__
        what = f"{type(first).__name__}: {excerpt(what)}"
        path = where
    step = f" in step {steps[-1].split('/')[0]}" if steps else ""
    return f"{what}, writing {path}{step}"


def wrapped(error: BaseException) -> Iterator[BaseException]:
    """`error` and the errors it wraps, down to the first raised: Beam wraps an error several
    times, as the cause or context of its own, or in a BeamIOError's `exception_details`.
    An error raised in a worker process (`transforms.shard_pool`) is the first: its cause is
    only the text of the worker's traceback."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen and not isinstance(error, _RemoteTraceback):
        seen.add(id(error))
        yield error
        details = getattr(error, "exception_details", None)
        inner = [e for e in (details or {}).values() if isinstance(e, BaseException)]
        error = inner[0] if inner else error.__cause__ or error.__context__


def unwritable(folder: str, error: BaseException) -> UsageError:
    """The usage error of an output folder that cannot be written, found before the job."""
    return UsageError(f"cannot write to output folder {folder}: {failure_line(error, folder)}")


def interrupted(error: BaseException) -> bool:
    """Whether a job stopped for Ctrl-C: Beam may raise it wrapped in errors of its own."""
    return any(isinstance(each, KeyboardInterrupt) for each in wrapped(error))


def check_writable(folder: str) -> None:
    """Makes `folder` if needed and writes and removes a small file in it; raises UsageError
    naming why when it cannot (read-only, no permission, full, a bucket that does not
    exist)."""
    probe = FileSystems.join(folder, f".odrecords-probe-{uuid.uuid4().hex}")
    try:
        write_file(folder, probe, [b"probe"], lambda _: False)
        delete_path(probe)
    except Exception as error:  # Each filesystem raises its own error types.
        raise unwritable(folder, error) from None
