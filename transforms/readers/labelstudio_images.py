"""The images Label Studio tasks name, found under the images root.

A task's `data.image` is whatever Label Studio was given or made: `/data/upload/<project>/
<8 hex digits>-<name>` for a file uploaded through its UI (stored under that prefixed name
in its `media/upload/<project>/` folder), `/data/local-files/?d=<path>` for a file its local
files storage serves (`<path>` relative to its document root), a URL, or a plain file name.
Each becomes a key under the images root; nothing is downloaded, and no reference, however
written (`..`, escapes, absolute paths), leads out of the root.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qs, unquote, urlsplit

from apache_beam.io.filesystems import FileSystems

from transforms.paths import UnsafePathError, image_key_under, resolve_image
from transforms.readers.base import ReaderOptions, image_key_for
from transforms.records import excerpt

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_UPLOAD = re.compile(r"/data/upload/(?:(\d+)/)?([^/]+)")
_LOCAL_FILES = "/data/local-files"
# Label Studio keeps an upload as `<first 8 hex digits of a uuid4>-<name>`.
_UPLOAD_PREFIX = re.compile(r"^[0-9a-f]{8}-(?=.)")


def _upload_names(path: str) -> list[str]:
    """The names an uploaded file may have under the images root, in the order tried: as
    Label Studio stores it (`ab12cd34-a.jpg`), in its project's folder (`3/ab12cd34-a.jpg`,
    when the root is Label Studio's `media/upload`), and as it was uploaded (`a.jpg`)."""
    match = _UPLOAD.fullmatch(unquote(path))
    if match is None:
        raise UnsafePathError(
            f"upload reference {excerpt(repr(path))} is not /data/upload/<project>/<file>"
        )
    project, stored = match.groups()
    names = [stored]
    if project:
        names.append(f"{project}/{stored}")
    original = _UPLOAD_PREFIX.sub("", stored, count=1)
    if original != stored:
        names.append(original)
    return names


def _exists(root: str, key: str) -> bool:
    """Whether an image file is at `key` under `root` (a link leading out of it is not)."""
    try:
        return FileSystems.exists(resolve_image(root, key))
    except Exception:  # Each filesystem raises its own error types; any failure means no.
        return False


def is_url(reference: str) -> bool:
    return bool(_URL.match(reference.strip()))


def image_key(reference: object, path: str, options: ReaderOptions) -> str:
    """The key of the image a task's `data.image` names, read by the annotation file `path`;
    raises UnsafePathError.

    A local-files path is relative to the images root. Any other name is found as other
    formats find theirs: under `--images`, or beside the annotation file without it. A URL
    gives its last path component; an upload the first of its names (`_upload_names`) that
    is a file, else the name it was stored under, which the image step reports missing."""
    if not isinstance(reference, str):
        return image_key_for(reference, path, options)  # Refuses it, saying why.
    text = reference.strip()
    parts = urlsplit(text)
    if is_url(text) and not (
        parts.path.startswith("/data/upload/") or parts.path.rstrip("/") == _LOCAL_FILES
    ):
        name = unquote(parts.path).rsplit("/", 1)[-1]
        if not name:
            raise UnsafePathError(f"URL {excerpt(repr(reference))} names no file")
        return image_key_for(name, path, options)
    if parts.path.rstrip("/") == _LOCAL_FILES:
        values = parse_qs(parts.query).get("d")
        if not values:
            raise UnsafePathError(f"local-files reference {excerpt(repr(reference))} has no d=")
        return image_key_under(values[0], options.images)
    if parts.path.startswith("/data/upload/"):
        keys: list[str] = []
        refusals: list[UnsafePathError] = []
        for name in _upload_names(parts.path):
            try:
                keys.append(image_key_for(name, path, options))
            except UnsafePathError as error:
                refusals.append(error)
        if not keys:
            raise refusals[0]
        return next((key for key in keys if _exists(options.images, key)), keys[0])
    return image_key_for(text, path, options)
