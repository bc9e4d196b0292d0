"""The TFRecord files one argument of `export` or `inspect` names: the shards an odrecords
output folder's manifest lists, by split, or the files a glob matches.

Both commands take the folder `create` wrote, as people pass it, and read exactly the shards
of that build (not stray files beside them, such as an earlier build's)."""

from __future__ import annotations

import json

from apache_beam.io.filesystems import FileSystems

from pipelines.flags import UsageError
from transforms.builds.layout import MANIFEST
from transforms.builds.safe_write import safe_relative


def manifest_shards(folder: str, manifest: str) -> list[tuple[str, str]]:
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


def record_files(pattern: str) -> list[tuple[str | None, str]]:
    """(split, file) of the shards of the odrecords output folder `pattern`, else (None, file)
    of each file the glob `pattern` matches, sorted; raises UsageError when it names none."""
    manifest = FileSystems.join(pattern, MANIFEST)
    if FileSystems.exists(manifest):
        return manifest_shards(pattern, manifest)
    matches = sorted(m.path for m in FileSystems.match([pattern])[0].metadata_list)
    if not matches:
        raise UsageError(f"no TFRecord files match {pattern}")
    return [(None, path) for path in matches]
