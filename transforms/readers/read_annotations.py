"""The reading end of the graph: annotations in any supported format → canonical records.

`ReadAnnotations` runs the format's reader, then applies what all formats share: the class
map. Its outputs are `annotations`, `errors`, `classes` (classes declared with the source's
own ids) and `counts` (for the manifest).
"""

from __future__ import annotations

import apache_beam as beam

from transforms.readers.base import ANNOTATIONS, CLASSES, Format, ReaderOptions
from transforms.readers.class_map import DROPPED, ApplyClassMap, rename_declaration
from transforms.records import ERRORS

COUNTS = "counts"


class ReadAnnotations(beam.PTransform):
    """Reads annotations of `fmt` from `pattern`; `class_map` renames or drops classes (see
    `class_map.py`)."""

    def __init__(
        self,
        fmt: Format,
        pattern: str,
        options: ReaderOptions,
        class_map: dict[str, str | None] | None = None,
    ):
        super().__init__()
        self._format = fmt
        self._pattern = pattern
        self._options = options
        self._class_map = class_map

    def expand(self, pbegin: beam.pvalue.PBegin) -> dict[str, beam.PCollection]:
        read = pbegin | self._format.name.title() >> self._format.reader(
            self._pattern, self._options
        )
        annotations, classes = read[ANNOTATIONS], read[CLASSES]
        counts = pbegin | "NoCounts" >> beam.Create([])
        if self._class_map:
            mapped = annotations | "ClassMap" >> beam.ParDo(
                ApplyClassMap(self._class_map)
            ).with_outputs(DROPPED, main=ANNOTATIONS)
            annotations, counts = mapped[ANNOTATIONS], mapped[DROPPED]
            classes = classes | "RenameClasses" >> beam.FlatMap(rename_declaration, self._class_map)
        return {ANNOTATIONS: annotations, ERRORS: read[ERRORS], CLASSES: classes, COUNTS: counts}
