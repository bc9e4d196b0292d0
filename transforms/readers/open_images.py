"""Open Images boxes (V4 to V7): `*-annotations-bbox.csv`, a row per box with its corners as
fractions of the image size, and a class-descriptions CSV naming each class's MID.

A box file has the header `ImageID,Source,LabelName,Confidence,XMin,XMax,YMin,YMax,IsOccluded,
IsTruncated,IsGroupOf,IsDepiction,IsInside` and may have more columns (V6 and V7's train file
adds `XClick1X` ... `XClick4Y`), which are not read. `IsGroupOf` (a box around a group of
objects) is the object's crowd flag, as COCO's `iscrowd`, and `IsTruncated` its truncated
flag; `Source`, `Confidence` (1 for every human-verified box), `IsOccluded`, `IsDepiction` and
`IsInside` have no place in a record. The image of a row is `<ImageID>.jpg`, in the folder named
after the file's split (`train/` for `oidv6-train-annotations-bbox.csv`) when the images root
has one, as Open Images' own download keeps them, else directly in the images root.

V6's train file has 14.6 million rows. Rows are streamed, and the rows of one image, which the
published files keep together, leave as one mention when the next image's start: what is held
is one image's boxes (at most `RUN_BOXES`), never a file's. An image whose rows lie apart
leaves as several mentions, which the grouping by image merges.
"""

from __future__ import annotations

import csv
import functools
import posixpath
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from typing import BinaryIO

import apache_beam as beam

from transforms.paths import UnsafePathError
from transforms.readers.base import (
    CLASSES,
    Format,
    Parsed,
    ParseFiles,
    Reader,
    ReaderOptions,
    Request,
    Source,
    UnusableSource,
    contained,
    file_boundary,
    image_key_for,
    is_folder,
    locate_files,
    matching_files,
    read_file,
    split_of_folder,
)
from transforms.readers.csv_rows import numbered_rows, refuse_unless_one_reads, shown_row, text_of
from transforms.readers.values import parse_number, undecodable
from transforms.records import (
    STAGE_READ,
    Box,
    ClassDeclaration,
    ErrorRecord,
    ImageAnnotation,
    excerpt,
)

REQUIRED_COLUMNS = ("ImageID", "LabelName", "XMin", "XMax", "YMin", "YMax")
HEADER = (
    "ImageID,Source,LabelName,Confidence,XMin,XMax,YMin,YMax,"
    "IsOccluded,IsTruncated,IsGroupOf,IsDepiction,IsInside"
)
# The most boxes of one image held before they leave as a mention of their own.
RUN_BOXES = 1000
# Class descriptions beside the box files, most specific first: V7's, V6's, V4 and V5's,
# and the descriptions of every class (a superset) last.
DESCRIPTIONS = (
    "oidv7-class-descriptions-boxable.csv",
    "oidv6-class-descriptions-boxable.csv",
    "class-descriptions-boxable.csv",
    "oidv7-class-descriptions.csv",
    "oidv6-class-descriptions.csv",
    "class-descriptions.csv",
)
_DESCRIPTION_HEADERS = ("labelname", "label_name", "id", "mid")
_EDITION = re.compile(r"^(oidv\d+|challenge-\d+)[-_]", re.IGNORECASE)
_KIND = re.compile(r"[-_]?(annotations[-_]|detection[-_])?bbox$", re.IGNORECASE)


def _split_in_name(path: str) -> str:
    """The split a box file's name carries, or "" when it is named for its kind only."""
    stem = re.sub(r"\.csv$", "", posixpath.basename(path), flags=re.IGNORECASE)
    stem = _KIND.sub("", _EDITION.sub("", stem)).strip("_-.")
    return re.sub(r"[^A-Za-z0-9_-]", "_", stem)


def split_of_boxes(path: str, root: str) -> str | None:
    """`oidv6-train-annotations-bbox.csv` → `train`, `validation-annotations-bbox.csv` →
    `validation`, `challenge-2019-train-detection-bbox.csv` → `train`; a file named for its
    kind only stands for its folder."""
    return _split_in_name(path) or split_of_folder(path, root)


def read_descriptions(path: str, root: str | None = None) -> dict[str, str]:
    """MID → display name from a class-descriptions CSV (`LabelName,DisplayName`, with or
    without that header), in the file's order. A display name two MIDs share is told apart by
    its MID (`Name (/m/0abc)`), so their objects are not merged. A file found beside the boxes
    (not given with --classes) must lie inside their folder `root`. Raises UnusableSource,
    or OSError."""
    if root is not None and not contained(path, root):
        raise UnusableSource(f"{path} is a link that leads outside {root}; not read")
    try:
        text = read_file(path).decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UnusableSource(f"{path} is not UTF-8 text") from None
    names: dict[str, str] = {}
    for number, row in enumerate(csv.reader(text.splitlines()), start=1):
        cells = [cell.strip() for cell in row]
        if not any(cells):
            continue
        if number == 1 and cells[0].lower() in _DESCRIPTION_HEADERS:
            continue
        if len(cells) < 2 or not cells[0] or not cells[1]:
            raise UnusableSource(
                f"{path}:{number}: {excerpt(','.join(row))} is not LabelName,DisplayName"
            )
        if cells[0] in names:
            raise UnusableSource(f"{path}:{number}: {excerpt(cells[0])} is described twice")
        names[cells[0]] = cells[1]
    shared = {name for name, count in Counter(names.values()).items() if count > 1}
    return {mid: f"{name} ({mid})" if name in shared else name for mid, name in names.items()}


def _flag(cells: dict[str, str], column: str) -> bool | None:
    """A 0/1 column; -1 or empty (not annotated) is None."""
    value = cells.get(column, "").strip()
    if value in ("", "-1"):
        return None
    if value in ("0", "1"):
        return value == "1"
    raise ValueError(f"{column} is not 0, 1 or -1: {excerpt(repr(value))}")


def _box(cells: dict[str, str], source: str, names: dict[str, str]) -> Box:
    mid = cells["LabelName"].strip()
    if not mid:
        raise ValueError("LabelName is empty")
    if names and mid not in names:
        raise ValueError(f"class {excerpt(repr(mid))} is not in the class descriptions")
    corners = {c: parse_number(cells[c], c) for c in ("XMin", "XMax", "YMin", "YMax")}
    return Box(
        label=names.get(mid, mid),
        xmin=corners["XMin"],
        ymin=corners["YMin"],
        xmax=corners["XMax"],
        ymax=corners["YMax"],
        source=source,
        truncated=bool(_flag(cells, "IsTruncated")),
        is_crowd=_flag(cells, "IsGroupOf"),
        normalized=True,
    )


def _image_folder(path: str, options: ReaderOptions) -> str:
    """`<split>/` when the images root (or, without --images, the box file's folder) holds a
    folder named after the file's split, as Open Images' download keeps them, else ""."""
    split = _split_in_name(path)
    base = posixpath.dirname(path) if options.images_beside_annotations else options.images
    if split and base and is_folder(posixpath.join(base, split)):
        return f"{split}/"
    return ""


class _Run:
    """The rows of one image read one after another, which leave as one mention."""

    def __init__(self, key: str):
        self.key = key
        self.sources: list[str] = []
        self.boxes: list[Box] = []

    def mention(self) -> ImageAnnotation:
        return ImageAnnotation(self.key, tuple(self.sources), tuple(self.boxes))


def _rows(
    reader: Iterator[list[str]], header: list[str], path: str, options: ReaderOptions, names
) -> Iterator[Box | ErrorRecord | tuple[str, str]]:
    """For each row: an error record, or (image key, row source) followed by its box or by
    an error record for it. Each row is its own error boundary."""
    folder = _image_folder(path, options)
    last: tuple[str, str] | None = None  # The previous row's image id and key.
    for item in numbered_rows(reader, path):
        if isinstance(item, ErrorRecord):
            yield item
            continue
        source, lines, row = item
        if len(row) != len(header):
            reason = f"row{lines} does not have the header's {len(header)} columns"
            yield ErrorRecord(source, None, STAGE_READ, reason, 1)
            continue
        if undecodable(row):
            reason = f"row{lines} holds bytes that are not UTF-8 text"
            yield ErrorRecord(source, None, STAGE_READ, reason, 1)
            continue
        cells = dict(zip(header, row, strict=True))
        image_id = cells["ImageID"].strip()
        if last is None or last[0] != image_id:
            try:
                if not image_id:
                    raise UnsafePathError("ImageID is empty")
                last = (image_id, image_key_for(f"{folder}{image_id}.jpg", path, options))
            except UnsafePathError as error:
                yield ErrorRecord(source, excerpt(image_id) or None, STAGE_READ, str(error), 1)
                continue
        key = last[1]
        yield key, source
        try:
            yield _box(cells, source, names)
        except Exception as error:
            yield ErrorRecord(source, key, STAGE_READ, str(error), 1)


@file_boundary
def parse_boxes(
    stream: BinaryIO, path: str, options: ReaderOptions, names: dict[str, str] | None = None
) -> Parsed:
    """Streams a box file: consecutive rows of an image leave as one mention (see the module
    docstring); `names` maps MIDs to class names (empty: classes are named by MID)."""
    reader = csv.reader(text_of(stream))
    try:
        header = [column.strip() for column in next(reader)]
    except StopIteration:
        header = []
    missing = [column for column in REQUIRED_COLUMNS if column not in header]
    if missing:
        found = shown_row(header)[:60]
        reason = f"missing Open Images columns: {', '.join(missing)}; found {found}"
        yield ErrorRecord(path, None, STAGE_READ, reason)
        return
    run: _Run | None = None
    for item in _rows(reader, header, path, options, names or {}):
        if isinstance(item, tuple):
            key, source = item
            if run is None or run.key != key or len(run.sources) >= RUN_BOXES:
                if run is not None:
                    yield run.mention()
                run = _Run(key)
            run.sources.append(source)
        elif isinstance(item, Box) and run is not None:
            run.boxes.append(item)
        else:
            yield item
    if run is not None:
        yield run.mention()


def _descriptions_beside(files: list[str], root: str) -> str | None:
    """The first class-descriptions file found in the box files' folders, or None."""
    folders = sorted({posixpath.dirname(path) for path in files})
    for name in DESCRIPTIONS:
        for folder in folders:
            found = matching_files(posixpath.join(folder, name))
            if found:
                return found[0]
    return None


def _header_problem(row: list[str]) -> str | None:
    missing = [column for column in REQUIRED_COLUMNS if column not in row]
    if not missing:
        return None
    return (
        f"not Open Images boxes: the header must name {HEADER}; missing {', '.join(missing)}, "
        f"found {shown_row(row)}"
    )


def _locate(request: Request, fmt: Format) -> Source:
    """The box files, refused when none has Open Images' header, and the class descriptions:
    --classes, else a descriptions file beside the box files, else classes named by MID."""
    source = locate_files(request, fmt)
    files = matching_files(source.pattern)
    root = source.options.annotations_root
    refuse_unless_one_reads(files, source.pattern, root, _header_problem)
    if request.classes_file:
        read_descriptions(request.classes_file)
        return source
    found = _descriptions_beside(files, root)
    if found is None:
        notice = (
            "found no class descriptions (class-descriptions-boxable.csv) beside the box files; "
            "classes are named by their MIDs (/m/...): give --classes FILE to name them"
        )
        return replace(source, notices=(*source.notices, notice))
    read_descriptions(found, root)
    return replace(source, options=replace(source.options, classes_file=found))


class ReadOpenImages(Reader):
    """Box files → annotations and errors; the class descriptions' classes, declared with
    their place in the file as their id (1, 2, ...)."""

    def expand(self, pbegin: beam.pvalue.PBegin) -> dict[str, beam.PCollection]:
        path = self._options.classes_file
        names = read_descriptions(path) if path else {}
        parse = functools.partial(_parse_file, names=names)
        read = pbegin | "Files" >> ParseFiles(self._pattern, parse, self._options, split_of_boxes)
        declared = [
            ClassDeclaration(name, number, f"{path}#class[{number}]")
            for number, (mid, name) in enumerate(names.items(), start=1)
        ]
        return {**read, CLASSES: pbegin | "ClassDescriptions" >> beam.Create(declared)}


def _parse_file(
    handle: BinaryIO, path: str, options: ReaderOptions, names: dict[str, str]
) -> Parsed:
    return parse_boxes(handle, path, options, names)


FORMAT = Format(
    name="open-images",
    folder_glob="*bbox.csv",
    reader=ReadOpenImages,
    split_of=split_of_boxes,
    locate=_locate,
)
