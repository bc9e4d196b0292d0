"""Incremental rebuilds (`--reuse`): the examples of images unchanged since the previous build
are copied from its shards instead of being converted again.

Scheduled rebuilds convert the same dataset daily with a few changes; reading, decoding and
encoding every image again is most of their cost. The previous build's index
(`transforms.builds.index`) is read as a PCollection and joined with this build's images on
(split, image) once their shards are assigned, so each image reaches the shard writer with
its previous row, or none; nothing holds the whole index. An image's row is a candidate when

- its `fingerprint` (annotation, the label ids of its classes, the settings that change
  examples) is this build's;
- its files are unchanged: under `stat` (the default) their size and modification time as the
  filesystem reports them; under `content` their sha256, which reads every image's bytes
  but decodes nothing.

The index is no proof: anyone can edit it and recompute the manifest's hashes. So the record
read at the row's offset is reused only when its own bytes prove it is the image's current
example (`transforms.builds.proof`): it is one whole record whose CRCs hold; its image is the image
file's current bytes, read and compared under every mode, at the size their header declares,
in the format they are written as; and the example this build writes from those bytes and the
current annotation, label map and settings is the record's bytes, `image/filename`,
`image/source_id`, `image/key/sha256` and boxes included. So only images written as stored
are reused; converted and turned ones are converted again. Everything of the new row comes
from the current input (where the boxes were read from, the box errors, the counts, the
files' sha256 and the EXIF orientation) but the perceptual hash, which needs a decode. On any
mismatch the image is converted. A shard whose records all come, in order, from the
same-named previous shard, each proven so, and cover it whole is copied as a file instead,
after checking that its bytes are still the size and sha256 the previous manifest lists (on
local disk while copying; on GCS and S3 by reading it once, and the copy is server-side). The
result is byte for byte what a full rebuild writes.

`stat` tells a changed file by size and modification time, and converts it without reading
it; `content` hashes every file first. Both read an unchanged-looking image once to prove its
record, so both see every change of bytes.
Nothing is reused when the settings that change examples differ from the previous build's
(`settings_fingerprint`); `--duplicates same-split` still reads every image to group
duplicates before splits are assigned.
"""

from __future__ import annotations

import os
import stat
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace

import apache_beam as beam
from apache_beam.io.filesystems import CompressionTypes, FileSystems

from transforms.builds.index import FileIdentity, IndexRow, is_index_name
from transforms.builds.layout import PreviousBuild, join
from transforms.builds.outputs import is_shard_name
from transforms.builds.safe_write import digest_of_stream
from transforms.choices import OFF, STAT
from transforms.example_proto import Example
from transforms.paths import open_regular
from transforms.records import ImageAnnotation, LoadedImage
from transforms.tfrecord import is_framed, payload

# Previous shards kept open at a time while their records are copied.
_OPEN_SHARDS = 8

# A previous example as the shard writer gets it: the shard it is in and its index row.
Previous = tuple[str, IndexRow]


@dataclass(frozen=True)
class Reuse:
    """What a build may reuse: how unchanged files are told (`stat` or `content`), the previous
    build's folder, and the {relative path: {size, sha256}} of its shards."""

    mode: str
    folder: str
    shards: dict[str, dict]


def plan_reuse(
    mode: str, previous: PreviousBuild | None, fingerprint: str
) -> tuple[Reuse | None, str | None]:
    """(Reuse, None) when this build may reuse `previous`, else (None, why not)."""
    if mode == OFF:
        return None, "--reuse off"
    if previous is None:
        return None, "no previous build"
    files = previous.files
    if not any(is_index_name(path) for path in files):
        return None, "the previous build has no index"
    if previous.manifest.get("reuse", {}).get("settings_fingerprint") != fingerprint:
        return None, "settings that change examples differ from the previous build's"
    shards = {path: entry for path, entry in files.items() if is_shard_name(path)}
    return Reuse(mode, previous.folder, shards), None


def file_stat(path: str) -> tuple[int, float] | None:
    """(size, modification time) of a regular file, or None when there is none."""
    try:
        if FileSystems.get_scheme(path) is None:
            status = os.stat(path)
            if not stat.S_ISREG(status.st_mode):
                return None
            return status.st_size, status.st_mtime
        metadata = FileSystems.get_filesystem(path).metadata(path)
    except Exception:  # Each filesystem raises its own error types.
        return None
    return metadata.size_in_bytes, metadata.last_updated_in_seconds


def file_sha256(path: str) -> str | None:
    """The sha256 of a regular file's bytes, read in chunks; None when it cannot be read."""
    try:
        with open_regular(path) as handle:
            return digest_of_stream(handle)["sha256"]
    except Exception:  # Each filesystem raises its own error types.
        return None


def identity(at: tuple[int, float] | None, sha256: str | None) -> FileIdentity | None:
    """A file's identity from its stat and sha256; None for a file missing or unreadable."""
    if at is None or sha256 is None:
        return None
    return FileIdentity(at[0], at[1], sha256)


def unchanged(mode: str, paths: list[str], row: IndexRow) -> IndexRow | None:
    """`row` with this build's identities of the image's files, or None when one of them
    changed since: by size and modification time (`stat`), or by sha256 (`content`)."""
    if len(paths) != len(row.files):
        return None
    files = []
    for path, before in zip(paths, row.files, strict=True):
        at = file_stat(path)
        if mode == STAT:
            if (at is None) != (before is None) or (
                before is not None and at != (before.size, before.mtime)
            ):
                return None
            # Size and time as this build reads them (equal, but maybe not alike: 5 == 5.0).
            files.append(None if at is None else FileIdentity(at[0], at[1], before.sha256))
            continue
        now = identity(at, file_sha256(path) if at is not None else None)
        if (now is None) != (before is None) or (
            before is not None and now is not None and now.sha256 != before.sha256
        ):
            return None
        files.append(now)
    return replace(row, files=tuple(files))


def reusable(previous: Previous | None, fingerprint: str) -> Previous | None:
    """The previous example when its row was made from what this build's would be, before its
    files are looked at: the same fingerprint. Where the boxes were read from may differ:
    the new row takes its sources and box errors from the current input."""
    if previous is None or not fingerprint or previous[1].fingerprint != fingerprint:
        return None
    return previous


def recorded_image(annotation: ImageAnnotation, record: bytes, max_pixels: int) -> LoadedImage:
    """The image a previous record was written from, as the record itself holds it (bytes,
    format, size within `max_pixels`), taken as kept as stored: the shard writer reuses a
    record only when these are the current file's own bytes (`transforms.builds.proof`). Raises
    ValueError (protobuf's DecodeError is one) for a record that holds no such image."""
    feature = Example.FromString(payload(record)).features.feature
    width = _one(feature, "image/width", "int64_list")
    height = _one(feature, "image/height", "int64_list")
    # Checked before anything is made at that size (masks are drawn at it).
    if not (0 < width and 0 < height and width * height <= max_pixels):
        raise ValueError(f"the record's image is {width}x{height}")
    return LoadedImage(
        annotation,
        _one(feature, "image/encoded", "bytes_list"),
        _one(feature, "image/format", "bytes_list").decode("utf-8"),
        width,
        height,
        None,
        None,
    )


def _one(feature: Mapping, key: str, kind: str) -> bytes | int:
    """The single value of an example's feature `key`, of `kind`; ValueError when it has
    none, several, or of another kind."""
    if key not in feature or feature[key].WhichOneof("kind") != kind:
        raise ValueError(f"the record has no {kind} {key}")
    values = getattr(feature[key], kind).value
    if len(values) != 1:
        raise ValueError(f"the record has {len(values)} values of {key}")
    return values[0]


class PreviousShards:
    """Framed records read out of the previous build's shards, a few files open at a time."""

    def __init__(self, folder: str):
        self._folder = folder
        self._open: OrderedDict = OrderedDict()

    def record(self, shard: str, offset: int, length: int) -> bytes | None:
        """The record at `offset`, when it is one whole record whose CRCs hold; else None."""
        try:
            handle = self._handle(shard)
            handle.seek(offset)
            data = handle.read(length)
        except Exception:  # Each filesystem raises its own error types.
            return None
        return data if len(data) == length and is_framed(data) else None

    def _handle(self, shard: str):
        if shard in self._open:
            self._open.move_to_end(shard)
            return self._open[shard]
        if len(self._open) >= _OPEN_SHARDS:
            _, oldest = self._open.popitem(last=False)
            oldest.close()
        path = join(self._folder, shard)
        if FileSystems.get_scheme(path) is None:
            handle = open_regular(path)
        else:
            handle = FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)
        self._open[shard] = handle
        return handle

    def close(self) -> None:
        while self._open:
            self._open.popitem()[1].close()


def covers_whole(shard: str, previous: list[Previous | None], listed: dict | None) -> bool:
    """Whether the examples of a new shard, in order, are all of the same-named previous
    shard: each reused from it, at contiguous offsets from 0 to its listed size."""
    if listed is None or not previous:
        return False
    offset = 0
    for item in previous:
        if item is None or item[0] != shard or item[1].offset != offset:
            return False
        offset += item[1].length
    return offset == listed["size"]


def _paired(element: tuple) -> Iterator:
    _, grouped = element
    before = list(grouped["previous"])
    for shard_key, annotation in grouped["current"]:
        yield shard_key, (annotation, before[0] if len(before) == 1 else None)


class JoinPrevious(beam.PTransform):
    """((split, shard), ImageAnnotation) → ((split, shard), (ImageAnnotation, Previous or
    None)): each image with its example in the previous build, joined on (split, image)."""

    def __init__(self, previous: beam.PCollection):
        super().__init__()
        self._previous = previous

    def expand(self, keyed: beam.PCollection) -> beam.PCollection:
        current = keyed | "KeyByImage" >> beam.Map(lambda kv: ((kv[0][0], kv[1].image), kv))
        previous = self._previous | "KeyPreviousByImage" >> beam.Map(
            lambda item: ((item[1].split, item[1].image), item)
        )
        return (
            {"current": current, "previous": previous}
            | "JoinImages" >> beam.CoGroupByKey()
            | "Paired" >> beam.FlatMap(_paired)
        )


def reuse_entry(
    counts: dict, mode: str, previous: str | None, why_not: str | None, fingerprint: str
) -> dict:
    """The manifest's `reuse`: how unchanged images were told, which build they came from (or
    why none could), the images reused and converted, the shards copied whole and written,
    and the settings fingerprint a later build compares with its own."""
    reuse = counts.get("reuse", {})
    index = counts.get("previous_index", {})
    return {
        "mode": mode,
        "previous": previous if why_not is None else None,
        "not_possible_because": why_not,
        "images": {key: reuse.get("images", {}).get(key, 0) for key in ("reused", "converted")},
        "shards": {key: reuse.get("shards", {}).get(key, 0) for key in ("copied", "written")},
        "previous_index_files": {key: index.get(key, 0) for key in ("files", "left_out")},
        "settings_fingerprint": fingerprint,
    }


def reuse_text(reuse: dict | None) -> str | None:
    """create's summary line on reuse: what was reused and converted, or why nothing could
    be; None when there is nothing to say (no previous build, `--reuse off`)."""
    if reuse is None or reuse["not_possible_because"] in ("--reuse off", "no previous build"):
        return None
    if reuse["not_possible_because"]:
        return f"nothing reused: {reuse['not_possible_because']}"
    images, shards = reuse["images"], reuse["shards"]
    of = f"build {reuse['previous']}" if reuse["previous"] else "the previous build"
    return (
        f"reused {images['reused']} unchanged images of {of} ({reuse['mode']}; "
        f"{shards['copied']} of {shards['copied'] + shards['written']} shards copied whole), "
        f"converted {images['converted']}"
    )
