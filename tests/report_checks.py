"""Checks of a dataset report against what it reports on: the statistics against the records
read back with TensorFlow, the page as headless Chromium shows it."""

from __future__ import annotations

import json
import os
from collections import Counter

from browser import PageText, drawn, open_page, page_requests


def read_stats(output) -> dict:
    with open(os.path.join(output, "stats.json"), encoding="utf-8") as handle:
        return json.load(handle)


def _class_counts(examples: list[dict]) -> tuple[Counter, Counter]:
    """(instances, images) per class of examples read back with TensorFlow."""
    instances, images = Counter(), Counter()
    for example in examples:
        names = [name.decode() for name in example["image/object/class/text"]]
        instances.update(names)
        images.update(set(names))
    return instances, images


def check_against_records(output: dict, stats: dict) -> None:
    """The statistics of `stats` against the output's records read back with TensorFlow."""
    assert stats["classes"] == list(output["label_map"])
    for split, examples in output["splits"].items():
        entry = stats["splits"][split]
        instances, images = _class_counts(examples)
        assert entry["images"] == len(examples) == output["manifest"]["splits"][split]["examples"]
        assert entry["objects"] == sum(instances.values())
        assert entry["negatives"] == sum(not e["image/object/class/text"] for e in examples)
        for name in stats["classes"]:
            assert entry["classes"][name]["instances"] == instances[name]
            assert entry["classes"][name]["images"] == images[name]
        assert entry["missing_classes"] == [n for n in stats["classes"] if not instances[n]]
        sizes = Counter(f"{e['image/width']}x{e['image/height']}" for e in examples)
        common = sorted(sizes.items(), key=lambda item: (-item[1], item[0]))
        assert [tuple(size) for size in entry["image_sizes"]] == common[:20]
        assert entry["other_image_sizes"] == sum(count for _, count in common[20:])


def check_page(chromium: str, page, manifest: dict, tmp_path) -> None:
    """The page drawn in Chromium, asking for nothing, with every class's written objects
    (summed over the splits) as the manifest counts them."""
    screenshot, net_log = tmp_path / "page.png", tmp_path / "net.json"
    dom = open_page(chromium, page, tmp_path, "--dump-dom", f"--log-net-log={net_log}").stdout
    open_page(chromium, page, tmp_path, f"--screenshot={screenshot}", "--window-size=1280,2400")
    assert drawn(screenshot)
    assert page_requests(net_log) == []
    rows = {row[0]: row for row in PageText.parse(dom).rows if row}
    splits = list(manifest["splits"])
    for name, entry in manifest["classes"].items():
        cells = rows[name]
        counted = [int(cells[1 + 3 * i].split()[0].replace(",", "")) for i in range(len(splits))]
        assert sum(counted) == entry["objects"]
