"""The dataset report's statistics (`transforms.report.stats`) against numbers worked out by
hand, the same in any order and partition, bounded; and `odrecords report` end to end, read
back with TensorFlow."""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import random
from collections import Counter

import apache_beam as beam
import pytest
import tensorflow as tf
from apache_beam.testing.util import assert_that, equal_to
from conftest import SAMPLE, local_pipeline, run_create
from PIL import Image

from pipelines import report
from transforms.report.facts import ExampleFacts, Location, ObjectFacts
from transforms.report.stats import (
    EXTREMES,
    FIRST,
    SAMPLE_PER_CLASS,
    SAMPLE_PER_SPLIT,
    SIZES_COUNTED,
    SIZES_SHOWN,
    CombineStats,
    DatasetStats,
    MergeStats,
)
from transforms.tfrecord import frame, is_framed, payload


def facts(split, image, width, height, *objects, offset=0, turned=False) -> ExampleFacts:
    boxes = tuple(ObjectFacts(label, *box) for label, *box in objects)
    return ExampleFacts(split, image, width, height, boxes, Location("f", offset, 10), turned)


# a.jpg: a 20x30 cat (600 px², aspect 0.67) and a dog filling its 100x100 image.
# b.jpg: a 4x2 cat (8 px²: tiny, aspect 2). c.jpg: no objects. d.jpg: a 100x100 dog, turned.
EXAMPLES = [
    facts("train", "a.jpg", 100, 100, ("cat", 10, 10, 30, 40), ("dog", 0, 0, 100, 100)),
    facts("train", "b.jpg", 200, 100, ("cat", 0, 0, 4, 2), offset=1),
    facts("train", "c.jpg", 200, 100, offset=2),
    facts("val", "d.jpg", 640, 480, ("dog", 100, 100, 200, 200), offset=3, turned=True),
]


def grid(*cells):
    """A 16x16 grid with 1 at each (row, column)."""
    rows = [[0] * 16 for _ in range(16)]
    for row, column in cells:
        rows[row][column] += 1
    return rows


def counts(length, *ones):
    values = [0] * length
    for index in ones:
        values[index] += 1
    return values


def stats_of(examples, classes=("dog", "cat", "bird")) -> dict:
    stats = DatasetStats()
    for example in examples:
        stats.add(example)
    return stats.to_json(list(classes))


def test_statistics_of_four_examples_worked_out_by_hand():
    result = stats_of(EXAMPLES)
    assert result["classes"] == ["dog", "cat", "bird"]
    train = result["splits"]["train"]
    histograms = {name: h["counts"] for name, h in train.pop("histograms").items()}
    assert train == {
        "images": 3,
        "objects": 3,
        "negatives": 1,
        "rejected_images": 0,
        "rejected_objects": 0,
        "duplicates": 0,
        "classes": {
            "dog": {"instances": 1, "images": 1, "share": 0.333333},
            "cat": {"instances": 2, "images": 2, "share": 0.666667},
            "bird": {"instances": 0, "images": 0, "share": 0},
        },
        "missing_classes": ["bird"],
        "imbalanced_classes": [],
        "area": {"small": 2, "medium": 0, "large": 1},
        "image_sizes": [["200x100", 2], ["100x100", 1]],
        "other_image_sizes": 0,
        # Centres: cat (20, 25) of 100x100, dog (50, 50), cat (2, 1) of 200x100.
        "centres": grid((4, 3), (8, 8), (0, 0)),
    }
    assert histograms == {
        "objects_per_image": counts(11, 0, 1, 2),  # 0, 1 and 2 objects.
        "box_width_px": counts(12, 3, 5, 1),  # 20, 100, 4.
        "box_height_px": counts(12, 3, 5, 0),  # 30, 100, 2.
        "aspect_ratio": counts(9, 3, 4, 6),  # 0.67, 1, 2.
        "image_width_px": counts(15, 1, 2, 2),  # 100, 200, 200.
        "image_height_px": counts(15, 1, 1, 1),
    }
    val = result["splits"]["val"]
    assert val["classes"]["dog"] == {"instances": 1, "images": 1, "share": 1.0}
    assert val["missing_classes"] == ["cat", "bird"]
    assert val["centres"] == grid((5, 3))  # (150, 150) of 640x480.
    assert val["image_sizes"] == [["640x480", 1]]
    assert result["centres"]["all"] == grid((4, 3), (8, 8), (0, 0), (5, 3))
    assert result["centres"]["by_class"]["dog"] == grid((8, 8), (5, 3))
    assert result["centres"]["by_class"]["bird"] == grid()
    # Covering cells of 64x64: the full dog covers all 4096, the tiny cat 2x2 at the corner,
    # a.jpg's cat rows 6-25 and columns 6-19, d.jpg's dog rows 13-26 and columns 10-19.
    cover = result["boxes"]["all"]
    assert (cover[0][0], cover[1][1], cover[20][15], cover[26][10], cover[63][63]) == (
        2,
        2,
        3,
        2,
        1,
    )
    assert sum(map(sum, cover)) == 4096 + 4 + 20 * 14 + 14 * 10
    assert result["outliers"]["tiny"] == {
        "count": 1,
        "first": [
            {"split": "train", "image": "b.jpg", "class": "cat", "box": [0, 0, 4, 2],
             "width": 200, "height": 100, "why": "4x2 px"},
        ],
    }  # fmt: skip
    near_full = result["outliers"]["near_full_frame"]
    assert near_full["count"] == 1
    assert (near_full["first"][0]["image"], near_full["first"][0]["why"]) == (
        "a.jpg",
        "100% of the image",
    )
    assert result["outliers"]["unusual_size"] == {"count": 0, "first": []}
    assert result["turned"] == {"count": 1, "first": ["d.jpg"]}
    by_hash = sorted(
        ["a.jpg", "b.jpg", "c.jpg"], key=lambda n: hashlib.sha256(f"train/{n}".encode()).hexdigest()
    )
    assert [s["image"] for s in result["sample"]["by_split"]["train"]] == by_hash
    assert [s["image"] for s in result["sample"]["by_class"]["cat"]] == [
        n for n in by_hash if n != "c.jpg"
    ]
    assert result["sample"]["by_class"]["bird"] == []
    assert result["sample"]["by_split"]["val"][0] == {
        "split": "val", "image": "d.jpg", "width": 640, "height": 480,
        "objects": [["dog", 100, 100, 200, 200]],
        "location": {"path": "f", "offset": 3, "length": 10},
    }  # fmt: skip


def test_a_box_far_from_its_class_size_is_unusual():
    # 30 boxes of 10x10 and one of 1000x1000: the large one's z is sqrt(30) = 5.5, the
    # others' -1/sqrt(30).
    examples = [
        facts("train", f"{i:02d}.jpg", 2000, 2000, ("car", 0, 0, 10, 10)) for i in range(30)
    ]
    examples.append(facts("train", "big.jpg", 2000, 2000, ("car", 0, 0, 1000, 1000)))
    unusual = stats_of(examples, ["car"])["outliers"]["unusual_size"]
    assert unusual["count"] == 1
    assert unusual["first"][0]["image"] == "big.jpg"
    assert unusual["first"][0]["why"] == "1000x1000 px, z +5.5 in its class"


def random_examples(count: int, seed: int = 7) -> list[ExampleFacts]:
    """Many examples with more sizes, tiny boxes, images and classes than the lists hold."""
    rng = random.Random(seed)
    classes = [f"class{i}" for i in range(12)]
    examples = []
    for index in range(count):
        width, height = rng.choice([(60, 60), (64, 48), (80, 60)] + [None] * 7) or (
            rng.randint(100, 1600),
            rng.randint(100, 1600),
        )
        objects = []
        for _ in range(rng.choice([0, 1, 2, 5, 12])):
            side = rng.choice([2, 5, 30, 200, 40])
            x, y = rng.uniform(0, width - 1), rng.uniform(0, height - 1)
            xmax, ymax = min(width, x + side), min(height, y + side * rng.uniform(0.2, 3))
            objects.append((rng.choice(classes), x, y, xmax, ymax))
        split = rng.choice(["train", "val"])
        examples.append(
            facts(
                split,
                f"img{index}.jpg",
                width,
                height,
                *objects,
                offset=index,
                turned=index % 7 == 0,
            )
        )
    return examples


def test_any_order_and_partition_gives_the_same_json():
    examples = random_examples(3000)
    whole = json.dumps(stats_of(examples), sort_keys=True)
    rng = random.Random(1)
    for _ in range(3):
        shuffled = examples[:]
        rng.shuffle(shuffled)
        cuts = sorted(rng.sample(range(1, len(shuffled)), 6))
        partials = []
        for start, end in zip([0, *cuts], [*cuts, len(shuffled)], strict=True):
            partial = DatasetStats()
            for example in shuffled[start:end]:
                partial.add(example)
            partials.append(pickle.loads(pickle.dumps(partial)))
        rng.shuffle(partials)
        merged = DatasetStats()
        for partial in partials:
            merged.merge(partial)
        assert json.dumps(merged.to_json(["dog", "cat", "bird"]), sort_keys=True) == whole


def test_beam_combines_examples_and_partials_to_the_same_json():
    examples = random_examples(600)
    whole = json.dumps(stats_of(examples), sort_keys=True)
    as_json = lambda stats: json.dumps(stats.to_json(["dog", "cat", "bird"]), sort_keys=True)  # noqa: E731
    with local_pipeline() as pipeline:
        facts = pipeline | beam.Create(examples)
        direct = facts | "Examples" >> beam.CombineGlobally(CombineStats())
        partials = (
            facts
            | beam.Map(lambda e: (e.location.offset % 5, e))
            | beam.CombinePerKey(CombineStats())
            | beam.Values()
            | "Partials" >> beam.CombineGlobally(MergeStats())
        )
        assert_that(direct | "Json" >> beam.Map(as_json), equal_to([whole]), label="Direct")
        assert_that(partials | "PJson" >> beam.Map(as_json), equal_to([whole]), label="Merged")


def test_lists_stay_bounded_and_counts_stay_exact():
    examples = random_examples(3000)
    stats = DatasetStats()
    for example in examples:
        stats.add(example)
    assert all(len(split.sizes) <= SIZES_COUNTED for split in stats.splits.values())
    result = stats.to_json([])
    for name, split in result["splits"].items():
        ours = [e for e in examples if e.split == name]
        true_sizes = Counter(f"{e.width}x{e.height}" for e in ours)
        assert len(true_sizes) > SIZES_COUNTED  # The case the bound is for.
        assert len(split["image_sizes"]) == SIZES_SHOWN
        assert {size for size, _ in split["image_sizes"][:3]} == {"60x60", "64x48", "80x60"}
        assert all(true_sizes[size] == n for size, n in split["image_sizes"])
        assert split["other_image_sizes"] + sum(n for _, n in split["image_sizes"]) == len(ours)
        assert split["images"] == len(ours)
        assert split["objects"] == sum(len(e.objects) for e in ours)
        assert len(result["sample"]["by_split"][name]) == SAMPLE_PER_SPLIT
    for kind in ("tiny", "near_full_frame", "unusual_size"):
        assert len(result["outliers"][kind]["first"]) <= FIRST
    tiny = [
        (e.image, o)
        for e in examples
        for o in e.objects
        if (o.xmax - o.xmin) * (o.ymax - o.ymin) < 64
    ]
    assert result["outliers"]["tiny"]["count"] == len(tiny) > FIRST
    assert len(result["outliers"]["tiny"]["first"]) == FIRST
    assert result["turned"]["count"] == len([e for e in examples if e.turned]) > FIRST
    assert len(result["turned"]["first"]) == FIRST
    assert all(len(s) == SAMPLE_PER_CLASS for s in result["sample"]["by_class"].values())
    assert all(len(kept.smallest.items) <= EXTREMES for kept in stats.classes.values())


# End to end.


def parse(path: str) -> list[dict]:
    spec = {
        "image/filename": tf.io.FixedLenFeature((), tf.string),
        "image/object/class/text": tf.io.VarLenFeature(tf.string),
    }
    return [tf.io.parse_single_example(r, spec) for r in tf.data.TFRecordDataset(path)]


def run_report(*args) -> int:
    return report.main([str(arg) for arg in args])


def test_report_of_a_create_output_counts_what_tensorflow_reads(tmp_path):
    out = tmp_path / "records"
    code = run_create(
        "--format", "voc", "--annotations", f"{SAMPLE}/annotations", "--images",
        f"{SAMPLE}/images", "--output", out, "--splits", "train=0.75,val=0.25", "--num-shards", "2",
    )  # fmt: skip
    assert code == 0
    assert run_report(out, "--output", tmp_path / "report") == 0
    result = json.loads((tmp_path / "report" / "stats.json").read_text())
    manifest = json.loads((out / "manifest.json").read_text())
    for split, entry in manifest["splits"].items():
        instances, images = Counter(), 0
        for shard in entry["files"]:
            for example in parse(str(out / shard)):
                images += 1
                instances.update(
                    t.decode() for t in example["image/object/class/text"].values.numpy()
                )
        got = result["splits"][split]
        assert got["images"] == images
        assert {c: v["instances"] for c, v in got["classes"].items() if v["instances"]} == instances
    assert result["rejected"] == {"count": 0, "first": []}
    assert result["source"]["kind"] == "records"
    sample = result["sample"]["by_split"]["val"][0]
    with open(sample["location"]["path"], "rb") as handle:
        handle.seek(sample["location"]["offset"])
        record = handle.read(sample["location"]["length"])
    assert is_framed(record)
    read = tf.train.Example.FromString(payload(record)).features.feature
    assert read["image/filename"].bytes_list.value[0].decode() == sample["image"]
    # Run again into the same folder: its own stats.json is replaced.
    assert run_report(out, "--output", tmp_path / "report") == 0


def feature(values):
    if isinstance(values[0], bytes):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=values))
    if isinstance(values[0], float):
        return tf.train.Feature(float_list=tf.train.FloatList(value=values))
    return tf.train.Feature(int64_list=tf.train.Int64List(value=values))


def example(**features) -> bytes:
    """A serialized tf.train.Example; keys use '__' for '/'."""
    mapped = {key.replace("__", "/"): feature(value) for key, value in features.items()}
    return tf.train.Example(features=tf.train.Features(feature=mapped)).SerializeToString()


def jpeg(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 10, 30)).save(buffer, "JPEG")
    return buffer.getvalue()


def test_report_of_records_another_tool_wrote(tmp_path):
    image = jpeg(40, 20)
    boxes = {"image__object__bbox__xmin": [0.0], "image__object__bbox__ymin": [0.0],
             "image__object__bbox__xmax": [0.5], "image__object__bbox__ymax": [0.5]}  # fmt: skip
    records = [
        # Dat Tran's script: text and label, width and height given.
        example(
            image__encoded=[image],
            image__filename=[b"one.jpg"],
            image__width=[40],
            image__height=[20],
            image__object__class__text=[b"fox"],
            image__object__class__label=[1],
            **boxes,
        ),  # fmt: skip
        # The same image bytes under another name, measured from its header, label only.
        example(
            image__encoded=[image],
            image__filename=[b"two.jpg"],
            image__object__class__label=[3],
            **boxes,
        ),  # fmt: skip
        # Object lists of different lengths: the record is refused.
        example(
            image__encoded=[jpeg(8, 8)],
            image__filename=[b"bad.jpg"],
            image__object__class__text=[b"fox", b"owl"],
            **boxes,
        ),  # fmt: skip
        b"not an example at all",
    ]
    path = tmp_path / "holdout.tfrecord"
    path.write_bytes(b"".join(frame(r) for r in records))
    broken = tmp_path / "broken.tfrecord"
    broken.write_bytes(b"garbage")  # Shorter than a record's header.
    assert run_report(path, broken, "--output", tmp_path / "report") == 0
    result = json.loads((tmp_path / "report" / "stats.json").read_text())
    assert result["classes"] == ["3", "fox"]
    assert result["splits"]["broken"]["images"] == 0
    assert result["splits"]["broken"]["rejected_images"] == 1
    split = result["splits"]["holdout"]
    assert (split["images"], split["objects"], split["rejected_images"]) == (2, 2, 2)
    assert split["image_sizes"] == [["40x20", 2]]
    assert split["histograms"]["box_width_px"]["counts"][3] == 2  # 20 px wide.
    assert result["rejected"]["count"] == 3
    assert [(r["source"], r["reason"][:27], r["split"]) for r in result["rejected"]["first"]] == [
        (f"{broken}#record[0]", "file ends inside a record h", "broken"),
        (f"{path}#record[2]", "object lists differ in leng", "holdout"),
        (f"{path}#record[3]", "record is not a tf.train.Ex", "holdout"),
    ]
    assert result["duplicates"] == {
        "count": 1,
        "across_splits": 0,
        "pairs": [
            {"kind": "exact", "a": "one.jpg", "b": "two.jpg", "splits": ["holdout"] * 2,
             "across": False},
        ],
    }  # fmt: skip
    assert split["duplicates"] == 2


def test_report_leaves_a_stats_json_it_did_not_write(tmp_path, capsys):
    path = tmp_path / "a.tfrecord"
    path.write_bytes(frame(example(image__filename=[b"x"], image__width=[4], image__height=[4])))
    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "stats.json").write_text("{}")
    assert run_report(path, "--output", tmp_path / "report") == 2
    assert "stats.json is not a file odrecords wrote" in capsys.readouterr().err
    assert (tmp_path / "report" / "stats.json").read_text() == "{}"


@pytest.mark.parametrize("args", [["--output", "x"], ["nothing-*.tfrecord", "--output", "x"]])
def test_usage_errors_exit_2(args, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert run_report(*args) == 2
    assert capsys.readouterr().err.startswith("odrecords report: error: ")
