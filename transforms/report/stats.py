"""The statistics of a dataset's written examples that the report shows (`stats.json`, whose
shape `to_json` documents by building it).

`DatasetStats` is a plain accumulator: `add` an example, `merge` another accumulator. Its
memory stays bounded at any size of dataset (COCO: 118k images, 860k boxes, 80 classes, or
600 classes): histograms have fixed edges and grids fixed cells, so partial results merge by
adding them; every list keeps a fixed number of entries, those with the smallest keys, so the
same examples give the same JSON in any order and split into partials in any way. Sizes of
boxes are summed as whole numbers (logs in fixed point) for the same reason: floating-point
sums depend on their order.

The boxes of unusual size for their class are those whose log(sqrt(area)) lies more than
`Z_LIMIT` standard deviations from the class's mean. Each class keeps its count and sums of
those values, and its `EXTREMES` smallest and largest boxes: outliers are found among those,
so the count is exact while a class has at most `EXTREMES` of them on each side.
"""

from __future__ import annotations

import hashlib
import math
from bisect import bisect_right, insort
from collections import Counter
from collections.abc import Iterable, Sequence
from operator import itemgetter

import apache_beam as beam
import numpy as np

from transforms.report.facts import ExampleFacts, ObjectFacts

VERSION = 1
OBJECTS_EDGES = (0, 1, 2, 3, 4, 5, 6, 11, 21, 51, 101)
BOX_EDGES = (0, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
ASPECT_EDGES = (0, 0.125, 0.25, 0.5, 0.75, 1.333, 2, 4, 8)
IMAGE_EDGES = (0, 64, 128, 256, 320, 416, 512, 640, 800, 1024, 1280, 1600, 2048, 4096, 8192)
CENTRE_CELLS = 16  # The grid of box centres, per split and per class.
COVER_CELLS = 64  # The grid of how many boxes cover each cell of the image.
SMALL, MEDIUM = 32 * 32, 96 * 96  # COCO's areas, in pixels.
TINY = 8 * 8  # Boxes smaller than this many pixels are listed as tiny.
NEAR_FULL = 0.95  # Boxes covering this share of their image or more are listed.
Z_LIMIT = 3
EXTREMES = 20  # Smallest and largest boxes kept per class to find those of unusual size.
FIRST = 20  # Entries listed of each kind of outlier, and of turned images.
SIZES_COUNTED = 1000  # Distinct image sizes counted exactly, per split.
SIZES_SHOWN = 20
SAMPLE_PER_SPLIT = 24
SAMPLE_PER_CLASS = 8
IMBALANCE = 0.1  # A class with fewer instances than this share of its split's largest.
_FIXED = 1 << 20  # Log sizes are summed as whole multiples of 1/_FIXED.
_HISTOGRAMS = {
    "objects_per_image": OBJECTS_EDGES,
    "box_width_px": BOX_EDGES,
    "box_height_px": BOX_EDGES,
    "aspect_ratio": ASPECT_EDGES,
    "image_width_px": IMAGE_EDGES,
    "image_height_px": IMAGE_EDGES,
}


class Lowest:
    """The `capacity` entries (key, payload) of smallest key among those added or merged;
    keys are tuples that identify their payload, so ties are the same entry."""

    __slots__ = ("capacity", "items")

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.items: list[tuple[tuple, object]] = []

    def add(self, key: tuple, payload: object) -> None:
        if len(self.items) >= self.capacity and key >= self.items[-1][0]:
            return
        insort(self.items, (key, payload), key=itemgetter(0))
        del self.items[self.capacity :]

    def merge(self, other: Lowest) -> None:
        self.items = sorted(self.items + other.items, key=itemgetter(0))[: self.capacity]

    def payloads(self) -> list:
        return [payload for _, payload in self.items]


def _bin(edges: Sequence[float], value: float) -> int:
    """The histogram bin of `value`: edges[i] <= value < edges[i + 1], the last bin open;
    values below the first edge (an inverted box's width) fall in the first."""
    return max(0, bisect_right(edges, value) - 1)


def _cell(position: float, cells: int) -> int:
    return min(cells - 1, max(0, math.floor(position * cells)))


def _grid(cells: int) -> np.ndarray:
    return np.zeros((cells, cells), dtype=np.int64)


def _box(obj: ObjectFacts) -> tuple[float, float, float, float]:
    return obj.xmin, obj.ymin, obj.xmax, obj.ymax


def _rounded(values: Iterable[float]) -> list[float]:
    return [round(v, 2) for v in values]


class _SplitStats:
    """The counts of one split."""

    def __init__(self):
        self.images = self.objects = self.negatives = 0
        self.instances: Counter[str] = Counter()
        self.holding: Counter[str] = Counter()  # Images holding each class.
        self.histograms = {name: [0] * len(edges) for name, edges in _HISTOGRAMS.items()}
        self.areas = [0, 0, 0]
        self.sizes: Counter[tuple[int, int]] = Counter()  # The SIZES_COUNTED smallest sizes.
        self.centres = _grid(CENTRE_CELLS)

    def count(self, name: str, value: float) -> None:
        self.histograms[name][_bin(_HISTOGRAMS[name], value)] += 1

    def add_size(self, size: tuple[int, int]) -> None:
        """Counts an image of `size`, when it is among the SIZES_COUNTED smallest sizes seen
        (the others appear as other sizes): a size left out anywhere has as many smaller ones,
        so it is left out of the whole, in any order of adding and merging."""
        if size in self.sizes or len(self.sizes) < SIZES_COUNTED:
            self.sizes[size] += 1
            return
        largest = max(self.sizes)
        if size < largest:
            del self.sizes[largest]
            self.sizes[size] = 1

    def keep_sizes(self) -> None:
        if len(self.sizes) > SIZES_COUNTED:
            kept = sorted(self.sizes)[:SIZES_COUNTED]
            self.sizes = Counter({size: self.sizes[size] for size in kept})

    def merge(self, other: _SplitStats) -> None:
        self.images += other.images
        self.objects += other.objects
        self.negatives += other.negatives
        self.instances.update(other.instances)
        self.holding.update(other.holding)
        for name, counts in other.histograms.items():
            self.histograms[name] = [
                a + b for a, b in zip(self.histograms[name], counts, strict=True)
            ]
        self.areas = [a + b for a, b in zip(self.areas, other.areas, strict=True)]
        self.sizes.update(other.sizes)
        self.keep_sizes()
        self.centres += other.centres

    def to_json(self, classes: Sequence[str]) -> dict:
        largest = max((self.instances[c] for c in classes), default=0)
        shown = sorted(
            self.sizes.items(), key=lambda item: (-item[1], f"{item[0][0]}x{item[0][1]}")
        )
        shown = [[f"{w}x{h}", n] for (w, h), n in shown[:SIZES_SHOWN]]
        return {
            "images": self.images,
            "objects": self.objects,
            "negatives": self.negatives,
            "rejected_images": 0,
            "rejected_objects": 0,
            "duplicates": 0,
            "classes": {
                c: {
                    "instances": self.instances[c],
                    "images": self.holding[c],
                    "share": round(self.instances[c] / self.objects, 6) if self.objects else 0,
                }
                for c in classes
            },
            "missing_classes": [c for c in classes if not self.instances[c]],
            "imbalanced_classes": [
                c for c in classes if 0 < self.instances[c] < IMBALANCE * largest
            ],
            "histograms": {
                name: {"edges": list(_HISTOGRAMS[name]), "counts": counts}
                for name, counts in self.histograms.items()
            },
            "area": dict(zip(("small", "medium", "large"), self.areas, strict=True)),
            "image_sizes": shown,
            "other_image_sizes": self.images - sum(n for _, n in shown),
            "centres": self.centres.tolist(),
        }


class _ClassStats:
    """What one class needs across splits: where its boxes lie, the count and sums of their
    log sizes (fixed point), its smallest and largest boxes, and its sample."""

    def __init__(self):
        self.centres = _grid(CENTRE_CELLS)
        self.sized = self.total = self.squares = 0
        self.smallest = Lowest(EXTREMES)
        self.largest = Lowest(EXTREMES)
        self.sample = Lowest(SAMPLE_PER_CLASS)

    def merge(self, other: _ClassStats) -> None:
        self.centres += other.centres
        self.sized += other.sized
        self.total += other.total
        self.squares += other.squares
        self.smallest.merge(other.smallest)
        self.largest.merge(other.largest)
        self.sample.merge(other.sample)

    def unusual(self) -> list[tuple[tuple, dict]]:
        """(key, outlier) of the kept boxes whose size's |z| exceeds Z_LIMIT."""
        spread = self.sized * self.squares - self.total**2  # n² var, in _FIXED² units.
        if self.sized < 2 or spread <= 0:
            return []
        found = {}
        for (_, *key), (value, outlier) in self.smallest.items + self.largest.items:
            z = (self.sized * value - self.total) / math.sqrt(spread)
            if abs(z) > Z_LIMIT:
                found[tuple(key)] = {**outlier, "why": f"{outlier['why']}, z {z:+.1f} in its class"}
        return list(found.items())


class DatasetStats:
    """The statistics of examples added one by one (`add`) or merged from partial results
    (`merge`), in any order; `to_json` gives stats.json's statistics."""

    def __init__(self):
        self.splits: dict[str, _SplitStats] = {}
        self.classes: dict[str, _ClassStats] = {}
        # The covering counts as a difference grid: each box adds four numbers, and the
        # counts are its running sums.
        self.cover = np.zeros((COVER_CELLS + 1, COVER_CELLS + 1), dtype=np.int64)
        self.tiny, self.tiny_count = Lowest(FIRST), 0
        self.near_full, self.near_full_count = Lowest(FIRST), 0
        self.turned, self.turned_count = Lowest(FIRST), 0
        self.samples: dict[str, Lowest] = {}

    def add(self, facts: ExampleFacts) -> None:
        split = self.splits.setdefault(facts.split, _SplitStats())
        width, height = max(facts.width, 1), max(facts.height, 1)
        split.images += 1
        split.objects += len(facts.objects)
        split.negatives += not facts.objects
        split.count("objects_per_image", len(facts.objects))
        split.count("image_width_px", facts.width)
        split.count("image_height_px", facts.height)
        split.add_size((facts.width, facts.height))
        location = facts.location
        where = (location.path, location.offset)
        if facts.turned:
            self.turned_count += 1
            self.turned.add((facts.image, facts.split, *where), facts.image)
        for index, obj in enumerate(facts.objects):
            self._add_object(facts, split, obj, (*where, index), width, height)
        split.holding.update({obj.label for obj in facts.objects})
        sample = {
            "split": facts.split,
            "image": facts.image,
            "width": facts.width,
            "height": facts.height,
            "objects": [[obj.label, *_rounded(_box(obj))] for obj in facts.objects],
            "location": {
                "path": location.path,
                "offset": location.offset,
                "length": location.length,
            },
        }
        # Names may hold lone surrogates (a file name that is not UTF-8): hashed as they are.
        name = f"{facts.split}/{facts.image}".encode("utf-8", "surrogatepass")
        key = (hashlib.sha256(name).hexdigest(), *where)
        self.samples.setdefault(facts.split, Lowest(SAMPLE_PER_SPLIT)).add(key, sample)
        for label in sorted({obj.label for obj in facts.objects}):
            self.classes[label].sample.add(key, sample)

    def _add_object(
        self,
        facts: ExampleFacts,
        split: _SplitStats,
        obj: ObjectFacts,
        where: tuple,
        width: int,
        height: int,
    ) -> None:
        """Counts one object; `where`: its record's path and offset, and its index there."""
        box_width, box_height = obj.xmax - obj.xmin, obj.ymax - obj.ymin
        area = max(box_width, 0) * max(box_height, 0)
        split.instances[obj.label] += 1
        split.count("box_width_px", box_width)
        split.count("box_height_px", box_height)
        split.count("aspect_ratio", box_width / box_height if box_height > 0 else math.inf)
        split.areas[0 if area < SMALL else 1 if area < MEDIUM else 2] += 1
        row = _cell((obj.ymin + obj.ymax) / 2 / height, CENTRE_CELLS)
        column = _cell((obj.xmin + obj.xmax) / 2 / width, CENTRE_CELLS)
        split.centres[row, column] += 1
        kept = self.classes.setdefault(obj.label, _ClassStats())
        kept.centres[row, column] += 1
        self._cover(obj, width, height)
        outlier = {
            "split": facts.split,
            "image": facts.image,
            "class": obj.label,
            "box": _rounded(_box(obj)),
            "width": facts.width,
            "height": facts.height,
            "why": f"{box_width:.0f}x{box_height:.0f} px",
        }
        key = (facts.image, facts.split, obj.label, _box(obj), *where)
        if area < TINY:
            self.tiny_count += 1
            self.tiny.add(key, outlier)
        if area >= NEAR_FULL * facts.width * facts.height:
            self.near_full_count += 1
            share = area / max(facts.width * facts.height, 1)
            self.near_full.add(key, {**outlier, "why": f"{share:.0%} of the image"})
        if area > 0:
            value = round(math.log(math.sqrt(area)) * _FIXED)
            kept.sized += 1
            kept.total += value
            kept.squares += value * value
            kept.smallest.add((value, *key), (value, outlier))
            kept.largest.add((-value, *key), (value, outlier))

    def _cover(self, obj: ObjectFacts, width: int, height: int) -> None:
        """Adds the box to the covering counts: every cell it overlaps counts it once."""
        xs = sorted((obj.xmin / width, obj.xmax / width))
        ys = sorted((obj.ymin / height, obj.ymax / height))
        left, top = _cell(xs[0], COVER_CELLS), _cell(ys[0], COVER_CELLS)
        right = max(left, min(COVER_CELLS, math.ceil(xs[1] * COVER_CELLS)) - 1)
        bottom = max(top, min(COVER_CELLS, math.ceil(ys[1] * COVER_CELLS)) - 1)
        self.cover[top, left] += 1
        self.cover[top, right + 1] -= 1
        self.cover[bottom + 1, left] -= 1
        self.cover[bottom + 1, right + 1] += 1

    def merge(self, other: DatasetStats) -> DatasetStats:
        """Adds `other` into this one (which it returns), leaving `other` as it was."""
        for name, split in other.splits.items():
            self.splits.setdefault(name, _SplitStats()).merge(split)
        for name, kept in other.classes.items():
            self.classes.setdefault(name, _ClassStats()).merge(kept)
        self.cover += other.cover
        self.tiny.merge(other.tiny)
        self.tiny_count += other.tiny_count
        self.near_full.merge(other.near_full)
        self.near_full_count += other.near_full_count
        self.turned.merge(other.turned)
        self.turned_count += other.turned_count
        for name, sample in other.samples.items():
            self.samples.setdefault(name, Lowest(SAMPLE_PER_SPLIT)).merge(sample)
        return self

    def to_json(self, classes: Sequence[str], splits: Iterable[str] = ()) -> dict:
        """stats.json's statistics (see the schema); `classes`: the label map's names in its
        order, which come first, then any other class seen, sorted; `splits`: splits to show
        even without examples (all of them rejected). The fields the caller knows (rejected
        and duplicate images per split) are 0, for it to fill in."""
        names = list(dict.fromkeys([*classes, *sorted(set(self.classes) - set(classes))]))
        shown = {name: self.splits.get(name) or _SplitStats() for name in {*self.splits, *splits}}
        unusual = [entry for c in names if c in self.classes for entry in self.classes[c].unusual()]
        centres = {
            c: self.classes[c].centres if c in self.classes else _grid(CENTRE_CELLS) for c in names
        }
        return {
            "version": VERSION,
            "classes": names,
            "splits": {name: shown[name].to_json(names) for name in sorted(shown)},
            "centres": {
                "all": sum((s.centres for s in self.splits.values()), _grid(CENTRE_CELLS)).tolist(),
                "by_class": {c: grid.tolist() for c, grid in centres.items()},
            },
            "boxes": {"all": self.cover.cumsum(0).cumsum(1)[:COVER_CELLS, :COVER_CELLS].tolist()},
            "outliers": {
                "tiny": {"count": self.tiny_count, "first": self.tiny.payloads()},
                "near_full_frame": {
                    "count": self.near_full_count,
                    "first": self.near_full.payloads(),
                },
                "unusual_size": {
                    "count": len(unusual),
                    "first": [outlier for _, outlier in sorted(unusual, key=itemgetter(0))[:FIRST]],
                },
            },
            "turned": {"count": self.turned_count, "first": self.turned.payloads()},
            "sample": {
                "by_split": {name: self.samples[name].payloads() for name in sorted(self.samples)},
                "by_class": {
                    c: self.classes[c].sample.payloads() if c in self.classes else [] for c in names
                },
            },
        }


class CombineStats(beam.CombineFn):
    """ExampleFacts → their DatasetStats."""

    def create_accumulator(self) -> DatasetStats:
        return DatasetStats()

    def add_input(self, stats: DatasetStats, facts: ExampleFacts) -> DatasetStats:
        stats.add(facts)
        return stats

    def merge_accumulators(self, accumulators: Iterable[DatasetStats]) -> DatasetStats:
        accumulators = iter(accumulators)
        first = next(accumulators)
        for stats in accumulators:
            first.merge(stats)
        return first

    def extract_output(self, stats: DatasetStats) -> DatasetStats:
        return stats


class MergeStats(CombineStats):
    """Partial DatasetStats (one per shard, say) → their sum."""

    def add_input(self, stats: DatasetStats, partial: DatasetStats) -> DatasetStats:
        return stats.merge(partial)
