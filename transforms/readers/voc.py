"""Pascal VOC XML: one `<annotation>` file per image, as LabelImg and the VOC devkit write them.

Annotation files are untrusted: the parser resolves no entities, loads no DTD and opens no
network connection, so XXE and entity-expansion payloads come through as inert text.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator
from dataclasses import replace

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.io.filesystems import FileSystems
from lxml import etree

from transforms.paths import UnsafePathError
from transforms.readers.base import (
    ANNOTATIONS,
    Format,
    Parsed,
    ParseFiles,
    ReaderOptions,
    Request,
    Source,
    annotations_root,
    image_key_for,
    locate_files,
    split_of_folder,
)
from transforms.records import STAGE_READ, Box, ErrorRecord, ImageAnnotation

SPLIT_LISTS = ("train", "val", "test")

_PARSER = etree.XMLParser(
    resolve_entities=False,
    no_network=True,
    load_dtd=False,
    dtd_validation=False,
    huge_tree=False,
    remove_comments=True,
    remove_pis=True,
)


def _text(element: etree._Element, path: str) -> str:
    return (element.findtext(path) or "").strip()


def _optional_int(element: etree._Element, path: str) -> int | None:
    try:
        return int(float(_text(element, path)))
    except ValueError:
        return None


def _flag(element: etree._Element, path: str) -> bool:
    return _text(element, path).lower() in ("1", "true", "yes")


def _parse_object(element: etree._Element, source: str) -> Box:
    """Raises ValueError naming the missing or non-numeric part of an `<object>`."""
    label = _text(element, "name")
    if not label:
        raise ValueError("object has no <name>")
    box = element.find("bndbox")
    if box is None:
        raise ValueError(f"object {label!r} has no <bndbox>")
    corners = {}
    for corner in ("xmin", "ymin", "xmax", "ymax"):
        value = _text(box, corner)
        try:
            corners[corner] = float(value)
        except ValueError:
            raise ValueError(f"object {label!r} has a non-numeric <{corner}> {value!r}") from None
    return Box(
        label=label,
        source=source,
        difficult=_flag(element, "difficult"),
        truncated=_flag(element, "truncated"),
        view=_text(element, "pose"),
        **corners,
    )


def parse_voc(
    data: bytes, source: str, options: ReaderOptions | None = None
) -> Iterator[ImageAnnotation | ErrorRecord]:
    """Yields the file's image annotation and an error record for each part it rejects."""
    try:
        root = etree.fromstring(data, _PARSER)
    except etree.XMLSyntaxError as error:
        yield ErrorRecord(source, None, STAGE_READ, f"malformed XML: {error}")
        return
    if root.tag != "annotation":
        yield ErrorRecord(
            source, None, STAGE_READ, f"root element is <{root.tag}>, not <annotation>"
        )
        return
    objects = root.findall("object")
    try:
        key = image_key_for(_text(root, "filename"), source, options or ReaderOptions())
    except UnsafePathError as error:
        yield ErrorRecord(
            source, _text(root, "filename") or None, STAGE_READ, str(error), len(objects)
        )
        return
    boxes = []
    for index, element in enumerate(objects, start=1):
        object_source = f"{source}#object[{index}]"
        try:
            boxes.append(_parse_object(element, object_source))
        except ValueError as error:
            yield ErrorRecord(object_source, key, STAGE_READ, str(error), 1)
    yield ImageAnnotation(
        image=key,
        sources=(source,),
        boxes=tuple(boxes),
        width=_optional_int(root, "size/width"),
        height=_optional_int(root, "size/height"),
    )


def _parse_file(file: fileio.ReadableFile, options: ReaderOptions) -> Parsed:
    return parse_voc(file.read(), file.metadata.path, options)


def _image_sets(root: str) -> tuple[tuple[str, str], ...]:
    """VOC's `ImageSets/Main/{train,val,test}.txt` beside the annotations folder."""
    main = FileSystems.join(posixpath.dirname(root), "ImageSets", "Main")
    lists = ((split, FileSystems.join(main, f"{split}.txt")) for split in SPLIT_LISTS)
    return tuple((split, path) for split, path in lists if FileSystems.exists(path))


def _locate(request: Request, fmt: Format) -> Source:
    """With source splits, VOC's ImageSets lists when they exist, else one folder per split."""
    lists = _image_sets(annotations_root(request.annotations)) if request.source_splits else ()
    if not lists:
        return locate_files(request, fmt)
    plain = locate_files(replace(request, source_splits=False), fmt)
    options = replace(plain.options, source_splits=True, split_sources=lists)
    return Source(plain.pattern, options, tuple(split for split, _ in lists))


def _listed_stems(element: tuple[str, str]) -> Iterator[tuple[str, str]]:
    """(split, ImageSets list) → (annotation file stem, split) for each listed id."""
    split, path = element
    with FileSystems.open(path) as handle:
        for line in handle.read().decode("utf-8", errors="replace").splitlines():
            if line.split():
                yield line.split()[0], split


def _in_listed_splits(mention: ImageAnnotation, splits: dict[str, list[str]]) -> ImageAnnotation:
    """The mention in the first split whose list names the annotation file, carrying the
    others (read once, copied into each); no split when no list names it."""
    stem = posixpath.splitext(posixpath.basename(mention.sources[0]))[0]
    first, *others = splits.get(stem) or [None]
    return replace(mention, split=first, other_splits=tuple(others))


class ReadVoc(beam.PTransform):
    """VOC files → annotations; source splits from ImageSets lists or from folders."""

    def __init__(self, pattern: str, options: ReaderOptions):
        super().__init__()
        self._pattern = pattern
        self._options = options

    def expand(self, pbegin: beam.pvalue.PBegin) -> dict[str, beam.PCollection]:
        if not self._options.split_sources:
            return pbegin | "Files" >> ParseFiles(
                self._pattern, _parse_file, self._options, split_of_folder
            )
        plain = replace(self._options, source_splits=False)
        read = pbegin | "Files" >> ParseFiles(self._pattern, _parse_file, plain)
        splits = (
            pbegin
            | "ImageSets" >> beam.Create(self._options.split_sources)
            | "ListedStems" >> beam.FlatMap(_listed_stems)
            | "SplitsOfStem" >> beam.GroupByKey()
            | "Sorted" >> beam.MapTuple(lambda stem, names: (stem, sorted(set(names))))
        )
        annotations = read[ANNOTATIONS] | "SourceSplit" >> beam.Map(
            _in_listed_splits, beam.pvalue.AsDict(splits)
        )
        return {**read, ANNOTATIONS: annotations}


FORMAT = Format(
    name="voc",
    folder_glob="*.xml",
    reader=ReadVoc,
    split_of=split_of_folder,
    locate=_locate,
)
