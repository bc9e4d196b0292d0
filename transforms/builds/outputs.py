"""Replacing an earlier output in place, without ever touching anything odrecords did not write.

`create` and `export` may write into a folder that holds their own earlier output; files of
the earlier output that the new run does not write again are stale and removed. A folder's
summary (`manifest.json`, `export.json`) is untrusted input like any other file: someone may
have written or edited it by hand, or copied it next to their own files. So a file is
removed only when all of these hold:

- the summary is odrecords' own: its `checksum` is the sha256 of the rest of it, which a
  hand-written or edited summary lacks (a checksum, not a secret: it recognises, it does not
  authenticate);
- the summary lists the file with its size and sha256, and the file still has both: a file
  someone replaced or changed since is theirs now;
- the file's relative path is one odrecords writes (`named`), with no `..`, absolute part or
  control character, and it is a regular file inside the folder, itself no link and reached
  through none.

Anything else listed is left in place and counted.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import re
import shutil
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from apache_beam.io.filesystems import FileSystems

from transforms.builds.safe_write import check_no_links, digest_of_file, safe_relative

CHECKSUM = "checksum"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_GLOB = re.compile(r"[*?\[\]{}]")


class NotOurOutput(ValueError):
    """A summary file that odrecords did not write (or that was changed since)."""


def _canonical_checksum(document: dict) -> str:
    rest = {key: value for key, value in document.items() if key != CHECKSUM}
    text = json.dumps(rest, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def with_checksum(document: dict) -> dict:
    """`document` as it will read back from JSON, with its `checksum` added."""
    document = json.loads(json.dumps(document, ensure_ascii=False))
    return {**document, CHECKSUM: _canonical_checksum(document)}


def read_summary(path: str) -> dict:
    """Reads a summary file and checks its checksum; raises NotOurOutput otherwise."""
    if FileSystems.get_scheme(path) is None and not os.path.isfile(path):
        raise NotOurOutput(f"{path} is not a regular file")
    try:
        with FileSystems.open(path) as handle:
            document = json.loads(handle.read(64 << 20).decode("utf-8"))
    except (OSError, ValueError, RecursionError) as error:
        raise NotOurOutput(f"cannot read {path}: {str(error)[:80]}") from None
    if not isinstance(document, dict) or document.get(CHECKSUM) != _canonical_checksum(document):
        raise NotOurOutput(f"{path} was not written by this odrecords, or was changed since")
    return document


def listed_files(document: dict, key: str = "written") -> dict[str, dict]:
    """The {relative path: {"size", "sha256"}} a checked summary lists under `key`; raises
    NotOurOutput when the listing is not shaped so."""
    listing = document.get(key)
    if not isinstance(listing, dict) or not all(
        isinstance(path, str)
        and isinstance(entry, dict)
        and isinstance(entry.get("size"), int)
        and isinstance(entry.get("sha256"), str)
        and _SHA256.match(entry["sha256"])
        for path, entry in listing.items()
    ):
        raise NotOurOutput(f"its {key!r} is not a list of files with size and sha256")
    return listing


@dataclass
class Replaced:
    """What became of an earlier output's files the new run did not write again."""

    removed: list[str] = field(default_factory=list)
    left_in_place: list[str] = field(default_factory=list)

    def as_json(self) -> dict:
        return {"removed": len(self.removed), "left_in_place": sorted(self.left_in_place)}


def _ours(output: str, relative: str, entry: dict) -> bool:
    """Whether the file still is the one the earlier run wrote, inside `output`."""
    path = FileSystems.join(output, *relative.split("/"))
    if FileSystems.get_scheme(path) is None:
        try:
            if not (check_no_links(output, relative) and stat.S_ISREG(os.lstat(path).st_mode)):
                return False
        except OSError:
            return False
    elif _GLOB.search(relative) or not FileSystems.exists(path):
        return False  # An object store's delete would take the name as a glob.
    try:
        return digest_of_file(path) == {"size": entry["size"], "sha256": entry["sha256"]}
    except OSError:
        return False


def delete_path(path: str) -> None:
    """Deletes exactly `path` (a file, or a folder with what is in it). Beam's own delete
    takes its argument as a glob, so a name with `*` or `[` would delete other files too. In
    an object store a folder is no object but a key prefix, which Beam deletes with all
    under it only when the path ends in `/`; without it, nothing would be deleted."""
    if FileSystems.get_scheme(path) is not None:
        FileSystems.delete([path if FileSystems.exists(path) else path.rstrip("/") + "/"])
    elif os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    else:
        os.remove(path)


def _exists(path: str) -> bool:
    """Whether anything (a broken symlink too) is at `path`."""
    if FileSystems.get_scheme(path) is None:
        return os.path.lexists(path)
    return FileSystems.exists(path)


def remove_stale(
    output: str,
    listed: dict[str, dict],
    written: Iterable[str],
    named: Callable[[str], bool],
) -> Replaced:
    """Removes the files an earlier run listed (`listed`, from `listed_files`) that this run
    did not write (`written`) and that are still what the earlier run wrote; see the module
    docstring for the rule. Files already gone count as neither."""
    replaced = Replaced()
    for relative in sorted(set(listed) - set(written)):
        path = FileSystems.join(output, *relative.split("/"))
        if not safe_relative(relative):
            replaced.left_in_place.append(relative)
        elif named(relative) and _ours(output, relative, listed[relative]):
            delete_path(path)
            replaced.removed.append(relative)
        elif _exists(path):
            replaced.left_in_place.append(relative)
    return replaced


def is_shard_name(relative: str) -> bool:
    """Whether `relative` is named as `create` names shards: `<split>/<split>.tfrecord-
    NNNNN-of-NNNNN`, the split a name of letters, digits, `_`, `-` and `.` (not leading)."""
    folder, name = posixpath.split(relative)
    return bool(
        re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*", folder)
        and re.fullmatch(re.escape(folder) + r"\.tfrecord-\d{5}-of-\d{5}", name)
    )
