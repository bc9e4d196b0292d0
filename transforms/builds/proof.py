"""Proving that a previous build's record is an unchanged image's current example.

An index row says an image was unchanged (`transforms.builds.reuse`); only the record's own
bytes prove it may be copied: its image is the image file's current bytes, kept as stored (so
its verdict, size and orientation are what converting it would give; its size is the one its
header declares), and the example built from it with the current annotation, label map and
settings (`transforms.convert.encode`) is the record. Images written otherwise (converted,
turned) are converted again.
"""

from __future__ import annotations

from dataclasses import replace

from transforms.builds.index import FileIdentity, IndexRow
from transforms.builds.reuse import PreviousShards, Reuse, covers_whole, file_sha256, recorded_image
from transforms.convert import ImagePlan, encode
from transforms.images.loader import ImageLoader
from transforms.images.verify import declared_size
from transforms.records import Extras, ImageAnnotation
from transforms.tfrecord import payload


def proven_record(
    previous: PreviousShards,
    plan: ImagePlan,
    loader: ImageLoader,
    label_map: dict[str, int],
    extras: Extras,
) -> tuple[bytes, IndexRow] | None:
    """The previous record of an unchanged image and the index row this build writes for it
    (at the previous offset), when the record proves itself (see the module docstring). The
    row's sources, box errors and counts are made from the current input, as converting the
    image would make them; None when nothing is proven (the record is missing, damaged,
    another image's, stale or not what the row says)."""
    shard, row = plan.reused
    annotation = plan.annotation
    record = previous.record(shard, row.offset, row.length)
    if record is None:
        return None
    try:
        stored = loader.read(annotation)
        image = recorded_image(annotation, record, loader.max_pixels)
        if image.encoded != stored or declared_size(stored) != (image.width, image.height):
            return None  # Not the current file's own bytes, at the size its header says.
        image = replace(
            image,
            orientation=loader.kept_orientation(
                annotation, stored, image.format, (image.width, image.height)
            ),
        )
        encoded = encode(annotation, image, label_map, extras)
    except Exception:  # Whatever the record holds, it proves nothing.
        return None
    if encoded.serialized != payload(record) or image.sha256 != row.sha256:
        return None
    return record, replace(
        row,
        files=_identities(row.files, annotation, image.sha256),
        image=annotation.image,
        split=annotation.split,
        length=len(record),
        fingerprint=plan.fingerprint,
        annotation=plan.annotation_fingerprint,
        sources=plan.sources,
        stats=encoded.counts,
        errors=encoded.box_errors,
    )


def proven_shard(
    reuse: Reuse | None,
    relative: str,
    plans: list[ImagePlan],
    loader: ImageLoader,
    label_map: dict[str, int],
    extras: Extras,
) -> list[IndexRow] | None:
    """The index rows of a shard to copy whole: its images' examples are, in order, all of
    the same-named previous shard's records (`covers_whole`), each proven (`proven_record`).
    None when the shard cannot be copied whole."""
    listed = reuse and reuse.shards.get(relative)
    if not covers_whole(relative, [plan.reused for plan in plans], listed):
        return None
    previous = PreviousShards(reuse.folder)
    try:
        rows = []
        for plan in plans:
            proven = proven_record(previous, plan, loader, label_map, extras)
            if proven is None:
                return None
            rows.append(proven[1])
        return rows
    finally:
        previous.close()


def _identities(
    files: tuple[FileIdentity | None, ...], annotation: ImageAnnotation, sha256: str
) -> tuple[FileIdentity | None, ...]:
    """A reused image's file identities with the sha256 its files hold now (under `stat` the
    row's own were taken on trust): `sha256` of the bytes read for it, from the file its key
    names or, when that is missing, the annotation file that embeds it (hashed whole)."""
    first, *rest = files
    if first is not None:
        return (replace(first, sha256=sha256), *rest)
    if annotation.embedded_in is not None and rest and rest[0] is not None:
        return (first, replace(rest[0], sha256=file_sha256(annotation.embedded_in)), *rest[1:])
    return files
