"""`odrecords validate OUTPUT`: the checks a CI pipeline stops on, read from what `create` wrote.

Each check counts one kind of finding in the published output's `manifest.json` (and in
`stats.json`, where it is written) and fails when the count passes its threshold, naming
the files involved so the person reading the CI log knows where to look. The thresholds
default to none at all: an output passes only when clean, unless told what to tolerate.
`create --strict` runs the same checks on the build it just published.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from apache_beam.io.filesystems import FileSystems

from pipelines.flags import UsageError, validate_parser
from pipelines.settings import Thresholds, check_beam_flags, thresholds, use_filesystem_options
from transforms.builds.layout import MANIFEST, latest_folder
from transforms.builds.outputs import NotOurOutput, read_summary
from transforms.duplicates import DUPLICATE_KINDS, duplicates_across

STATS = "stats.json"
# Files named under a failed check; the rest are counted.
NAMED = 10


@dataclass(frozen=True)
class Finding:
    """One check's result: `count` of the finding against its `limit`, what it means, and
    the files involved; `count` None when the check could not be made (`why_not`)."""

    name: str
    what: str
    count: float | None
    limit: float
    files: tuple[str, ...] = ()
    more: int = 0
    why_not: str = ""

    @property
    def failed(self) -> bool:
        return self.count is not None and self.count > self.limit


def _read_json(path: str) -> dict | None:
    if not FileSystems.exists(path):
        return None
    with FileSystems.open(path) as handle:
        document = json.load(handle)
    return document if isinstance(document, dict) else None


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
    stats = _read_json(FileSystems.join(folder, STATS))
    if stats is None:
        return Finding("missing_classes", what, None, limit, why_not=f"{folder} has no {STATS}")
    names = [
        f"{split}: {name}"
        for split, entry in sorted(stats.get("splits", {}).items())
        for name in entry.get("missing_classes", [])
    ]
    files, more = _named(names)
    return Finding("missing_classes", what, len(names), limit, files, more)


def published_folder(output: str) -> str:
    """The folder of the output's published build; raises UsageError when there is none."""
    try:
        folder = latest_folder(output)
    except (NotOurOutput, OSError) as error:
        raise UsageError(f"{output}: {error}") from None
    if folder is None:
        raise UsageError(f"{output} holds no published odrecords output")
    return folder


def check(folder: str, limits: Thresholds) -> list[Finding]:
    """Every check on the published build in `folder`; raises UsageError when its manifest
    is not one odrecords wrote."""
    try:
        manifest = read_summary(FileSystems.join(folder, MANIFEST))
    except (NotOurOutput, OSError, ValueError) as error:
        raise UsageError(f"{folder}: {error}") from None
    return [
        _missing_classes(folder, limits.missing_classes),
        _rejected_objects(manifest, folder, limits.rejected_objects),
        _leakage(manifest, limits.leakage_pairs),
    ]


def report(findings: list[Finding], limits: Thresholds, prog: str) -> int:
    """Prints a line per check (and the files involved in a failed one) and returns the exit
    code: 1 when a check failed, or one asked for by its flag could not be made."""
    failed = 0
    for finding in findings:
        flag = f"--max-{finding.name.replace('_', '-')}"
        if finding.count is None:
            asked = finding.name in limits.given
            failed += asked
            print(
                f"{'FAIL' if asked else 'skip'}  {finding.what}: not checked, {finding.why_not}",
                file=sys.stderr if asked else sys.stdout,
            )
            continue
        verdict = "FAIL" if finding.failed else "ok  "
        count = f"{finding.count:.2%}" if isinstance(finding.count, float) else finding.count
        print(f"{verdict}  {finding.what}: {count} ({flag} {finding.limit:g})")
        if finding.failed:
            failed += 1
            for name in finding.files:
                print(f"        {name}")
            if finding.more:
                print(f"        ... {finding.more} more")
    if failed:
        print(f"{prog}: error: {failed} of {len(findings)} checks failed", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Exit 0 when every check passes, 1 when one fails, 2 for unusable arguments."""
    prog = "odrecords validate"
    try:
        args, beam_args = validate_parser().parse_known_args(sys.argv[1:] if argv is None else argv)
        check_beam_flags(beam_args)
        use_filesystem_options(beam_args)
        limits = thresholds(vars(args))
        findings = check(published_folder(args.output), limits)
    except UsageError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
    return report(findings, limits, prog)


if __name__ == "__main__":
    sys.exit(main())
