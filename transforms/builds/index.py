"""The per-image index written beside each shard: what each example was made from, where it
lies in the shard, and everything writing it emitted.

Each shard `<split>/<split>.tfrecord-NNNNN-of-NNNNN` gets `index/<split>/<split>.tfrecord-
NNNNN-of-NNNNN.jsonl` (outside the split folder, which readers glob), one JSON line per
example in shard order: the image key and split; the record's byte `offset` and `length` in
the shard, framed as written; `fingerprint`, a sha256 of everything the example was made from
except the image bytes (the annotation as written, the ids of the classes it uses, and the
build settings that change examples: see `settings_fingerprint`); `annotation`, the
annotation alone, and `sources`, where its boxes were read from (kept apart: a CSV row added
above an image's rows renumbers their lines, which changes only the box errors' sources);
`files`, the identity of the image's file and of the annotation file that embeds it, if any
(size, modification time and sha256); the image hashes of the duplicates report; and the
manifest counts and box errors the example added, and the `facts` the dataset report takes
of it (`transforms.report.facts`). So a later build can tell an unchanged image
and replay its row instead of converting it again (`transforms.builds.reuse`), and tell what changed
(`transforms.builds.changes`).

Rows are written with sorted keys and ASCII-escaped text, so equal rows are equal bytes and
any image name (lone surrogates included) reads back as it was written.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from transforms.builds.layout import join
from transforms.builds.outputs import is_shard_name
from transforms.duplicates import HashedImage
from transforms.records import ErrorRecord, ImageAnnotation
from transforms.report.facts import facts_are_valid

_LOG = logging.getLogger(__name__)

INDEX_DIR = "index"
_SUFFIX = ".jsonl"
# The layout of index rows; part of the settings fingerprint, so a build never reuses rows
# of another layout.
INDEX_LAYOUT = 2
# Tag of the shard writer's output of (image, (split, sha256, annotation)) per example.
EXAMPLES = "examples"


def index_path(shard: str) -> str:
    """The index file of a shard (relative paths): `index/<shard>.jsonl`."""
    return f"{INDEX_DIR}/{shard}{_SUFFIX}"


def is_index_name(relative: str) -> bool:
    """Whether `relative` is named as index files are."""
    prefix = f"{INDEX_DIR}/"
    return (
        relative.startswith(prefix)
        and relative.endswith(_SUFFIX)
        and is_shard_name(relative[len(prefix) : -len(_SUFFIX)])
    )


def shard_of_index(relative: str) -> str:
    """The shard an index file describes."""
    return relative[len(INDEX_DIR) + 1 : -len(_SUFFIX)]


def canonical(value: object) -> str:
    """A text of `value` that equal values share in every process. For records (frozen
    dataclasses of strings, numbers, tuples and other records) that is their repr: floats
    by their exact shortest repr, 1, 1.0 and True apart. A value holding a dict or a set,
    whose repr follows insertion or hash order, is written part by part instead, dicts by
    sorted key and sets sorted; one whose repr is an address is refused."""
    text = repr(value)
    return _structured(value) if "{" in text or " at 0x" in text else text


def _structured(value: object) -> str:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = ",".join(
            f"{field.name}={_structured(getattr(value, field.name))}"
            for field in dataclasses.fields(value)
        )
        return f"{type(value).__name__}({fields})"
    if isinstance(value, dict):
        items = sorted(f"{_structured(k)}:{_structured(v)}" for k, v in value.items())
        return "{" + ",".join(items) + "}"
    if isinstance(value, (list, tuple)):
        return f"{type(value).__name__}[{','.join(_structured(item) for item in value)}]"
    if isinstance(value, (set, frozenset)):
        return "set[" + ",".join(sorted(_structured(item) for item in value)) + "]"
    if value is None or isinstance(value, (str, bytes, bool, int, float)):
        return repr(value)
    raise TypeError(f"no canonical text for {type(value).__name__}")


def _values(record: object, *leaving: str) -> tuple:
    """A record's field values in field order, leaving out the fields named."""
    return tuple(
        getattr(record, field.name)
        for field in dataclasses.fields(record)
        if field.name not in leaving
    )


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def settings_fingerprint(settings: dict) -> str:
    """The fingerprint of the build settings that change examples (extras, limits,
    orientation policy, images root, the versions of odrecords and of the libraries that
    decode and encode): rows of a build with other settings are never reused."""
    return _sha256(canonical({"index_layout": INDEX_LAYOUT, **settings}))


def annotation_fingerprint(annotation: ImageAnnotation) -> str:
    """The annotation as written, without where it was read from (see `sources_fingerprint`)."""
    boxes = tuple(_values(box, "source") for box in annotation.boxes)
    return _sha256(canonical((_values(annotation, "sources", "boxes"), boxes)))


def sources_fingerprint(annotation: ImageAnnotation) -> str:
    """Where the annotation and its boxes were read from: only box errors name them."""
    return _sha256(canonical((annotation.sources, tuple(box.source for box in annotation.boxes))))


def example_fingerprint(
    settings: str, annotation: str, labels: tuple[tuple[str, int | None], ...]
) -> str:
    """Everything an example is made from but the image bytes: the settings' and the
    annotation's fingerprints and the label map ids of the classes it uses (None for a class
    the label map lacks, whose boxes are rejected)."""
    return _sha256(canonical((settings, annotation, labels)))


def used_labels(
    annotation: ImageAnnotation, label_map: dict[str, int]
) -> tuple[tuple[str, int | None], ...]:
    """(class, id) of the classes an annotation uses, sorted."""
    return tuple(sorted({(box.label, label_map.get(box.label)) for box in annotation.boxes}))


@dataclass(frozen=True)
class FileIdentity:
    """What tells whether a file changed: its size and modification time as the filesystem
    reports them, and the sha256 of its bytes."""

    size: int
    mtime: float
    sha256: str | None

    def to_json(self) -> dict:
        return {"size": self.size, "mtime": self.mtime, "sha256": self.sha256}

    @classmethod
    def from_json(cls, value: dict | None) -> FileIdentity | None:
        return None if value is None else cls(value["size"], value["mtime"], value["sha256"])


@dataclass(frozen=True)
class IndexRow:
    """One example of a shard, as its index line holds it (see the module docstring).
    `files` has the identity of the file the key names (None when it is missing), and of
    the annotation file that embeds the image when there is one."""

    image: str
    split: str
    offset: int
    length: int
    fingerprint: str
    annotation: str
    sources: str
    files: tuple[FileIdentity | None, ...]
    sha256: str
    phash: int | None
    stats: dict
    facts: dict
    errors: tuple[ErrorRecord, ...] = ()

    def line(self) -> bytes:
        row = {
            "image": self.image,
            "split": self.split,
            "offset": self.offset,
            "length": self.length,
            "fingerprint": self.fingerprint,
            "annotation": self.annotation,
            "sources": self.sources,
            "files": [None if f is None else f.to_json() for f in self.files],
            "sha256": self.sha256,
            "phash": self.phash,
            "stats": self.stats,
            "facts": self.facts,
            "errors": [dataclasses.asdict(error) for error in self.errors],
        }
        return (json.dumps(row, sort_keys=True, separators=(",", ":")) + "\n").encode("ascii")

    @classmethod
    def from_line(cls, line: bytes) -> IndexRow:
        """Raises ValueError (KeyError, TypeError) for a line that is not an index row, values
        of other types included: anyone can edit an index, and what is taken from a row must
        never fail a later step."""
        row = json.loads(line)
        if not _typed(row):
            raise TypeError("a value of the row is not of its type")
        return cls(
            image=row["image"],
            split=row["split"],
            offset=row["offset"],
            length=row["length"],
            fingerprint=row["fingerprint"],
            annotation=row["annotation"],
            sources=row["sources"],
            files=tuple(FileIdentity.from_json(value) for value in row["files"]),
            sha256=row["sha256"],
            phash=row["phash"],
            stats=row["stats"],
            facts=row["facts"],
            errors=tuple(_error_record(error) for error in row["errors"]),
        )

    def hashed(self) -> HashedImage:
        return HashedImage(self.image, self.split, self.sha256, self.phash)

    def example(self) -> tuple[str, tuple[str, str, str]]:
        """(image, (split, sha256, annotation)): what the comparison with another build takes."""
        return self.image, (self.split, self.sha256, self.annotation)


def _typed(row: dict) -> bool:
    """Whether an index line's values have the types an index row's have."""
    texts = ("image", "split", "fingerprint", "annotation", "sources", "sha256")
    return (
        all(isinstance(row[key], str) for key in texts)
        and all(_natural(row[key]) for key in ("offset", "length"))
        and (row["phash"] is None or (_natural(row["phash"]) and row["phash"] < 1 << 64))
        and isinstance(row["stats"], dict)
        and facts_are_valid(row["facts"])
        and isinstance(row["files"], list)
        and all(value is None or _identity(value) for value in row["files"])
        and isinstance(row["errors"], list)
    )


def _error_record(error: dict) -> ErrorRecord:
    """A box error of an index row; its split and classes checked, as they become keys of
    the manifest's counts (rows of earlier versions have neither)."""
    classes = error.get("classes", [])
    split = error.get("split")
    if not (isinstance(classes, list) and all(isinstance(name, str) for name in classes)):
        raise TypeError("an error's classes are not a list of names")
    if split is not None and not isinstance(split, str):
        raise TypeError("an error's split is not a name")
    return ErrorRecord(**{**error, "classes": tuple(classes)})


def _natural(value: object) -> bool:
    return type(value) is int and value >= 0


def _identity(value: object) -> bool:
    return (
        isinstance(value, dict)
        and _natural(value["size"])
        and type(value["mtime"]) in (int, float)
        and (value["sha256"] is None or isinstance(value["sha256"], str))
    )


# Tag of ReadIndex's counts.
INDEX_COUNTS = "index_counts"


class _ReadIndexFile(beam.DoFn):
    """An index file's relative path → (its shard, IndexRow) for every row, when the file
    still is what the previous build listed (size and sha256): a file changed since could
    point at any bytes of its shard. Counts the files read and those left out (tag
    `index_counts`); a file left out only costs its images a conversion."""

    def __init__(self, folder: str, listed: dict[str, dict]):
        self._folder = folder
        self._listed = listed

    def process(self, relative: str) -> Iterator:
        path = join(self._folder, relative)
        try:
            with FileSystems.open(path) as handle:
                data = handle.read()
            expected = self._listed[relative]
            if len(data) != expected["size"] or (
                hashlib.sha256(data).hexdigest() != expected["sha256"]
            ):
                raise ValueError("not what the previous build wrote")
            rows = [IndexRow.from_line(line) for line in data.splitlines()]
        except (OSError, ValueError, KeyError, TypeError, RecursionError) as error:
            _LOG.warning("previous index %s left out: %s", path, str(error)[:200])
            yield beam.pvalue.TaggedOutput(INDEX_COUNTS, {"previous_index": {"left_out": 1}})
            return
        yield beam.pvalue.TaggedOutput(INDEX_COUNTS, {"previous_index": {"files": 1}})
        shard = shard_of_index(relative)
        for row in rows:
            yield shard, row


class ReadIndex(beam.PTransform):
    """The rows of a build's index files, as (shard, IndexRow), and counts (`index_counts`).
    `listed` is the build's {relative path: {size, sha256}}; its index files are read in
    parallel, each one whole (an index file is small beside its shard)."""

    def __init__(self, folder: str, listed: dict[str, dict]):
        super().__init__()
        self._folder = folder
        self._listed = {path: entry for path, entry in listed.items() if is_index_name(path)}

    def expand(self, pipeline: beam.Pipeline) -> beam.pvalue.DoOutputsTuple:
        return (
            pipeline
            | "IndexFiles" >> beam.Create(sorted(self._listed))
            | "SpreadIndexFiles" >> beam.Reshuffle()
            | "ReadIndexFiles"
            >> beam.ParDo(_ReadIndexFile(self._folder, self._listed)).with_outputs(
                INDEX_COUNTS, main="rows"
            )
        )
