"""Which builds are still running: a build's launcher holds a lock while it runs, so the next
run can tell a build that failed or was killed from one that is still being written.

A failed or killed build leaves its folder (`OUT/.builds/<id>/` or `OUT/versions/<id>/`)
behind. Waiting for the next successful publication to remove it is not enough: on a nearly
full disk the leftover takes the space the next build needs, so every retry fails and leaves
one more. Age tells nothing (a large build runs for hours), so the launcher of every build
holds an exclusive `flock` on `OUT/.builds/<id>.lock` for as long as it runs; the kernel
releases it when the process ends, however it ends. A lock file nobody holds belongs to a
build whose launcher is gone: its folder is removed before the next build writes anything.

The lock file is made under a temporary name, locked, then renamed into place, so no other
run ever sees it unlocked while its build runs. Builds without a lock file are never taken
for abandoned: a detached build (`--detach`), whose launcher exits while the job runs, drops
its lock file, as do builds written to GCS or S3, which have no locks (there, the launcher
removes a build that failed while it waited, and earlier unpublished builds are removed once
a later one is published).
"""

from __future__ import annotations

import contextlib
import errno
import os
import uuid
from typing import BinaryIO

from apache_beam.io.filesystems import FileSystems

from transforms.builds.layout import BUILDS, is_build_id
from transforms.builds.safe_write import create_new, move_file, write_file

LOCK_SUFFIX = ".lock"

try:
    import fcntl
except ImportError:  # Not on Windows: no build is ever taken for abandoned there.
    fcntl = None


def lock_path(output: str, build_id: str) -> str:
    """Where the lock of build `build_id` in `output` is."""
    return FileSystems.join(output, BUILDS, build_id + LOCK_SUFFIX)


class BuildLock:
    """The lock a launcher holds on its build while it runs (local outputs; elsewhere only a
    file that says the build was started). Creating it is the first write into the output:
    an output that cannot be written fails here, before the job starts."""

    def __init__(self, output: str, build_id: str, parts: str):
        self._path = lock_path(output, build_id)
        self._handle: BinaryIO | None = None
        text = f"{build_id}\n{parts}\n".encode()
        if FileSystems.get_scheme(self._path) is not None:
            write_file(output, self._path, [text], lambda _: False)
            return
        temporary = FileSystems.join(FileSystems.split(self._path)[0], f".{uuid.uuid4().hex}.tmp")
        handle = create_new(output, temporary)
        try:
            handle.write(text)
            handle.flush()
            if fcntl is not None:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            move_file(output, temporary, self._path, lambda _: False)
        except BaseException:
            handle.close()
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
        self._handle = handle

    def release(self) -> None:
        """Removes the lock file and lets the lock go: the build is over (finished, failed,
        or detached and in the runner's hands)."""
        with contextlib.suppress(Exception):  # Each filesystem raises its own error types.
            FileSystems.delete([self._path])
        if self._handle is not None:
            self._handle.close()
            self._handle = None
            with contextlib.suppress(OSError):  # Only when empty: other builds may run.
                os.rmdir(FileSystems.split(self._path)[0])


def is_running(output: str, build_id: str) -> bool:
    """Whether the launcher of build `build_id` in a local `output` still holds its lock."""
    folder = FileSystems.join(output, BUILDS)
    if fcntl is None or FileSystems.get_scheme(folder) is not None:
        return False
    return _held(folder, build_id + LOCK_SUFFIX)


def abandoned_builds(output: str) -> list[str]:
    """The ids of builds in a local `output` whose launcher is gone: a lock file that nobody
    holds. The lock files stay until `forget` (after their folders are removed)."""
    folder = FileSystems.join(output, BUILDS)
    if fcntl is None or FileSystems.get_scheme(folder) is not None or not os.path.isdir(folder):
        return []
    found = []
    for name in sorted(os.listdir(folder)):
        build_id = name.removesuffix(LOCK_SUFFIX)
        if name.endswith(LOCK_SUFFIX) and is_build_id(build_id) and not _held(folder, name):
            found.append(build_id)
    return found


def parts_of(output: str, build_id: str) -> str | None:
    """The folder of temporary files an abandoned build's lock names, when odrecords named it
    for that build (`transforms.tfrecord_sink.parts_dir`); None otherwise."""
    try:
        with open(lock_path(output, build_id), "rb") as handle:
            lines = handle.read(4096).decode("utf-8", "replace").splitlines()
    except OSError:
        return None
    parts = lines[1] if len(lines) > 1 else ""
    return parts if parts.rstrip("/").endswith(f"/odrecords-{build_id}") else None


def _held(folder: str, name: str) -> bool:
    """Whether a process holds the lock file `name`; a file that is not a regular file is
    nobody's lock."""
    try:
        fd = os.open(os.path.join(folder, name), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        return error.errno in (errno.EWOULDBLOCK, errno.EAGAIN)
    finally:
        os.close(fd)
    return False


def forget(output: str, build_id: str) -> None:
    """Removes the lock file of a build whose folder was removed."""
    with contextlib.suppress(OSError):
        os.unlink(lock_path(output, build_id))
