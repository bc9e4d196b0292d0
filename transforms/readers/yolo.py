"""YOLO labels, Darknet and Ultralytics (`--format yolo`).

One `.txt` per image with `class x_center y_center width height` lines, normalized to [0, 1],
or segmentation lines, `class x1 y1 x2 y2 ... xn yn` (a polygon of 3 or more normalized
points, as Ultralytics' -seg models train on and Roboflow and Label Studio export them): the
box is the polygon's extent and, with `--include-masks`, the polygon its mask. A file may mix
both: each line is read by its own length (Ultralytics would read a box line among polygons
as a polygon of two points). Ultralytics finds an image's labels by replacing the last
`/images/` of its path with `/labels/` (and the extension with `.txt`); Darknet keeps them
beside the image. Class names come from `data.yaml` (`names` as a list or a dict),
`classes.txt`, `obj.names` or Roboflow's `_darknet.labels`. A missing label file means an
image without objects.

A `data.yaml` is resolved as Ultralytics' `check_det_dataset` resolves it, where that makes
sense on this machine: the root is `path`, or the YAML's folder; split entries (folders, list
files or images, alone or in lists) are relative to the root, and a `../x` that does not
exist is also tried as `x` (Roboflow's exports name `../train/images` from inside the
dataset). An image that several entries list (coco128's `val` is its train folder) is read
once, and its annotation names every split it is in.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from transforms.paths import UnsafePathError, image_key_under
from transforms.readers.base import (
    ANNOTATIONS,
    CLASSES,
    Format,
    Parsed,
    Reader,
    ReaderOptions,
    Request,
    Source,
    UnusableSource,
    contained,
    file_boundary,
    guarded,
    holds_objects,
    is_local,
    matching_files,
    parse_each,
    read_file,
    read_yaml,
    route,
)
from transforms.readers.values import parse_number, parse_whole, undecodable
from transforms.records import (
    ERRORS,
    STAGE_READ,
    Box,
    ClassDeclaration,
    ErrorRecord,
    ImageAnnotation,
    Mask,
    excerpt,
)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
NAMES_FILES = ("classes.txt", "obj.names", "_darknet.labels")
SPLIT_KEYS = ("train", "val", "test")
# How far label values may stray outside [0, 1], as Ultralytics allows (exporters round); the
# box is clipped to the image like any other box reaching past it.
_TOLERANCE = 0.01
# Folders that hold a split's images or labels rather than naming a split.
_LAYOUT_FOLDERS = ("images", "labels")


@dataclass(frozen=True)
class YoloDataset:
    """Where a YOLO dataset's images are, per split, its class names, and what was assumed
    while finding them (said to the user before the job starts)."""

    root: str
    names: tuple[str, ...]
    sources: tuple[tuple[str | None, str], ...]  # (split or None, folder or list file)
    notices: tuple[str, ...] = ()


def read_names(path: str, root: str | None = None) -> tuple[str, ...]:
    """Class names, one per line, as in `classes.txt` and `obj.names`. A names file found in
    a dataset (not given with --classes) must really lie inside its `root`, like images.
    Raises UnusableSource, or OSError."""
    if root is not None and not contained(path, root):
        raise UnusableSource(f"{path} is a link that leads outside {root}; not read")
    try:
        text = read_file(path).decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UnusableSource(f"{path} is not UTF-8 text") from None
    return tuple(line.strip() for line in text.splitlines() if line.strip())


def _class_index(key: object) -> int:
    """A `names` key: an int, or a string of ASCII digits; raises ValueError."""
    if isinstance(key, str) and key.isascii() and key.isdigit() and len(key) < 20:
        return int(key)
    if isinstance(key, int) and not isinstance(key, bool):
        return key
    raise ValueError(f"{excerpt(key)} is not a class index")


def _yaml_names(config: dict, yaml_path: str) -> tuple[str, ...]:
    """`names` as a list, or as a mapping of index to name (keys may be digit strings, as
    JSON-minded tools write them), numbered 0, 1, 2, ... and agreeing with `nc` if given."""
    names = config.get("names")
    if isinstance(names, list):
        names = dict(enumerate(names))
    if not isinstance(names, dict) or not names:
        raise UnusableSource(
            f"{yaml_path}: names is {'missing' if names is None else 'not a list of names'}; "
            "give the class names with --classes"
        )
    try:
        by_index = {_class_index(key): value for key, value in names.items()}
    except ValueError:
        raise UnusableSource(
            f"{yaml_path}: names keys must be class indexes 0, 1, 2, ..."
        ) from None
    if sorted(by_index) != list(range(len(by_index))):
        raise UnusableSource(
            f"{yaml_path}: names must be numbered 0 to {len(by_index) - 1}, "
            f"not {', '.join(map(str, sorted(by_index)))}"
        )
    empty = [index for index, name in by_index.items() if name is None or not str(name).strip()]
    if empty:
        raise UnusableSource(f"{yaml_path}: class {empty[0]} has no name")
    if not all(isinstance(name, (str, int, float)) for name in by_index.values()):
        raise UnusableSource(f"{yaml_path}: names must be text, not lists or mappings")
    count = config.get("nc")
    if count is not None and count != len(by_index):
        raise UnusableSource(f"{yaml_path}: nc is {count} but names holds {len(by_index)} names")
    return tuple(str(by_index[index]) for index in range(len(by_index)))


def _join(root: str, relative: str) -> str:
    path = FileSystems.join(root, *relative.split("/"))
    return posixpath.normpath(path) if is_local(path) else path


def _is_absolute(path: str) -> bool:
    return not is_local(path) or posixpath.isabs(path)


def _exists(path: str) -> bool:
    """A file or folder; in object stores (`gs://`, `s3://`), where folders are only key
    prefixes, a folder exists when some object lies under it."""
    if FileSystems.exists(path):
        return True
    return not is_local(path) and holds_objects(path)


def _dataset_root(config: dict, yaml_path: str) -> tuple[str, tuple[str, ...]]:
    """The root split entries are relative to, and a notice when `path` was not usable.

    Ultralytics takes a relative `path` from its own datasets folder, and an absolute one
    is often from the machine the dataset was made on (`/content/...`); where `path` is not
    found here, the YAML's own folder is the root."""
    base = posixpath.dirname(yaml_path) or "."
    given = config.get("path")
    if given in (None, ""):
        return base, ()
    given = str(given)
    candidate = given if _is_absolute(given) else _join(base, given)
    if _exists(candidate):
        return candidate, ()
    return base, (
        f"{yaml_path}: path {given!r} does not exist here; using the YAML's folder {base}",
    )


def _missing_entry_hint(path: str, root: str) -> str:
    """What lies nearest to a split entry that is missing on this machine: the deepest
    existing folder on the way from `root` to `path`, and what it holds. A Roboflow download
    whose `train/images` was flattened into `train/` gets the entry that would work."""
    while path.startswith(root.rstrip("/") + "/") and not os.path.isdir(path):
        path = posixpath.dirname(path)
    if not path.startswith(root.rstrip("/") + "/"):
        return ""
    entries = sorted(os.scandir(path), key=lambda entry: entry.name)
    if any(entry.name.lower().endswith(IMAGE_EXTENSIONS) for entry in entries):
        return f"; {path} holds the images: correct the entry to {posixpath.relpath(path, root)!r}"
    folders = [entry.name for entry in entries if entry.is_dir()]
    return f"; {path} holds {', '.join(folders) or 'no folders'}"


def _split_source(root: str, split: str, entry: str, yaml_path: str) -> str:
    """A split entry resolved as Ultralytics does; raises UnusableSource if it is nowhere."""
    tried = [entry if _is_absolute(entry) else _join(root, entry)]
    if not _is_absolute(entry) and entry.startswith("../"):
        tried.append(_join(root, entry[3:]))
    for candidate in tried:
        if _exists(candidate):
            return candidate
    raise UnusableSource(
        f"{yaml_path}: {split} entry {entry!r} points at nothing (looked for "
        f"{' and '.join(tried)})" + (_missing_entry_hint(tried[-1], root) if is_local(root) else "")
    )


def _names_file(folder: str) -> str | None:
    """A names file in the folder, or one shared by its immediate sub-folders (a Roboflow
    download keeps `_darknet.labels` in each split folder)."""
    for pattern in (FileSystems.join(folder, name) for name in NAMES_FILES):
        if FileSystems.exists(pattern):
            return pattern
    for name in NAMES_FILES:
        found = matching_files(FileSystems.join(folder, "*", name))
        if found:
            distinct = {read_names(path, folder) for path in found}
            if len(distinct) > 1:
                raise UnusableSource(
                    f"the {name} files under {folder} disagree; give the names with --classes"
                )
            return found[0]
    return None


def _split_entries(config: dict, split: str) -> list[str]:
    """A split's entries: one folder, list file or image, or a list of them. Ultralytics
    reads a `validation` key as `val`."""
    entries = config.get(split)
    if entries is None and split == "val":
        entries = config.get("validation")
    if not entries:
        return []
    return [str(entry) for entry in (entries if isinstance(entries, list) else [entries])]


def _load_yaml(yaml_path: str, classes_file: str | None) -> YoloDataset:
    try:
        config = read_yaml(yaml_path) or {}
    except (OSError, ValueError) as error:
        raise UnusableSource(f"{yaml_path} is not readable YAML: {error}") from None
    if not isinstance(config, dict):
        raise UnusableSource(f"{yaml_path} is not a mapping")
    root, notices = _dataset_root(config, yaml_path)
    sources = [
        (split, _split_source(root, split, entry, yaml_path))
        for split in SPLIT_KEYS
        for entry in _split_entries(config, split)
    ]
    if not sources:
        raise UnusableSource(f"{yaml_path} names no train, val or test images")
    names = read_names(classes_file) if classes_file else _yaml_names(config, yaml_path)
    return YoloDataset(root, names, tuple(sources), notices)


def load_dataset(path: str, classes_file: str | None = None) -> YoloDataset:
    """Reads a dataset's YAML (the file given, or the folder's data.yaml) or, without one,
    takes every image under the folder. Raises UnusableSource when the dataset cannot be
    used."""
    if path.endswith((".yaml", ".yml")):
        if not FileSystems.exists(path):
            raise UnusableSource(f"{path} does not exist")
        return _load_yaml(path, classes_file)
    if not _exists(path):
        raise UnusableSource(f"{path} does not exist")
    yaml_path = FileSystems.join(path, "data.yaml")
    if FileSystems.exists(yaml_path):
        return _load_yaml(yaml_path, classes_file)
    if classes_file:
        return YoloDataset(path, read_names(classes_file), ((None, path),))
    names_file = _names_file(path)
    if names_file is None:
        raise UnusableSource(
            f"{path} has no data.yaml nor {', '.join(NAMES_FILES)}; give the dataset's YAML "
            "as --annotations, or the class names with --classes"
        )
    return YoloDataset(path, read_names(names_file, path), ((None, path),))


def folder_split(relative: str) -> str | None:
    """The split of an image found under a dataset folder without data.yaml: its first
    folder that is not `images` or `labels` (`train/a.jpg`, `images/train/a.jpg` → train)."""
    folders = [part for part in relative.split("/")[:-1] if part not in _LAYOUT_FOLDERS]
    return folders[0] if folders else None


def _locate(request: Request, fmt: Format) -> Source:
    dataset = load_dataset(request.annotations.rstrip("/"), request.classes_file)
    split_names: tuple[str, ...] = ()
    if request.source_splits:
        if all(split for split, _ in dataset.sources):
            split_names = tuple(dict.fromkeys(split for split, _ in dataset.sources))
        else:
            prefix = dataset.root.rstrip("/") + "/"
            found = {
                folder_split(path[len(prefix) :])
                for path in matching_files(FileSystems.join(dataset.root, "**"))
                if path.lower().endswith(IMAGE_EXTENSIONS) and path.startswith(prefix)
            }
            if None in found or not found:
                raise UnusableSource(
                    f"--splits source: {dataset.root} has no data.yaml and no folder per split; "
                    "give fractions instead"
                )
            split_names = tuple(sorted(found))
    options = ReaderOptions(
        images=request.images or dataset.root,
        annotations_root=dataset.root,
        extras=request.extras,
        source_splits=request.source_splits,
        class_names=dataset.names,
        split_sources=dataset.sources,
    )
    return Source(request.annotations, options, split_names, dataset.notices)


def label_path(image_path: str) -> str:
    """Where Ultralytics and Darknet keep an image's label file."""
    head, marker, tail = image_path.rpartition("/images/")
    stem = posixpath.splitext(tail if marker else image_path)[0]
    return f"{head}/labels/{stem}.txt" if marker else f"{stem}.txt"


_SHAPES = "neither a box (class x_center y_center width height) nor a polygon (class x1 y1 ...)"


def _shape_problem(count: int) -> str:
    """Why a line of `count` fields is neither a box nor a polygon."""
    if count % 2 == 0:
        return f"line has {count} fields, {_SHAPES}: {count - 1} values make no x y pairs"
    return f"line has {count} fields, {_SHAPES}: a polygon needs 3 or more points"


def _class_name(field: str, names: tuple[str, ...]) -> str:
    index = parse_whole(field, "class index")
    if not 0 <= index < len(names):
        raise ValueError(f"class index {index} is not one of the {len(names)} names")
    return names[index]


def _in_range(value: float) -> bool:
    return -_TOLERANCE <= value <= 1 + _TOLERANCE


def _polygon_box(fields: list[str], source: str, names: tuple[str, ...], masks: bool) -> Box:
    """A segmentation line, `class x1 y1 x2 y2 ... xn yn`: its box is the polygon's extent,
    as Ultralytics makes boxes of segments, and with masks the polygon is its mask."""
    values = [
        parse_number(field, f"{'xy'[n % 2]}{n // 2 + 1}") for n, field in enumerate(fields[1:])
    ]
    name = _class_name(fields[0], names)
    xs, ys = values[0::2], values[1::2]
    for n, (x, y) in enumerate(zip(xs, ys, strict=True), start=1):
        if not (_in_range(x) and _in_range(y)):
            raise ValueError(
                f"point {n} ({excerpt(fields[2 * n - 1])}, "
                f"{excerpt(fields[2 * n])}) is outside [0, 1]"
            )
    return Box(
        label=name,
        xmin=min(xs),
        ymin=min(ys),
        xmax=max(xs),
        ymax=max(ys),
        source=source,
        normalized=True,
        mask=Mask(polygons=(tuple(values),)) if masks else None,
    )


def _label_box(line: str, source: str, names: tuple[str, ...], masks: bool = False) -> Box:
    """One label line as a box in normalized units: `class x_center y_center width height`,
    or a polygon (`_polygon_box`); raises ValueError quoting at most an excerpt of the
    line."""
    fields = line.split()
    if len(fields) >= 7 and len(fields) % 2:
        return _polygon_box(fields, source, names, masks)
    if len(fields) != 5:
        raise ValueError(_shape_problem(len(fields)))
    index = parse_whole(fields[0], "class index")
    cx, cy, width, height = (
        parse_number(field, name)
        for field, name in zip(fields[1:], ("x_center", "y_center", "width", "height"), strict=True)
    )
    if not 0 <= index < len(names):
        raise ValueError(f"class index {index} is not one of the {len(names)} names")
    if not all(_in_range(value) for value in (cx, cy, width, height)):
        raise ValueError(f"values {excerpt(' '.join(fields[1:]))} are outside [0, 1]")
    return Box(
        label=names[index],
        xmin=cx - width / 2,
        ymin=cy - height / 2,
        xmax=cx + width / 2,
        ymax=cy + height / 2,
        source=source,
        normalized=True,
    )


def _named_class(line: str, names: tuple[str, ...]) -> tuple[str, ...]:
    """The class a label line names, when its first field is a known index: what a line
    rejected for its other values still tells of the object it lost."""
    field = line.split(maxsplit=1)[0] if line.strip() else ""
    if field.isascii() and field.isdigit() and len(field) < 20 and int(field) < len(names):
        return (names[int(field)],)
    return ()


@file_boundary
def parse_yolo_labels(
    text: str,
    source: str,
    key: str,
    names: tuple[str, ...],
    split: str | None,
    masks: bool = False,
) -> Parsed:
    """One image's label lines → its annotation, and an error per unusable line (a line
    holding bytes that were not UTF-8 included), naming the image's split and, when the line
    names a known one, the object's class. `masks`: polygons become the objects' masks."""
    lines = [(f"{source}:{n}", line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    boxes, errors = parse_each(
        lines, lambda line, where: _label_box(line, where, names, masks), key
    )
    by_source = dict(lines)
    for error in errors:
        yield replace(error, split=split, classes=_named_class(by_source[error.source], names))
    yield ImageAnnotation(image=key, sources=(source,), boxes=boxes, split=split)


class _ListImages(beam.DoFn):
    """(split, folder, list file or image) → (image key, split) for every image in it, and
    an error record for each that cannot be used; each source is its own error boundary.

    List-file lines starting with `./` are relative to the list file's folder, as Ultralytics
    reads them; other relative lines to the dataset root; lines that name no image file are
    skipped, as Ultralytics skips them, and lines holding bytes that are not UTF-8 are
    errors. Without data.yaml, an image's split is its folder (`folder_split`)."""

    def __init__(self, options: ReaderOptions):
        self._options = options

    def _listed(self, split: str | None, source: str) -> Iterator:
        folder = posixpath.dirname(source)
        text = read_file(source).decode("utf-8-sig", errors="replace")
        for number, line in enumerate(text.splitlines(), start=1):
            line = line.strip()
            if undecodable(line):
                reason = "list line holds bytes that are not UTF-8 text; its image was not read"
                yield ErrorRecord(f"{source}:{number}", None, STAGE_READ, reason)
                continue
            if not line.lower().endswith(IMAGE_EXTENSIONS):
                continue
            if line.startswith("./"):
                line = FileSystems.join(folder, *line[2:].split("/"))
            yield split, line, f"{source}:{number}"

    def _in_folder(self, split: str | None, source: str) -> Iterator:
        prefix = source.rstrip("/") + "/"
        for path in matching_files(FileSystems.join(source, "**")):
            if path.lower().endswith(IMAGE_EXTENSIONS):
                if split is None and self._options.source_splits and path.startswith(prefix):
                    yield folder_split(path[len(prefix) :]), path, path
                else:
                    yield split, path, path

    def _images(self, split: str | None, source: str) -> Iterator:
        if source.lower().endswith(IMAGE_EXTENSIONS):
            paths: Iterable = [(split, source, source)]
        elif source.endswith(".txt"):
            paths = self._listed(split, source)
        else:
            paths = self._in_folder(split, source)
        for found in paths:
            if isinstance(found, ErrorRecord):
                yield found
                continue
            split, path, origin = found
            try:
                key = image_key_under(path, self._options.images, self._options.annotations_root)
            except UnsafePathError as error:
                yield ErrorRecord(origin, excerpt(path), STAGE_READ, str(error))
                continue
            yield key, split if self._options.source_splits else None

    def process(self, element: tuple[str | None, str]) -> Iterator:
        split, source = element
        for item in guarded(self._images(split, source), source, whole_file=True):
            yield route(item)


class _ReadLabels(beam.DoFn):
    """(image key, its splits) → the image's annotation from its label file; each image is
    its own error boundary.

    The label file is read once however many splits list the image (coco128 lists its train
    folder as `val` too): one annotation in the first split, `other_splits` naming the rest,
    so its objects and errors count once and the image is written once in each split. Like
    an image, a label file must really lie inside the dataset or the images root: one that
    links elsewhere is refused unread. One that cannot be read (not a regular file, say)
    costs the image, as its objects are unknown."""

    def __init__(self, options: ReaderOptions):
        self._options = options
        self._files = Metrics.counter("odrecords", "annotation_files")

    def _inside(self, labels: str) -> bool:
        roots = (self._options.annotations_root, self._options.images)
        return any(root and contained(labels, root) for root in roots)

    def _annotation(self, key: str, labels: str, splits: list[str | None]) -> Parsed:
        split, *others = splits
        if not self._inside(labels):
            reason = "label file is a link that leads outside the dataset; not read"
            yield ErrorRecord(labels, key, STAGE_READ, reason)
            return
        try:
            data = read_file(labels)
        except FileNotFoundError:
            data = b""  # No label file: an image without objects.
        else:
            self._files.inc()
        text = data.decode("utf-8-sig", errors="replace")
        names, masks = self._options.class_names, self._options.extras.masks
        for record in parse_yolo_labels(text, labels, key, names, split, masks):
            if isinstance(record, ImageAnnotation):
                record = replace(record, other_splits=tuple(others))
            yield record

    def process(self, element: tuple[str, Iterable[str | None]]) -> Iterator:
        key, splits = element
        ordered = sorted(set(splits), key=lambda name: name or "")
        labels = label_path(FileSystems.join(self._options.images, *key.split("/")))
        records = self._annotation(key, labels, ordered)
        for record in guarded(records, labels, key, whole_file=True):
            yield route(record)


def declarations(names: tuple[str, ...], source: str) -> list[ClassDeclaration]:
    """YOLO class index i is label map id i + 1."""
    return [ClassDeclaration(name, index + 1, source) for index, name in enumerate(names)]


class ReadYolo(Reader):
    """A Darknet / Ultralytics dataset → annotations, errors and its declared classes."""

    def expand(self, pbegin: beam.pvalue.PBegin) -> dict[str, beam.PCollection]:
        listed = (
            pbegin
            | "Sources" >> beam.Create(self._options.split_sources)
            | "ListImages"
            >> beam.ParDo(_ListImages(self._options)).with_outputs(ERRORS, main="images")
        )
        read = (
            listed.images
            | "SplitsOfImage" >> beam.GroupByKey()
            | "ReadLabels"
            >> beam.ParDo(_ReadLabels(self._options)).with_outputs(ERRORS, main=ANNOTATIONS)
        )
        names = declarations(self._options.class_names, "names")
        errors = (listed[ERRORS], read[ERRORS]) | "Errors" >> beam.Flatten()
        classes = pbegin | "Names" >> beam.Create(names)
        return {ANNOTATIONS: read[ANNOTATIONS], ERRORS: errors, CLASSES: classes}


FORMAT = Format(name="yolo", folder_glob=None, reader=ReadYolo, locate=_locate)
