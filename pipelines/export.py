"""`odrecords export`: TFRecords → COCO JSON, Pascal VOC, TF OD CSV or YOLO, with the images.

Run as `odrecords export ...` or `python -m pipelines.export ...`.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import re
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.options.pipeline_options import GoogleCloudOptions

from pipelines.settings import (
    Parser,
    UsageError,
    check_beam_flags,
    pipeline_options,
    use_filesystem_options,
)
from transforms.export.decode import (
    DecodedRecord,
    RecordRejected,
    decode_example,
    extension_of_format,
    format_of_extension,
)
from transforms.export.writers import IMAGES_DIR, NamedRecord, WriteExport, annotation_file
from transforms.label_map import LabelMapError, categories_from_counts, read_label_names
from transforms.paths import UnsafePathError, image_key
from transforms.records import ERRORS, STAGE_BOX, ErrorRecord
from transforms.report import ERRORS_FILE, SumCounts, write_errors
from transforms.tfrecord import iter_records, open_records
from transforms.tfrecord_sink import ensure_dir, parts_dir

FORMATS = ("coco", "voc", "csv", "yolo")
SUMMARY = "export.json"
STAGE_RECORD = "record"
# Names made unique end in `~` and 16 hex digits of the image's sha256 (`-N` after them for
# identical images). A name that already ends so is renamed too, so a name taken as it is can
# never equal a made one.
_MADE = re.compile(r"~[0-9a-f]{16}(-\d+)?$")
# Control characters (a newline) would split the line lists of YOLO and VOC.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass
class ExportSettings:
    """Checked settings of one export job; the label map's names and ids are empty without
    one."""

    inputs: list[tuple[str, str]]  # (split, TFRecord file)
    format: str
    output: str
    label_names: dict[int, str]
    label_ids: dict[str, int]


def _split_of(path: str) -> str:
    """A split name from a shard's file name: `train.tfrecord-00000-of-00010` → `train`."""
    name = posixpath.basename(path)
    name = re.sub(r"-\d{5}-of-\d{5}$", "", name)
    name = re.sub(r"(\.(tfrecords?|records?|tfrec|gz))+$", "", name)
    return re.sub(r"[^A-Za-z0-9_-]", "_", name) or "all"


def _expand_input(argument: str) -> list[tuple[str | None, str]]:
    """One --input: NAME=GLOB, an odrecords output folder (its manifest's splits), or a glob."""
    name, sep, pattern = argument.partition("=")
    if not sep or "/" in name or "*" in name:
        name, pattern = None, argument
    manifest = FileSystems.join(pattern, "manifest.json")
    if FileSystems.exists(manifest):
        with FileSystems.open(manifest) as handle:
            splits = json.load(handle)["splits"]
        return [
            (split, FileSystems.join(pattern, *f.split("/")))
            for split, entry in splits.items()
            for f in entry["files"]
        ]
    matches = sorted(m.path for m in FileSystems.match([pattern])[0].metadata_list)
    if not matches:
        raise UsageError(f"no TFRecord files match {pattern}")
    return [(name, path) for path in matches]


def parse_export_args(argv: Sequence[str]) -> tuple[ExportSettings, list[str]]:
    """Returns the checked settings and the remaining flags, which are Beam options."""
    parser = Parser(
        prog="odrecords export",
        description="Turn TFRecords back into COCO, VOC, CSV or YOLO annotations and images. "
        "Flags not listed here are Beam pipeline options.",
        allow_abbrev=False,
    )
    parser.add_argument("--input", action="append", required=True, help="GLOB, NAME=GLOB or DIR")
    parser.add_argument("--format", required=True, help=f"one of {', '.join(FORMATS)}")
    parser.add_argument("--output", required=True)
    parser.add_argument("--label-map", dest="label_map")
    args, beam_args = parser.parse_known_args(argv)
    use_filesystem_options(beam_args)
    if args.format not in FORMATS:
        raise UsageError(f"unknown format {args.format!r}; choose one of {', '.join(FORMATS)}")
    inputs = []
    for argument in args.input:
        for split, path in _expand_input(argument):
            inputs.append((split or _split_of(path), path))
    names, ids = {}, {}
    if args.label_map:
        try:
            names, ids = read_label_names(args.label_map)
        except (OSError, LabelMapError) as error:
            raise UsageError(f"label map {args.label_map}: {error}") from None
    output = args.output
    if FileSystems.get_scheme(output) is None and os.path.isdir(output) and os.listdir(output):
        if not os.path.exists(os.path.join(output, SUMMARY)):
            raise UsageError(f"output folder {output} is not empty; choose an empty or new folder")
    check_beam_flags(list(beam_args))
    return ExportSettings(inputs, args.format, output, names, ids), beam_args


class _ReadAndDecode(beam.DoFn):
    """(split, TFRecord file) → records as canonical records without their image bytes,
    which go straight to a temporary file under OUT/.parts/ (never through a shuffle), keyed
    by what must be unique per image in format `fmt` (see `_unique_key`)."""

    def __init__(self, parts: str, names: dict[int, str], ids: dict[str, int], fmt: str):
        self._parts = parts
        self._names = names
        self._ids = ids
        self._format = fmt
        self._records = Metrics.counter("odrecords", "records_read")

    def setup(self) -> None:
        import tensorflow as tf

        self._example = tf.train.Example

    def process(self, element: tuple[str, str]) -> Iterator:
        split, path = element
        parts = self._parts
        ensure_dir(parts)
        try:
            stream = open_records(path)
        except OSError as error:
            yield beam.pvalue.TaggedOutput(
                ERRORS, ErrorRecord(path, None, STAGE_RECORD, f"unreadable: {error}")
            )
            return
        with stream:
            for index, data, problem in iter_records(stream):
                source = f"{path}#record[{index}]"
                self._records.inc()
                try:
                    if problem:
                        raise RecordRejected(problem)
                    try:
                        example = self._example.FromString(data)
                    except Exception:
                        raise RecordRejected("record is not a tf.train.Example") from None
                    record = decode_example(example, source, split, self._names, self._ids)
                except RecordRejected as error:
                    yield beam.pvalue.TaggedOutput(
                        ERRORS, ErrorRecord(source, None, STAGE_RECORD, str(error))
                    )
                    continue
                image_name = record.image.annotation.image or None
                for object_source, reason in record.object_errors:
                    yield beam.pvalue.TaggedOutput(
                        ERRORS, ErrorRecord(object_source, image_name, STAGE_BOX, reason, 1)
                    )
                temporary = None
                if record.image.encoded:
                    digest = hashlib.sha256(source.encode()).hexdigest()[:32]
                    temporary = FileSystems.join(parts, digest)
                    with FileSystems.create(temporary) as handle:
                        handle.write(record.image.encoded)
                stripped = replace(record, image=replace(record.image, encoded=b""))
                name = _candidate_name(stripped)
                yield _unique_key(self._format, name), (name, temporary, stripped)


def _digest(record: DecodedRecord) -> str:
    """The sha256 of the image bytes, or of the record's source when it has none; hex, so a
    name made from it is safe."""
    source = record.image.annotation.sources[0]
    return record.sha256 or hashlib.sha256(source.encode()).hexdigest()


def _with_extension(name: str, fmt: str) -> str:
    """`name` with an extension of its image's format, so that the name says what the bytes
    are: kept when it has one, replaced when it has another image format's (`a.webp` holding
    the PNG that create made of it → `a.png`), else added (`frame.001` → `frame.001.jpg`)."""
    stem, extension = posixpath.splitext(name)
    named, wanted = format_of_extension(extension), extension_of_format(fmt)
    if named == fmt or not wanted:
        return name
    return (stem if named else name) + wanted


def _candidate_name(record: DecodedRecord) -> str:
    """image/filename when it is a safe relative name without control characters, else
    source_id, else the sha256; with an extension of the image's format."""
    for name in (record.image.annotation.image, record.source_id):
        try:
            key = image_key(name)
        except UnsafePathError:
            continue
        if not _CONTROL.search(key):
            return _with_extension(key, record.image.format)
    return _with_extension(_digest(record)[:16], record.image.format)


def _unique_key(fmt: str, name: str) -> str:
    """What must differ between images in format `fmt`: the per-image annotation file (two
    images `s.jpg` and `s.png` would share `s.xml`), or the image name where there is none.
    The file is a function of the name, so equal keys also catch equal names."""
    return annotation_file(fmt, name) or name


def _origin(item: tuple[str, str | None, DecodedRecord]) -> tuple:
    """Orders the records that share a key: by source, then split (one file given as two
    splits gives two records of one source)."""
    annotation = item[2].image.annotation
    return annotation.sources, annotation.split or ""


class _PlaceImages(beam.DoFn):
    """(unique key, records) → NamedRecords, moving each image to DIR/images/<name>.

    Records that share a key, and names that look made, get `~` and their digest (and, for
    identical images, their order) before the extension, deterministically. Keys are the name
    or end in its stem, so made names differ from each other and from every name kept."""

    def __init__(self, output: str):
        self._output = output
        self._without_images = Metrics.counter("odrecords", "records_without_image")

    def process(
        self, element: tuple[str, Iterable[tuple[str, str | None, DecodedRecord]]]
    ) -> Iterator:
        _, items = element
        items = sorted(items, key=_origin)
        digests = [_digest(record)[:16] for _, _, record in items]
        for number, (name, temporary, record) in enumerate(items):
            stem, extension = posixpath.splitext(name)
            if len(items) > 1 or _MADE.search(stem):
                suffix = f"-{number}" if digests.count(digests[number]) > 1 else ""
                name = f"{stem}~{digests[number]}{suffix}{extension}"
            if temporary is None:
                self._without_images.inc()
            else:
                final = FileSystems.join(self._output, IMAGES_DIR, *name.split("/"))
                ensure_dir(FileSystems.split(final)[0])
                FileSystems.rename([temporary], [final])
            yield NamedRecord(name, record, has_image=temporary is not None)


def _counts(named: NamedRecord) -> dict:
    return {
        "images": {named.split: 1},
        "objects": len(named.record.image.annotation.boxes),
        "without_image_bytes": int(not named.has_image),
    }


def _write_summary(
    _, counts: dict, files: list[str], categories: dict, output: str, parts: str, fmt: str
) -> Iterator[dict]:
    """Writes `export.json` once everything else is written, and removes the scratch files."""
    summary = {
        "format": fmt,
        "images": counts.get("images", {}),
        "objects": counts.get("objects", 0),
        "records_without_image_bytes": counts.get("without_image_bytes", 0),
        "errors": counts.get("errors", {}).get("count", 0),
        "categories": categories,
        "files": sorted(files),
    }
    if FileSystems.exists(parts):
        FileSystems.delete([parts])
    with FileSystems.create(FileSystems.join(output, SUMMARY)) as handle:
        handle.write((json.dumps(summary, indent=2, ensure_ascii=False) + "\n").encode())
    yield summary


def build_pipeline(pipeline: beam.Pipeline, settings: ExportSettings) -> None:
    """Adds the export graph to `pipeline`; the same graph serves every runner."""
    temp_location = pipeline.options.view_as(GoogleCloudOptions).temp_location
    parts = parts_dir(settings.output, temp_location)
    decoded = (
        pipeline
        | "Files" >> beam.Create(settings.inputs)
        | "Spread" >> beam.Reshuffle()
        | "ReadAndDecode"
        >> beam.ParDo(
            _ReadAndDecode(parts, settings.label_names, settings.label_ids, settings.format)
        ).with_outputs(ERRORS, main="records")
    )
    named = (
        decoded.records
        | "GroupByKey" >> beam.GroupByKey()
        | "PlaceImages" >> beam.ParDo(_PlaceImages(settings.output))
    )
    if settings.label_names:
        by_id = {number: name for number, name in settings.label_names.items()}
        categories = pipeline | "GivenCategories" >> beam.Create(
            [{name: number for number, name in sorted(by_id.items())}]
        )
    else:
        categories = (
            named
            | "ClassIds" >> beam.FlatMap(lambda n: n.record.class_ids)
            | "CountPairs" >> beam.combiners.Count.PerElement()
            | "AllPairs" >> beam.combiners.ToList()
            | "Categories" >> beam.Map(categories_from_counts)
        )
    files = named | "Write" >> WriteExport(
        settings.output, settings.format, beam.pvalue.AsSingleton(categories)
    )
    errors = decoded[ERRORS]
    error_files = write_errors(errors, settings.output)
    counts = (
        (
            named | "CountRecords" >> beam.Map(_counts),
            errors | "CountErrors" >> beam.Map(lambda e: {"errors": {"count": 1}}),
        )
        | "AllCounts" >> beam.Flatten()
        | "SumCounts" >> beam.CombineGlobally(SumCounts())
    )
    _ = (
        pipeline
        | "Once" >> beam.Create([None])
        | "Summary"
        >> beam.FlatMap(
            _write_summary,
            beam.pvalue.AsSingleton(counts),
            beam.pvalue.AsList((files, error_files) | "Written" >> beam.Flatten()),
            beam.pvalue.AsSingleton(categories),
            settings.output,
            parts,
            settings.format,
        )
    )


def _print_summary(output: str) -> None:
    with FileSystems.open(FileSystems.join(output, SUMMARY)) as handle:
        summary = json.load(handle)
    for split, count in sorted(summary["images"].items()):
        print(f"{split}: {count} images")
    print(f"objects: {summary['objects']}; categories: {len(summary['categories'])}")
    if summary["records_without_image_bytes"]:
        print(
            f"warning: {summary['records_without_image_bytes']} records carry no image bytes; "
            "their annotations were written without images",
            file=sys.stderr,
        )
    if summary["errors"]:
        print(f"{summary['errors']} errors, all in {FileSystems.join(output, ERRORS_FILE)}")
    print(f"wrote {FileSystems.join(output, SUMMARY)}")


def main(argv: Sequence[str] | None = None) -> int:
    try:
        settings, beam_args = parse_export_args(sys.argv[1:] if argv is None else argv)
    except UsageError as error:
        print(f"odrecords export: error: {error}", file=sys.stderr)
        return 2
    pipeline = beam.Pipeline(options=pipeline_options(beam_args))
    build_pipeline(pipeline, settings)
    pipeline.run().wait_until_finish()
    _print_summary(settings.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
