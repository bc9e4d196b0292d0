"""`odrecords report`: the dataset report of any TFRecords, written to OUTPUT/stats.json
(see `transforms.report.stats`): counts per split and class, sizes and places of boxes,
unusual boxes, a sample to draw, records that cannot be read and exact duplicate images.

Records are read as `odrecords export` reads them, from the same inputs (`pipelines.record_inputs`).
Run as `odrecords report RECORDS... --output FOLDER` or `python -m pipelines.report ...`.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import combinations, islice

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from pipelines.failures import check_writable, failure_line, interrupted
from pipelines.flags import UsageError, report_parser
from pipelines.record_inputs import record_inputs
from pipelines.settings import check_beam_flags, pipeline_options, use_filesystem_options
from transforms.builds.safe_write import UnsafeWrite, check_place, write_file
from transforms.export.decode import RecordRejected, decode_record
from transforms.label_map import LabelMapError, read_label_names
from transforms.records import utf8_safe, writable_text
from transforms.report.build import REPORT_FILE, STATS_FILE, sampled, stats_text
from transforms.report.facts import Location
from transforms.report.page import render_page, written_page
from transforms.report.record_facts import facts_of_record
from transforms.report.stats import CombineStats, DatasetStats, Lowest
from transforms.report.thumbnails import read_sampled
from transforms.tfrecord import iter_framed_records, open_records

SOURCE_KIND = "records"
FIRST_REJECTED = 50
FIRST_PAIRS = 50
REJECTED, DIGESTS = "rejected", "digests"
# What a refusal is of: a record as a whole (its image), or one object in a readable record.
IMAGE, OBJECT = "rejected_images", "rejected_objects"

_LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReportSettings:
    """Checked settings of one report job; the label map's names and ids are empty without
    one."""

    inputs: list[tuple[str, str]]  # (split, TFRecord file)
    output: str
    label_names: dict[int, str]
    label_ids: dict[str, int]

    @property
    def classes(self) -> list[str]:
        """The label map's class names in the order of their ids."""
        return [self.label_names[number] for number in sorted(self.label_names)]


def _written_here(output: str, relative: str) -> bool:
    """Whether the file at `relative` is a report this command wrote, which may be replaced:
    a stats.json of records, a page that says it is a report (marks that recognise, not
    authenticate)."""
    try:
        with FileSystems.open(FileSystems.join(output, relative)) as handle:
            if relative == REPORT_FILE:
                return written_page(handle.read(4096))
            stats = json.loads(handle.read(256 << 20))
        return stats["source"]["kind"] == SOURCE_KIND and stats["version"] == 1
    except Exception:  # Anything unreadable or of another shape is not ours.
        return False


def parse_report_args(argv: Sequence[str]) -> tuple[ReportSettings, list[str]]:
    """Returns the checked settings and the remaining flags, which are Beam options."""
    args, beam_args = report_parser().parse_known_args(argv)
    use_filesystem_options(beam_args)
    inputs = record_inputs(args.records)
    for _, path in inputs:
        if not writable_text(path):  # Beam's coders and the report's files take UTF-8 only.
            raise UsageError(f"{utf8_safe(path)}: the file name is not UTF-8; rename the file")
    names, ids = {}, {}
    if args.label_map:
        try:
            names, ids = read_label_names(args.label_map)
        except (OSError, LabelMapError) as error:
            raise UsageError(f"label map {args.label_map}: {error}") from None
    try:
        ours = functools.partial(_written_here, args.output)
        for name in (STATS_FILE, REPORT_FILE):
            check_place(args.output, FileSystems.join(args.output, name), ours)
    except UnsafeWrite as error:
        raise UsageError(
            f"output folder {args.output}: {error}; remove it or choose another folder"
        ) from None
    check_beam_flags(list(beam_args))
    check_writable(args.output)
    return ReportSettings(inputs, args.output, names, ids), beam_args


class _ReadFacts(beam.DoFn):
    """(split, TFRecord file) → the ExampleFacts of each record, with (sha256, (split,
    image)) of its image bytes as DIGESTS, and a refusal (kind, {source, reason, split}) as
    REJECTED for each record that cannot be read or decoded and each object that cannot."""

    def __init__(self, names: dict[int, str], ids: dict[str, int]):
        self._names = names
        self._ids = ids

    def setup(self) -> None:
        import tensorflow as tf

        self._example = tf.train.Example

    def process(self, element: tuple[str, str]) -> Iterator:
        split, path = element
        try:
            stream = open_records(path)
        except OSError as error:
            refusal = {"source": path, "reason": f"unreadable: {error}", "split": split}
            yield beam.pvalue.TaggedOutput(REJECTED, (IMAGE, refusal))
            return
        with stream:
            for index, offset, length, data, problem in iter_framed_records(stream):
                source = f"{path}#record[{index}]"
                try:  # No record, however made, ends the job.
                    if problem:
                        raise RecordRejected(problem)
                    record = decode_record(
                        data, source, split, self._names, self._ids, self._example
                    )
                except RecordRejected as error:
                    refusal = {"source": source, "reason": str(error), "split": split}
                    yield beam.pvalue.TaggedOutput(REJECTED, (IMAGE, refusal))
                    continue
                for object_source, reason in record.object_errors:
                    refusal = {"source": object_source, "reason": reason, "split": split}
                    yield beam.pvalue.TaggedOutput(REJECTED, (OBJECT, refusal))
                facts = facts_of_record(record, Location(path, offset, length))
                if record.sha256:
                    yield beam.pvalue.TaggedOutput(DIGESTS, (record.sha256, (split, facts.image)))
                yield facts


class _Refusals(beam.CombineFn):
    """(kind, refusal) → {"count", "first", "by_split": {split: {kind: n}}}, "first" holding
    the FIRST_REJECTED refusals of smallest source."""

    def create_accumulator(self) -> tuple[Counter, Lowest]:
        return Counter(), Lowest(FIRST_REJECTED)

    def add_input(self, accumulator, element: tuple[str, dict]):
        kind, refusal = element
        accumulator[0][refusal["split"], kind] += 1
        accumulator[1].add((refusal["source"], refusal["reason"], refusal["split"]), refusal)
        return accumulator

    def merge_accumulators(self, accumulators: Iterable):
        counts, first = self.create_accumulator()
        for more, lowest in accumulators:
            counts.update(more)
            first.merge(lowest)
        return counts, first

    def extract_output(self, accumulator) -> dict:
        counts, first = accumulator
        by_split: dict[str, dict[str, int]] = {}
        for (split, kind), count in sorted(counts.items()):
            by_split.setdefault(split, {})[kind] = count
        return {"count": sum(counts.values()), "first": first.payloads(), "by_split": by_split}


def _exact_pairs(element: tuple[str, Iterable[tuple[str, str]]]) -> Iterator[dict]:
    """The pairs of examples whose images are the same bytes: counted in full, the first
    FIRST_PAIRS named (by image, then split), never all made (a thousand copies are half
    a million pairs)."""
    _, members = element
    members = sorted((image, split) for split, image in members)
    if len(members) < 2:
        return
    per_split = Counter(split for _, split in members)
    pairs = len(members) * (len(members) - 1) // 2
    within = sum(n * (n - 1) // 2 for n in per_split.values())
    first = [
        {
            "kind": "exact",
            "a": a,
            "b": b,
            "splits": [split_a, split_b],
            "across": split_a != split_b,
        }
        for (a, split_a), (b, split_b) in islice(combinations(members, 2), FIRST_PAIRS)
    ]
    yield {"count": pairs, "across_splits": pairs - within, "images": per_split, "first": first}


class _Duplicates(beam.CombineFn):
    """The groups of `_exact_pairs` → stats.json's "duplicates", with the images of each
    split that are in a pair."""

    def create_accumulator(self) -> dict:
        return {"count": 0, "across_splits": 0, "images": Counter(), "first": Lowest(FIRST_PAIRS)}

    def add_input(self, accumulator: dict, group: dict) -> dict:
        accumulator["count"] += group["count"]
        accumulator["across_splits"] += group["across_splits"]
        accumulator["images"].update(group["images"])
        for pair in group["first"]:
            accumulator["first"].add((pair["a"], pair["b"], *pair["splits"]), pair)
        return accumulator

    def merge_accumulators(self, accumulators: Iterable[dict]) -> dict:
        total = self.create_accumulator()
        for accumulator in accumulators:
            total["count"] += accumulator["count"]
            total["across_splits"] += accumulator["across_splits"]
            total["images"].update(accumulator["images"])
            total["first"].merge(accumulator["first"])
        return total

    def extract_output(self, accumulator: dict) -> dict:
        return {
            "pairs": accumulator["first"].payloads(),
            "count": accumulator["count"],
            "across_splits": accumulator["across_splits"],
            "images": dict(accumulator["images"]),
        }


def report_json(
    stats: DatasetStats, refusals: dict, duplicates: dict, settings: ReportSettings
) -> dict:
    """stats.json: the statistics with the refusals and duplicates of the records read."""
    splits = sorted({split for split, _ in settings.inputs})
    report = stats.to_json(settings.classes, splits)
    for split, entry in report["splits"].items():
        entry.update(refusals["by_split"].get(split, {}))
        entry["duplicates"] = duplicates["images"].get(split, 0)
    report["rejected"] = {"count": refusals["count"], "first": refusals["first"]}
    report["duplicates"] = {key: duplicates[key] for key in ("pairs", "count", "across_splits")}
    report["source"] = {"kind": SOURCE_KIND, "inputs": [path for _, path in settings.inputs]}
    return report


def _write_report(
    _, stats: DatasetStats, refusals: dict, duplicates: dict, settings: ReportSettings
) -> Iterator[dict]:
    """Writes OUTPUT/stats.json and OUTPUT/report.html, over an earlier report only."""
    report = report_json(stats, refusals, duplicates, settings)
    output = settings.output
    ours = functools.partial(_written_here, output)
    page = render_page(report, read_sampled(sampled(report)))
    for name, text in ((STATS_FILE, stats_text(report)), (REPORT_FILE, page)):
        write_file(output, FileSystems.join(output, name), [text.encode("utf-8")], ours)
    yield report


class ComputeReport(beam.PTransform):
    """(split, TFRecord file) pairs → the report's dict, written to OUTPUT/stats.json."""

    def __init__(self, settings: ReportSettings):
        super().__init__()
        self._settings = settings

    def expand(self, files: beam.PCollection) -> beam.PCollection:
        settings = self._settings
        read = (
            files
            | "Spread" >> beam.Reshuffle()
            | "ReadFacts"
            >> beam.ParDo(_ReadFacts(settings.label_names, settings.label_ids)).with_outputs(
                REJECTED, DIGESTS, main="facts"
            )
        )
        stats = read.facts | "Stats" >> beam.CombineGlobally(CombineStats())
        refusals = read[REJECTED] | "Refusals" >> beam.CombineGlobally(_Refusals())
        duplicates = (
            read[DIGESTS]
            | "BySha256" >> beam.GroupByKey()
            | "ExactPairs" >> beam.FlatMap(_exact_pairs)
            | "Duplicates" >> beam.CombineGlobally(_Duplicates())
        )
        return (
            files.pipeline
            | "Once" >> beam.Create([None])
            | "Write"
            >> beam.FlatMap(
                _write_report,
                beam.pvalue.AsSingleton(stats),
                beam.pvalue.AsSingleton(refusals),
                beam.pvalue.AsSingleton(duplicates),
                settings,
            )
        )


def build_pipeline(pipeline: beam.Pipeline, settings: ReportSettings) -> None:
    """Adds the report graph to `pipeline`; the same graph serves every runner."""
    _ = pipeline | "Files" >> beam.Create(settings.inputs) | "Report" >> ComputeReport(settings)


def _print_summary(output: str) -> None:
    path = FileSystems.join(output, STATS_FILE)
    with FileSystems.open(path) as handle:
        report = json.load(handle)
    for split, entry in report["splits"].items():
        print(f"{split}: {entry['images']} images, {entry['objects']} objects")
    print(f"classes: {len(report['classes'])}")
    duplicates = report["duplicates"]
    if duplicates["count"]:
        print(
            f"{duplicates['count']} pairs of identical images "
            f"({duplicates['across_splits']} across splits)"
        )
    if report["rejected"]["count"]:
        print(
            f"{report['rejected']['count']} records or objects could not be read", file=sys.stderr
        )
    print(f"wrote {path} and {FileSystems.join(output, REPORT_FILE)}")


def main(argv: Sequence[str] | None = None) -> int:
    try:
        settings, beam_args = parse_report_args(sys.argv[1:] if argv is None else argv)
    except UsageError as error:
        print(f"odrecords report: error: {error}", file=sys.stderr)
        return 2
    try:
        pipeline = beam.Pipeline(options=pipeline_options(beam_args))
        build_pipeline(pipeline, settings)
        pipeline.run().wait_until_finish()
    except BaseException as error:  # Interrupted too: stats.json is written whole or not.
        _LOG.info("the job failed", exc_info=True)  # With -v.
        stopped = interrupted(error)
        what = "interrupted" if stopped else f"failed: {failure_line(error, settings.output)}"
        print(f"odrecords report: error: the report {what}", file=sys.stderr)
        return 130 if stopped else 1
    _print_summary(settings.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
