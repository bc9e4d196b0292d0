"""Pascal VOC XML: one `<annotation>` file per image, as LabelImg and the VOC devkit write them.

Annotation files are untrusted: the parser resolves no entities, loads no DTD and opens no
network connection, so XXE and entity-expansion payloads come through as inert text.
"""

from __future__ import annotations

import contextlib
import posixpath
from collections.abc import Iterator
from dataclasses import replace
from typing import BinaryIO

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from lxml import etree

from transforms.paths import UnsafePathError
from transforms.readers.base import (
    ANNOTATIONS,
    Format,
    Parsed,
    ParseFiles,
    Reader,
    ReaderOptions,
    Request,
    Source,
    UnusableSource,
    annotation_pattern,
    annotations_root,
    file_boundary,
    guarded,
    image_key_for,
    locate_files,
    matching_files,
    parse_each,
    read_file,
    route,
    split_of_folder,
)
from transforms.readers.cvat import looks_like_cvat
from transforms.readers.values import declared_size, parse_number, undecodable
from transforms.records import ERRORS, STAGE_READ, Box, ErrorRecord, ImageAnnotation, excerpt

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


def _flag(element: etree._Element, path: str) -> bool:
    return _text(element, path).lower() in ("1", "true", "yes")


def _parse_object(element: etree._Element, source: str) -> Box:
    """Raises ValueError naming the missing or non-numeric part of an `<object>`."""
    label = _text(element, "name")
    if not label:
        raise ValueError("object has no <name>")
    box = element.find("bndbox")
    if box is None:
        raise ValueError(f"object {excerpt(repr(label))} has no <bndbox>")
    corners = {
        corner: parse_number(_text(box, corner), f"<{corner}> of object {excerpt(repr(label))}")
        for corner in ("xmin", "ymin", "xmax", "ymax")
    }
    return Box(
        label=label,
        source=source,
        difficult=_flag(element, "difficult"),
        truncated=_flag(element, "truncated"),
        view=_text(element, "pose"),
        **corners,
    )


def _annotation(
    root: etree._Element, objects: list[etree._Element], source: str, options: ReaderOptions
) -> Parsed:
    name = _text(root, "filename")
    try:
        key = image_key_for(name, source, options)
    except UnsafePathError as error:
        yield ErrorRecord(source, excerpt(name) or None, STAGE_READ, str(error), len(objects))
        return
    boxes, errors = parse_each(
        ((f"{source}#object[{index}]", element) for index, element in enumerate(objects, 1)),
        _parse_object,
        key,
    )
    yield from errors
    yield ImageAnnotation(
        image=key,
        sources=(source,),
        boxes=boxes,
        width=declared_size(_text(root, "size/width")),
        height=declared_size(_text(root, "size/height")),
    )


@file_boundary
def parse_voc(data: bytes, source: str, options: ReaderOptions | None = None) -> Parsed:
    """Yields the file's image annotation and an error record for each part it rejects."""
    try:
        root = etree.fromstring(data, _PARSER)
    except etree.XMLSyntaxError as error:
        yield ErrorRecord(source, None, STAGE_READ, f"malformed XML: {excerpt(str(error))}")
        return
    if root.tag != "annotation":
        tag = excerpt(str(root.tag))
        reason = f"root element is <{tag}>, not <annotation>"
        if root.tag == "annotations":
            reason += "; CVAT XML is read with --format cvat"
        yield ErrorRecord(source, None, STAGE_READ, reason)
        return
    objects = root.findall("object")
    annotation = _annotation(root, objects, source, options or ReaderOptions())
    yield from guarded(annotation, source, None, len(objects))


def _parse_file(handle: BinaryIO, path: str, options: ReaderOptions) -> Parsed:
    return parse_voc(handle.read(), path, options)


def _image_sets(root: str) -> tuple[tuple[str, str], ...]:
    """VOC's `ImageSets/Main/{train,val,test}.txt` beside the annotations folder."""
    main = FileSystems.join(posixpath.dirname(root), "ImageSets", "Main")
    lists = ((split, FileSystems.join(main, f"{split}.txt")) for split in SPLIT_LISTS)
    return tuple((split, path) for split, path in lists if FileSystems.exists(path))


def _refuse_cvat(pattern: str) -> None:
    """Refuses CVAT's `annotations.xml` given as VOC: its root `<annotations>` holds every
    image, where VOC has an `<annotation>` file per image, and as VOC it would read as
    nothing but errors. Only the first file is looked at."""
    first = next(iter(matching_files(pattern)), None)
    with contextlib.suppress(OSError):
        if first is not None and looks_like_cvat(first):
            raise UnusableSource(
                f"{first} is CVAT XML (root <annotations>), not Pascal VOC: use --format cvat"
            )


def _locate(request: Request, fmt: Format) -> Source:
    """With source splits, VOC's ImageSets lists when they exist, else one folder per split.
    CVAT XML is refused (see `_refuse_cvat`)."""
    _refuse_cvat(annotation_pattern(request.annotations, fmt.folder_glob))
    lists = _image_sets(annotations_root(request.annotations)) if request.source_splits else ()
    if not lists:
        return locate_files(request, fmt)
    plain = locate_files(replace(request, source_splits=False), fmt)
    options = replace(plain.options, source_splits=True, split_sources=lists)
    return Source(plain.pattern, options, tuple(split for split, _ in lists))


class ListedStems(beam.DoFn):
    """(split, ImageSets list) → (annotation file stem, split) for each listed id; a list
    that cannot be read, and each line holding bytes that are not UTF-8, is an error record
    (the annotation that line names gets no split from it)."""

    def _stems(self, split: str, path: str) -> Iterator:
        text = read_file(path).decode("utf-8-sig", errors="replace")
        for number, line in enumerate(text.splitlines(), start=1):
            fields = line.split()
            if not fields:
                continue
            if undecodable(fields[0]):
                reason = (
                    "list line holds bytes that are not UTF-8 text; "
                    "the annotation it names gets no split from it"
                )
                yield ErrorRecord(f"{path}:{number}", None, STAGE_READ, reason)
            else:
                yield fields[0], split

    def process(self, element: tuple[str, str]) -> Iterator:
        split, path = element
        for item in guarded(self._stems(split, path), path, whole_file=True):
            yield route(item)


def in_listed_splits(mention: ImageAnnotation, splits: dict[str, list[str]]) -> ImageAnnotation:
    """The mention in the first split whose list names the annotation file, carrying the
    others (read once, copied into each); no split when no list names it."""
    stem = posixpath.splitext(posixpath.basename(mention.sources[0]))[0]
    first, *others = splits.get(stem) or [None]
    return replace(mention, split=first, other_splits=tuple(others))


def with_listed_splits(
    pbegin: beam.pvalue.PBegin, read: dict[str, beam.PCollection], lists: tuple
) -> dict[str, beam.PCollection]:
    """A reader's outputs with each annotation in the splits whose lists (`(split, path)`
    pairs) name its annotation file's stem, and an error for each unusable list line."""
    listed = (
        pbegin
        | "ImageSets" >> beam.Create(lists)
        | "ListedStems" >> beam.ParDo(ListedStems()).with_outputs(ERRORS, main="stems")
    )
    splits = (
        listed.stems
        | "SplitsOfStem" >> beam.GroupByKey()
        | "Sorted" >> beam.MapTuple(lambda stem, names: (stem, sorted(set(names))))
    )
    annotations = read[ANNOTATIONS] | "SourceSplit" >> beam.Map(
        in_listed_splits, beam.pvalue.AsDict(splits)
    )
    errors = (read[ERRORS], listed[ERRORS]) | "Errors" >> beam.Flatten()
    return {**read, ANNOTATIONS: annotations, ERRORS: errors}


class ReadVoc(Reader):
    """VOC files → annotations; source splits from ImageSets lists or from folders."""

    def expand(self, pbegin: beam.pvalue.PBegin) -> dict[str, beam.PCollection]:
        if not self._options.split_sources:
            return pbegin | "Files" >> ParseFiles(
                self._pattern, _parse_file, self._options, split_of_folder
            )
        plain = replace(self._options, source_splits=False)
        read = pbegin | "Files" >> ParseFiles(self._pattern, _parse_file, plain)
        return with_listed_splits(pbegin, read, self._options.split_sources)


FORMAT = Format(
    name="voc",
    folder_glob="*.xml",
    reader=ReadVoc,
    split_of=split_of_folder,
    locate=_locate,
)
