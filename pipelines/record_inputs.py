"""Which TFRecord files a command that reads records takes, and the split of each: files,
globs, `NAME=GLOB`, and odrecords output folders, whose manifest lists the shards of each
split. `odrecords export`, `report` and `inspect` read their inputs the same way: the folder
`create` wrote, as people pass it, gives exactly the shards of that build (not stray files
beside them, such as an earlier build's)."""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
from collections.abc import Iterable

from apache_beam.io.filesystems import FileSystems

from pipelines.flags import UsageError
from transforms.builds.report import MANIFEST
from transforms.builds.safe_write import safe_relative
from transforms.label_map import LabelMapError, read_label_names
from transforms.records import utf8_safe, writable_text

# Split names are parts of file names: letters, digits, `_`, `-` and `.` (not leading).
_SAFE_SPLIT = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,99}")


def safe_split_name(name: str) -> str:
    """`name` when it is safe in file names (see `_SAFE_SPLIT`), else a safe name made from
    it: other characters made `_`, leading dots dropped, and 8 hex digits of its sha256
    added, so that two names never become one (`../../x` → `______x-1b4f0e98`)."""
    if _SAFE_SPLIT.fullmatch(name):
        return name
    cleaned = re.sub(r"[^A-Za-z0-9_.-]", "_", name).lstrip(".")[:80] or "split"
    return f"{cleaned}-{hashlib.sha256(name.encode('utf-8', 'replace')).hexdigest()[:8]}"


def _split_of(path: str) -> str:
    """A split name from a shard's file name: `train.tfrecord-00000-of-00010` → `train`."""
    name = posixpath.basename(path)
    name = re.sub(r"-\d{5}-of-\d{5}$", "", name)
    name = re.sub(r"(\.(tfrecords?|records?|tfrec|gz))+$", "", name)
    return re.sub(r"[^A-Za-z0-9_-]", "_", name) or "all"


def _manifest_inputs(folder: str, manifest: str) -> list[tuple[str, str]]:
    """(split, shard) of each shard an odrecords output's manifest lists; refuses a manifest
    of another shape, and shards named outside the folder."""
    try:
        with FileSystems.open(manifest) as handle:
            splits = json.loads(handle.read(64 << 20))["splits"]
        pairs = [(split, f) for split, entry in splits.items() for f in entry["files"]]
    except (OSError, ValueError, LookupError, TypeError, AttributeError, RecursionError) as e:
        raise UsageError(f"{manifest} is not an odrecords manifest: {str(e)[:80]}") from None
    for _, relative in pairs:
        if not (isinstance(relative, str) and safe_relative(relative)):
            raise UsageError(f"{manifest} lists {str(relative)[:80]!r}, not a file inside {folder}")
    return [(split, FileSystems.join(folder, *f.split("/"))) for split, f in pairs]


def _expand_input(argument: str) -> list[tuple[str | None, str]]:
    """One input: NAME=GLOB, an odrecords output folder (its manifest's splits), or a glob."""
    name, sep, pattern = argument.partition("=")
    if not sep or "/" in name or "*" in name:
        name, pattern = None, argument
    manifest = FileSystems.join(pattern, MANIFEST)
    if FileSystems.exists(manifest):
        return _manifest_inputs(pattern, manifest)
    matches = sorted(m.path for m in FileSystems.match([pattern])[0].metadata_list)
    if not matches:
        raise UsageError(f"no TFRecord files match {pattern}")
    return [(name, path) for path in matches]


def record_inputs(arguments: Iterable[str]) -> list[tuple[str, str]]:
    """(split, TFRecord file) of each file the arguments name; the split is the name given,
    the manifest's, or the file's name without its shard number and extension. Raises
    UsageError for an argument that names no file, or a file whose name is not UTF-8."""
    inputs = [
        (safe_split_name(split or _split_of(path)), path)
        for argument in arguments
        for split, path in _expand_input(argument)
    ]
    for _, path in inputs:
        if not writable_text(path):  # Beam's coders and the outputs' files take UTF-8 only.
            raise UsageError(f"{utf8_safe(path)}: the file name is not UTF-8; rename the file")
    return inputs


def label_names(path: str | None) -> tuple[dict[int, str], dict[str, int]]:
    """({id: name}, {name: id}) of the label map given to name the records' classes, empty
    without one; raises UsageError for one that cannot be read."""
    if not path:
        return {}, {}
    try:
        return read_label_names(path)
    except (OSError, LabelMapError) as error:
        raise UsageError(f"label map {path}: {error}") from None
