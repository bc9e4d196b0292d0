"""Every file a command writes, by one rule: never through a link, never outside the folder
the command writes into (its root), and over an existing file only when odrecords wrote it.

The root is the folder the user named (`--output`, `--render`), a link or not, or the scratch
folder named by `--temp_location`. Below it, on local disk:

- each folder between the root and the file is opened without following links (`O_NOFOLLOW`,
  each relative to the one above it), so a link anywhere on the way is found however the
  path is spelled, and the write is refused (`UnsafeWrite`); missing folders are made there;
- a file is written under a new temporary name in its own folder (`O_CREAT | O_EXCL |
  O_NOFOLLOW`) and renamed over its place (`os.replace`, which replaces a name, never what a
  link points to), so a reader never sees half a file;
- at the file's place, a free name is taken; a link, a folder or any other kind of file is
  refused, never followed nor removed; a regular file is replaced only when the caller's
  `ours` says odrecords wrote it (an earlier output's summary lists it; anything in a folder
  this run made, `new_folder`), or when it already holds the bytes written (a retried worker
  writing its file again). Files are removed elsewhere (`transforms.builds.outputs`), by a
  stricter rule.

GCS and S3 have no links or folders: the same calls go through Beam's FileSystems there, with
the same checks of the path and of the file in its place.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import stat
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import BinaryIO

from apache_beam.io.filesystems import FileSystems

# Whether odrecords wrote the regular file at a relative path below the root (so may replace it).
Ours = Callable[[str], bool]
_FOLDER = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_KINDS = {stat.S_IFLNK: "a link", stat.S_IFDIR: "a folder"}
_REFUSED_LINK = "odrecords never writes through links"
_CHUNK = 1 << 20
_CONTROL = re.compile(r"[\x00-\x1f\x7f\\]")


class UnsafeWrite(OSError):
    """A write refused: its path leaves the root, passes through a link, or a file odrecords
    did not write (or anything but a regular file) is in its place. The message names the
    path relative to the root."""


def safe_relative(path: str) -> bool:
    """Whether `path` is a plain relative path: no `..`, `.`, empty or absolute part, no
    backslash or control character."""
    if not path or _CONTROL.search(path) or path.startswith("/"):
        return False
    return all(part not in ("", ".", "..") for part in path.split("/"))


def digest_of_file(path: str) -> dict:
    """{"size", "sha256"} of a written file, read in chunks."""
    with FileSystems.open(path) as handle:
        return digest_of_stream(handle)


def digest_of_stream(handle: BinaryIO) -> dict:
    """{"size", "sha256"} of what is left to read from an open file, read in chunks."""
    digest, size = hashlib.sha256(), 0
    while chunk := handle.read(_CHUNK):
        digest.update(chunk)
        size += len(chunk)
    return {"size": size, "sha256": digest.hexdigest()}


def new_folder(_: str) -> bool:
    """`Ours` of a folder this run made under a name only it gives (a build, a scratch
    folder): anything in it is its own, written again by a retried worker."""
    return True


def _relative_path(root: str, path: str) -> str:
    """`path` relative to `root`, `/`-separated; raises UnsafeWrite when it is not inside."""
    if _local(root):
        relative = os.path.relpath(os.path.abspath(path), os.path.abspath(root))
        relative = relative.replace(os.sep, "/")
    else:
        prefix = root.rstrip("/") + "/"
        relative = path[len(prefix) :] if path.startswith(prefix) else ""
    if not safe_relative(relative):
        raise UnsafeWrite(f"{path} lies outside {root}")
    return relative


def root_of(root: str, folder: str) -> str:
    """The root a folder's writes may not leave: `root` when the folder lies inside it, else
    the folder above it (a scratch folder named by `--temp_location`)."""
    try:
        _relative_path(root, folder)
    except UnsafeWrite:
        return FileSystems.split(folder)[0]
    return root


def make_folders(root: str, folder: str) -> None:
    """Makes `folder` and the folders between it and `root` that are missing."""
    if _local(root) and os.path.abspath(folder) != os.path.abspath(root):
        with _opened(root, _relative_path(root, folder).split("/"), create=True):
            pass
    elif _local(root):
        os.makedirs(root, exist_ok=True)


def create_new(root: str, path: str) -> BinaryIO:
    """Opens a new file at `path` for writing; its name must be free (a scratch file's)."""
    if not _local(root):
        _relative_path(root, path)
        return FileSystems.create(path)
    *folders, name = _relative_path(root, path).split("/")
    with _opened(root, folders, create=True) as folder:
        return os.fdopen(os.open(name, _NEW_FILE, 0o666, dir_fd=folder), "wb")


def write_file(
    root: str, path: str, chunks: Iterable[bytes], ours: Ours, durable: bool = False
) -> dict:
    """Writes `chunks` to `path` by the module's rule; returns the file's {size, sha256}.
    `durable`: the bytes reach the disk before the file takes its name, so a pointer renamed
    into place (`OUT/LATEST`) never names a version by an empty file after a crash."""
    relative = _relative_path(root, path)
    if not _local(root):
        return _write_remote(path, relative, chunks, ours)
    *folders, name = relative.split("/")
    with _opened(root, folders, create=True) as folder:
        temporary = f".odrecords-{uuid.uuid4().hex}.tmp"
        try:
            with os.fdopen(os.open(temporary, _NEW_FILE, 0o666, dir_fd=folder), "wb") as handle:
                digest = _write_all(handle, chunks)
                if durable:
                    handle.flush()
                    os.fsync(handle.fileno())
            _check_place(folder, name, relative, ours, digest)
            os.replace(temporary, name, src_dir_fd=folder, dst_dir_fd=folder)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary, dir_fd=folder)
            raise
    return digest


def move_file(root: str, source: str, path: str, ours: Ours, digest: dict | None = None) -> None:
    """Moves the regular file `source` (a scratch file) to `path` by the module's rule;
    `digest` ({size, sha256} of `source`) lets a file already holding its bytes be replaced."""
    relative = _relative_path(root, path)
    if not _local(root):
        if FileSystems.exists(path) and not ours(relative):
            if digest is None or digest_of_file(path) != digest:
                raise _not_ours(relative)
        FileSystems.rename([source], [path])
        return
    if not stat.S_ISREG(os.lstat(source).st_mode):
        raise UnsafeWrite(f"{source} is not a regular file")
    *folders, name = relative.split("/")
    with _opened(root, folders, create=True) as folder:
        _check_place(folder, name, relative, ours, digest)
        os.replace(source, name, dst_dir_fd=folder)


def check_place(root: str, path: str, ours: Ours) -> None:
    """Raises UnsafeWrite when a write to `path` would be refused, writing nothing: what the
    commands check before they start, for the paths they know they will write."""
    relative = _relative_path(root, path)
    if not _local(root):
        if FileSystems.exists(path) and not ours(relative):
            raise _not_ours(relative)
        return
    _check_root(root)
    *folders, name = relative.split("/")
    with contextlib.suppress(FileNotFoundError), _opened(root, folders, create=False) as folder:
        _check_place(folder, name, relative, ours, None)


def check_folder(root: str, folder: str) -> None:
    """Raises UnsafeWrite when `folder`, or one on its way from `root`, is a link or no
    folder, writing nothing."""
    if _local(root) and os.path.abspath(folder) != os.path.abspath(root):
        folders = _relative_path(root, folder).split("/")
        _check_root(root)
        with contextlib.suppress(FileNotFoundError), _opened(root, folders, create=False):
            pass


def check_no_links(root: str, relative: str) -> bool:
    """Whether `relative` lies inside `root` reached through no link, itself no link (local
    disk; always true elsewhere): where a file may be removed."""
    if not _local(root):
        return True
    *folders, name = relative.split("/")
    try:
        with _opened(root, folders, create=False) as folder:
            return not stat.S_ISLNK(os.stat(name, dir_fd=folder, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _check_root(root: str) -> None:
    """Raises UnsafeWrite when `root` is there but no folder (a file, a dangling link)."""
    if os.path.lexists(root) and not os.path.isdir(root):
        kind = "a link to nothing" if os.path.islink(root) else "a file"
        raise UnsafeWrite(f"{root} is {kind}, not a folder")


def _local(root: str) -> bool:
    return FileSystems.get_scheme(root) is None


def _write_all(handle: BinaryIO, chunks: Iterable[bytes]) -> dict:
    digest, size = hashlib.sha256(), 0
    for chunk in chunks:
        handle.write(chunk)
        digest.update(chunk)
        size += len(chunk)
    return {"size": size, "sha256": digest.hexdigest()}


def _write_remote(path: str, relative: str, chunks: Iterable[bytes], ours: Ours) -> dict:
    """An object store's write: one object, visible whole once complete. An object already
    there that is not ours is replaced only by the very same bytes (its size and sha256
    compared, the new bytes held once to do so)."""
    if FileSystems.exists(path) and not ours(relative):
        data = b"".join(chunks)
        if digest_of_file(path) != {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}:
            raise _not_ours(relative)
        chunks = [data]
    with FileSystems.create(path) as handle:
        return _write_all(handle, chunks)


def _not_ours(relative: str) -> UnsafeWrite:
    return UnsafeWrite(f"{relative} is not a file odrecords wrote; it is left in place")


@contextlib.contextmanager
def _opened(root: str, folders: list[str], create: bool) -> Iterator[int]:
    """A descriptor of the folder `root`/`folders`, each folder below the root opened (or,
    with `create`, made) without following links. Raises UnsafeWrite for a link or a file on
    the way, FileNotFoundError for a missing folder."""
    if create:
        os.makedirs(root, exist_ok=True)
    descriptor = os.open(root, _FOLDER)
    try:
        for depth, name in enumerate(folders):
            try:
                child = _open_folder(descriptor, name, create)
            except NotADirectoryError:
                where = "/".join(folders[: depth + 1])
                kind = _kind(descriptor, name)
                if kind == "a link":
                    raise UnsafeWrite(f"{where} is a link; {_REFUSED_LINK}") from None
                raise UnsafeWrite(f"{where} is {kind}, not a folder") from None
            os.close(descriptor)
            descriptor = child
        yield descriptor
    finally:
        os.close(descriptor)


def _open_folder(parent: int, name: str, create: bool) -> int:
    try:
        return os.open(name, _FOLDER | os.O_NOFOLLOW, dir_fd=parent)
    except FileNotFoundError:
        if not create:
            raise
    with contextlib.suppress(FileExistsError):  # Another worker may make it meanwhile.
        os.mkdir(name, dir_fd=parent)
    return os.open(name, _FOLDER | os.O_NOFOLLOW, dir_fd=parent)


def _kind(folder: int, name: str) -> str:
    mode = os.stat(name, dir_fd=folder, follow_symlinks=False).st_mode
    return _KINDS.get(stat.S_IFMT(mode), "a file" if stat.S_ISREG(mode) else "a special file")


def _check_place(folder: int, name: str, relative: str, ours: Ours, digest: dict | None) -> None:
    """Raises UnsafeWrite unless the place of `name` in `folder` is free, or holds a regular
    file that is ours or already holds the bytes of `digest`."""
    try:
        kind = _kind(folder, name)
    except FileNotFoundError:
        return
    if kind == "a link":
        raise UnsafeWrite(f"{relative} is a link; {_REFUSED_LINK}")
    if kind != "a file":
        raise UnsafeWrite(f"{relative} is {kind}, not a file")
    if ours(relative) or (digest is not None and _digest_at(folder, name) == digest):
        return
    raise _not_ours(relative)


def _digest_at(folder: int, name: str) -> dict | None:
    try:
        with os.fdopen(os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=folder), "rb") as handle:
            return digest_of_stream(handle)
    except OSError:
        return None
