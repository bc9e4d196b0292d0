"""What changed since the previous build, for the manifest (`changes`), the dataset card and
create's summary: images added, removed, changed and moved, examples per split and objects per
class before and after, and classes added, removed and renumbered.

Every build that follows a published one compares itself with it, whether it reused examples
or not. Images are compared inside the graph: the previous build's index rows and this
build's examples, both as (image, (split, sha256, annotation fingerprint)), are joined on the
image's name, and each image adds one count, summed like the other counts (the first few
names kept). An image is `added` or `removed` when only one build wrote it; `moved` when the
splits it is in differ; `changed` when its bytes as written (sha256) or its annotation differ
(a class renumbered alone changes no annotation: it is reported with the classes). Images
rejected in a build count as not written by it. Splits and classes come from the two
manifests. A previous build written without an index (an earlier odrecords) gives no image
comparison.
"""

from __future__ import annotations

from collections.abc import Iterator

import apache_beam as beam

from transforms.builds.index import is_index_name
from transforms.builds.layout import PreviousBuild
from transforms.records import utf8_safe

# The kinds of image changes, in the order they are reported.
KINDS = ("added", "removed", "changed", "moved")


def image_changes(element: tuple) -> Iterator[dict]:
    """(image, {"before": [(split, sha256, annotation)], "after": [...]}) → the count it adds
    to `changes`."""
    image, grouped = element
    before = {split: rest for split, *rest in grouped["before"]}
    after = {split: rest for split, *rest in grouped["after"]}
    first = [utf8_safe(image)]
    if not before:
        yield {"changes": {"added": {"count": 1, "first": first}}}
    elif not after:
        yield {"changes": {"removed": {"count": 1, "first": first}}}
    elif set(before) != set(after):
        yield {"changes": {"moved": {"count": 1, "first": first}}}
    else:
        image_bytes = any(before[split][0] != after[split][0] for split in after)
        annotations = any(before[split][1] != after[split][1] for split in after)
        if image_bytes or annotations:
            changed = {"count": 1, "first": first}
            changed |= {"image_bytes": int(image_bytes), "annotations": int(annotations)}
            yield {"changes": {"changed": changed}}
        else:
            yield {"changes": {"unchanged": 1}}


class ImageChanges(beam.PTransform):
    """This build's examples → counts of image changes since the previous build, whose
    examples `before` holds (both as (image, (split, sha256, annotation)))."""

    def __init__(self, before: beam.PCollection):
        super().__init__()
        self._before = before

    def expand(self, after: beam.PCollection) -> beam.PCollection:
        return (
            {"before": self._before, "after": after}
            | "JoinByImage" >> beam.CoGroupByKey()
            | "ImageChanges" >> beam.FlatMap(image_changes)
        )


def previous_summary(previous: PreviousBuild) -> dict:
    """What the comparison needs of the previous build's manifest: its id and time, whether it
    has an index, its examples per split and its classes."""
    manifest = previous.manifest
    return {
        "id": manifest.get("build", {}).get("id"),
        "created": manifest.get("created"),
        "indexed": any(is_index_name(path) for path in previous.files),
        "splits": {name: split["examples"] for name, split in manifest["splits"].items()},
        "classes": {
            name: {"id": entry["id"], "objects": entry["objects"]}
            for name, entry in manifest["classes"].items()
        },
    }


def _first(counts: dict, kind: str) -> dict:
    found = counts.get(kind, {})
    return {"count": found.get("count", 0), "first": found.get("first", [])}


def changes_entry(counts: dict, previous: dict | None, splits: dict, classes: dict) -> dict | None:
    """The manifest's `changes`, from the summed counts, the previous build's summary and this
    build's `splits` and `classes` (as the manifest has them); None without a previous build."""
    if previous is None:
        return None
    found = counts.get("changes", {})
    images = None
    if previous["indexed"]:
        changed = found.get("changed", {})
        images = {kind: _first(found, kind) for kind in KINDS}
        images["changed"] |= {
            "image_bytes": changed.get("image_bytes", 0),
            "annotations": changed.get("annotations", 0),
        }
        images["unchanged"] = found.get("unchanged", 0)
        # An index file of the previous build left out leaves its images out of the comparison.
        images["complete"] = not counts.get("previous_index", {}).get("left_out", 0)
    before, after = previous["classes"], classes
    names = list(before) + [name for name in after if name not in before]
    return {
        "previous": {"id": previous["id"], "created": previous["created"]},
        "images": images,
        "splits": {
            name: {
                "before": previous["splits"].get(name, 0),
                "after": splits.get(name, {}).get("examples", 0),
            }
            for name in list(previous["splits"])
            + [n for n in splits if n not in previous["splits"]]
        },
        "classes": {
            "added": [name for name in after if name not in before],
            "removed": [name for name in before if name not in after],
            "objects": {
                name: {
                    "before": before.get(name, {}).get("objects", 0),
                    "after": after.get(name, {}).get("objects", 0),
                }
                for name in names
            },
        },
    }


def _since(changes: dict) -> str:
    build = changes["previous"]["id"]
    return f"build {build}" if build else "the previous build"


def images_text(images: dict | None) -> str:
    """`3 added, 1 removed, 2 changed (1 image bytes, 1 annotations), 0 moved, 120
    unchanged`, or why images were not compared."""
    if images is None:
        return "images not compared: the previous build has no index"
    changed = images["changed"]
    text = (
        f"{images['added']['count']} added, {images['removed']['count']} removed, "
        f"{changed['count']} changed ({changed['image_bytes']} image bytes, "
        f"{changed['annotations']} annotations), {images['moved']['count']} moved to another "
        f"split, {images['unchanged']} unchanged"
    )
    if not images["complete"]:
        text += " (incomplete: part of the previous index could not be used)"
    return text


def _classes_text(classes: dict) -> str | None:
    parts = []
    if classes["added"]:
        parts.append(f"added {', '.join(classes['added'])}")
    if classes["removed"]:
        parts.append(f"removed {', '.join(classes['removed'])}")
    return "; ".join(parts) or None


def summary_lines(changes: dict | None) -> list[str]:
    """A few lines for create's summary."""
    if changes is None:
        return []
    lines = [f"changes since {_since(changes)}: {images_text(changes['images'])}"]
    images = changes["images"] or {}
    for kind in KINDS:
        reported = images.get(kind, {"count": 0})
        if reported["count"]:
            more = " ..." if reported["count"] > len(reported["first"]) else ""
            lines.append(f"  {kind}: {', '.join(reported['first'])}{more}")
    splits = [
        f"{name} {counts['before']} → {counts['after']}"
        for name, counts in changes["splits"].items()
    ]
    lines.append(f"  examples per split: {', '.join(splits)}")
    classes = _classes_text(changes["classes"])
    if classes:
        lines.append(f"  classes: {classes}")
    return lines


def card_lines(changes: dict | None) -> list[str]:
    """The dataset card's section on what changed since the previous build."""
    if changes is None:
        return []
    lines = [
        "",
        f"## Changes since {_since(changes)}",
        "",
        f"Images: {images_text(changes['images'])}.",
    ]
    images = changes["images"] or {}
    for kind in KINDS:
        reported = images.get(kind, {"count": 0})
        if reported["count"]:
            more = " …" if reported["count"] > len(reported["first"]) else ""
            names = ", ".join(f"`{name}`" for name in reported["first"])
            lines += ["", f"{kind.capitalize()}: {names}{more}"]
    lines += ["", "| split | examples before | after |", "| --- | ---: | ---: |"]
    for name, counts in changes["splits"].items():
        lines.append(f"| {name} | {counts['before']} | {counts['after']} |")
    classes = changes["classes"]
    text = _classes_text(classes)
    lines += [
        "",
        f"Classes: {text}." if text else "Classes: no class added or removed.",
    ]
    moved = {
        name: counts
        for name, counts in classes["objects"].items()
        if counts["before"] != counts["after"]
    }
    if moved:
        lines += ["", "| class | objects before | after |", "| --- | ---: | ---: |"]
        lines += [f"| {name} | {c['before']} | {c['after']} |" for name, c in moved.items()]
    return lines
