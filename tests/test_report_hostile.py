"""The dataset report against hostile input: tampered index rows, records of any values,
names that are not UTF-8, decompression bombs, thousands of classes and GZIP files. The
report never fails on what it reads, writes strict JSON and a page that loads nothing, and
reads back no more than it draws."""

from __future__ import annotations

import gzip
import io
import json
import math
import os
from collections import Counter

import pytest
import tensorflow as tf
from browser import PageText
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from test_report_page import _pixels
from test_report_stats import example, jpeg, run_report

from transforms import drawing
from transforms.builds.index import IndexRow
from transforms.drawing import BACKGROUND
from transforms.export.decode import RecordRejected, decode_record
from transforms.report import thumbnails as thumbnails_module
from transforms.report.build import sampled, stats_text
from transforms.report.facts import (
    ExampleFacts,
    Location,
    ObjectFacts,
    example_facts,
    facts_are_valid,
    written_facts,
)
from transforms.report.page import MAX_CLASS_PANELS, render_page
from transforms.report.record_facts import facts_of_record
from transforms.report.stats import SAMPLE_PER_SPLIT, DatasetStats
from transforms.report.thumbnails import SIZE, read_sampled, thumbnail
from transforms.tfrecord import frame


def strict(text: str) -> dict:
    def refuse(name):
        raise ValueError(f"{name} in JSON")

    return json.loads(text, parse_constant=refuse)


def report_of(stats: DatasetStats) -> tuple[dict, str]:
    """(stats.json read back strictly, the page as the bytes written), as a build writes them."""
    data = stats.to_json([])
    page = render_page(data, {})
    page.encode("utf-8")
    return strict(stats_text(data)), page


GOOD = written_facts(40, 20, False, [("cat", 0.1, 0.2, 0.5, 0.9)])


def row_line(facts: dict) -> bytes:
    row = IndexRow(
        image="a.jpg", split="train", offset=0, length=10, fingerprint="f", annotation="a",
        sources="s", files=(), sha256="0" * 64, phash=None, stats={}, facts=facts,
    )  # fmt: skip
    return row.line()


def with_object(**changes) -> dict:
    names = ["label", "xmin", "ymin", "xmax", "ymax"]
    item = dict(zip(names, GOOD["objects"][0], strict=True)) | changes
    return dict(GOOD, objects=[[item[name] for name in names]])


TAMPERED = {
    "width 0": dict(GOOD, width=0),
    "negative height": dict(GOOD, height=-20),
    "width 2**31": dict(GOOD, width=2**31),
    "width 10**400": dict(GOOD, width=10**400),
    "width as float": dict(GOOD, width=40.0),
    "turned as text": dict(GOOD, turned="yes"),
    "corner 1e308": with_object(xmax=1e308),
    "corner -1e308": with_object(xmin=-1e308),
    "corner 10**400": with_object(ymax=10**400),
    "corner past the image": with_object(xmax=41),
    "corner true": with_object(xmin=True),
    "label not text": with_object(label=7),
    "label a lone surrogate": with_object(label="cat\ud800"),
    "object of four": dict(GOOD, objects=[GOOD["objects"][0][:4]]),
}


def test_a_good_row_is_read_back_with_its_facts():
    assert facts_are_valid(GOOD)
    assert IndexRow.from_line(row_line(GOOD)).facts == GOOD


@pytest.mark.parametrize("facts", TAMPERED.values(), ids=TAMPERED.keys())
def test_an_index_row_with_tampered_facts_is_refused(facts):
    assert not facts_are_valid(facts)
    # What reading a previous build's index catches: the file is left out, the job goes on.
    with pytest.raises((ValueError, KeyError, TypeError)):
        IndexRow.from_line(row_line(facts))


# JSON values as a tampered index row may hold them.
NUMBERS = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, 1, 2**31 - 1, 2**31, 10**400, -(10**400)]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
)
# Any text, lone surrogates included (a JSON escape, a file name that is not UTF-8).
NAMES = st.text(st.one_of(st.characters(), st.characters(categories=["Cs"])), max_size=8)
OBJECTS = st.lists(st.one_of(st.tuples(NAMES, NUMBERS, NUMBERS, NUMBERS, NUMBERS).map(list),
                             st.lists(NUMBERS, max_size=5)), max_size=4)  # fmt: skip
FACTS = st.fixed_dictionaries(
    {"width": NUMBERS, "height": NUMBERS, "turned": st.booleans(), "objects": OBJECTS}
)


@settings(max_examples=300, deadline=None)
@given(st.lists(FACTS, min_size=1, max_size=4))
def test_facts_a_row_may_hold_never_break_the_report(rows):
    stats = DatasetStats()
    for offset, facts in enumerate(rows):
        if facts_are_valid(facts):
            stats.add(example_facts("train", f"{offset}.jpg", facts, Location("f", offset, 1)))
    data, _ = report_of(stats)
    assert data["splits"].get("train", {"images": 0})["images"] == sum(map(facts_are_valid, rows))


FLOATS32 = st.floats(width=32, allow_nan=True, allow_infinity=True)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    size=st.tuples(st.integers(-(2**63), 2**63 - 1), st.integers(-(2**63), 2**63 - 1)),
    corners=st.lists(st.tuples(FLOATS32, FLOATS32, FLOATS32, FLOATS32), max_size=3),
    texts=st.lists(st.binary(max_size=12), min_size=3, max_size=3),
    filename=st.binary(max_size=12),
)
def test_any_record_that_decodes_gives_a_report(size, corners, texts, filename):
    """Records of any size, corners and names, read as `odrecords report` reads them."""
    lists = {
        f"image__object__bbox__{key}": [float(box[k]) for box in corners]
        for k, key in enumerate(("xmin", "ymin", "xmax", "ymax"))
    }
    objects = {**lists, "image__object__class__text": texts[: len(corners)]} if corners else {}
    record = example(
        image__encoded=[jpeg(8, 8)],
        image__filename=[filename],
        image__width=[size[0]],
        image__height=[size[1]],
        **objects,
    )
    try:
        decoded = decode_record(record, "r", "train", {}, {}, tf.train.Example)
    except RecordRejected:
        return
    stats = DatasetStats()
    stats.add(facts_of_record(decoded, Location("f", 0, 1)))
    data, _ = report_of(stats)
    assert data["splits"]["train"]["objects"] == len(decoded.image.annotation.boxes)


def test_a_file_name_that_is_not_utf8_is_a_usage_error(tmp_path, capsys):
    path = os.path.join(os.fsencode(tmp_path), b"caf\xe9.tfrecord")
    with open(path, "wb") as handle:
        handle.write(frame(example(image__encoded=[jpeg(40, 20)])))
    assert run_report(os.fsdecode(path), "--output", tmp_path / "report") == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line == (
        f"odrecords report: error: {tmp_path}/caf\\udce9.tfrecord: the file name is not UTF-8; "
        "rename the file"
    )
    assert not (tmp_path / "report").exists()


HOSTILE_NAMES = [
    "url(http://127.0.0.1:9/x.png)",
    "javascript:alert(1)",
    '"><img src=//127.0.0.1:9/y onerror=alert(1)>',
    "</style><style>*{background:url(//127.0.0.1:9/z)}</style>",
    "</title><script>alert(1)</script>",
    "\x00\x1b[31m\r\n\u202e",
    "x" * 10_000,
]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(HOSTILE_NAMES), NAMES), min_size=1, max_size=6))
def test_names_from_the_data_never_reach_out_of_the_page(names):
    stats = DatasetStats()
    for offset, name in enumerate(names):
        box = ObjectFacts(name, 1.0, 1.0, 5.0, 5.0)
        stats.add(ExampleFacts(name, name, 10, 10, (box,), Location(name, offset, 1)))
    _, page = report_of(stats)
    tags = PageText.parse(page).tags
    links = [attrs[key] for _, attrs in tags for key in ("src", "href") if key in attrs]
    assert all(link.startswith(("data:", "#")) for link in links), links
    assert [tag for tag, _ in tags].count("style") == 1
    assert not [tag for tag, attrs in tags if tag == "script" or "onerror" in attrs]
    styles = [attrs["style"] for _, attrs in tags if "style" in attrs]
    assert not [style for style in styles if "url(" in style or "/" in style], styles


def bomb() -> bytes:
    """A PNG of a few kilobytes that decodes to 120 million pixels."""
    buffer = io.BytesIO()
    Image.new("1", (12_000, 10_000)).save(buffer, "PNG")
    return buffer.getvalue()


def test_a_decompression_bomb_is_not_decoded_to_draw_it(monkeypatch):
    # A build raises Pillow's own limit to its --max_image_pixels.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10**9)
    tile = Image.open(io.BytesIO(thumbnail(bomb(), [], 12_000, 10_000)))
    ((most, _),) = Counter(_pixels(tile)).most_common(1)
    assert max(tile.size) <= SIZE
    assert all(abs(a - b) <= 12 for a, b in zip(most, BACKGROUND, strict=True))  # Not black.


@pytest.mark.parametrize("fmt, drawn", [("JPEG", True), ("PNG", False)])
def test_a_jpeg_past_the_limit_is_drawn_at_a_smaller_scale(monkeypatch, fmt, drawn):
    """A JPEG decodes at 1/8 scale to be drawn: 200 x 200 px of a 1600 x 1600 one."""
    monkeypatch.setattr(drawing, "MAX_DRAWN_PIXELS", 50_000)
    buffer = io.BytesIO()
    Image.new("RGB", (1600, 1600), (200, 10, 30)).save(buffer, fmt)
    tile = Image.open(io.BytesIO(thumbnail(buffer.getvalue(), [], 1600, 1600)))
    red = tile.convert("RGB").getpixel((SIZE // 2, SIZE // 2))[0]
    assert (abs(red - 200) < 30) == drawn


def test_ten_thousand_classes_read_back_only_what_the_page_draws():
    stats = DatasetStats()
    for number in range(10_000):
        box = ObjectFacts(f"class {number}", 10.0, 10.0, 40.0, 40.0)  # No outlier.
        location = Location("f", number, 1)
        stats.add(ExampleFacts("train", f"{number}.jpg", 100, 100, (box,), location))
    data = stats.to_json([])
    entries = sampled(data)
    # Each class's sample is its one image.
    assert len(entries) == SAMPLE_PER_SPLIT + MAX_CLASS_PANELS
    shown = {f"{e['split']}/{e['image']}" for e in entries}
    page = render_page(data, dict.fromkeys(shown, thumbnail(jpeg(8, 8), [], 8, 8)))
    # Every picture read back is drawn.
    assert page.count("data:image/jpeg") == len(entries)


def test_a_gzip_file_is_opened_once_to_draw_its_sample(tmp_path, monkeypatch):
    stats, records = DatasetStats(), b""
    path = str(tmp_path / "all.tfrecord.gz")
    for number in range(60):
        data = frame(example(image__encoded=[jpeg(16 + number, 16)]))
        location = Location(path, len(records), len(data))
        stats.add(ExampleFacts("train", f"{number}.jpg", 16 + number, 16, (), location))
        records += data
    with open(path, "wb") as handle:
        handle.write(gzip.compress(records, mtime=0))
    opened = Counter()
    real = thumbnails_module.open_records

    def counted(name):
        opened[name] += 1
        return real(name)

    monkeypatch.setattr(thumbnails_module, "open_records", counted)
    entries = sampled(stats.to_json([]))
    pictures = read_sampled(entries)
    assert opened == {path: 1}
    assert set(pictures) == {f"train/{e['image']}" for e in entries}
    for entry in entries:  # Each is its own image: its width shows in the tile's proportions.
        tile = Image.open(io.BytesIO(pictures[f"train/{entry['image']}"]))
        inner = tile.convert("L").point(lambda v: v > 60 and 255).getbbox()
        assert math.isclose((inner[2] - inner[0]) / (inner[3] - inner[1]),
                            entry["width"] / 16, rel_tol=0.1)  # fmt: skip
