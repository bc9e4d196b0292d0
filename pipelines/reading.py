"""The reading part of the create graph: annotations read, checked, grouped by image and put
in their splits, with the label map and the counts of what was read. `odrecords create` writes
its examples from it and `create --dry-run` checks the images it names, so a dry run's plan is
the build's own reading.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import apache_beam as beam

from pipelines.settings import CreateSettings
from transforms.grouping import GroupByImage, annotation_files
from transforms.images.loader import ImageLoader
from transforms.images.orientation import OrientationPolicy
from transforms.label_map import derive_label_map
from transforms.readers.base import ANNOTATIONS, CLASSES
from transforms.readers.read_annotations import COUNTS, ReadAnnotations
from transforms.records import ERRORS, ImageAnnotation
from transforms.source_ids import COUNTS as SOURCE_ID_COUNTS
from transforms.source_ids import AssignSourceIds
from transforms.splits import RequireSourceSplit, in_each_split


def _label_map(pipeline: beam.Pipeline, read: dict, settings: CreateSettings):
    """The label map and {class: source id} of renumbered classes, as singletons: the given
    one, or one derived from the classes the annotations use and the sources declare."""
    if settings.label_map is not None:
        derived = pipeline | "GivenLabelMap" >> beam.Create([(settings.label_map, {})])
    else:
        previous = settings.previous.class_ids if settings.previous else {}
        derived = _derived_label_map(pipeline, read, settings.keep_empty_classes, previous)
    return (
        derived | "LabelMap" >> beam.Map(lambda result: result[0]),
        derived | "Renumbered" >> beam.Map(lambda result: result[1]),
    )


def _derived_label_map(
    pipeline: beam.Pipeline, read: dict, keep_empty: bool, previous: dict[str, int]
):
    used = (
        read[ANNOTATIONS]
        | "ClassNames" >> beam.FlatMap(lambda mention: {box.label for box in mention.boxes})
        | "DistinctClasses" >> beam.Distinct()
        | "UsedClasses" >> beam.combiners.ToList()
    )
    declared = read[CLASSES] | "DeclaredClasses" >> beam.combiners.ToList()
    return (
        pipeline
        | "Derive" >> beam.Create([None])
        | "DeriveLabelMap"
        >> beam.Map(
            lambda _, used, declared: derive_label_map(used, declared, keep_empty, previous),
            beam.pvalue.AsSingleton(used),
            beam.pvalue.AsSingleton(declared),
        )
    )


def _read_counts(image: ImageAnnotation) -> dict:
    """An image's objects, the copies written for the other splits its source lists it in,
    and whether several annotation files named it (a labelImg copy error, a CSV listing an
    image another CSV lists too): their boxes are merged, and the manifest names a few such
    images."""
    counts = {"read": {"images": 1, "objects": len(image.boxes)}}
    copies = len(image.other_splits)
    if copies:
        counts["copies"] = {"images": copies, "objects": copies * len(image.boxes)}
    files = annotation_files(image)
    if len(files) > 1:
        counts["merged"] = {"count": 1, "first": [f"{image.image} ({', '.join(files)})"]}
    return counts


def _splits_of(image: ImageAnnotation) -> list[tuple[str, str | None]]:
    return [(image.image, split) for split in (image.split, *image.other_splits)]


def _overlap_counts(element: tuple[str, Iterable[str | None]]) -> Iterator[dict]:
    """An image the source puts in several splits: leakage between training and evaluation."""
    image, splits = element
    names = sorted({split for split in splits if split})
    if len(names) > 1:
        yield {"split_overlap": {"count": 1, "first": [f"{image} ({', '.join(names)})"]}}


@dataclass(frozen=True)
class ReadImages:
    """The reading part of the create graph, up to the images to convert: what `create`
    writes from and `create --dry-run` checks, so the plan is the build's own reading.
    `images`: one annotation per image in each split it goes to; `errors` and `counts`:
    what reading rejected and counted, for the manifest; `label_map` and `renumbered`:
    singletons (`_label_map`)."""

    images: beam.PCollection
    errors: tuple[beam.PCollection, ...]
    counts: tuple[beam.PCollection, ...]
    label_map: beam.PCollection
    renumbered: beam.PCollection


def read_images(pipeline: beam.Pipeline, settings: CreateSettings) -> ReadImages:
    """Adds the reading part of the create graph to `pipeline`: annotations read, checked,
    grouped by image, numbered, and put in their source splits when the source has them."""
    read = pipeline | "ReadAnnotations" >> ReadAnnotations(
        settings.format,
        settings.source.pattern,
        settings.source.options,
        settings.class_map,
    )
    numbered = read[ANNOTATIONS] | "GroupByImage" >> GroupByImage() | AssignSourceIds()
    grouped = images = numbered[ANNOTATIONS]
    label_map, renumbered = _label_map(pipeline, read, settings)
    errors = [read[ERRORS]]
    if settings.splits is None:
        checked = grouped | "RequireSourceSplit" >> beam.ParDo(RequireSourceSplit()).with_outputs(
            ERRORS, main="images"
        )
        errors.append(checked[ERRORS])
        images = checked.images | "InEachSplit" >> beam.FlatMap(in_each_split)
    overlap = (
        grouped
        | "SplitsOfImage" >> beam.FlatMap(_splits_of)
        | "GroupSplits" >> beam.GroupByKey()
        | "InSeveralSplits" >> beam.FlatMap(_overlap_counts)
    )
    counts = (
        grouped | "CountRead" >> beam.Map(_read_counts),
        overlap,
        read[COUNTS],
        numbered[SOURCE_ID_COUNTS],
    )
    return ReadImages(images, tuple(errors), counts, label_map, renumbered)


def image_loader(settings: CreateSettings) -> ImageLoader:
    """The loader of the build's images, under its limits and orientation policy."""
    return ImageLoader(
        settings.images,
        settings.max_image_bytes,
        settings.max_image_pixels,
        OrientationPolicy.of(settings.exif_orientation, settings.format.name),
    )
