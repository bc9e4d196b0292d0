"""The reading end of the graph: annotation files of any supported format → ImageAnnotations."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.metrics import Metrics

from transforms.records import ERRORS, STAGE_READ, ErrorRecord, ImageAnnotation
from transforms.tf_csv import parse_tf_csv
from transforms.voc import parse_voc

Parsed = Iterable[ImageAnnotation | ErrorRecord]


def _read_voc(file: fileio.ReadableFile) -> Parsed:
    return parse_voc(file.read(), file.metadata.path)


def _read_csv(file: fileio.ReadableFile) -> Parsed:
    with file.open() as stream:
        yield from parse_tf_csv(stream, file.metadata.path)


# Format name → (function reading one matched file, extension of its files in a folder).
FORMATS: dict[str, tuple[Callable[[fileio.ReadableFile], Parsed], str]] = {
    "voc": (_read_voc, "xml"),
    "csv": (_read_csv, "csv"),
}


class _ParseFile(beam.DoFn):
    """Runs a format's parser on one file; any failure of the file becomes an error record."""

    def __init__(self, read: Callable[[fileio.ReadableFile], Parsed]):
        self._read = read
        self._files = Metrics.counter("odrecords", "annotation_files")
        self._errors = Metrics.counter("odrecords", "errors_read")

    def process(self, file: fileio.ReadableFile) -> Iterator:
        self._files.inc()
        try:
            for record in self._read(file):
                if isinstance(record, ErrorRecord):
                    self._errors.inc()
                    yield beam.pvalue.TaggedOutput(ERRORS, record)
                else:
                    yield record
        except OSError as error:
            self._errors.inc()
            yield beam.pvalue.TaggedOutput(
                ERRORS,
                ErrorRecord(file.metadata.path, None, STAGE_READ, f"unreadable file: {error}"),
            )


class ReadAnnotations(beam.PTransform):
    """Matches a file pattern and parses every file with the chosen format's reader.

    Outputs `annotations` (one ImageAnnotation per image mention; several may name one image)
    and `errors`.
    """

    def __init__(self, fmt: str, pattern: str):
        super().__init__()
        self._read = FORMATS[fmt][0]
        self._pattern = pattern

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.pvalue.DoOutputsTuple:
        return (
            pbegin
            | "Match" >> fileio.MatchFiles(self._pattern)
            | "Open" >> fileio.ReadMatches()
            | "Parse" >> beam.ParDo(_ParseFile(self._read)).with_outputs(ERRORS, main="annotations")
        )
