"""The dataset report of a build: `stats.json` and `report.html` beside the dataset card.

The statistics are summed per shard by the shard writer (`transforms.report.stats`), from
the facts each index row keeps, so a build that reuses examples reports them without reading
them again; what only the whole build knows (rejected images, duplicate pairs, the counts of
the manifest) is added here. The pictures are drawn from the bounded sample the statistics
keep, read back from the shards just written, and from the source files of the rejected and
duplicate images shown.
"""

from __future__ import annotations

import json

import apache_beam as beam

from transforms.builds.layout import join
from transforms.images.loader import ImageLoader, ImageRejected
from transforms.records import STAGE_IMAGE, ErrorRecord, utf8_safe
from transforms.report.page import drawn_sample, render_page
from transforms.report.stats import DatasetStats
from transforms.report.thumbnails import read_sampled, thumbnail

STATS_FILE = "stats.json"
REPORT_FILE = "report.html"
# Rejected images the report names, and of those, how many it draws (each read again).
REJECTED_NAMED = 50
REJECTED_DRAWN = 12

# A rejected image as the report step gets it: (source, reason, split, image name).
Rejected = tuple[str, str, str, str]


def _rejected(error: ErrorRecord) -> list[Rejected]:
    if error.stage != STAGE_IMAGE:
        return []
    return [(error.source, error.reason, error.split or "", error.image or "")]


def first_rejected(errors: beam.PCollection) -> beam.PCollection:
    """The first rejected images by source, as one list: a bounded sample to show."""
    return (
        errors
        | "RejectedImages" >> beam.FlatMap(_rejected)
        | "FirstRejected" >> beam.combiners.Top.Smallest(REJECTED_NAMED)
    )


def _duplicate_pairs(counts: dict) -> list[dict]:
    """The duplicate pairs the counts name (a few of each kind, across splits and within)."""
    pairs = []
    for kind in ("exact", "near"):
        found = counts.get("duplicates", {}).get(kind, {})
        for where in ("across_splits", "within_split"):
            for a, split_a, b, split_b in found.get(where, {}).get("named", []):
                pairs.append(
                    {
                        "kind": kind,
                        "a": a,
                        "b": b,
                        "splits": [split_a, split_b],
                        "across": where == "across_splits",
                    }
                )
    return pairs


def statistics(stats: DatasetStats, manifest: dict, counts: dict, rejected: list[Rejected]) -> dict:
    """The content of `stats.json`: the summed statistics, with the counts of the manifest
    that only the whole build knows."""
    data = stats.to_json(list(manifest["classes"]), list(manifest["splits"]))
    lost = manifest["errors"]["by_split"]
    exact_by_split = counts.get("duplicates", {}).get("exact_by_split", {})
    for name, split in data["splits"].items():
        split["rejected_images"] = manifest["splits"].get(name, {}).get("rejected", 0)
        split["rejected_objects"] = lost.get(name, {}).get("objects", 0)
        split["duplicates"] = exact_by_split.get(name, 0)
    duplicates = manifest["duplicates"]
    data["rejected"] = {
        "count": manifest["images"]["rejected"],
        "first": [
            {"source": source, "reason": reason, "split": split, "image": image}
            for source, reason, split, image in sorted(rejected)
        ],
    }
    data["duplicates"] = {
        "pairs": _duplicate_pairs(counts),
        "count": sum(
            duplicates[kind][where]["pairs"]
            for kind in ("exact", "near")
            for where in ("across_splits", "within_split")
        ),
        "across_splits": sum(
            duplicates[kind]["across_splits"]["pairs"] for kind in ("exact", "near")
        ),
    }
    inputs = manifest["inputs"]
    data["source"] = {
        "kind": "create",
        "inputs": [
            f"{inputs['format']} annotations: {inputs['annotations']}",
            f"images: {inputs['images']}",
            *([f"label map: {inputs['label_map']}"] if inputs["label_map"] else []),
        ],
    }
    return data


def stats_text(data: dict) -> str:
    """The text of stats.json: keys sorted, so the same data gives the same bytes; strict JSON
    (a NaN or an infinity raises rather than be written as no JSON reader takes it); and
    texts UTF-8 cannot encode (a file name that is not UTF-8) shown as escapes, so it can
    always be written."""
    return json.dumps(_writable(data), sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n"


def _writable(value: object) -> object:
    """`value` with every text in it, keys included, made writable (`utf8_safe`)."""
    if isinstance(value, str):
        return utf8_safe(value)
    if isinstance(value, dict):
        return {_writable(key): _writable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_writable(item) for item in value]
    return value


def sampled(data: dict, folder: str | None = None) -> list[dict]:
    """The sampled examples of stats.json that the page draws (`drawn_sample`); their record
    paths, when relative to an output, joined to `folder`, where its shards are now."""
    entries = drawn_sample(data)
    if folder is None:
        return entries
    return [
        {
            **entry,
            "location": {**entry["location"], "path": join(folder, entry["location"]["path"])},
        }
        for entry in entries
    ]


def _source_thumbnail(loader: ImageLoader, image: str) -> bytes | None:
    """A thumbnail of an image's source file, read under the loader's rules; None for one
    that cannot be read (a rejected image may be missing, a link out of the root, ...)."""
    try:
        return thumbnail(loader.read_stored(image), [], 0, 0)
    except ImageRejected:
        return None


def report_texts(data: dict, build: str, loader: ImageLoader) -> dict[str, str]:
    """{file name: text} of `stats.json` and `report.html`. `build`: the folder the shards
    are in now; the rejected and duplicate images shown are drawn from their source files."""
    thumbnails = read_sampled(sampled(data, build))
    shown = [(entry["split"], entry["image"]) for entry in data["rejected"]["first"]]
    shown = shown[:REJECTED_DRAWN] + [
        (split, pair[side])
        for pair in data["duplicates"]["pairs"]
        for side, split in zip(("a", "b"), pair["splits"], strict=True)
    ]
    for split, image in shown:
        key = f"{split}/{image}"
        if key not in thumbnails:
            picture = _source_thumbnail(loader, image)
            if picture is not None:
                thumbnails[key] = picture
    return {
        STATS_FILE: stats_text(data),
        REPORT_FILE: render_page(data, thumbnails),
    }
