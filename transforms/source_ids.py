"""Numeric `image/source_id`s, unique among the images an evaluator reads together.

TF-Vision's evaluation parsers convert `image/source_id` to an int64
(`tf.strings.to_number`), and its COCO evaluator, like the TF OD API's, uses it as the image
id; both official COCO converters write COCO's image id there. So every example gets a
number: the source's own image id where it has one (COCO) that TensorFlow reads (0 to
2**63 - 1), else one from the image's key (its name relative to the images root), the first
53 bits of a SHA-256 of it. The key alone decides that number, so reruns, other runners and
a growing dataset give an image the same one. 53 bits keep it exact in every JSON reader
and in the float64 arrays pycocotools' `loadRes` accepts, and make it unlikely that two
images share one: about n² / 2**54, 1 in 18,000 for a million images (31 bits, what int32
holds, would give COCO's 118,000 training images 3 shared numbers).

Evaluators merge images that share an id, so ids are checked: among the images of one
source split (with `--splits source`), or of the whole dataset when splits are drawn by
hash, the first image by name keeps a shared id and every other one gets the number its
name gives (salted again if that is the shared number). Those images are counted and named
in the manifest. Only annotation records travel through this check's shuffle.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import replace

import apache_beam as beam

from transforms.readers.base import ANNOTATIONS
from transforms.records import ImageAnnotation

COUNTS = "counts"
# The largest id TensorFlow's int64 holds; the source's ids beyond it (or below 0) are not used.
MAX_SOURCE_ID = 2**63 - 1
# Bits of a number taken from a name: exact as a float64, in JSON and in pycocotools.
NAME_ID_BITS = 53


def id_from_name(key: str, salt: int = 0) -> int:
    """A number in [0, 2**53) that depends only on the image key (and the salt)."""
    data = f"source_id\x00{salt}\x00{key}".encode("utf-8", "surrogatepass")
    return int.from_bytes(hashlib.sha256(data).digest()[:8], "big") >> (64 - NAME_ID_BITS)


def usable_source_id(number: object) -> bool:
    """Whether the source's id can be written as it is: an int TensorFlow reads as int64
    (anything else a reader let through is not). Negative ids are left out too: TF-Vision
    reads -1 as "no id"."""
    return isinstance(number, int) and not isinstance(number, bool) and 0 <= number <= MAX_SOURCE_ID


def source_id_of(image: ImageAnnotation) -> int:
    """The image's number: its `source_id` when usable, else the number of its name."""
    return image.source_id if usable_source_id(image.source_id) else id_from_name(image.image)


def _candidate(image: ImageAnnotation) -> tuple[tuple[str | None, int], str]:
    return (image.split, source_id_of(image)), image.image


def _reassign(
    element: tuple[tuple[str | None, int], Iterable[str]],
) -> Iterator[tuple[tuple[str | None, str], tuple[int, str]]]:
    """((split, shared id), keys) → ((split, key), (new id, sample text)) for every image
    but the first by name."""
    (split, shared), keys = element
    first, *others = sorted(set(keys))
    where = f"{split}: " if split else ""
    for key in others:
        number = id_from_name(key)
        if number == shared:
            number = id_from_name(key, salt=1)
        yield (split, key), (number, f"{where}{key} (shared {shared} with {first})")


def _numbered(image: ImageAnnotation, reassigned: dict) -> ImageAnnotation:
    changed = reassigned.get((image.split, image.image))
    return replace(image, source_id=changed[0] if changed else source_id_of(image))


def _origin_counts(image: ImageAnnotation) -> dict:
    origin = "from_source" if usable_source_id(image.source_id) else "from_name"
    return {"source_ids": {origin: 1}}


def _reassigned_counts(element: tuple) -> dict:
    _, (_, sample) = element
    return {"source_ids": {"reassigned": {"count": 1, "first": [sample]}}}


class AssignSourceIds(beam.PTransform):
    """ImageAnnotations → the same, each with its unique `source_id` (`annotations`), and
    the manifest's counts of where the numbers came from (`counts`)."""

    def expand(self, images: beam.PCollection) -> dict[str, beam.PCollection]:
        reassigned = (
            images
            | "CandidateIds" >> beam.Map(_candidate)
            | "GroupByCandidate" >> beam.GroupByKey()
            | "Reassign" >> beam.FlatMap(_reassign)
        )
        numbered = images | "Number" >> beam.Map(_numbered, beam.pvalue.AsDict(reassigned))
        counts = (
            images | "CountOrigins" >> beam.Map(_origin_counts),
            reassigned | "CountReassigned" >> beam.Map(_reassigned_counts),
        ) | "SourceIdCounts" >> beam.Flatten()
        return {ANNOTATIONS: numbered, COUNTS: counts}
