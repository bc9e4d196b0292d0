"""Grouping image mentions into one annotation per image, as Dat Tran's `split` does for CSV rows.

Several CSV rows, or several XML files naming one image, become one example. Only annotations
travel through this shuffle; image bytes are read after it. Mentions are grouped per image and
source split: an image two annotation files put in two splits is written once in each, never
twice in one. One annotation a source lists in several splits (coco128 lists its train folder
as `val` too) travels once, naming its `other_splits`, and is copied into them after counting
(`splits.in_each_split`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import apache_beam as beam

from transforms.records import ImageAnnotation, annotation_file


def natural_key(text: str) -> tuple:
    """Sorts `rows.csv:9` before `rows.csv:10`, so merged boxes keep the files' own order."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text))


def merge_annotations(image: str, mentions: Iterable[ImageAnnotation]) -> ImageAnnotation:
    """One annotation holding every box of every mention, in a deterministic order.

    The shuffle delivers mentions in any order; sorting by source makes reruns and other
    runners produce byte-identical examples. Mentions with the same sources are one
    annotation read twice (a folder listed twice in a data.yaml) and count once.
    """
    distinct = {mention.sources: mention for mention in mentions}
    ordered = sorted(distinct.values(), key=lambda mention: natural_key(mention.sources[0]))
    image_split = ordered[0].split
    boxes = sorted(
        (box for mention in ordered for box in mention.boxes),
        key=lambda box: natural_key(box.source),
    )
    sources = tuple(sorted({s for mention in ordered for s in mention.sources}, key=natural_key))
    declared = next(
        ((m.width, m.height) for m in ordered if m.width is not None and m.height is not None),
        (None, None),
    )
    return ImageAnnotation(
        image=image,
        sources=sources,
        boxes=tuple(boxes),
        width=declared[0],
        height=declared[1],
        split=image_split,
        embedded_in=next((m.embedded_in for m in ordered if m.embedded_in is not None), None),
        other_splits=tuple(sorted({s for m in ordered for s in m.other_splits} - {image_split})),
        source_id=next((m.source_id for m in ordered if m.source_id is not None), None),
    )


def annotation_files(image: ImageAnnotation) -> list[str]:
    """The distinct annotation files an image's annotation was merged from."""
    return sorted({annotation_file(source) for source in image.sources})


class GroupByImage(beam.PTransform):
    """ImageAnnotation mentions → one merged ImageAnnotation per image and source split."""

    def expand(self, mentions: beam.PCollection) -> beam.PCollection:
        return (
            mentions
            | "KeyByImage" >> beam.Map(lambda mention: ((mention.image, mention.split), mention))
            | "Group" >> beam.GroupByKey()
            | "Merge" >> beam.MapTuple(lambda key, group: merge_annotations(key[0], group))
        )
