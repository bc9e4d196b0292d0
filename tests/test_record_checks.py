"""Property-based fuzzing of the create core's boundaries: the checks every reader's records
pass (`check_annotation`, `check_declaration`), the per-box and per-image boundaries of the
shard writer, the encoder, the label map and COCO's RLE decoding.

Any canonical record with any values must give an example or error records, never an
exception, and the objects must add up. Runs are derandomized and bounded so CI stays fast
and repeatable.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections import Counter

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pycocotools import mask as coco_mask

from transforms.boxes import check_boxes
from transforms.encode import EncodeError, build_example
from transforms.images.loader import ImageRejected
from transforms.label_map import (
    LabelMapError,
    derive_label_map,
    format_label_map,
    parse_label_map,
    usable_class_name,
)
from transforms.masks import mask_pixels, rle_counts_from_string, rle_counts_to_string
from transforms.readers.read_annotations import check_annotation, check_declaration
from transforms.records import (
    ERRORS,
    EXCERPT_CHARS,
    Box,
    ClassDeclaration,
    ErrorRecord,
    ExampleInput,
    Extras,
    ImageAnnotation,
    Keypoint,
    LabeledObject,
    LoadedImage,
    Mask,
    excerpt,
)
from transforms.tfrecord_sink import ShardSettings, ShardWriter, ShardWritten

FUZZ = settings(
    max_examples=200,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Text as hostile files give it: any characters, and lone surrogates (JSON "\udcff" escapes,
# non-UTF-8 file names).
texts = st.text(max_size=6) | st.text(max_size=3).map(lambda text: text + "\udcff")
numbers = st.one_of(
    st.integers(-5, 100),
    st.integers(),
    st.sampled_from([2**63, -(2**63) - 1, 2**70, 10**400, -(10**400)]),
    st.floats(),
    st.sampled_from([math.nan, math.inf, -math.inf, 1e300, -0.0, 3.5e38]),
)
anything = st.one_of(
    numbers, texts, st.none(), st.booleans(), st.binary(max_size=4), st.lists(st.integers(0, 3))
)


def spoiled(cls, good, most: int = 2):
    """Well-formed `cls` records from `good` with up to `most` fields replaced by anything:
    every field gets its turn at being hostile, and most records keep enough good fields to
    reach the encoder."""
    names = [field.name for field in dataclasses.fields(cls)]
    return st.builds(
        lambda record, changes: dataclasses.replace(record, **dict(changes)),
        good,
        st.lists(st.tuples(st.sampled_from(names), anything), max_size=most),
    )


LABELS = ["cat", "dog", 'a "b"\\\n']
corner = st.floats(-10, 50)
keypoints = spoiled(
    Keypoint,
    st.builds(Keypoint, st.sampled_from(["nose", "eye"]), corner, corner, st.integers(0, 2)),
    most=1,
)
# The characters of COCO's compressed RLE: 48 + (0 to 63).
COCO_ALPHABET = "".join(chr(code) for code in range(48, 112))
masks = spoiled(
    Mask,
    st.one_of(
        st.builds(
            Mask, polygons=st.lists(corner, min_size=6, max_size=10).map(lambda p: (tuple(p),))
        ),
        st.just(Mask(rle_size=(30, 40), rle_counts=(600, 600))),
        st.just(Mask(rle_size=(30, 40), rle_counts="d?T3hb0")),
    ),
    most=1,
)


def sized_box(x: float, y: float, width: float, height: float, **fields) -> Box:
    return Box(xmin=x, ymin=y, xmax=x + width, ymax=y + height, **fields)


boxes = spoiled(
    Box,
    st.builds(
        sized_box,
        st.floats(-5, 35),
        st.floats(-5, 25),
        st.floats(0.5, 20),
        st.floats(0.5, 20),
        label=st.sampled_from(LABELS) | st.text(min_size=1, max_size=4),
        source=st.sampled_from(["a.json#annotation[1]", "a.csv:3"]),
        difficult=st.booleans(),
        truncated=st.booleans(),
        view=st.text(max_size=3),
        normalized=st.just(False),
        is_crowd=st.none() | st.booleans(),
        area=st.none() | st.floats(0, 1e4),
        mask=st.none() | masks,
        keypoints=st.lists(keypoints, min_size=1, max_size=3).map(tuple),
    ),
)
# Image-level fields well-formed, boxes with any values: what the shard writer's own
# boundaries must hold against even without the checks.
unchecked = st.builds(
    ImageAnnotation,
    image=st.sampled_from(["a.jpg", "sub/b.png"]),
    sources=st.just(("a.json",)),
    boxes=st.lists(boxes, min_size=1, max_size=5).map(tuple),
    width=st.none() | st.integers(1, 100),
    height=st.none() | st.integers(1, 100),
    split=st.sampled_from(["train", "val2017"]),
)
annotations = spoiled(ImageAnnotation, unchecked, most=1)


def box_count(annotation: ImageAnnotation) -> int:
    return len(annotation.boxes) if isinstance(annotation.boxes, (tuple, list)) else 0


def assert_writable(error: ErrorRecord) -> None:
    """An error line is UTF-8 JSON, and its reason quotes only a short excerpt of input."""
    json.dumps(error.to_json(), ensure_ascii=False).encode("utf-8")
    assert len(error.reason) < 4 * EXCERPT_CHARS, error.reason


def loaded(annotation: ImageAnnotation, width: int = 40, height: int = 30) -> LoadedImage:
    return LoadedImage(annotation, b"\xff\xd8 not decoded here", "jpeg", width, height)


ALL_EXTRAS = Extras(masks=True, keypoints=True)


class FakeLoader:
    """Loads every image as bytes that are never decoded here."""

    root = "out/images"

    def setup(self):
        pass

    def read_stored(self, key):
        raise ImageRejected("not read here")

    def load(self, annotation, stored=None):
        return loaded(annotation)


def writer(loader=None, extras: Extras = ALL_EXTRAS) -> ShardWriter:
    shard_writer = ShardWriter(
        ShardSettings("out", "out/.parts", None, 1, extras), loader or FakeLoader()
    )
    shard_writer.start()
    return shard_writer


def outcomes(shard_writer: ShardWriter, images, label_map) -> tuple[list, list, list]:
    """(serialized examples, error records, stats of written examples) of `_records`; the
    per-split counts of rejected images are left out."""
    examples, errors, stats = [], [], []
    # Every image reaches the writer with a split (`shard_key` gives one).
    images = [dataclasses.replace(image, split=image.split or "train") for image in images]
    plans = shard_writer._plan([(image, None) for image in images], label_map)
    written = ShardWritten()
    for record, row in shard_writer._records(plans, label_map, Counter(), {}, written):
        examples.append(record[12:-4])  # The record's data, without its framing.
        stats.append(row.stats)
        errors += row.errors
    errors += [item.value for item in written.outputs if item.tag == ERRORS]
    return examples, errors, stats


@FUZZ
@given(annotations)
def test_any_mention_gives_a_checked_mention_or_errors_and_its_objects_add_up(annotation):
    checked, errors = check_annotation(annotation)
    for error in errors:
        assert_writable(error)
    kept = len(checked.boxes) if checked is not None else 0
    assert kept + sum(error.objects for error in errors) == box_count(annotation)
    if checked is not None:
        assert all(usable_class_name(box.label) for box in checked.boxes)
        assert checked.width is None or 1 <= checked.width < 2**63


@FUZZ
@given(st.lists(annotations, min_size=1, max_size=3))
def test_whatever_passes_the_checks_is_written_and_every_object_is_counted(mentions):
    """Checked mentions through the real shard writer: each image becomes an example (with
    its rejected boxes as errors) and its label map reads back; nothing raises."""
    checked = [c for c, _ in map(check_annotation, mentions) if c is not None]
    names = [box.label for annotation in checked for box in annotation.boxes]
    label_map, _ = derive_label_map(names)
    if label_map:
        assert parse_label_map(format_label_map(label_map)) == label_map
    examples, errors, stats = outcomes(writer(), checked, label_map)
    assert len(examples) == len(stats) == len(checked)
    written = sum(sum(split["objects"] for split in s["splits"].values()) for s in stats)
    assert written + sum(e.objects for e in errors) == sum(len(c.boxes) for c in checked)
    for error in errors:
        assert_writable(error)
    for example in examples:
        tf.train.Example.FromString(example)


@FUZZ
@given(st.lists(unchecked, min_size=1, max_size=3), st.booleans(), st.booleans())
def test_unchecked_boxes_never_stop_the_shard_writer(images, masks_on, keypoints_on):
    """The writer's own boundaries hold even for boxes that skipped the checks: an image is
    an example or one error taking all its boxes, a box an object or one error."""
    label_map = {label: number for number, label in enumerate(LABELS, start=1)}
    examples, errors, stats = outcomes(
        writer(extras=Extras(masks=masks_on, keypoints=keypoints_on)), images, label_map
    )
    assert len(examples) == len(stats)
    rejected = [e for e in errors if e.stage == "image"]
    assert len(examples) + len(rejected) == len(images)
    written = sum(sum(split["objects"] for split in s["splits"].values()) for s in stats)
    assert written + sum(e.objects for e in errors) == sum(len(m.boxes) for m in images)


def test_a_failing_loader_rejects_the_image_with_all_its_boxes():
    class Broken(FakeLoader):
        def load(self, annotation, stored=None):
            raise MemoryError("no room for " + "x" * 500)

    image = ImageAnnotation("a.jpg", ("a.xml",), (Box("cat", 1, 1, 5, 5, "a.xml#object[1]"),) * 3)
    examples, errors, _ = outcomes(writer(Broken()), [image], {"cat": 1})
    (error,) = errors
    assert not examples
    assert (error.stage, error.objects) == ("image", 3)
    assert error.reason.startswith("cannot convert the image: MemoryError: no room for xxx")
    assert_writable(error)


@FUZZ
@given(
    st.lists(
        st.builds(
            LabeledObject,
            label=texts,
            label_id=numbers,
            xmin=numbers,
            ymin=numbers,
            xmax=numbers,
            ymax=numbers,
            box=boxes,
        ),
        max_size=3,
    ),
    st.booleans(),
)
def test_the_encoder_writes_or_refuses_with_a_reason(objects, keypoints_on):
    item = ExampleInput(loaded(ImageAnnotation("a.jpg", ("s",))), tuple(objects))
    try:
        example = build_example(item, Extras(keypoints=keypoints_on))
    except EncodeError as error:
        assert str(error).startswith("image/")
        return
    except (TypeError, AttributeError, ArithmeticError):
        return  # Arithmetic on a value of the wrong type: the shard writer rejects the image.
    for feature in example.features.feature.values():
        assert all(math.isfinite(value) for value in feature.float_list.value)


@pytest.mark.parametrize(
    "field, value, reason",
    [
        ("visibility", 2**63, "image/object/keypoint/visibility: 9223372036854775808 is not an"),
        ("x", math.nan, "image/object/keypoint/x: nan is not a finite float32"),
        ("x", 1e300, "image/object/keypoint/x: 2.5e+298 is not a finite float32"),
    ],
)
def test_the_encoder_names_the_feature_it_cannot_write(field, value, reason):
    point = {"name": "nose", "x": 1.0, "y": 1.0, "visibility": 2, field: value}
    box = Box("cat", 1, 1, 5, 5, "s", keypoints=(Keypoint(**point),))
    item = ExampleInput(
        loaded(ImageAnnotation("a.jpg", ("s",))), (LabeledObject("cat", 1, 0, 0, 1, 1, box),)
    )
    with pytest.raises(EncodeError, match=re.escape(reason)):
        build_example(item, Extras(keypoints=True))


@FUZZ
@given(
    spoiled(
        ClassDeclaration,
        st.builds(ClassDeclaration, texts, st.integers(), st.just("a.json#category[1]")),
        most=1,
    )
)
def test_any_declaration_is_kept_or_an_error_and_its_label_map_reads_back(declaration):
    checked = check_declaration(declaration)
    if isinstance(checked, ErrorRecord):
        assert_writable(checked)
        return
    label_map, _ = derive_label_map([checked.name], [checked])
    assert parse_label_map(format_label_map(label_map)) == label_map


@FUZZ
@given(
    st.dictionaries(st.text(min_size=1), st.integers(1, 2**31 - 1), min_size=1, max_size=6).filter(
        lambda classes: len(set(classes.values())) == len(classes)
    )
)
def test_every_label_map_written_parses_back_with_the_same_names_and_ids(classes):
    assert parse_label_map(format_label_map(classes)) == classes


@pytest.mark.parametrize(
    "classes",
    [{"": 1}, {"\udcff": 1}, {"cat": 0}, {"cat": 2**31}, {"cat": 2**70}],
)
def test_a_label_map_that_would_not_read_back_is_refused(classes):
    with pytest.raises(LabelMapError):
        format_label_map(classes)


def test_names_with_quotes_backslashes_newlines_and_non_ascii_read_back():
    classes = {'a "quoted" name': 1, "back\\slash": 2, "new\nline": 3, "ünï €": 4, "\x00\x7f": 5}
    assert parse_label_map(format_label_map(classes)) == classes


def test_declared_ids_beyond_the_label_maps_range_are_renumbered():
    declared = [ClassDeclaration("cat", 2**40, "a"), ClassDeclaration("dog", 3, "a")]
    assert derive_label_map(["cat", "dog"], declared) == (
        {"dog": 1, "cat": 2},
        {"dog": 3, "cat": 2**40},
    )


@FUZZ
@given(st.integers(1, 9), st.integers(1, 9), st.data())
def test_compressed_rle_decodes_like_pycocotools(height, width, data):
    pixels = np.asarray(
        data.draw(st.lists(st.integers(0, 1), min_size=height * width, max_size=height * width)),
        dtype=np.uint8,
    ).reshape(height, width)
    rle = coco_mask.encode(np.asfortranarray(pixels))
    counts = rle["counts"].decode()
    assert np.array_equal(
        mask_pixels(Mask(rle_size=(height, width), rle_counts=counts), width, height), pixels
    )


@FUZZ
@given(st.text(COCO_ALPHABET, max_size=12))
def test_any_compressed_rle_the_decoder_accepts_is_pycocotools_mask(counts):
    """Random strings over COCO's alphabet: where ours accepts, pycocotools agrees."""
    height, width = 3, 4
    try:
        ours = mask_pixels(Mask(rle_size=(height, width), rle_counts=counts), width, height)
    except ValueError:
        return
    theirs = coco_mask.decode({"size": [height, width], "counts": counts.encode()})
    assert np.array_equal(ours, theirs)


def test_compressed_rle_work_is_linear_in_its_length():
    """640 KB strings that took seconds each (quadratic) now finish at once: a number of
    continuation characters is refused after 12 characters, a long valid string decodes in
    one pass."""
    with pytest.raises(ValueError, match="longer than 12 characters"):
        rle_counts_from_string("o" * 640_000)
    runs = [1] * 640_000
    assert rle_counts_from_string(rle_counts_to_string(runs)) == runs
    height, width = 800, 800
    pixels = mask_pixels(
        Mask(rle_size=(height, width), rle_counts=rle_counts_to_string(runs)), width, height
    )
    assert pixels.sum() == 320_000


def test_runs_not_covering_the_image_are_refused_before_any_pixel_is_made():
    for counts in [(2**62, 2**62), (-1, 13), (5,)]:
        with pytest.raises(ValueError, match="do not cover the image"):
            mask_pixels(Mask(rle_size=(3, 4), rle_counts=counts), 4, 3)


@pytest.mark.parametrize(
    "value, shown",
    [
        ("short", "short"),
        ("x" * 500, "x" * 79 + "…"),
        (10**400, "<an integer of 1329 bits>"),
        ("bad \udcff", "bad \\udcff"),
        ((1.5, None), "(1.5, None)"),
    ],
)
def test_excerpt_quotes_a_short_writable_piece_of_input(value, shown):
    assert excerpt(value) == shown


@pytest.mark.parametrize(
    "spoil",
    [
        {"label": ["cat"]},
        {"xmin": "1"},
        {"xmax": 10**400},
        {"mask": Mask(polygons=((1, "a", 5, 5, 0, 5),))},
        {"mask": Mask(rle_size=(30, 40), rle_counts="o" * 100)},
    ],
)
def test_a_box_that_fails_in_any_way_is_rejected_alone(spoil):
    good = Box("cat", 1, 1, 5, 5, "a.xml#object[1]")
    bad = dataclasses.replace(good, source="a.xml#object[2]", **spoil)
    example, errors = check_boxes(
        loaded(ImageAnnotation("a.jpg", ("a.xml",), (good, bad))), {"cat": 1}
    )
    assert [o.box for o in example.objects] == [good]
    (error,) = errors
    assert (error.source, error.stage, error.objects) == ("a.xml#object[2]", "box", 1)
    assert_writable(error)
