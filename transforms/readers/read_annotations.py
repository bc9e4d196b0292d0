"""The reading end of the graph: annotations in any supported format → canonical records.

`ReadAnnotations` picks the format's reader, then applies what all formats share: source
splits from VOC ImageSets, and the class map. Its outputs are `annotations`, `errors`,
`classes` (classes declared with the source's own ids) and `counts` (for the manifest).
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator
from dataclasses import replace

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.io.filesystems import FileSystems

from transforms.readers.base import ANNOTATIONS, CLASSES, Parsed, ParseFiles, ReaderOptions
from transforms.readers.class_map import DROPPED, ApplyClassMap, rename_declaration
from transforms.readers.coco import ReadCoco
from transforms.readers.createml import parse_createml_file
from transforms.readers.labelbox import parse_labelbox_file
from transforms.readers.labelme import parse_labelme_file
from transforms.readers.tf_csv import parse_tf_csv
from transforms.readers.voc import parse_voc
from transforms.readers.yolo import ReadYolo, YoloDataset, declarations, parse_keras_file
from transforms.records import ERRORS, ImageAnnotation

COUNTS = "counts"


def _read_voc(file: fileio.ReadableFile, options: ReaderOptions) -> Parsed:
    return parse_voc(file.read(), file.metadata.path)


def _read_csv(file: fileio.ReadableFile, options: ReaderOptions) -> Parsed:
    with file.open() as stream:
        yield from parse_tf_csv(stream, file.metadata.path)


# Formats whose files are parsed one by one: name → parser.
FILE_PARSERS = {
    "voc": _read_voc,
    "csv": _read_csv,
    "yolo-keras": parse_keras_file,
    "labelbox": parse_labelbox_file,
    "createml": parse_createml_file,
    "labelme": parse_labelme_file,
}
# Every format, and the files of it a folder given as --annotations holds.
FOLDER_GLOBS = {
    "voc": "*.xml",
    "csv": "*.csv",
    "coco": "*.json",
    "yolo": None,  # A YOLO dataset folder is read through its data.yaml or names file.
    "yolo-keras": "*.txt",
    "labelbox": "*json",  # .ndjson and .json exports
    "createml": "*.json",
    "labelme": "*.json",
}


def _stems_and_splits(element: tuple[str, str]) -> Iterator[tuple[str, str]]:
    split, path = element
    with FileSystems.open(path) as handle:
        for line in handle.read().decode("utf-8").splitlines():
            if line.split():
                yield line.split()[0], split


def _voc_split(mention: ImageAnnotation, splits: dict[str, str]) -> ImageAnnotation:
    stem = posixpath.splitext(posixpath.basename(mention.sources[0]))[0]
    return replace(mention, split=splits.get(stem))


class ReadAnnotations(beam.PTransform):
    """Reads annotations of format `fmt` from `pattern` (or a loaded YOLO dataset).

    `voc_split_files` are (split, ImageSets list) pairs for VOC's source splits;
    `class_map` renames or drops classes (see `class_map.py`).
    """

    def __init__(
        self,
        fmt: str,
        pattern: str,
        options: ReaderOptions,
        yolo_dataset: YoloDataset | None = None,
        voc_split_files: tuple[tuple[str, str], ...] = (),
        class_map: dict[str, str | None] | None = None,
    ):
        super().__init__()
        self._fmt = fmt
        self._pattern = pattern
        self._options = options
        self._yolo_dataset = yolo_dataset
        self._voc_split_files = voc_split_files
        self._class_map = class_map

    def _read(self, pbegin: beam.pvalue.PBegin) -> dict[str, beam.PCollection]:
        if self._fmt == "coco":
            return pbegin | "Coco" >> ReadCoco(self._pattern, self._options)
        if self._fmt == "yolo":
            return pbegin | "Yolo" >> ReadYolo(self._yolo_dataset, self._options)
        read = pbegin | "Files" >> ParseFiles(self._pattern, FILE_PARSERS[self._fmt], self._options)
        if self._fmt == "yolo-keras":
            names = declarations(self._options.class_names, "classes file")
            read = {**read, CLASSES: pbegin | "ClassesFile" >> beam.Create(names)}
        return read

    def expand(self, pbegin: beam.pvalue.PBegin) -> dict[str, beam.PCollection]:
        read = self._read(pbegin)
        annotations, classes = read[ANNOTATIONS], read[CLASSES]
        counts = pbegin | "NoCounts" >> beam.Create([])
        if self._voc_split_files:
            splits = (
                pbegin
                | "ImageSets" >> beam.Create(self._voc_split_files)
                | "ListedStems" >> beam.FlatMap(_stems_and_splits)
                | "SplitsOfStem" >> beam.GroupByKey()
                | "JoinSplits" >> beam.MapTuple(lambda stem, s: (stem, "|".join(sorted(set(s)))))
            )
            annotations = annotations | "SourceSplit" >> beam.Map(
                _voc_split, beam.pvalue.AsDict(splits)
            )
        if self._class_map:
            mapped = annotations | "ClassMap" >> beam.ParDo(
                ApplyClassMap(self._class_map)
            ).with_outputs(DROPPED, main=ANNOTATIONS)
            annotations, counts = mapped[ANNOTATIONS], mapped[DROPPED]
            classes = classes | "RenameClasses" >> beam.FlatMap(rename_declaration, self._class_map)
        return {ANNOTATIONS: annotations, ERRORS: read[ERRORS], CLASSES: classes, COUNTS: counts}
