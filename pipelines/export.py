"""`odrecords export`: TFRecords → COCO JSON, Pascal VOC, TF OD CSV, YOLO, CVAT for images
XML or Label Studio JSON, with the images.

Run as `odrecords export ...` or `python -m pipelines.export ...`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import posixpath
import re
import sys
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.options.pipeline_options import GoogleCloudOptions

from pipelines.failures import check_writable, failure_line, interrupted
from pipelines.flags import EXPORT_FORMATS, UsageError, export_parser
from pipelines.record_inputs import label_names, record_inputs
from pipelines.settings import (
    check_beam_flags,
    check_output_folder,
    pipeline_options,
    use_filesystem_options,
)
from transforms.builds.layout import PARTS_DIR
from transforms.builds.outputs import delete_path, remove_stale, with_checksum
from transforms.builds.publish import remove_build
from transforms.builds.report import ERRORS_FILE, write_errors
from transforms.builds.safe_write import (
    Ours,
    UnsafeWrite,
    check_folder,
    check_place,
    create_new,
    digest_of_file,
    make_folders,
    move_file,
    root_of,
    write_file,
)
from transforms.counts import SumCounts
from transforms.export.decode import (
    DecodedRecord,
    RecordRejected,
    decode_record,
    extension_of_format,
    format_of_extension,
)
from transforms.export.writers import (
    IMAGES_DIR,
    STAGE_WRITE,
    NamedRecord,
    WriteExport,
    annotation_file,
    split_file,
    write_failure,
)
from transforms.label_map import categories_from_counts
from transforms.paths import UnsafePathError, image_key
from transforms.records import ERRORS, STAGE_BOX, ErrorRecord
from transforms.tfrecord import iter_records, open_records
from transforms.tfrecord_sink import parts_dir

SUMMARY = "export.json"
STAGE_RECORD = "record"
# Names made unique end in `~` and 16 hex digits of the image's sha256 (`-N` after them for
# identical images). A name that already ends so is renamed too, so a name taken as it is can
# never equal a made one.
_MADE = re.compile(r"~[0-9a-f]{16}(-\d+)?$")
# Control characters (a newline) would split the line lists of YOLO and VOC.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Names longer than this (in bytes, per folder or file name, and as a whole) are not taken as
# they are: filesystems allow 255 bytes per name, and a made name adds up to 22.
_MAX_COMPONENT = 200
_MAX_NAME = 1000
# The first folders (or, at the top, the endings) of the files an export writes: those a
# later export into the same folder may remove (see `transforms.builds.outputs`).
_EXPORT_FOLDERS = (IMAGES_DIR, "annotations", "labels", "ImageSets")
_EXPORT_ENDINGS = (".csv", ".txt", ".yaml", ".jsonl", ".xml")

_LOG = logging.getLogger(__name__)


@dataclass
class ExportSettings:
    """Checked settings of one export job; the label map's names and ids are empty without
    one; `earlier_files` lists an earlier export in `output` (see `transforms.builds.outputs`)."""

    inputs: list[tuple[str, str]]  # (split, TFRecord file)
    format: str
    output: str
    label_names: dict[int, str]
    label_ids: dict[str, int]
    earlier_files: dict[str, dict] = field(default_factory=dict)


def parse_export_args(argv: Sequence[str]) -> tuple[ExportSettings, list[str]]:
    """Returns the checked settings and the remaining flags, which are Beam options."""
    args, beam_args = export_parser().parse_known_args(argv)
    use_filesystem_options(beam_args)
    if args.format not in EXPORT_FORMATS:
        raise UsageError(
            f"unknown format {args.format!r}; choose one of {', '.join(EXPORT_FORMATS)}"
        )
    inputs = record_inputs(args.input)
    names, ids = label_names(args.label_map)
    settings = ExportSettings(inputs, args.format, args.output, names, ids)
    _check_places(settings, lambda _: True)  # Links first: no summary is read through one.
    settings.earlier_files = check_output_folder(args.output, SUMMARY)
    _check_places(settings, functools.partial(_replaceable, settings.earlier_files))
    check_beam_flags(list(beam_args))
    check_writable(args.output)
    return settings, beam_args


def _check_places(settings: ExportSettings, ours: Ours) -> None:
    """Refuses, before anything is written, an output where a file the export is sure to
    write, or a folder it writes into, is a link or a file not `ours` (see
    `transforms.builds.safe_write`); the images' own places are checked as each is written, and one
    that cannot be becomes an error record."""
    output = settings.output
    splits = sorted({split for split, _ in settings.inputs})
    files = [SUMMARY, ERRORS_FILE, *(split_file(settings.format, split) for split in splits)]
    files += ["data.yaml"] if settings.format == "yolo" else []
    try:
        for folder in (PARTS_DIR, *_EXPORT_FOLDERS):
            check_folder(output, FileSystems.join(output, folder))
        for relative in files:
            check_place(output, FileSystems.join(output, *relative.split("/")), ours)
    except UnsafeWrite as error:
        raise UsageError(
            f"output folder {settings.output}: {error}; remove it or choose another folder"
        ) from None


def _replaceable(earlier: dict[str, dict], relative: str) -> bool:
    """Whether the file in place at `relative` may be replaced: the earlier export's summary
    (checked by `check_output_folder`), or a file it lists."""
    return relative == SUMMARY or relative in earlier


class _ReadAndDecode(beam.DoFn):
    """(split, TFRecord file) → (candidate name, temporary file, record, image digest): records
    as canonical records without their image bytes, which go straight to a temporary file
    under OUT/.parts/ (never through a shuffle). A record that cannot be read or decoded, for
    whatever reason, becomes an error record."""

    def __init__(
        self, output: str, parts: str, names: dict[int, str], ids: dict[str, int], fmt: str
    ):
        self._root = root_of(output, parts)
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
        make_folders(self._root, parts)
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
                try:  # The boundary: no record, however made, ends the job.
                    if problem:
                        raise RecordRejected(problem)
                    record = decode_record(
                        data, source, split, self._names, self._ids, self._example
                    )
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
                temporary, image_digest = None, None
                if record.image.encoded:
                    # A name of its own: a file given twice gives two records of one source.
                    temporary = FileSystems.join(parts, uuid.uuid4().hex)
                    with create_new(self._root, temporary) as handle:
                        handle.write(record.image.encoded)
                    image_digest = {"size": len(record.image.encoded), "sha256": record.sha256}
                stripped = replace(record, image=replace(record.image, encoded=b""))
                yield _candidate_name(stripped, self._format), temporary, stripped, image_digest


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


def _fits(fmt: str, name: str) -> bool:
    """Whether the image `name` and its annotation file are short enough for filesystems."""
    paths = (f"{IMAGES_DIR}/{name}", annotation_file(fmt, name) or "")
    return len(name.encode()) <= _MAX_NAME and all(
        len(part.encode()) <= _MAX_COMPONENT for path in paths for part in path.split("/")
    )


def _digest_name(record: DecodedRecord) -> str:
    """The name made from the sha256, for records whose own names cannot be used."""
    return _with_extension(_digest(record)[:16], record.image.format)


def _candidate_name(record: DecodedRecord, fmt: str) -> str:
    """image/filename when it is a safe relative name without control characters and short
    enough, else source_id, else the sha256; with an extension of the image's format."""
    for name in (record.image.annotation.image, record.source_id):
        try:
            key = image_key(name)
        except UnsafePathError:
            continue
        named = _with_extension(key, record.image.format)
        if not _CONTROL.search(named) and _fits(fmt, named):
            return named
    return _digest_name(record)


def _claims(item: tuple, fmt: str) -> Iterator[tuple[str, tuple[str, str]]]:
    """(path, (kind, name)) for each path the image `name` would take: its image file and its
    annotation file, and each folder above them."""
    name = item[0]
    for kind, path in (("image", f"{IMAGES_DIR}/{name}"), ("file", annotation_file(fmt, name))):
        if path:
            yield path, (kind, name)
            parts = path.split("/")
            for end in range(1, len(parts)):
                yield "/".join(parts[:end]), ("folder", name)


def _conflicts(element: tuple[str, Iterable[tuple[str, str]]]) -> Iterator[tuple[str, bool]]:
    """(name, True) for each name whose image or annotation file would be at a path that
    another name needs as a folder (`a.jpg` beside `a.jpg/b.jpg`), or whose image would be at
    another image's annotation file. Equal files are not conflicts: `_unique_key` makes
    those names unique."""
    _, claims = element
    kinds: dict[str, set[str]] = {}
    for kind, name in claims:
        kinds.setdefault(kind, set()).add(name)
    if "folder" in kinds:
        conflicting = kinds.get("image", set()) | kinds.get("file", set())
    elif "file" in kinds:
        conflicting = kinds.get("image", set())
    else:
        conflicting = set()
    for name in sorted(conflicting):
        yield name, True


def _keyed(item: tuple, fmt: str, conflicts: dict[str, bool]) -> tuple[str, tuple]:
    """The record keyed by its unique key (`_unique_key`), named from its sha256 when its
    own name conflicts with a folder (see `_conflicts`)."""
    name, temporary, record, image_digest = item
    if name in conflicts:
        name = _digest_name(record)
    return _unique_key(fmt, name), (name, temporary, record, image_digest)


def _unique_key(fmt: str, name: str) -> str:
    """What must differ between images in format `fmt`: the per-image annotation file (two
    images `s.jpg` and `s.png` would share `s.xml`), or the image name where there is none.
    The file is a function of the name, so equal keys also catch equal names."""
    return annotation_file(fmt, name) or name


def _origin(item: tuple) -> tuple:
    """Orders the records that share a key: by source, then split (one file given as two
    splits gives two records of one source)."""
    annotation = item[2].image.annotation
    return annotation.sources, annotation.split or ""


class _PlaceImages(beam.DoFn):
    """(unique key, records) → NamedRecords, moving each image to DIR/images/<name>.

    Records that share a key, and names that look made, get `~` and their digest (and, for
    identical images, their order) before the extension, deterministically. Keys are the name
    or end in its stem, so made names differ from each other and from every name kept. An
    image that cannot be written there (a link on its way, a file in its place that the
    earlier export, listing `earlier`, did not write) is an error record with its objects."""

    def __init__(self, output: str, earlier: dict[str, dict]):
        self._output = output
        self._earlier = earlier
        self._without_images = Metrics.counter("odrecords", "records_without_image")

    def process(self, element: tuple[str, Iterable[tuple]]) -> Iterator:
        _, items = element
        items = sorted(items, key=_origin)
        digests = [_digest(item[2])[:16] for item in items]
        for number, (name, temporary, record, image_digest) in enumerate(items):
            stem, extension = posixpath.splitext(name)
            if len(items) > 1 or _MADE.search(stem):
                suffix = f"-{number}" if digests.count(digests[number]) > 1 else ""
                name = f"{stem}~{digests[number]}{suffix}{extension}"
            if temporary is None:
                self._without_images.inc()
            else:
                final = FileSystems.join(self._output, IMAGES_DIR, *name.split("/"))
                try:
                    move_file(
                        self._output, temporary, final, self._earlier.__contains__, image_digest
                    )
                except OSError as error:
                    annotation = record.image.annotation
                    reason = f"{IMAGES_DIR}/{name[:80]}: {write_failure(error)}"
                    yield beam.pvalue.TaggedOutput(
                        ERRORS,
                        ErrorRecord(
                            annotation.sources[0], name, STAGE_WRITE, reason, len(annotation.boxes)
                        ),
                    )
                    continue
            yield NamedRecord(name, record, image_digest)


def _counts(named: NamedRecord) -> dict:
    return {
        "images": {named.split: 1},
        "objects": len(named.record.image.annotation.boxes),
        "without_image_bytes": int(not named.has_image),
    }


def _is_export_file(relative: str) -> bool:
    """Whether `relative` is named as export names its files (see `_EXPORT_FOLDERS`)."""
    top, _, rest = relative.partition("/")
    return top in _EXPORT_FOLDERS if rest else top.endswith(_EXPORT_ENDINGS)


def _write_summary(
    _,
    counts: dict,
    files: list[tuple[str, dict]],
    categories: dict,
    error_files: list[str],
    settings: ExportSettings,
    parts: str,
) -> Iterator[dict]:
    """Writes `export.json` once everything else is written, removes the scratch files and
    what an earlier export into the folder wrote and this one did not (see
    `transforms.builds.outputs`). `error_files` is unused but makes this step wait for the
    errors."""
    output = settings.output
    written = dict(files)
    errors = counts.get("errors", {}).get("count", 0)
    replaceable = functools.partial(_replaceable, settings.earlier_files)
    if errors:
        written[ERRORS_FILE] = digest_of_file(FileSystems.join(output, ERRORS_FILE))
    replaced = remove_stale(output, settings.earlier_files, written, _is_export_file)
    if FileSystems.exists(parts):
        delete_path(parts)
    summary = with_checksum(
        {
            "format": settings.format,
            "images": counts.get("images", {}),
            "objects": counts.get("objects", 0),
            "records_without_image_bytes": counts.get("without_image_bytes", 0),
            "errors": errors,
            "categories": categories,
            "written": dict(sorted(written.items())),
            "earlier_output": replaced.as_json(),
        }
    )
    text = json.dumps(summary, indent=2, ensure_ascii=False) + "\n"
    write_file(output, FileSystems.join(output, SUMMARY), [text.encode("utf-8")], replaceable)
    yield summary


def build_pipeline(pipeline: beam.Pipeline, settings: ExportSettings, parts: str) -> None:
    """Adds the export graph to `pipeline`; the same graph serves every runner. `parts`: the
    folder of temporary files (`parts_dir`)."""
    decoded = (
        pipeline
        | "Files" >> beam.Create(settings.inputs)
        | "Spread" >> beam.Reshuffle()
        | "ReadAndDecode"
        >> beam.ParDo(
            _ReadAndDecode(
                settings.output, parts, settings.label_names, settings.label_ids, settings.format
            )
        ).with_outputs(ERRORS, main="records")
    )
    conflicts = (
        decoded.records
        | "Claims" >> beam.FlatMap(_claims, settings.format)
        | "ByPath" >> beam.GroupByKey()
        | "Conflicts" >> beam.FlatMap(_conflicts)
        | "DistinctConflicts" >> beam.Distinct()
    )
    placed = (
        decoded.records
        | "Key" >> beam.Map(_keyed, settings.format, beam.pvalue.AsDict(conflicts))
        | "GroupByKey" >> beam.GroupByKey()
        | "PlaceImages"
        >> beam.ParDo(_PlaceImages(settings.output, settings.earlier_files)).with_outputs(
            ERRORS, main="named"
        )
    )
    named = placed.named
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
    written = named | "Write" >> WriteExport(
        settings.output,
        settings.format,
        beam.pvalue.AsSingleton(categories),
        settings.earlier_files,
    )
    images = (
        named
        | "WithImage" >> beam.Filter(lambda n: n.has_image)
        | "ImageFiles" >> beam.Map(lambda n: (f"{IMAGES_DIR}/{n.name}", n.image_digest))
    )
    errors = (decoded[ERRORS], placed[ERRORS], written["errors"]) | "AllErrors" >> beam.Flatten()
    error_files = write_errors(
        errors,
        settings.output,
        FileSystems.join(settings.output, ERRORS_FILE),
        functools.partial(_replaceable, settings.earlier_files),
    )
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
            beam.pvalue.AsList((written["files"], images) | "Written" >> beam.Flatten()),
            beam.pvalue.AsSingleton(categories),
            beam.pvalue.AsList(error_files),
            settings,
            parts,
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
    earlier = summary["earlier_output"]
    if earlier["removed"]:
        print(f"removed {earlier['removed']} files of the earlier export this one replaced")
    if earlier["left_in_place"]:
        left = earlier["left_in_place"]
        print(
            f"warning: {len(left)} files the earlier export in this folder listed were left in "
            f"place, as they are not what it wrote there: {'; '.join(left[:5])}"
            + (" ..." if len(left) > 5 else ""),
            file=sys.stderr,
        )
    print(f"wrote {FileSystems.join(output, SUMMARY)}")


def _remove_failed(settings: ExportSettings, parts: str) -> None:
    """Removes what a failed export wrote, so the same command can run again: its temporary
    files, and, in a folder that was new or empty, every file named as export names them (in
    a folder holding an earlier export, its files stay: the next export replaces them)."""
    new = not settings.earlier_files
    remove_build(settings.output, _is_export_file if new else lambda _: False)
    if FileSystems.exists(parts):
        delete_path(parts)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        settings, beam_args = parse_export_args(sys.argv[1:] if argv is None else argv)
    except UsageError as error:
        print(f"odrecords export: error: {error}", file=sys.stderr)
        return 2
    options = pipeline_options(beam_args)
    temp_location = options.view_as(GoogleCloudOptions).temp_location
    parts = parts_dir(settings.output, temp_location, uuid.uuid4().hex)
    try:
        pipeline = beam.Pipeline(options=options)
        build_pipeline(pipeline, settings, parts)
        pipeline.run().wait_until_finish()
    except BaseException as error:  # Interrupted too: what it wrote is removed.
        _LOG.info("the job failed", exc_info=True)  # With -v.
        _remove_failed(settings, parts)
        stopped = interrupted(error)
        what = "interrupted" if stopped else f"failed: {failure_line(error, settings.output)}"
        print(
            f"odrecords export: error: the export {what}; its temporary files were removed",
            file=sys.stderr,
        )
        return 130 if stopped else 1
    _print_summary(settings.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
