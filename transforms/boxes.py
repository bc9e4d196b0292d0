"""Checking boxes against the measured image and the label map, and normalizing them.

A box reaching past the image is clipped and counted; an inverted, empty or non-finite box,
one wholly outside the image, one whose class the label map lacks, or one whose mask does not
fit the image is rejected on its own: the image keeps its other boxes. Masks are rendered here,
where the measured image size is known.
"""

from __future__ import annotations

import math

from transforms.masks import mask_pixels, mask_png
from transforms.records import (
    STAGE_BOX,
    Box,
    ErrorRecord,
    ExampleInput,
    LabeledObject,
    LoadedImage,
    excerpt,
)


class BoxRejected(ValueError):
    """A box that cannot be written; the message is the error record's reason."""


def normalize_box(box: Box, width: int, height: int) -> tuple[tuple[float, ...], bool]:
    """Returns the box's corners divided by the image size, clipped to [0, 1], and whether
    clipping changed them. Raises BoxRejected for boxes no clipping can repair."""
    corners = (box.xmin, box.ymin, box.xmax, box.ymax)
    shown = excerpt(corners)
    if not all(math.isfinite(value) for value in corners):
        raise BoxRejected(f"box {shown} has a non-finite corner")
    if box.xmin > box.xmax or box.ymin > box.ymax:
        raise BoxRejected(f"box {shown} is inverted (min corner past max corner)")
    if box.xmin == box.xmax or box.ymin == box.ymax:
        raise BoxRejected(f"box {shown} is empty (zero width or height)")
    # Normalized sources (YOLO) already give fractions of the image size.
    scale_x, scale_y = (1.0, 1.0) if box.normalized else (float(width), float(height))
    clipped = (
        min(max(box.xmin, 0.0), scale_x),
        min(max(box.ymin, 0.0), scale_y),
        min(max(box.xmax, 0.0), scale_x),
        min(max(box.ymax, 0.0), scale_y),
    )
    if clipped[0] >= clipped[2] or clipped[1] >= clipped[3]:
        raise BoxRejected(f"box {shown} lies outside the {width}x{height} image")
    normalized = (
        clipped[0] / scale_x,
        clipped[1] / scale_y,
        clipped[2] / scale_x,
        clipped[3] / scale_y,
    )
    return normalized, clipped != corners


def _labeled(box: Box, image: LoadedImage, label_map: dict[str, int]) -> tuple[LabeledObject, bool]:
    """The box as a LabeledObject, and whether it was clipped; raises BoxRejected."""
    if box.label not in label_map:
        raise BoxRejected(f"class {excerpt(repr(box.label))} is not in the label map")
    (xmin, ymin, xmax, ymax), clipped = normalize_box(box, image.width, image.height)
    mask = None
    if box.mask is not None:
        try:
            pixels = mask_pixels(box.mask, image.width, image.height, box.normalized)
            mask = mask_png(pixels)
        except Exception as error:  # Masks come in many shapes; any failure is the mask's.
            raise BoxRejected(f"unusable mask: {excerpt(str(error))}") from None
    labeled = LabeledObject(
        label=box.label,
        label_id=label_map[box.label],
        xmin=xmin,
        ymin=ymin,
        xmax=xmax,
        ymax=ymax,
        box=box,
        mask_png=mask,
    )
    return labeled, clipped


def check_boxes(
    image: LoadedImage, label_map: dict[str, int]
) -> tuple[ExampleInput, list[ErrorRecord]]:
    """The image with the boxes that pass, and an error record per rejected box.

    Each box is its own error boundary: whatever goes wrong with one box (a value no check
    foresaw included) rejects that box alone, and the image keeps its other boxes."""
    objects, errors, clipped = [], [], 0
    for box in image.annotation.boxes:
        try:
            labeled, was_clipped = _labeled(box, image, label_map)
        except Exception as error:
            reason = (
                str(error)
                if isinstance(error, BoxRejected)
                else f"unusable box: {type(error).__name__}: {excerpt(str(error))}"
            )
            annotation = image.annotation
            errors.append(
                ErrorRecord(
                    box.source,
                    annotation.image,
                    STAGE_BOX,
                    reason,
                    1,
                    annotation.split,
                    (box.label,),
                )
            )
            continue
        clipped += was_clipped
        objects.append(labeled)
    return ExampleInput(image=image, objects=tuple(objects), clipped=clipped), errors
