"""What every reader shares: how a format declares itself, where its files, images and splits
are found, and parsing files one by one.

A format is one module in this package that declares a `FORMAT` (see `Format`): the files of
it a folder holds, where its source splits come from, how its annotations are located before
the job starts (`locate`) and the PTransform that reads them (`reader`). A reader is a
PTransform from the pipeline's start to a dict of three PCollections: `annotations`
(ImageAnnotation mentions; several may name one image), `errors` (ErrorRecords) and `classes`
(ClassDeclarations: classes a source declares with its own ids), and may add `counts`.
"""

from __future__ import annotations

import functools
import os
import posixpath
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Any, BinaryIO, TypeVar

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from transforms.paths import UnsafePathError, image_key_under, open_regular
from transforms.readers.values import kind, load_yaml, undecodable
from transforms.records import (
    ERRORS,
    STAGE_READ,
    Box,
    ClassDeclaration,
    ErrorRecord,
    Extras,
    ImageAnnotation,
    excerpt,
)

ANNOTATIONS = "annotations"
CLASSES = "classes"
# Counts a reader may emit, as count dicts for the manifest: objects it leaves out on purpose
# (`{"dropped": {class: n}}`), which are no errors.
COUNTS = "counts"

Record = ImageAnnotation | ErrorRecord | ClassDeclaration
Parsed = Iterable[Record]
T = TypeVar("T")
E = TypeVar("E")

# The most characters of an error reason made from an exception's message.
_REASON_CHARS = 160


class UnusableSource(ValueError):
    """Annotations the job cannot start from (nothing matches, a split entry that points at
    nothing, ...); the message is shown as one usage-error line."""


def read_file(path: str) -> bytes:
    """The bytes of a regular file (see `open_regular`)."""
    with open_regular(path) as handle:
        return handle.read()


def read_yaml(path: str) -> Any:
    """A YAML file (data.yaml, a class map, a config) without anchors or aliases, so the
    value is never larger than the file; raises OSError, or ValueError with the reason."""
    try:
        text = read_file(path).decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ValueError(f"not UTF-8 text: {error}") from None
    return load_yaml(text)


def contained(path: str, root: str) -> bool:
    """Whether a local `path` really lies inside `root`, symlinks followed, as images must:
    a label or names file that links elsewhere (to someone's secrets) is never read.
    Object stores have no links."""
    if not (is_local(path) and is_local(root)):
        return True
    real_root = os.path.realpath(root)
    return os.path.commonpath([real_root, os.path.realpath(path)]) == real_root


def open_annotations(path: str, pattern: str, root: str) -> BinaryIO:
    """Opens an annotation file `pattern` matched: a regular file that, unless the pattern
    names it alone, really lies inside the annotations `root` (when known), as images must
    lie inside theirs: a link in a dataset's folder is never followed out of it. Raises
    OSError, or UnsafePathError."""
    if path != pattern and root and not contained(path, root):
        raise UnsafePathError("annotation file is a link that leads outside the annotations folder")
    return open_regular(path)


def reason_for(error: BaseException) -> str:
    """An exception as an error record's reason, short whatever it quotes: the message of a
    ValueError (the readers' own reasons) or OSError, anything else with its type too,
    being a failure no check foresaw."""
    if isinstance(error, RecursionError):
        return "nested too deeply to read"
    message = " ".join(str(error).split())
    if not isinstance(error, (ValueError, OSError)) or not message:
        message = f"{type(error).__name__}: {message}" if message else type(error).__name__
    return excerpt(message, _REASON_CHARS)


def _objects_in(record: object) -> int:
    """The objects a record accounts for: an annotation's boxes, an error's lost objects."""
    if isinstance(record, ImageAnnotation):
        return len(record.boxes)
    if isinstance(record, ErrorRecord):
        return record.objects
    return 0


def guarded(
    records: Iterable[T],
    source: str,
    image: str | None = None,
    objects: int = 0,
    whole_file: bool = False,
) -> Iterator[T | ErrorRecord]:
    """Yields `records`, turning any exception raised while making them into one error
    record for `source`: the error boundary of every per-file and per-record step of the
    readers, so no value, however hostile, stops the job.

    The error record takes along the `objects` (of the file, row or image) that the records
    before it did not account for, as boxes or as errors. For a `whole_file` it says
    whether the file or the rest of it was skipped."""
    accounted = 0
    produced = False
    try:
        for record in records:
            accounted += _objects_in(record)
            produced = True
            yield record
    except Exception as error:
        reason = reason_for(error)
        if whole_file:
            reason += "; the rest of the file was skipped" if produced else "; file skipped"
        yield ErrorRecord(source, image, STAGE_READ, reason, max(objects - accounted, 0))


def file_boundary(parse: Callable[..., Iterable[T]]) -> Callable[..., Iterator[T | ErrorRecord]]:
    """Makes a parser `parse(data, path, ...)` of one file (or one image's labels) the error
    boundary of that file: whatever it raises becomes an error record for `path`."""

    @functools.wraps(parse)
    def parse_guarded(data: Any, path: str, *args: Any, **kwargs: Any) -> Iterator:
        return guarded(parse(data, path, *args, **kwargs), path, whole_file=True)

    return parse_guarded


def parse_each(
    elements: Iterable[tuple[str, E]], parse: Callable[[E, str], Box], image: str | None
) -> tuple[tuple[Box, ...], list[ErrorRecord]]:
    """Parses (source, element) pairs into boxes, each on its own: any failure, an element
    holding bytes that were not UTF-8 included, rejects that element alone and its one
    object. `image` is the key the boxes belong to."""
    boxes: list[Box] = []
    errors: list[ErrorRecord] = []
    for source, element in elements:
        try:
            if undecodable(element):
                raise ValueError("holds bytes that are not UTF-8 text")
            boxes.append(parse(element, source))
        except Exception as error:
            errors.append(ErrorRecord(source, image, STAGE_READ, reason_for(error), 1))
    return tuple(boxes), errors


@dataclass(frozen=True)
class ReaderOptions:
    """What readers need besides their files, fixed before the job starts.

    `images` is the root image names resolve against and must stay inside. With
    `images_beside_annotations` (no `--images` given) a name is looked for beside the
    annotation file that names it, as Roboflow's `train/`, `valid/`, `test/` folders keep
    them; `annotations_root` is the folder all annotation files lie under (per-folder splits
    are named relative to it). `split_sources` are a format's own (split, path) pairs:
    YOLO's data.yaml entries, VOC's ImageSets lists. `class_names` maps class indexes to
    names for formats that store indexes; `extras` says whether masks and keypoints are read;
    `classes_file` is a classes file a format reads itself (found or given), and
    `class_attribute` the attribute that holds an object's class, where a format has
    attributes (CVAT objects, VIA regions).
    """

    images: str = ""
    images_beside_annotations: bool = False
    annotations_root: str = ""
    extras: Extras = Extras()
    source_splits: bool = False
    class_names: tuple[str, ...] = ()
    split_sources: tuple[tuple[str | None, str], ...] = ()
    classes_file: str = ""
    class_attribute: str = ""


@dataclass(frozen=True)
class Request:
    """What the user asked for: `annotations` as given, `images` when given, class names
    from `--classes`, whether the source's own splits are wanted, and the attribute that
    holds the class (`--class-attribute`)."""

    annotations: str
    images: str | None = None
    classes_file: str | None = None
    class_names: tuple[str, ...] = ()
    source_splits: bool = False
    extras: Extras = Extras()
    class_attribute: str = ""


@dataclass(frozen=True)
class Source:
    """Located annotations: the file pattern to read, the reader's options, the source's
    split names (with `--splits source`) and notices the command prints before it starts."""

    pattern: str
    options: ReaderOptions
    split_names: tuple[str, ...] = ()
    notices: tuple[str, ...] = ()


def is_local(path: str) -> bool:
    return FileSystems.get_scheme(path) is None


def holds_objects(path: str) -> bool:
    """Whether some object lies under `path` in an object store (`gs://`, `s3://`), where
    folders are only key prefixes and exist as long as something lies under them."""
    pattern = FileSystems.join(path.rstrip("/"), "**")
    return bool(FileSystems.match([pattern], limits=[1])[0].metadata_list)


def is_folder(path: str) -> bool:
    """A local folder, a path ending in `/`, a bucket, or an object-store prefix that is no
    object but has objects under it: `gs://bucket/voc/annotations` names a folder as the same
    path on disk does."""
    if path.endswith("/"):
        return True
    if is_local(path):
        return os.path.isdir(path)
    if "/" not in path.partition("://")[2]:
        return True  # A bucket.
    if re.search(r"[*?\[]", path) or FileSystems.exists(path):
        return False
    return holds_objects(path)


def annotations_root(annotations: str) -> str:
    """The folder annotation files lie under: the folder given, or the one before the glob."""
    if is_folder(annotations):
        return annotations.rstrip("/") or "/"
    return posixpath.dirname(re.split(r"[*?\[]", annotations, maxsplit=1)[0]) or "."


def matching_files(pattern: str) -> list[str]:
    """Paths matching a glob, sorted; [] when nothing matches."""
    try:
        return sorted(m.path for m in FileSystems.match([pattern])[0].metadata_list)
    except Exception as error:  # Each filesystem raises its own error types.
        raise UnusableSource(f"cannot list annotations {pattern}: {error}") from None


def annotation_pattern(annotations: str, glob: str | None) -> str:
    """A folder means the format's files directly inside it or, when it holds none, those in
    its immediate sub-folders: a Roboflow download keeps one folder per split."""
    if not glob or not is_folder(annotations):
        return annotations
    folder = annotations.rstrip("/")
    direct = FileSystems.join(folder, glob)
    if matching_files(direct):
        return direct
    nested = FileSystems.join(folder, "*", glob)
    return nested if matching_files(nested) else direct


_SPLIT_PREFIXES = re.compile(r"^(instances|person_keypoints|captions|annotations?|labels?)[_-]")
_SPLIT_SUFFIXES = re.compile(
    r"([_.-](annotations?|labels?|coco|createml|yolo|voc|labelbox|export))+$"
)


def split_of_file(path: str, root: str) -> str | None:
    """The split a per-split annotation file stands for: `instances_val2017.json` →
    `val2017`, `train_labels.csv` → `train`, `test.txt` → `test`. A file named for its format
    only (Roboflow's `valid/_annotations.coco.json`) stands for the sub-folder of `root` it
    lies in, and for no split when it lies directly in `root`."""
    name = posixpath.basename(path.replace("\\", "/"))
    stem = re.sub(r"\.(json|ndjson|csv|txt|xml)$", "", name, flags=re.IGNORECASE)
    stem = _SPLIT_SUFFIXES.sub("", _SPLIT_PREFIXES.sub("", stem)).strip("_-.")
    if stem.lower() in ("", "annotations", "annotation", "labels", "label", "data"):
        return split_of_folder(path, root)
    return re.sub(r"[^A-Za-z0-9_-]", "_", stem)


def split_of_folder(path: str, root: str) -> str | None:
    """The split of a per-image annotation file: the sub-folder of `root` it lies in
    (`root/train/x.xml` → `train`), or None for a file directly in `root`."""
    prefix = root.rstrip("/") + "/"
    if not path.startswith(prefix):
        return None
    relative = path[len(prefix) :]
    return relative.split("/", 1)[0] if "/" in relative else None


def image_key_for(name: str, annotation_path: str, options: ReaderOptions) -> str:
    """The key of an image an annotation file names: its path relative to the images root.

    With `--images` the name is relative to that root. Without it the image is looked for
    beside the annotation file, and must still lie under the root. Raises UnsafePathError,
    also for a name that is not text or holds bytes that were not UTF-8."""
    if not isinstance(name, str):
        raise UnsafePathError(f"image name {excerpt(name)} is {kind(name)}, not text")
    if undecodable(name):
        raise UnsafePathError(f"image name {excerpt(name)} holds bytes that are not UTF-8 text")
    if options.images_beside_annotations:
        return image_key_under(
            name, options.images, posixpath.dirname(annotation_path), fallback=False
        )
    return image_key_under(name, options.images)


@dataclass(frozen=True)
class Format:
    """One annotation format, as its reader module declares it.

    `folder_glob`: the format's files inside a folder given as `--annotations` (None when a
    folder is read some other way, as YOLO's data.yaml). `split_of(path, root)`: the source
    split of an annotation file (`split_of_file` for per-split files, `split_of_folder` for
    one file per image). `reader(pattern, options)`: the PTransform that reads it.
    `locate(request, format)`: finds the files, images and splits before the job starts.
    """

    name: str
    folder_glob: str | None
    reader: Callable[[str, ReaderOptions], beam.PTransform]
    split_of: Callable[[str, str], str | None] = split_of_file
    locate: Callable[[Request, Format], Source] | None = None

    def find(self, request: Request) -> Source:
        """Where this format's annotations, images and splits are; raises UnusableSource."""
        return (self.locate or locate_files)(request, self)


def source_split_names(fmt: Format, files: list[str], root: str) -> tuple[str, ...]:
    """The splits files of `fmt` stand for; raises UnusableSource when they carry none."""
    names = {fmt.split_of(path, root) for path in files}
    if None in names or not names:
        raise UnusableSource(
            f"--splits source: these {fmt.name} annotations carry no splits (files directly "
            f"in {root}, not one folder or file per split); give fractions instead"
        )
    return tuple(sorted(names))


def _what_it_is(request: Request, fmt: Format) -> str:
    """What `--annotations` holds when it is not `fmt`, as `--format auto` tells it (a folder
    of VOC XML given as coco): "; it holds voc annotations: --format voc?", or nothing."""
    from transforms.readers.detect import detect_format  # It imports the readers.

    try:
        found = detect_format(request.annotations)
    except (OSError, ValueError):
        return ""
    return f"; it holds {found} annotations: --format {found}?" if found != fmt.name else ""


def locate_files(request: Request, fmt: Format) -> Source:
    """Annotation files of a file-based format, with images beside them unless --images."""
    pattern = annotation_pattern(request.annotations, fmt.folder_glob)
    files = matching_files(pattern)
    if not files:
        raise UnusableSource(f"no annotation files match {pattern}{_what_it_is(request, fmt)}")
    root = annotations_root(pattern)
    options = ReaderOptions(
        images=request.images or root,
        images_beside_annotations=request.images is None,
        annotations_root=root,
        extras=request.extras,
        source_splits=request.source_splits,
        class_names=request.class_names,
        classes_file=request.classes_file or "",
        class_attribute=request.class_attribute or "",
    )
    splits = source_split_names(fmt, files, root) if request.source_splits else ()
    return Source(pattern, options, splits)


def route(record: object) -> object:
    """Sends a parsed record to its output: errors and classes are tagged; mentions, and
    whatever a step makes for its main output or has tagged already, pass as they are."""
    if isinstance(record, ErrorRecord):
        return beam.pvalue.TaggedOutput(ERRORS, record)
    if isinstance(record, ClassDeclaration):
        return beam.pvalue.TaggedOutput(CLASSES, record)
    return record


class _ParseFile(beam.DoFn):
    """Runs a format's parser on one file `pattern` matched (see `open_annotations`); the
    file is its error boundary. With source splits, each image gets the split its file
    stands for."""

    def __init__(
        self,
        pattern: str,
        parse: Callable[[BinaryIO, str, ReaderOptions], Parsed],
        options: ReaderOptions,
        split_of: Callable[[str, str], str | None],
    ):
        self._pattern = pattern
        self._parse = parse
        self._options = options
        self._split_of = split_of
        self._files = Metrics.counter("odrecords", "annotation_files")

    def _records(self, path: str) -> Parsed:
        with open_annotations(path, self._pattern, self._options.annotations_root) as handle:
            yield from self._parse(handle, path, self._options)

    def process(self, path: str) -> Iterator:
        self._files.inc()
        split = (
            self._split_of(path, self._options.annotations_root)
            if self._options.source_splits
            else None
        )
        for record in guarded(self._records(path), path, whole_file=True):
            if split is not None and isinstance(record, ImageAnnotation):
                record = replace(record, split=split)
            yield route(record)


class MatchPaths(beam.PTransform):
    """The paths of the files matching a pattern; each reader opens them itself, with
    `open_annotations`."""

    def __init__(self, pattern: str):
        super().__init__()
        self._pattern = pattern

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        return (
            pbegin
            | "Match" >> fileio.MatchFiles(self._pattern)
            | "Paths" >> beam.Map(lambda metadata: metadata.path)
        )


class Reader(beam.PTransform):
    """A format's reader: built from the annotation files' pattern and the reader options,
    as `Format.reader` is called, and expanded from the pipeline's start to the `annotations`,
    `errors` and `classes` outputs."""

    def __init__(self, pattern: str, options: ReaderOptions):
        super().__init__()
        self._pattern = pattern
        self._options = options


class ParseFiles(beam.PTransform):
    """Matches a file pattern and parses each file on its own with `parse(handle, path,
    options)`."""

    def __init__(
        self,
        pattern: str,
        parse: Callable[[BinaryIO, str, ReaderOptions], Parsed],
        options: ReaderOptions,
        split_of: Callable[[str, str], str | None] = split_of_file,
    ):
        super().__init__()
        self._pattern = pattern
        self._parse = parse
        self._options = options
        self._split_of = split_of

    def expand(self, pbegin: beam.pvalue.PBegin) -> dict[str, beam.PCollection]:
        parsed = (
            pbegin
            | "Files" >> MatchPaths(self._pattern)
            | "Parse"
            >> beam.ParDo(
                _ParseFile(self._pattern, self._parse, self._options, self._split_of)
            ).with_outputs(ERRORS, CLASSES, COUNTS, main=ANNOTATIONS)
        )
        return {tag: parsed[tag] for tag in (ANNOTATIONS, ERRORS, CLASSES, COUNTS)}


def file_format(
    name: str,
    folder_glob: str,
    parse: Callable[[BinaryIO, str, ReaderOptions], Parsed],
    split_of: Callable[[str, str], str | None] = split_of_file,
    locate: Callable[[Request, Format], Source] | None = None,
) -> Format:
    """A format whose files are parsed one by one with `parse`."""
    return Format(
        name=name,
        folder_glob=folder_glob,
        reader=lambda pattern, options: ParseFiles(pattern, parse, options, split_of),
        split_of=split_of,
        locate=locate,
    )
