"""The checks a CI pipeline stops on: classes missing from a split, the share of rejected
objects, and leakage between splits, each counted from a build's manifest and the files
beside it (`stats.json`, `errors.jsonl`).

`odrecords validate` makes them on a published build; `create --strict` makes them in its
report step, before publishing, so a build that fails one never replaces the published
dataset. Each fails when its count passes its threshold, and names the files involved so the
person reading the CI log knows where to look.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace

from apache_beam.io.filesystems import FileSystems

from transforms.duplicates import DUPLICATE_KINDS, duplicates_across
from transforms.report.build import STATS_FILE

# Files named under a failed check; the rest are counted.
NAMED = 10


@dataclass(frozen=True)
class Thresholds:
    """The most of each finding an output may have and pass."""

    missing_classes: int = 0
    rejected_objects: float = 0.0
    leakage_pairs: int = 0
    # The flags given: a check one asked for that cannot be made fails, where one left to
    # its default is only reported as not made.
    given: frozenset[str] = frozenset()

    def entry(self) -> dict:
        """The thresholds as the manifest records what gated a build."""
        return {
            "max_missing_classes": self.missing_classes,
            "max_rejected_objects": self.rejected_objects,
            "max_leakage_pairs": self.leakage_pairs,
        }


@dataclass(frozen=True)
class Finding:
    """One check's result: `count` of the finding against its `limit`, what it means, and
    the files involved; `count` None when the check could not be made (`why_not`), which
    fails only when its flag was given (`asked`)."""

    name: str
    what: str
    count: float | None
    limit: float
    files: tuple[str, ...] = ()
    more: int = 0
    why_not: str = ""
    asked: bool = False

    @property
    def failed(self) -> bool:
        return self.asked if self.count is None else self.count > self.limit

    @property
    def flag(self) -> str:
        return f"--max-{self.name.replace('_', '-')}"

    def text(self) -> str:
        """`classes missing from a split: 1 (--max-missing-classes 0)`, or why the check was
        not made."""
        if self.count is None:
            return f"{self.what}: not checked, {self.why_not}"
        count = f"{self.count:.2%}" if isinstance(self.count, float) else self.count
        return f"{self.what}: {count} ({self.flag} {self.limit:g})"

    def entry(self) -> dict:
        """The finding as the manifest records it (`from_entry` reads it back)."""
        return asdict(self) | {"files": list(self.files)}

    @classmethod
    def from_entry(cls, entry: dict) -> Finding:
        return cls(**(entry | {"files": tuple(entry["files"])}))


def _named(names: list[str]) -> tuple[tuple[str, ...], int]:
    return tuple(names[:NAMED]), max(0, len(names) - NAMED)


def _leakage(manifest: dict, limit: int) -> Finding:
    """Pairs of examples in different splits that are the same image: an image the source
    lists in several splits (named with its splits), and duplicates across splits."""
    duplicates = manifest["duplicates"]
    several = manifest["images"]["in_several_splits"]
    count = several["count"] + duplicates_across(duplicates)
    names = [
        *several["first"],
        *(pair for kind in DUPLICATE_KINDS for pair in duplicates[kind]["across_splits"]["first"]),
    ]
    files, _ = _named(names)
    return Finding(
        "leakage_pairs",
        "leakage (pairs of the same image in different splits)",
        count,
        limit,
        files,
        max(0, count - len(files)),
    )


def _rejected_objects(manifest: dict, folder: str, limit: float) -> Finding:
    """The share of the objects read that were rejected, and the annotation files the
    rejecting errors name (`errors.jsonl`'s sources)."""
    objects = manifest["objects"]
    read = objects["read"] + objects["copies_in_other_splits"]
    share = objects["rejected"] / read if read else 0.0
    sources: dict[str, int] = {}
    for name in manifest["errors"]["files"]:
        with FileSystems.open(FileSystems.join(folder, name)) as handle:
            for line in handle:
                error = json.loads(line)
                if error.get("objects"):
                    source = error["source"]
                    sources[source] = sources.get(source, 0) + error["objects"]
    files, more = _named([f"{source} ({lost})" for source, lost in sorted(sources.items())])
    return Finding(
        "rejected_objects",
        f"rejected objects ({objects['rejected']} of {read} read)",
        round(share, 6),
        limit,
        files,
        more,
    )


def _missing_classes(folder: str, limit: int) -> Finding:
    """Classes of the label map with no object in a split, as `stats.json` lists them."""
    what = "classes missing from a split"
    path = FileSystems.join(folder, STATS_FILE)
    stats = None
    if FileSystems.exists(path):
        with FileSystems.open(path) as handle:
            stats = json.load(handle)
    if not isinstance(stats, dict):
        why_not = f"{folder} has no {STATS_FILE}"
        return Finding("missing_classes", what, None, limit, why_not=why_not)
    names = [
        f"{split}: {name}"
        for split, entry in sorted(stats.get("splits", {}).items())
        for name in entry.get("missing_classes", [])
    ]
    files, more = _named(names)
    return Finding("missing_classes", what, len(names), limit, files, more)


def check(manifest: dict, folder: str, limits: Thresholds) -> list[Finding]:
    """Every check on the build whose `manifest` is given and whose other files (`stats.json`,
    `errors.jsonl`) are in `folder`: published, or still in its build folder."""
    findings = [
        _missing_classes(folder, limits.missing_classes),
        _rejected_objects(manifest, folder, limits.rejected_objects),
        _leakage(manifest, limits.leakage_pairs),
    ]
    return [replace(finding, asked=finding.name in limits.given) for finding in findings]
