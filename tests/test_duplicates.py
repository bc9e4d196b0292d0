"""Duplicate images: exact copies and near-duplicates found across and within splits, and
`--duplicates same-split` keeping each group in one split."""

import csv
import hashlib
import io
import itertools
import random

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to
from conftest import SAMPLE, local_pipeline, pair_names, read_output, run_create
from PIL import Image, ImageDraw

from pipelines.flags import UsageError
from pipelines.settings import parse_create_args
from transforms import duplicates
from transforms.duplicates import (
    MAX_DISTANCE,
    Content,
    NearPairs,
    content_groups,
    exact_counts,
    perceptual_hash,
)
from transforms.splits import assign_split

SPLITS = {"train": 0.5, "valid": 0.5}


def draw(rng: random.Random, size=(160, 120)) -> Image.Image:
    """A picture of random rectangles and ellipses: each draw is a different picture."""
    image = Image.new("RGB", size, tuple(rng.randrange(256) for _ in range(3)))
    pen = ImageDraw.Draw(image)
    for _ in range(6):
        x0, y0 = rng.randrange(size[0] - 20), rng.randrange(size[1] - 20)
        corners = [x0, y0, rng.randrange(x0 + 10, size[0]), rng.randrange(y0 + 10, size[1])]
        color = tuple(rng.randrange(256) for _ in range(3))
        (pen.rectangle if rng.random() < 0.5 else pen.ellipse)(corners, fill=color)
    return image


def encoded(image: Image.Image, fmt="JPEG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def resized(image: Image.Image, scale: float) -> Image.Image:
    return image.resize((round(image.width * scale), round(image.height * scale)))


# --- the perceptual hash -----------------------------------------------------------------


def test_perceptual_hash_survives_reencoding_and_resizing_but_tells_pictures_apart():
    rng = random.Random(3)
    pictures = [draw(rng) for _ in range(40)]
    hashes = [perceptual_hash(encoded(p, quality=90)) for p in pictures]
    assert None not in hashes
    closest = min((a ^ b).bit_count() for a, b in itertools.combinations(hashes, 2))
    assert closest > MAX_DISTANCE
    for picture, original in zip(pictures, hashes, strict=True):
        for copy in (
            encoded(picture, quality=20),
            encoded(picture, "PNG"),
            encoded(resized(picture, 0.4), quality=85),
            encoded(resized(picture, 2.5), quality=85),
        ):
            assert (perceptual_hash(copy) ^ original).bit_count() <= MAX_DISTANCE


def test_featureless_undecodable_and_oversized_images_get_no_perceptual_hash():
    rng = random.Random(4)
    gradient = Image.linear_gradient("L").resize((160, 120)).convert("RGB")
    assert perceptual_hash(encoded(Image.new("RGB", (64, 48), (200, 10, 10)))) is None
    assert perceptual_hash(encoded(gradient)) is None
    assert perceptual_hash(b"not an image") is None
    picture = encoded(draw(rng))
    assert perceptual_hash(picture) is not None
    assert perceptual_hash(picture, max_pixels=160 * 120 - 1) is None


# --- counting pairs and matching hashes ----------------------------------------------------


def test_exact_counts_pairs_of_different_names_and_their_images():
    # `a.jpg` is listed in both splits by the source: not a duplicate of itself.
    content = Content(
        "s", 1, (("a.jpg", "train"), ("a.jpg", "valid"), ("b.jpg", "train"), ("c.jpg", "valid"))
    )
    (counts,) = exact_counts(content)
    assert counts["duplicates"]["exact"] == {
        "across_splits": {
            "pairs": 3,
            "images": 3,
            "first": [
                "a.jpg (train) = c.jpg (valid)",
                "a.jpg (valid) = b.jpg (train)",
                "b.jpg (train) = c.jpg (valid)",
            ],
            "named": [
                ("a.jpg", "train", "c.jpg", "valid"),
                ("a.jpg", "valid", "b.jpg", "train"),
                ("b.jpg", "train", "c.jpg", "valid"),
            ],
        },
        "within_split": {
            "pairs": 2,
            "images": 3,
            "first": ["a.jpg (train) = b.jpg (train)", "a.jpg (valid) = c.jpg (valid)"],
            "named": [("a.jpg", "train", "b.jpg", "train"), ("a.jpg", "valid", "c.jpg", "valid")],
        },
    }
    assert counts["duplicates"]["exact_by_split"] == {"train": 2, "valid": 2}
    assert list(exact_counts(Content("s", 1, (("a.jpg", "train"), ("a.jpg", "valid"))))) == []


def test_exact_counts_of_a_large_group_come_from_split_counts():
    members = tuple((f"frame-{n:04d}.jpg", "train" if n % 4 else "valid") for n in range(2000))
    (counts,) = exact_counts(Content("s", None, members))
    exact = counts["duplicates"]["exact"]
    assert exact["across_splits"]["pairs"] == 1500 * 500
    assert exact["within_split"]["pairs"] == 1500 * 1499 // 2 + 500 * 499 // 2
    assert exact["across_splits"]["images"] == exact["within_split"]["images"] == 2000
    assert len(exact["across_splits"]["first"]) == 5


def flip(value: int, *bits: int) -> int:
    for bit in bits:
        value ^= 1 << bit
    return value


def test_near_pairs_are_found_once_within_the_distance_and_never_beyond():
    base = random.Random(5).getrandbits(63)
    # 6 flipped bits spread over 6 of the 7 bands still share one band; 7 share none.
    contents = [
        Content("a", base, (("a.jpg", "train"),)),
        Content("b", flip(base, 0, 9, 18, 27, 36, 45), (("b.jpg", "valid"),)),
        Content("c", flip(base, 1, 10, 19, 28, 37, 46, 55), (("c.jpg", "valid"),)),
        Content("d", base, (("d.png", "train"),)),
        Content("e", None, (("e.jpg", "train"),)),
    ]
    with local_pipeline() as pipeline:
        near = pipeline | beam.Create(contents) | NearPairs()
        found = near.pairs | beam.MapTuple(lambda a, b, d: (a.sha256, b.sha256, d))
        assert_that(found, equal_to([("a", "b", 6), ("a", "d", 0), ("b", "d", 6)]))


def test_a_crowded_band_compares_a_bounded_number_and_counts_the_rest(monkeypatch):
    monkeypatch.setattr(duplicates, "MAX_BUCKET", 2)
    contents = [Content(sha, 12345, ((f"{sha}.jpg", "train"),)) for sha in "abc"]
    with local_pipeline() as pipeline:
        near = pipeline | beam.Create(contents) | NearPairs()
        found = near.pairs | beam.MapTuple(lambda a, b, d: (a.sha256, b.sha256))
        assert_that(found, equal_to([("a", "b")]), label="pairs")
        left_out = near.not_compared | beam.Distinct()
        assert_that(left_out, equal_to(["c.jpg"]), label="left out")


def test_content_groups_join_linked_contents_under_their_smallest_sha256():
    links = [
        (("s3",), ("a.jpg", "b.jpg")),
        (("s3", "s1"), ("a.jpg", "b.jpg", "c.jpg")),
        (("s1", "s2"), ("c.jpg", "d.jpg")),
        (("s9", "s8"), ("x.jpg", "y.jpg")),
    ]
    assert content_groups(links) == {
        "a.jpg": "s1",
        "b.jpg": "s1",
        "c.jpg": "s1",
        "d.jpg": "s1",
        "x.jpg": "s8",
        "y.jpg": "s8",
    }


# --- through `odrecords create` ------------------------------------------------------------

# Copies of originals under other names: (copy, original, how).
COPIES = [
    ("copy-a.jpg", "img-00.jpg", "exact"),
    ("copy-b.jpg", "img-01.jpg", "exact"),
    ("sub/img-02.jpg", "img-02.jpg", "exact"),
    ("copy-c.jpg", "img-06.jpg", "exact"),
    ("copy-d.jpg", "img-06.jpg", "exact"),
    ("resaved-03.jpg", "img-03.jpg", "quality"),
    ("small-04.jpg", "img-04.jpg", "smaller"),
    ("big-05.png", "img-05.jpg", "larger"),
]


def write_csv(path, rows):
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["filename", "width", "height", "class", "xmin", "ymin", "xmax", "ymax"])
        writer.writerows(rows)


def box_row(name: str, size: tuple[int, int]) -> list:
    width, height = size
    return [name, width, height, "shape", width // 4, height // 4, width // 2, height // 2]


def copy_of(picture: Image.Image, data: bytes, how: str) -> bytes:
    if how == "exact":
        return data
    if how == "quality":
        return encoded(picture, quality=35)
    if how == "smaller":
        return encoded(resized(picture, 0.5), quality=90)
    return encoded(resized(picture, 1.5), "PNG")


@pytest.fixture(scope="module")
def copies_dataset(tmp_path_factory):
    """30 different pictures and copies of 7 of them under other names: exact copies (one
    in a sub-folder, one picture copied twice), one re-encoded at another JPEG quality, one
    made smaller and one made larger (as PNG)."""
    root = tmp_path_factory.mktemp("copies")
    images = root / "images"
    (images / "sub").mkdir(parents=True)
    rng = random.Random(11)
    pictures, rows = {}, []
    for n in range(30):
        name = f"img-{n:02d}.jpg"
        pictures[name] = draw(rng)
        (images / name).write_bytes(encoded(pictures[name], quality=90))
        rows.append(box_row(name, pictures[name].size))
    for copy, original, how in COPIES:
        data = copy_of(pictures[original], (images / original).read_bytes(), how)
        (images / copy).write_bytes(data)
        rows.append(box_row(copy, Image.open(io.BytesIO(data)).size))
    write_csv(root / "labels.csv", rows)
    return root


def groups_of(how: set[str]) -> list[set[str]]:
    groups: dict[str, set[str]] = {}
    for copy, original, kind in COPIES:
        if kind in how:
            groups.setdefault(original, {original}).add(copy)
    return list(groups.values())


def expected_pairs(how: set[str], split_of) -> dict[str, set[tuple[str, str]]]:
    pairs = {"across_splits": set(), "within_split": set()}
    for group in groups_of(how):
        for a, b in itertools.combinations(sorted(group), 2):
            where = "across_splits" if split_of(a) != split_of(b) else "within_split"
            pairs[where].add((a, b))
    return pairs


def create(dataset, output, *args):
    return run_create(
        "--format",
        "csv",
        "--annotations",
        dataset / "labels.csv",
        "--images",
        dataset / "images",
        "--output",
        output,
        "--splits",
        "train=0.5,valid=0.5",
        "--num-shards",
        "2",
        *args,
    )


def test_report_finds_exact_and_near_duplicates_across_and_within_splits(
    copies_dataset, tmp_path, capsys
):
    assert create(copies_dataset, tmp_path / "out") == 0
    output = read_output(tmp_path / "out")
    found = output["manifest"]["duplicates"]
    split_of = lambda name: assign_split(name, SPLITS)  # noqa: E731
    exact = expected_pairs({"exact"}, split_of)
    near = expected_pairs({"quality", "smaller", "larger"}, split_of)
    # The copies were named so that both kinds of pair occur.
    assert all(exact.values()) and near["across_splits"] and near["within_split"]
    for kind, expected in (("exact", exact), ("near", near)):
        for where, pairs in expected.items():
            report = found[kind][where]
            assert report["pairs"] == len(pairs), (kind, where)
            assert report["images"] == len({name for pair in pairs for name in pair})
            assert {pair_names(text) for text in report["first"]} == pairs
    assert found["near"]["not_hashed"] == found["near"]["not_compared"] == 0
    # The examples hold the bytes the report hashed.
    written = [e for examples in output["splits"].values() for e in examples]
    by_name = {e["image/filename"].decode(): e["image/key/sha256"].decode() for e in written}
    assert by_name["copy-a.jpg"] == by_name["img-00.jpg"] != by_name["img-01.jpg"]
    card = (tmp_path / "out" / "README.md").read_text(encoding="utf-8")
    assert "## Duplicate images" in card and "`--duplicates same-split`" in card
    for text in found["exact"]["across_splits"]["first"]:
        assert f"- `{text}`" in card
    printed = capsys.readouterr()
    across = sum(len(p["across_splits"]) for p in (exact, near))
    assert f"warning: {across} pairs of duplicate images lie in different splits" in printed.err


def test_same_split_puts_every_group_of_duplicates_in_one_split(copies_dataset, tmp_path):
    assert create(copies_dataset, tmp_path / "out", "--duplicates", "same-split") == 0
    output = read_output(tmp_path / "out")
    split_of = {
        example["image/filename"].decode(): split
        for split, examples in output["splits"].items()
        for example in examples
    }
    assert len(split_of) == 30 + len(COPIES)
    images = copies_dataset / "images"
    grouped = set()
    for group in groups_of({"exact", "quality", "smaller", "larger"}):
        # The group's split comes from its content: its smallest sha256.
        key = min(hashlib.sha256((images / name).read_bytes()).hexdigest() for name in group)
        assert {split_of[name] for name in group} == {assign_split(key, SPLITS)}
        grouped |= group
    for name, split in split_of.items():
        if name not in grouped:
            assert split == assign_split(name, SPLITS)
    found = output["manifest"]["duplicates"]
    assert found["exact"]["across_splits"]["pairs"] == found["near"]["across_splits"]["pairs"] == 0
    moved = sum(split_of[name] != assign_split(name, SPLITS) for name in grouped)
    assert found["kept_in_one_split"] == {"groups": 7, "images": len(grouped), "moved": moved}
    assert output["manifest"]["options"]["duplicates"] == "same-split"


def test_with_source_splits_duplicates_and_images_in_several_splits_agree(tmp_path, capsys):
    """`a.jpg` is listed in train and val (`in_several_splits`, not its own duplicate);
    `b.jpg` is a copy of it in val, `d.jpg` a smaller copy of `c.jpg`."""
    rng = random.Random(12)
    images = tmp_path / "images"
    images.mkdir()
    a, c = draw(rng), draw(rng)
    (images / "a.jpg").write_bytes(encoded(a))
    (images / "b.jpg").write_bytes(encoded(a))
    (images / "c.jpg").write_bytes(encoded(c))
    (images / "d.jpg").write_bytes(encoded(resized(c, 0.5)))
    (images / "e.jpg").write_bytes(encoded(draw(rng)))
    write_csv(images / "train_labels.csv", [box_row("a.jpg", a.size), box_row("c.jpg", c.size)])
    write_csv(
        images / "val_labels.csv",
        [box_row(name, (160, 120)) for name in ("a.jpg", "b.jpg", "e.jpg")]
        + [box_row("d.jpg", (80, 60))],
    )
    args = ["--format", "csv", "--annotations", images, "--splits", "source"]
    assert run_create(*args, "--output", tmp_path / "out") == 0
    manifest = read_output(tmp_path / "out")["manifest"]
    assert manifest["images"]["in_several_splits"] == {"count": 1, "first": ["a.jpg (train, val)"]}
    assert manifest["duplicates"]["exact"] == {
        "across_splits": {"pairs": 1, "images": 2, "first": ["a.jpg (train) = b.jpg (val)"]},
        "within_split": {"pairs": 1, "images": 2, "first": ["a.jpg (val) = b.jpg (val)"]},
    }
    near = manifest["duplicates"]["near"]
    assert [pair_names(text) for text in near["across_splits"]["first"]] == [("c.jpg", "d.jpg")]
    assert near["within_split"]["pairs"] == 0
    capsys.readouterr()
    assert run_create(*args, "--output", tmp_path / "out2", "--duplicates", "same-split") == 2
    assert "--duplicates same-split needs split fractions" in capsys.readouterr().err


def test_the_policy_comes_from_a_flag_or_the_config_and_is_checked(tmp_path):
    config = tmp_path / "dataset.yaml"
    lines = [
        "format: voc",
        f"annotations: {SAMPLE}/annotations",
        f"images: {SAMPLE}/images",
        f"output: {tmp_path}/out",
        "splits: {train: 0.8, valid: 0.2}",
    ]
    config.write_text("\n".join([*lines, "duplicates: same-split"]), encoding="utf-8")
    settings, _ = parse_create_args(["--config", str(config)])
    assert settings.duplicates == "same-split"
    settings, _ = parse_create_args(["--config", str(config), "--duplicates", "report"])
    assert settings.duplicates == "report"
    config.write_text("\n".join([*lines, "duplicates: sideways"]), encoding="utf-8")
    with pytest.raises(UsageError, match="--duplicates must be one of report, same-split"):
        parse_create_args(["--config", str(config)])
