"""KITTI 2D object labels: one `label_2/<id>.txt` per image, one object per line,
`type truncated occluded alpha x1 y1 x2 y2 h w l x y z ry`, and a `score` after them in
results files; the image is `image_2/<id>.png`.

`DontCare` lines mark regions where objects were not labelled (too far, too small): they are
no objects, so they are left out and counted in the manifest as dropped (`dropped_by_class`).
`truncated` (0 to 1, the share of the object outside the image) becomes the truncated flag,
set when above 0; occlusion, the observation angle, the 3D size, location and rotation, and a
results file's score have no place in a record and are not kept. Pixel corners are taken as
written (KITTI's are 0-based and inclusive, as VOC's are taken).

Labels are found in a `label_2` folder (or a `labels` folder, as NVIDIA TAO's KITTI keeps
them) given directly or inside the folder given, or in each of its sub-folders (`training/`, or
one per split); the image of `<folder>/label_2/<id>.txt` is `<folder>/image_2/<id>.png`
(`labels` → `images`; beside the label file in a folder of any other name), or
`<--images>/<id>.png`. When no `.png` is there, a `.jpg` or `.jpeg`
of that name is taken. Source splits come from `ImageSets/train.txt` and `val.txt` (the split
3D detection code uses) when they lie in the dataset folder or the one above it, else from
the sub-folders (`train/label_2`, `val/label_2`). KITTI's own `ImageSets/test.txt` names its
unlabelled testing images, whose ids the training images share, so it is not read.
"""

from __future__ import annotations

import posixpath
from dataclasses import replace
from typing import BinaryIO

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from transforms.paths import image_key_under
from transforms.readers.base import (
    COUNTS,
    Format,
    Parsed,
    ParseFiles,
    Reader,
    ReaderOptions,
    Request,
    Source,
    UnusableSource,
    annotations_root,
    is_folder,
    matching_files,
    source_split_names,
)
from transforms.readers.values import parse_number
from transforms.readers.voc import with_listed_splits
from transforms.records import STAGE_READ, Box, ErrorRecord, ImageAnnotation, excerpt

DONT_CARE = "DontCare"
SPLIT_LISTS = ("train", "val")
# Label folders and the image folders beside them.
_IMAGE_FOLDERS = {"label_2": "image_2", "labels": "images"}
_IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
_FIELDS = ("truncated", "occluded", "alpha", "x1", "y1", "x2", "y2", "h", "w", "l", "x", "y", "z")


def _box(fields: list[str], source: str) -> Box:
    """One object line's box; raises ValueError naming the field that is wrong."""
    if len(fields) not in (15, 16):
        raise ValueError(
            f"line has {len(fields)} fields, not 15 (type truncated occluded alpha x1 y1 x2 y2 "
            "h w l x y z ry) or 16 (and score)"
        )
    names = (*_FIELDS, "ry", "score")[: len(fields) - 1]
    values = {name: parse_number(v, name) for v, name in zip(fields[1:], names, strict=True)}
    return Box(
        fields[0],
        values["x1"],
        values["y1"],
        values["x2"],
        values["y2"],
        source,
        truncated=values["truncated"] > 0,
    )


def _image_name(path: str, options: ReaderOptions) -> tuple[str, str]:
    """(folder, stem) of the image a label file stands for: the image folder beside its
    label folder, or `--images`."""
    folder, name = posixpath.split(path)
    stem = posixpath.splitext(name)[0]
    if not options.images_beside_annotations:
        return options.images, stem
    parent, leaf = posixpath.split(folder)
    return posixpath.join(parent, _IMAGE_FOLDERS.get(leaf, leaf)), stem


def image_key(path: str, options: ReaderOptions) -> str:
    """The key of a label file's image: `<id>.png`, or a `.jpg` or `.jpeg` of that name when
    only that exists. Raises UnsafePathError when it lies outside the images root."""
    folder, stem = _image_name(path, options)
    chosen = f"{stem}{_IMAGE_EXTENSIONS[0]}"
    for extension in _IMAGE_EXTENSIONS:
        if FileSystems.exists(FileSystems.join(folder, f"{stem}{extension}")):
            chosen = f"{stem}{extension}"
            break
    return image_key_under(chosen, options.images, folder, fallback=False)


def parse_kitti(data: bytes, path: str, key: str) -> Parsed:
    """One label file's annotation; each line is its own error boundary, and `DontCare`
    regions are counted, not read."""
    boxes: list[Box] = []
    dont_care = 0
    for number, raw in enumerate(data.splitlines(), start=1):
        source = f"{path}:{number}"
        try:
            fields = raw.decode("utf-8").split()
        except UnicodeDecodeError:
            yield ErrorRecord(source, key, STAGE_READ, "line is not UTF-8 text", 1)
            continue
        if not fields:
            continue
        if fields[0] == DONT_CARE:
            dont_care += 1
            continue
        try:
            boxes.append(_box(fields, source))
        except ValueError as error:
            yield ErrorRecord(source, key, STAGE_READ, excerpt(str(error), 160), 1)
    if dont_care:
        yield beam.pvalue.TaggedOutput(COUNTS, {"dropped": {DONT_CARE: dont_care}})
    yield ImageAnnotation(image=key, sources=(path,), boxes=tuple(boxes))


def _objects(data: bytes) -> int:
    """The object lines of a label file: those neither blank nor `DontCare`."""
    return sum(1 for line in data.splitlines() if line.split()[:1] not in ([], [b"DontCare"]))


def _parse_file(handle: BinaryIO, path: str, options: ReaderOptions) -> Parsed:
    data = handle.read()
    try:
        key = image_key(path, options)
    except ValueError as error:
        yield ErrorRecord(path, None, STAGE_READ, str(error), _objects(data))
        return
    yield from parse_kitti(data, path, key)


def split_of_label_file(path: str, root: str) -> str | None:
    """`ROOT/<split>/label_2/<id>.txt` → `<split>`; None for a label folder that is the root
    or directly in it."""
    prefix = root.rstrip("/") + "/"
    if not path.startswith(prefix):
        return None
    parts = path[len(prefix) :].split("/")
    return parts[0] if len(parts) >= 3 else None


def _labels(folder: str) -> tuple[str, str]:
    """The label files' pattern inside a folder given as --annotations, and the dataset
    folder their image folders lie in."""
    candidates = [(folder, posixpath.dirname(folder))]
    candidates += [(posixpath.join(folder, leaf), folder) for leaf in _IMAGE_FOLDERS]
    candidates += [(posixpath.join(folder, "*", leaf), folder) for leaf in _IMAGE_FOLDERS]
    for labels, dataset in candidates:
        pattern = posixpath.join(labels, "*.txt")
        if matching_files(pattern):
            return pattern, dataset
    raise UnusableSource(
        f"found no KITTI label files (*.txt) in {folder}, in its label_2 or labels folder, "
        "nor in those of its sub-folders"
    )


def _image_sets(dataset: str) -> tuple[tuple[str, str], ...]:
    """`ImageSets/{train,val}.txt` in the dataset folder or the one above it."""
    for folder in (dataset, posixpath.dirname(dataset)):
        lists = [
            (split, posixpath.join(folder, "ImageSets", f"{split}.txt")) for split in SPLIT_LISTS
        ]
        found = tuple((split, path) for split, path in lists if FileSystems.exists(path))
        if found:
            return found
    return ()


def _locate(request: Request, fmt: Format) -> Source:
    if is_folder(request.annotations):
        pattern, dataset = _labels(request.annotations.rstrip("/"))
    else:
        pattern = request.annotations
        dataset = posixpath.dirname(annotations_root(pattern))
    files = matching_files(pattern)
    if not files:
        raise UnusableSource(f"no annotation files match {pattern}")
    options = ReaderOptions(
        images=request.images or dataset,
        images_beside_annotations=request.images is None,
        annotations_root=dataset,
        extras=request.extras,
    )
    if not request.source_splits:
        return Source(pattern, options)
    lists = _image_sets(dataset)
    if lists:
        options = replace(options, split_sources=lists)
        return Source(pattern, options, tuple(split for split, _ in lists))
    options = replace(options, source_splits=True)
    return Source(pattern, options, source_split_names(fmt, files, dataset))


class ReadKitti(Reader):
    """KITTI label files → annotations, errors and the count of DontCare regions; source
    splits from ImageSets lists or from sub-folders."""

    def expand(self, pbegin: beam.pvalue.PBegin) -> dict[str, beam.PCollection]:
        read = pbegin | "Files" >> ParseFiles(
            self._pattern, _parse_file, self._options, split_of_label_file
        )
        if not self._options.split_sources:
            return read
        return with_listed_splits(pbegin, read, self._options.split_sources)


FORMAT = Format(
    name="kitti",
    folder_glob="*.txt",
    reader=ReadKitti,
    split_of=split_of_label_file,
    locate=_locate,
)
