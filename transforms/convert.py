"""Converting one image into its example: load → verify → orient → check boxes → encode.

Plain functions, no Beam: the shard writer (`transforms.tfrecord_sink`) runs them for each
image it converts, in threads or in worker processes, and the reuse proof
(`transforms.builds.proof`) builds the same example from a previous record's image to compare.
Each image is one error boundary (`convert`): whatever goes wrong while converting it
rejects that image with all its boxes, and nothing of it is written.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from apache_beam.io.filesystems import FileSystems

from transforms.boxes import check_boxes
from transforms.builds.index import (
    FileIdentity,
    IndexRow,
    annotation_fingerprint,
    example_fingerprint,
    sources_fingerprint,
    used_labels,
)
from transforms.builds.reuse import (
    Previous,
    Reuse,
    file_sha256,
    file_stat,
    identity,
    reusable,
    unchanged,
)
from transforms.duplicates import HashedImage, perceptual_hash
from transforms.encode import EncodeError, build_example, example_counts
from transforms.images.loader import ImageLoader, ImageRejected
from transforms.images.orientation import orientation_counts
from transforms.records import ErrorRecord, Extras, ImageAnnotation, LoadedImage, excerpt
from transforms.report.facts import written_facts
from transforms.tfrecord import frame


@dataclass(frozen=True)
class ImagePlan:
    """One image of a shard: its annotation, its fingerprints, and the previous example to
    copy (with this build's identities of its files), if it is unchanged."""

    annotation: ImageAnnotation
    fingerprint: str
    annotation_fingerprint: str
    sources: str
    reused: Previous | None


@dataclass(frozen=True)
class Converted:
    """A loaded image, its hashes and the identities of its files, taken before reading."""

    image: LoadedImage
    hashed: HashedImage
    files: tuple[FileIdentity | None, ...]


@dataclass(frozen=True)
class Encoded:
    """One image's serialized example, its manifest counts, what the dataset report takes of
    it, and its rejected boxes."""

    serialized: bytes
    counts: dict
    facts: dict
    box_errors: tuple[ErrorRecord, ...]


def image_paths(root: str, annotation: ImageAnnotation) -> list[str]:
    """The files an image's bytes may come from: the one its key names under `root`, and the
    annotation file that embeds it. Only their identities are taken from these paths; the
    loader reads images under its own rules (no link out of the images root)."""
    key = FileSystems.join(root, *annotation.image.split("/"))
    return [key] + ([annotation.embedded_in] if annotation.embedded_in else [])


def plan_images(
    items: Iterable[tuple[ImageAnnotation, Previous | None]],
    label_map: dict[str, int],
    settings_fingerprint: str,
    reuse: Reuse | None,
    root: str,
    each: Callable = map,
) -> list[ImagePlan]:
    """Each image's fingerprints, and its previous example when `reuse` allows it and its
    files are unchanged; `each` maps the file checks over the plans (a thread pool's `map`
    where a stat is a request, as on GCS and S3, or `content` reads the files)."""
    plans = []
    for annotation, previous in items:
        try:
            annotation_print = annotation_fingerprint(annotation)
            fingerprint = example_fingerprint(
                settings_fingerprint, annotation_print, used_labels(annotation, label_map)
            )
            sources = sources_fingerprint(annotation)
        except Exception:  # Values no check vetted: the image is converted, never reused.
            annotation_print = fingerprint = sources = ""
        if reuse is None:
            previous = None
        plans.append(
            ImagePlan(
                annotation, fingerprint, annotation_print, sources, reusable(previous, fingerprint)
            )
        )
    if reuse is None:
        return plans

    def checked(plan: ImagePlan) -> ImagePlan:
        if plan.reused is None:
            return plan
        shard, row = plan.reused
        row = unchanged(reuse.mode, image_paths(root, plan.annotation), row)
        return replace(plan, reused=None if row is None else (shard, row))

    return list(each(checked, plans))


def load(loader: ImageLoader, annotation: ImageAnnotation) -> Converted:
    """The loaded image, its hashes and its files' identities; raises what stops it. Files
    are looked at before they are read, so a file changed meanwhile never passes for the one
    converted."""
    paths = image_paths(loader.root, annotation)
    at = [file_stat(path) for path in paths]
    try:
        stored = loader.read_stored(annotation.image)
    except ImageRejected:
        stored = None
    image = loader.load(annotation, stored)
    if stored is None:
        key_sha = None
    elif image.encoded is stored:  # The file's bytes are written as they are.
        key_sha = image.sha256
    else:
        key_sha = hashlib.sha256(stored).hexdigest()
    shas = [key_sha, *[file_sha256(path) for path in paths[1:]]]
    files = tuple(identity(*pair) for pair in zip(at, shas, strict=True))
    hashed = HashedImage(
        annotation.image,
        annotation.split,
        image.sha256,
        perceptual_hash(image.encoded, preview=image.preview),
    )
    return Converted(image, hashed, files)


def encode(
    annotation: ImageAnnotation, image: LoadedImage, label_map: dict[str, int], extras: Extras
) -> Encoded:
    """The serialized example of one loaded image, its manifest counts and its rejected
    boxes."""
    example, box_errors = check_boxes(image, label_map)
    # Deterministic serialization orders the feature map by key; otherwise the order
    # depends on the process, and shards written by different workers would differ.
    serialized = build_example(example, extras).SerializeToString(deterministic=True)
    counts = example_counts(example, annotation.split)
    if image.orientation is not None:
        counts |= orientation_counts(annotation.image, image.orientation)
    facts = written_facts(
        image.width,
        image.height,
        image.orientation is not None and image.orientation.turn is not None,
        ((o.label, o.xmin, o.ymin, o.xmax, o.ymax) for o in example.objects),
    )
    return Encoded(serialized, counts, facts, tuple(box_errors))


def convert(
    loader: ImageLoader, plan: ImagePlan, label_map: dict[str, int], extras: Extras
) -> tuple[bytes, IndexRow] | ErrorRecord:
    """The framed record of an image and its index row (offset 0), or the error record that
    rejects the image.

    Each image is one error boundary: anything that goes wrong while loading, checking or
    encoding it (a damaged file, a value the example cannot hold, a failure no check
    foresaw) rejects that image with all its boxes and the shard goes on. Nothing of an
    image is emitted before all of it succeeded, so its boxes are never counted twice and
    the shard never holds half an example."""
    annotation = plan.annotation
    try:
        converted = load(loader, annotation)
        encoded = encode(annotation, converted.image, label_map, extras)
        record = frame(encoded.serialized)
        row = IndexRow(
            image=annotation.image,
            split=annotation.split,
            offset=0,
            length=len(record),
            fingerprint=plan.fingerprint,
            annotation=plan.annotation_fingerprint,
            sources=plan.sources,
            files=converted.files,
            sha256=converted.hashed.sha256,
            phash=converted.hashed.phash,
            stats=encoded.counts,
            facts=encoded.facts,
            errors=encoded.box_errors,
        )
        # A later build replays the row as it reads back; it must read back as it is.
        if IndexRow.from_line(row.line()) != row:
            raise ValueError("its index row does not read back as written")
    except Exception as error:
        looked_at = image_paths(loader.root, annotation)[0]
        return ErrorRecord.for_image(annotation, image_reason(error), looked_at)
    return record, row


def image_reason(error: Exception) -> str:
    """The reason an image was rejected: the message of the checks that name the problem,
    or the kind of failure and a short excerpt of its message."""
    if isinstance(error, ImageRejected | EncodeError):
        return str(error)
    return f"cannot convert the image: {type(error).__name__}: {excerpt(str(error))}"
