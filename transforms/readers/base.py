"""What every reader shares: its options, its outputs, and parsing files one by one.

A reader is a PTransform from the pipeline's start to a dict of three PCollections:
`annotations` (ImageAnnotation mentions; several may name one image), `errors`
(ErrorRecords) and `classes` (ClassDeclarations: classes a source declares with its own ids).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.metrics import Metrics

from transforms.records import (
    ERRORS,
    STAGE_READ,
    ClassDeclaration,
    ErrorRecord,
    ImageAnnotation,
)

ANNOTATIONS = "annotations"
CLASSES = "classes"

Parsed = Iterable[ImageAnnotation | ErrorRecord | ClassDeclaration]


@dataclass(frozen=True)
class ReaderOptions:
    """Settings readers need besides their input.

    `images` is the images root, for formats that name images by paths relative to the
    annotation file or by absolute paths; `class_names` maps class indexes to names for
    formats that store indexes (YOLO); masks and keypoints are off by default because they
    multiply the output size.
    """

    images: str = ""
    include_masks: bool = False
    include_keypoints: bool = False
    source_splits: bool = False
    class_names: tuple[str, ...] = ()


def route(record: ImageAnnotation | ErrorRecord | ClassDeclaration):
    """Sends a parsed record to its output: errors and classes are tagged, mentions are main."""
    if isinstance(record, ErrorRecord):
        return beam.pvalue.TaggedOutput(ERRORS, record)
    if isinstance(record, ClassDeclaration):
        return beam.pvalue.TaggedOutput(CLASSES, record)
    return record


class _ParseFile(beam.DoFn):
    """Runs a format's parser on one file; a file that cannot be read becomes an error."""

    def __init__(self, parse: Callable[[fileio.ReadableFile, ReaderOptions], Parsed], options):
        self._parse = parse
        self._options = options
        self._files = Metrics.counter("odrecords", "annotation_files")

    def process(self, file: fileio.ReadableFile) -> Iterator:
        self._files.inc()
        try:
            for record in self._parse(file, self._options):
                yield route(record)
        except OSError as error:
            yield beam.pvalue.TaggedOutput(
                ERRORS,
                ErrorRecord(file.metadata.path, None, STAGE_READ, f"unreadable file: {error}"),
            )


class OpenFiles(beam.PTransform):
    """The files matching a pattern, as `fileio.ReadableFile`s."""

    def __init__(self, pattern: str):
        super().__init__()
        self._pattern = pattern

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        return pbegin | "Match" >> fileio.MatchFiles(self._pattern) | "Open" >> fileio.ReadMatches()


class ParseFiles(beam.PTransform):
    """Matches a file pattern and parses each file on its own with `parse`."""

    def __init__(
        self,
        pattern: str,
        parse: Callable[[fileio.ReadableFile, ReaderOptions], Parsed],
        options: ReaderOptions,
    ):
        super().__init__()
        self._pattern = pattern
        self._parse = parse
        self._options = options

    def expand(self, pbegin: beam.pvalue.PBegin) -> dict[str, beam.PCollection]:
        parsed = (
            pbegin
            | "Files" >> OpenFiles(self._pattern)
            | "Parse"
            >> beam.ParDo(_ParseFile(self._parse, self._options)).with_outputs(
                ERRORS, CLASSES, main=ANNOTATIONS
            )
        )
        return {ANNOTATIONS: parsed[ANNOTATIONS], ERRORS: parsed[ERRORS], CLASSES: parsed[CLASSES]}
