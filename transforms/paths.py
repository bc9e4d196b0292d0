"""Image names from untrusted annotations, turned into paths that stay inside the images root,
and files opened only when they are regular files."""

from __future__ import annotations

import errno
import os
import posixpath
import re
import stat
from typing import BinaryIO

from apache_beam.io.filesystems import CompressionTypes, FileSystems

from transforms.records import excerpt

_ABSOLUTE = re.compile(r"^(/|[A-Za-z]:|[A-Za-z][A-Za-z0-9+.-]*://)")


class UnsafePathError(ValueError):
    """An image name that is empty, absolute, a URL, or leaves the images root."""


def image_key(name: str) -> str:
    """Returns the canonical relative name of an image, or raises UnsafePathError.

    Backslashes count as separators because annotation tools on Windows write them. The key
    is what groups annotations, names the example and seeds its split, so two spellings of
    one file (`a/./b.jpg`, `a\\b.jpg`) must give the same key.
    """
    name = name.strip().replace("\\", "/")
    if not name:
        raise UnsafePathError("empty image name")
    if "\x00" in name:
        raise UnsafePathError("image name contains a NUL byte")
    if _ABSOLUTE.match(name):
        raise UnsafePathError(
            f"image name {excerpt(repr(name))} is absolute or a URL; it must be relative"
        )
    key = posixpath.normpath(name)
    if key == ".." or key.startswith("../"):
        raise UnsafePathError(f"image name {excerpt(repr(name))} resolves outside the images root")
    if key == ".":
        raise UnsafePathError(f"image name {excerpt(repr(name))} names the images root itself")
    return key


def resolve_image(root: str, key: str) -> str:
    """Joins a key to the images root, refusing local symlinks that lead out of the root."""
    path = FileSystems.join(root, *key.split("/"))
    if FileSystems.get_scheme(path) is None:
        real_root = os.path.realpath(root)
        real_path = os.path.realpath(path)
        if os.path.commonpath([real_root, real_path]) != real_root:
            raise UnsafePathError(
                f"image {excerpt(repr(key))} is a link that leads outside the images root"
            )
    return path


def _inside(path: str, root: str) -> str | None:
    """`path` relative to `root` when it lies inside it (lexically), else None."""
    if FileSystems.get_scheme(root) is None and FileSystems.get_scheme(path) is None:
        path, root = os.path.abspath(path), os.path.abspath(root)
        return (
            os.path.relpath(path, root).replace(os.sep, "/")
            if (os.path.commonpath([path, root]) == root)
            else None
        )
    prefix = root.rstrip("/") + "/"
    return path[len(prefix) :] if path.startswith(prefix) else None


def image_key_under(name: str, root: str, base: str | None = None, fallback: bool = True) -> str:
    """The key of an image named by a path that may be absolute or relative to `base` (the
    annotation file's folder), as LabelMe and keras-yolo3 write them. Such a path is accepted
    only if it lies inside the images root; any other name is taken relative to the root,
    unless `fallback` is off: then a name relative to `base` must lie inside the root."""
    cleaned = name.strip().replace("\\", "/")
    if posixpath.normpath(cleaned or ".") == ".":
        raise UnsafePathError(f"image name {excerpt(repr(name))} names a folder, not a file")
    if _ABSOLUTE.match(cleaned):
        relative = _inside(cleaned, root)
        if relative is None:
            raise UnsafePathError(f"image path {excerpt(repr(name))} lies outside the images root")
        return image_key(relative)
    if base is not None:
        relative = _inside(FileSystems.join(base, *cleaned.split("/")), root)
        if relative is not None:
            return image_key(relative)
        if not fallback:
            raise UnsafePathError(
                f"image name {excerpt(repr(name))} resolves outside the images root"
            )
    return image_key(cleaned)


def file_key(path: str, root: str) -> str:
    """The key of an image known only by the annotation file that holds it (LabelMe's
    `imageData`): the file's path relative to the images root, or its whole path without
    scheme when it lies outside, so two files never share a key."""
    relative = _inside(path, root)
    if relative is None:
        whole = os.path.abspath(path) if FileSystems.get_scheme(path) is None else path
        relative = _ABSOLUTE.sub("", whole.replace("\\", "/")).lstrip("/")
    return image_key(relative)


_FILE_KINDS = {
    stat.S_IFDIR: "a folder",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


class NotRegularFile(OSError):
    """A path to read that is a FIFO, a device, a socket or a folder; `kind` says which."""

    def __init__(self, path: str, kind: str):
        super().__init__(f"{excerpt(path)} is {kind}, not a regular file")
        self.kind = kind


def _require_regular(mode: int, path: str) -> None:
    if not stat.S_ISREG(mode):
        raise NotRegularFile(path, _FILE_KINDS.get(stat.S_IFMT(mode), "not a regular file"))


def _open_remote(path: str) -> BinaryIO:
    """Opens an object-store path; a missing object raises FileNotFoundError on every
    filesystem. Beam's GCS filesystem raises the storage client's own NotFound, which is no
    OSError, where its local and S3 filesystems raise FileNotFoundError: asking whether the
    path exists after any other failure keeps "not found" one error, whatever the store."""
    try:
        return FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)
    except OSError:
        raise
    except Exception as error:
        if not FileSystems.exists(path):
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), path) from error
        raise


def open_regular(path: str) -> BinaryIO:
    """Opens a file for reading only if it is a regular file: reading a FIFO would wait
    forever, a device (/dev/zero) would never end, and merely opening some devices has
    effects. A local path is checked before it is opened and again once open (opened without
    blocking), so a file swapped for a FIFO in between cannot hang the job either. Raises
    OSError (NotRegularFile, FileNotFoundError)."""
    if FileSystems.get_scheme(path) is not None:
        return _open_remote(path)
    _require_regular(os.stat(path).st_mode, path)
    descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        _require_regular(os.fstat(descriptor).st_mode, path)
        return os.fdopen(descriptor, "rb")
    except BaseException:
        os.close(descriptor)
        raise
