"""The same picture under several names: exact copies and near-duplicates, within and across
splits.

Splits come from a hash of each image's name, so an image that appears twice under different
names (a re-export, an augmentation copy, one folder listed for train and for val) lands in
splits of its own, and a model evaluated on one copy after training on the other scores
better than it will in use. Two kinds are found:

- exact copies: the same encoded bytes (the sha256 an example holds as `image/key/sha256`);
- near-duplicates: the same picture re-encoded or resized, whose perceptual hashes differ in
  at most `MAX_DISTANCE` of their 63 bits. The hash (after pHash) is the sign, against their
  median, of the 63 lowest frequencies of the grey image's DCT (taken at its pixel centres,
  so a picture decoded at any scale gives about the same). A JPEG's frequencies come from the
  DCT-scaled decode verification made (`transforms.images.verify`), so its hash costs about 0.03 ms
  more; Pillow decodes the other images. Measured on the 200 Raccoon photos: of 2,200 copies
  re-encoded at JPEG quality 10 to 50, saved as PNG or resized to 0.2 to 2 times their size,
  all but one stayed within 6 bits of their original (1,592 had the same hash; one shrunk to
  0.2 was 8 bits off), and different pictures were 12 or more bits apart. Crops, flips and
  rotations are not found.

Hashes are matched without comparing every pair: the 63 bits are cut into
`MAX_DISTANCE + 1` bands, and two hashes within `MAX_DISTANCE` bits agree on at least one
band, so only images sharing a band's value are compared. A band value shared by more than
`MAX_BUCKET` distinct images (a dataset of near-identical frames) compares the first
`MAX_BUCKET` by sha256 and counts the others as `not_compared`, which bounds the work.

Everything happens inside the graph: only names, splits and hashes travel through shuffles.
"""

from __future__ import annotations

import functools
import hashlib
import io
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import combinations

import apache_beam as beam
import numpy as np
from PIL import Image

from transforms.images.loader import ImageLoader, ImageRejected
from transforms.images.verify import PREVIEW_SIDE, scaled_jpeg
from transforms.records import ImageAnnotation
from transforms.splits import assign_split

# `--duplicates`: report only, or keep each group of duplicates in one split.

# Tag of the shard writer's output of HashedImages.
HASHES = "hashes"
NOT_COMPARED = "not_compared"

MAX_DISTANCE = 6
_BITS = 63
_BANDS = MAX_DISTANCE + 1
_BAND_BITS = _BITS // _BANDS
MAX_BUCKET = 1000
# Names of pairs kept as examples, per kind (the manifest keeps the first 5 overall).
_SAMPLE = 5

# Frequencies hashed: the lowest 8 x 8 of the image's DCT-II, less the mean.
_FREQUENCIES = 8
# A frequency within this of the median (a quarter of a grey level, as each is a mean over
# the pixels) gives a bit that noise decides. A picture needs at least _MIN_STABLE of its 63
# bits decided by its content: a blank image or a plain gradient has only a few (the Raccoon
# photos have 28 or more), and its noise bits would match other featureless images.
_NOISE = 0.25
_MIN_STABLE = 16
# ITU-R 601-2 luma, as Pillow converts RGB to grey.
_LUMA = np.array([0.299, 0.587, 0.114])

Member = tuple[str, "str | None"]  # (image name, split)


# The kinds of duplicates the manifest counts (`duplicates`), and what each means.
DUPLICATE_KINDS = {
    "exact": "exact copies (same bytes)",
    "near": "near-duplicates (same picture re-encoded or resized)",
}


def duplicates_across(duplicates: dict) -> int:
    """Pairs of duplicates (exact and near) that lie in different splits."""
    return sum(duplicates[kind]["across_splits"]["pairs"] for kind in DUPLICATE_KINDS)


def perceptual_hash(
    data: bytes, max_pixels: int | None = None, preview: np.ndarray | None = None
) -> int | None:
    """The image's 63-bit perceptual hash, or None when it has none: it cannot be decoded, it
    has more than `max_pixels` pixels (checked from the header; None for an image already
    checked), or it is nearly featureless (uniform, a plain gradient).

    A JPEG is reduced from its DCT-scaled decode (`transforms.images.verify.scaled_jpeg`), which
    verification has made already for most JPEGs: `preview`, when the caller has it. Other
    images, and JPEGs libjpeg-turbo cannot decode, are decoded by Pillow. Pixels are taken
    as stored, as TensorFlow decodes them (no EXIF rotation)."""
    try:
        grey = _grey(data, max_pixels, preview)
    except Exception:  # Decoders raise many kinds; the image simply gets no perceptual hash.
        return None
    if grey is None:
        return None
    height, width = grey.shape
    low = (_basis(height) @ grey @ _basis(width).T).flatten()[1:]
    median = np.partition(low, low.size // 2)[low.size // 2]
    if np.count_nonzero(np.abs(low - median) > _NOISE) < _MIN_STABLE:
        return None
    return int.from_bytes(np.packbits(low > median, bitorder="little").tobytes(), "little")


@functools.lru_cache(maxsize=1024)
def _basis(length: int) -> np.ndarray:
    """The `_FREQUENCIES` lowest DCT-II basis functions at `length` pixel centres, divided by
    `length`: frequencies of the picture, whatever scale it was decoded at."""
    centres = (np.arange(length) + 0.5) / length
    return np.cos(np.pi * np.arange(_FREQUENCIES)[:, None] * centres) / length


def _grey(data: bytes, max_pixels: int | None, preview: np.ndarray | None) -> np.ndarray | None:
    """The image's grey levels, from a JPEG's scaled decode or reduced by Pillow to about
    `PREVIEW_SIDE` pixels a side; None for an image over `max_pixels`."""
    if preview is None:
        image = Image.open(io.BytesIO(data))
        if max_pixels is not None and image.width * image.height > max_pixels:
            return None
        if image.format == "JPEG":
            try:
                preview = scaled_jpeg(data)
            except ValueError:
                image.draft("L", (PREVIEW_SIDE, PREVIEW_SIDE))
        if preview is None:
            grey = image.convert("L")
            factor = min(grey.size) // PREVIEW_SIDE
            return np.asarray(grey.reduce(factor) if factor > 1 else grey, dtype=np.float64)
    return preview @ _LUMA


@dataclass(frozen=True)
class HashedImage:
    """One image's hashes: an example written (with its split), or an image file read
    before splits are assigned (split None)."""

    image: str
    split: str | None
    sha256: str
    phash: int | None


def hash_image(
    image: str, split: str | None, data: bytes, max_pixels: int | None = None
) -> HashedImage:
    sha256 = hashlib.sha256(data).hexdigest()
    return HashedImage(image, split, sha256, perceptual_hash(data, max_pixels))


@dataclass(frozen=True)
class Content:
    """One distinct image content (sha256) and the examples that hold it, sorted."""

    sha256: str
    phash: int | None
    members: tuple[Member, ...]

    @property
    def names(self) -> list[str]:
        return sorted({name for name, _ in self.members})


def _content(sha256: str, hashed: Iterable[HashedImage]) -> Content:
    hashed = list(hashed)
    members = tuple(sorted({(h.image, h.split) for h in hashed}, key=_member_order))
    return Content(sha256, hashed[0].phash, members)


def _member_order(member: Member) -> tuple[str, str]:
    return member[0], member[1] or ""


class GroupContents(beam.PTransform):
    """HashedImages → one Content per distinct sha256."""

    def expand(self, hashed: beam.PCollection) -> beam.PCollection:
        return (
            hashed
            | "KeyBySha256" >> beam.Map(lambda h: (h.sha256, h))
            | "GroupBySha256" >> beam.GroupByKey()
            | "Content" >> beam.MapTuple(_content)
        )


def _band(phash: int, band: int) -> int:
    return (phash >> (band * _BAND_BITS)) & ((1 << _BAND_BITS) - 1)


def _band_keys(content: Content) -> Iterator[tuple[tuple[int, int], Content]]:
    if content.phash is not None:
        for band in range(_BANDS):
            yield (band, _band(content.phash, band)), content


class _CompareBucket(beam.DoFn):
    """((band, value), contents) → (left, right, distance) for the pairs within
    MAX_DISTANCE bits, each pair only from the first band the two share, so it is found once."""

    def process(self, element: tuple[tuple[int, int], Iterable[Content]]) -> Iterator:
        (band, _), bucket = element
        bucket = sorted(bucket, key=lambda content: content.sha256)
        for content in bucket[MAX_BUCKET:]:
            for name in content.names:
                yield beam.pvalue.TaggedOutput(NOT_COMPARED, name)
        for left, right in combinations(bucket[:MAX_BUCKET], 2):
            distance = (left.phash ^ right.phash).bit_count()
            if distance > MAX_DISTANCE:
                continue
            first_shared = next(
                b for b in range(_BANDS) if _band(left.phash, b) == _band(right.phash, b)
            )
            if first_shared == band:
                yield left, right, distance


class NearPairs(beam.PTransform):
    """Contents → (left, right, distance) for every two distinct contents whose perceptual
    hashes differ in at most MAX_DISTANCE bits (main output), and the names of images left
    out of a crowded band (`not_compared`)."""

    def expand(self, contents: beam.PCollection) -> beam.pvalue.DoOutputsTuple:
        return (
            contents
            | "BandKeys" >> beam.FlatMap(_band_keys)
            | "GroupByBand" >> beam.GroupByKey()
            | "CompareBucket"
            >> beam.ParDo(_CompareBucket()).with_outputs(NOT_COMPARED, main="pairs")
        )


def _pair_text(one: Member, other: Member, link: str) -> str:
    """`a.jpg (train) = b.jpg (valid)`, the two in sorted order, so a pair has one text."""
    first, second = sorted((one, other), key=_member_order)
    where = lambda member: f"{member[0]} ({member[1]})" if member[1] else member[0]  # noqa: E731
    return f"{where(first)} {link} {where(second)}"


def _by_split(members: Iterable[Member]) -> dict[str | None, list[str]]:
    split_names: dict[str | None, list[str]] = {}
    for name, split in sorted(members, key=_member_order):
        split_names.setdefault(split, []).append(name)
    return split_names


def _first_pairs(
    left: Iterable[Member], right: Iterable[Member], across: bool, link: str, suffix: str = ""
) -> tuple[list[str], list[tuple]]:
    """The first few pairs of different names, one from `left` and one from `right`, in
    different splits (`across`) or the same one: as texts for the manifest, and as (name,
    split, name, split) for the dataset report to show side by side. Only the first few names
    of each split are paired, so a group of thousands costs no more than one of a few."""
    pairs = {}
    right_splits = _by_split(right)
    for split, names in _by_split(left).items():
        for other_split, other_names in right_splits.items():
            if (split != other_split) == across:
                for name in names[: _SAMPLE + 1]:
                    for other in other_names[: _SAMPLE + 1]:
                        if name != other:
                            one, two = sorted(
                                ((name, split), (other, other_split)), key=_member_order
                            )
                            text = _pair_text(one, two, link) + suffix
                            pairs[text] = (one[0], one[1] or "", two[0], two[1] or "")
    texts = sorted(pairs)[:_SAMPLE]
    return texts, [pairs[text] for text in texts]


def _splits_of(members: Iterable[Member]) -> dict[str, set]:
    """{image name: the splits it is in}."""
    splits: dict[str, set] = {}
    for name, split in members:
        splits.setdefault(name, set()).add(split)
    return splits


def _crosses(own: set, other: set) -> tuple[bool, bool]:
    """Whether an image in splits `own` pairs with one in splits `other` across splits, and
    within one."""
    return any(a != b for a in own for b in other), bool(own & other)


def _kind_counts(
    pairs: dict[str, int], images: dict[str, int], samples: dict[str, tuple[list, list]]
) -> dict:
    return {
        kind: {
            "pairs": pairs[kind],
            "images": images.get(kind, 0),
            "first": samples[kind][0],
            "named": samples[kind][1],
        }
        for kind in ("across_splits", "within_split")
        if pairs[kind]
    }


def exact_counts(content: Content) -> Iterator[dict]:
    """What one content adds to `duplicates.exact`: the pairs of examples with different
    names and these bytes, across splits and within one, and the images in such pairs.

    Counted from the split counts, never pair by pair, so a thousand copies of one blank
    frame cost no more than two. An image the source lists in several splits under one name
    is `in_several_splits`, not a duplicate of itself."""
    if len(content.names) < 2:
        return
    per_split = Counter(split for _, split in content.members)
    per_name = Counter(name for name, _ in content.members)
    within = sum(n * (n - 1) // 2 for n in per_split.values())
    all_pairs = len(content.members) * (len(content.members) - 1) // 2
    across = all_pairs - within - sum(n * (n - 1) // 2 for n in per_name.values())
    images: Counter = Counter()
    for own in _splits_of(content.members).values():
        others = +(per_split - Counter(own))
        crosses, shares = _crosses(own, set(others))
        images["across_splits"] += crosses
        images["within_split"] += shares
    pairs = {"across_splits": across, "within_split": within}
    samples = {
        kind: _first_pairs(content.members, content.members, kind == "across_splits", "=")
        for kind in pairs
    }
    yield {
        "duplicates": {
            "exact": _kind_counts(pairs, images, samples),
            # For the dataset report: the examples of each split that have an exact copy.
            "exact_by_split": {split or "": n for split, n in per_split.items()},
        }
    }


def near_counts(pair: tuple[Content, Content, int]) -> Iterator[dict]:
    """What one near pair of contents adds to `duplicates.near`: every example of one with
    every example of the other. Their images are counted apart (`near_images`), since an
    image can be near several others."""
    left, right, distance = pair
    left_splits = Counter(split for _, split in left.members)
    right_splits = Counter(split for _, split in right.members)
    within = sum(n * right_splits[split] for split, n in left_splits.items())
    pairs = {"across_splits": len(left.members) * len(right.members) - within}
    pairs["within_split"] = within
    suffix = f" ({distance} bits apart)"
    samples = {
        kind: _first_pairs(left.members, right.members, kind == "across_splits", "~", suffix)
        for kind in pairs
    }
    yield {"duplicates": {"near": _kind_counts(pairs, {}, samples)}}


def near_images(pair: tuple[Content, Content, int]) -> Iterator[tuple[str, str]]:
    """(kind, image name) for each image of a near pair, to be counted once however many
    near pairs it is in."""
    left, right, _ = pair
    for one, other in ((left, right), (right, left)):
        other_splits = {split for _, split in other.members}
        for name, own in _splits_of(one.members).items():
            crosses, shares = _crosses(own, other_splits)
            if crosses:
                yield "across_splits", name
            if shares:
                yield "within_split", name


def _not_hashed(content: Content) -> Iterator[dict]:
    if content.phash is None:
        yield {"duplicates": {"near": {"not_hashed": len(content.names)}}}


class ReportDuplicates(beam.PTransform):
    """HashedImages of the examples written → count dicts for the manifest's `duplicates`
    (summed by `counts.SumCounts`)."""

    def expand(self, hashed: beam.PCollection) -> beam.PCollection:
        contents = hashed | "GroupContents" >> GroupContents()
        near = contents | "NearPairs" >> NearPairs()
        images = (
            near.pairs
            | "NearImages" >> beam.FlatMap(near_images)
            | "DistinctNearImages" >> beam.Distinct()
            | "CountNearImages"
            >> beam.MapTuple(lambda kind, _: {"duplicates": {"near": {kind: {"images": 1}}}})
        )
        not_compared = (
            near[NOT_COMPARED]
            | "DistinctNotCompared" >> beam.Distinct()
            | "CountNotCompared"
            >> beam.Map(lambda _: {"duplicates": {"near": {"not_compared": 1}}})
        )
        return (
            contents | "ExactCounts" >> beam.FlatMap(exact_counts),
            near.pairs | "NearCounts" >> beam.FlatMap(near_counts),
            images,
            not_compared,
            contents | "NotHashed" >> beam.FlatMap(_not_hashed),
        ) | "DuplicateCounts" >> beam.Flatten()


class HashImageFile(beam.DoFn):
    """ImageAnnotation → HashedImage of its stored bytes, read under the loader's rules; an
    image that cannot be read gives nothing here (the shard writer rejects it, with why)."""

    def __init__(self, loader: ImageLoader, max_pixels: int):
        self._loader = loader
        self._max_pixels = max_pixels

    def setup(self) -> None:
        self._loader.setup()

    def process(self, annotation: ImageAnnotation) -> Iterator[HashedImage]:
        try:
            data = self._loader.read(annotation)
        except ImageRejected:
            return
        yield hash_image(annotation.image, None, data, self._max_pixels)


def _linked(content: Content) -> Iterator[tuple[tuple[str, ...], tuple[str, ...]]]:
    if len(content.names) > 1:
        yield (content.sha256,), tuple(content.names)


def _near_linked(pair: tuple[Content, Content, int]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    left, right, _ = pair
    return (left.sha256, right.sha256), (*left.names, *right.names)


def content_groups(links: Iterable[tuple[tuple[str, ...], tuple[str, ...]]]) -> dict[str, str]:
    """{image name: group key} from (sha256s that belong together, their images): contents
    linked directly or through others form one group, whose key is its smallest sha256.

    The key depends on the group's contents only, so the group's split does not change as
    the dataset grows unless the group itself gains a member."""
    parent: dict[str, str] = {}

    def root(sha: str) -> str:
        parent.setdefault(sha, sha)
        while parent[sha] != sha:
            parent[sha] = parent[parent[sha]]
            sha = parent[sha]
        return sha

    links = list(links)
    for shas, _ in links:
        for sha in shas[1:]:
            first, other = root(shas[0]), root(sha)
            parent[max(first, other)] = min(first, other)
    return {name: root(shas[0]) for shas, names in links for name in names}


def placement_counts(groups: dict[str, str], splits: dict[str, float]) -> dict:
    """`duplicates.kept_in_one_split`: the groups and images placed by content, and the
    images among them whose name alone would have put them in another split."""
    moved = sum(
        assign_split(name, splits) != assign_split(key, splits) for name, key in groups.items()
    )
    return {
        "duplicates": {
            "kept_in_one_split": {
                "groups": len(set(groups.values())),
                "images": len(groups),
                "moved": moved,
            }
        }
    }


class ContentGroups(beam.PTransform):
    """ImageAnnotations → ({image name: group key} of every image with an exact or near
    duplicate, as a single dict; its placement counts).

    A first pass over the images, before splits are assigned: each image file is read once
    more and hashed (sha256 of the stored bytes and the perceptual hash), so this costs a
    second read of every image and a small decode, not a second full decode."""

    def __init__(self, loader: ImageLoader, max_pixels: int, splits: dict[str, float]):
        super().__init__()
        self._loader = loader
        self._max_pixels = max_pixels
        self._splits = splits

    def expand(self, images: beam.PCollection) -> tuple[beam.PCollection, beam.PCollection]:
        contents = (
            images
            | "HashImageFiles" >> beam.ParDo(HashImageFile(self._loader, self._max_pixels))
            | "GroupFileContents" >> GroupContents()
        )
        near = contents | "NearFilePairs" >> NearPairs()
        groups = (
            (
                contents | "ExactLinks" >> beam.FlatMap(_linked),
                near.pairs | "NearLinks" >> beam.Map(_near_linked),
            )
            | "AllLinks" >> beam.Flatten()
            | "ListLinks" >> beam.combiners.ToList()
            | "ContentGroups" >> beam.Map(content_groups)
        )
        counts = groups | "PlacementCounts" >> beam.Map(placement_counts, self._splits)
        return groups, counts
