"""`odrecords create`: annotations + images → sharded TFRecords, label map, errors, manifest.

Run as `odrecords create ...` or `python -m pipelines.create ...`; both parse the same flags.
"""

from __future__ import annotations

import datetime
import functools
import importlib.metadata
import itertools
import json
import logging
import os
import platform
import sys
import uuid
from collections.abc import Sequence

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import GoogleCloudOptions

from pipelines import dry_run, validate
from pipelines.failures import failure_line, interrupted, unwritable
from pipelines.flags import UsageError
from pipelines.reading import image_loader, read_images
from pipelines.settings import (
    CreateSettings,
    local_processes,
    parse_create_args,
    pipeline_options,
    runs_locally,
)
from transforms.builds.changes import ImageChanges, summary_lines
from transforms.builds.checks import Finding
from transforms.builds.index import (
    EXAMPLES,
    INDEX_COUNTS,
    ReadIndex,
    is_index_name,
    settings_fingerprint,
)
from transforms.builds.layout import MANIFEST, Layout, join
from transforms.builds.lock import BuildLock
from transforms.builds.publish import remove_abandoned, remove_held_back, remove_unfinished
from transforms.builds.report import (
    ERRORS_FILE,
    WriteReport,
    class_ids_changed_text,
    copies_text,
    error_counts,
    lost_objects,
    lost_objects_text,
    write_errors,
    written_by_create,
)
from transforms.builds.reuse import plan_reuse, reuse_text
from transforms.builds.safe_write import new_folder
from transforms.choices import SAME_SPLIT
from transforms.counts import SumCounts
from transforms.duplicates import (
    DUPLICATE_KINDS,
    HASHES,
    ContentGroups,
    ReportDuplicates,
    duplicates_across,
)
from transforms.images.loader import NOT_FOUND
from transforms.images.orientation import OrientationPolicy
from transforms.images.orientation import summary as orientation_summary
from transforms.readers.detect import images_folder_near
from transforms.records import ERRORS, STAGE_IMAGE
from transforms.report.build import first_rejected
from transforms.report.stats import MergeStats
from transforms.shard_pool import prepare as prepare_workers
from transforms.shard_pool import usable_cores
from transforms.tfrecord_sink import (
    REPORT,
    STATS,
    ShardSettings,
    WriteShardedTFRecords,
    parts_dir,
)

_LOG = logging.getLogger(__name__)


def _manifest_settings(settings: CreateSettings) -> dict:
    """The part of the manifest that records how the output was made. TensorFlow's version
    comes from its installed metadata: importing it would cost seconds a run of certified
    JPEGs does not otherwise spend."""
    return {
        "odrecords_version": importlib.metadata.version("odrecords"),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "inputs": {
            "format": settings.format.name,
            "annotations": settings.annotations,
            "images": settings.images,
            "label_map": settings.label_map_path,
        },
        "options": {
            "splits": settings.splits or "source",
            "split_names": list(settings.split_names),
            "num_shards": settings.num_shards,
            "include_masks": settings.extras.masks,
            "include_keypoints": settings.extras.keypoints,
            "duplicates": settings.duplicates,
            "class_map": settings.class_map,
            "max_image_bytes": settings.max_image_bytes,
            "max_image_pixels": settings.max_image_pixels,
            "exif_orientation": settings.exif_orientation,
            "class_attribute": settings.source.options.class_attribute or None,
            "strict": settings.checks.entry() if settings.strict else None,
        },
        "versions": {
            "python": platform.python_version(),
            "apache_beam": beam.__version__,
            "tensorflow": importlib.metadata.version("tensorflow"),
        },
    }


def _examples_fingerprint(settings: CreateSettings) -> str:
    """The fingerprint of what changes examples besides an image's annotation, classes and
    bytes (`transforms.builds.index`): a later build reuses examples only under the same.
    The libraries that decode, convert and encode images are in it, as is odrecords' own
    version, since any of them may write other bytes (read from the installed packages'
    metadata: importing TensorFlow would cost seconds)."""
    libraries = ("tensorflow", "pillow", "simplejpeg", "numpy", "protobuf")
    return settings_fingerprint(
        {
            "odrecords": importlib.metadata.version("odrecords"),
            "libraries": {name: importlib.metadata.version(name) for name in libraries},
            "extras": settings.extras,
            "max_image_bytes": settings.max_image_bytes,
            "max_image_pixels": settings.max_image_pixels,
            "orientation": OrientationPolicy.of(settings.exif_orientation, settings.format.name),
            "images": settings.images,
        }
    )


def build_pipeline(
    pipeline: beam.Pipeline,
    settings: CreateSettings,
    parts: str,
    progress: bool = False,
    processes: int | None = 1,
) -> None:
    """Adds the create graph to `pipeline`; the same graph serves every runner. `parts`: the
    folder of temporary files (`parts_dir`); `progress` prints progress lines (for in-process
    runners, whose workers share the console); `processes` convert images in the shard
    writer (`local_processes`)."""
    read = read_images(pipeline, settings)
    images, label_map = read.images, read.label_map
    step_errors = list(read.errors)
    loader = image_loader(settings)
    groups, step_counts = None, []
    if settings.duplicates == SAME_SPLIT:
        content_groups, placement = images | "GroupDuplicates" >> ContentGroups(
            loader, settings.max_image_pixels, settings.splits
        )
        groups = beam.pvalue.AsSingleton(content_groups)
        step_counts.append(placement)

    fingerprint = _examples_fingerprint(settings)
    previous = settings.previous
    reuse, why_not = plan_reuse(settings.reuse, previous, fingerprint)
    before = None
    if previous is not None and any(is_index_name(path) for path in previous.files):
        index = pipeline | "ReadPreviousIndex" >> ReadIndex(previous.folder, previous.files)
        step_counts.append(index[INDEX_COUNTS])
        before = index.rows
    layout = settings.layout
    shard_settings = ShardSettings(
        output=layout.build,
        parts=parts,
        splits=settings.splits,
        num_shards=settings.num_shards,
        extras=settings.extras,
        progress_run=uuid.uuid4().hex if progress else None,
        fingerprint=fingerprint,
        reuse=reuse,
        compare=before is not None,
        root=layout.output,
        processes=processes,
    )
    shards = images | "WriteShards" >> WriteShardedTFRecords(
        shard_settings,
        loader,
        beam.pvalue.AsSingleton(label_map),
        groups,
        before if reuse else None,
    )
    step_counts.append(shards[HASHES] | "ReportDuplicates" >> ReportDuplicates())
    if before is not None:
        earlier = before | "PreviousExamples" >> beam.MapTuple(lambda _, row: row.example())
        step_counts.append(shards[EXAMPLES] | "CompareImages" >> ImageChanges(earlier))
    step_errors.append(shards[ERRORS])
    errors = step_errors | "AllErrors" >> beam.Flatten()
    error_files = write_errors(errors, layout.output, join(layout.build, ERRORS_FILE), new_folder)
    counts = (
        (
            *read.counts,
            shards[STATS],
            errors | "CountErrors" >> beam.Map(error_counts),
            *step_counts,
        )
        | "AllCounts" >> beam.Flatten()
        | "SumCounts" >> beam.CombineGlobally(SumCounts())
    )
    _ = (
        pipeline
        | "Once" >> beam.Create([None])
        | "WriteReport"
        >> beam.ParDo(
            WriteReport(
                layout,
                parts,
                _manifest_settings(settings),
                settings.max_error_rate,
                previous,
                loader,
                {
                    "mode": settings.reuse,
                    "previous": previous.manifest.get("build", {}).get("id") if previous else None,
                    "why_not": why_not,
                    "fingerprint": fingerprint,
                },
                settings.checks if settings.strict else None,
            ),
            beam.pvalue.AsSingleton(counts),
            beam.pvalue.AsList(shards.files),
            beam.pvalue.AsSingleton(label_map),
            beam.pvalue.AsSingleton(read.renumbered),
            beam.pvalue.AsList(error_files),
            beam.pvalue.AsSingleton(
                shards[REPORT] | "SumReport" >> beam.CombineGlobally(MergeStats())
            ),
            beam.pvalue.AsSingleton(first_rejected(errors)),
        )
    )


def _read_manifest(layout: Layout) -> tuple[dict, str]:
    """This build's manifest, and the folder its files are in now: the build folder, or once
    published without versions, the output's top."""
    for folder in (layout.build, layout.output):
        path = FileSystems.join(folder, MANIFEST)
        if FileSystems.exists(path):
            with FileSystems.open(path) as handle:
                manifest = json.load(handle)
            if manifest.get("build", {}).get("id") == layout.build_id:
                return manifest, folder
    raise RuntimeError(f"the job finished without writing {MANIFEST} in {layout.build}")


def _print_summary(manifest: dict, output: str) -> None:
    """Prints the manifest's counts and the first errors, one line each."""
    for name, split in manifest["splits"].items():
        print(
            f"{name}: {split['examples']} examples, {split['objects']} objects, "
            f"{len(split['files'])} shard{'' if len(split['files']) == 1 else 's'}"
        )
    images, objects = manifest["images"], manifest["objects"]
    dropped = f" + {objects['dropped']} dropped" if objects["dropped"] else ""
    print(
        f"images: {images['referenced']} referenced{copies_text(images)} = {images['written']} "
        f"written + {images['rejected']} rejected; objects: {objects['read']} read"
        f"{copies_text(objects)} = {objects['written']} written + {objects['rejected']} "
        f"rejected{dropped} ({objects['clipped']} clipped)"
    )
    oriented, orientation_warning = orientation_summary(manifest["exif_orientation"])
    if oriented:
        print(oriented)
    if orientation_warning:
        print(f"warning: {orientation_warning}", file=sys.stderr)
    errors_path = FileSystems.join(output, ERRORS_FILE)
    count = manifest["errors"]["count"]
    if count:
        with FileSystems.open(errors_path) as handle:
            for line in itertools.islice(handle, 10):
                error = json.loads(line)
                looked_at = f" (looked at {error['path']})" if error.get("path") else ""
                print(f"error: {error['source']}: {error['reason']}{looked_at}")
        more = f" ({count - 10} more)" if count > 10 else ""
        print(f"{count} errors{more}, all in {errors_path}")
    for key, text in (
        ("merged_from_several_files", "named by several annotation files (boxes merged)"),
        ("in_several_splits", "in several source splits (each written once per split: leakage)"),
    ):
        reported = images[key]
        if reported["count"]:
            print(
                f"warning: {reported['count']} images {text}: {'; '.join(reported['first'])}"
                + (" ..." if reported["count"] > len(reported["first"]) else ""),
                file=sys.stderr,
            )
    _print_duplicates(manifest["duplicates"])
    if manifest["class_ids_changed"]:
        print(f"warning: {class_ids_changed_text(manifest['class_ids_changed'])}", file=sys.stderr)
    reused = reuse_text(manifest.get("reuse"))
    if reused:
        print(reused)
    for line in summary_lines(manifest.get("changes")):
        print(line)
    earlier = manifest.get("earlier_output", {"removed": 0, "left_in_place": []})
    if earlier["removed"]:
        print(f"removed {earlier['removed']} files of the earlier output this run replaced")
    left = earlier["left_in_place"]
    if left:
        print(
            f"warning: {len(left)} files the earlier output in this folder listed were left in "
            f"place, as they are not what it wrote there: {'; '.join(left[:5])}"
            + (" ..." if len(left) > 5 else ""),
            file=sys.stderr,
        )
    if not all(manifest["accounting"].values()):
        print("warning: the counts do not add up; please report this", file=sys.stderr)
    print(f"wrote {FileSystems.join(output, MANIFEST)}")


def _print_duplicates(duplicates: dict) -> None:
    """One line of duplicate counts when there are any, and a warning naming the first pairs
    when some lie in different splits: train/eval leakage."""
    parts = [
        f"{kind} {duplicates[kind]['across_splits']['pairs']} pairs across splits, "
        f"{duplicates[kind]['within_split']['pairs']} within a split"
        for kind in DUPLICATE_KINDS
    ]
    found = any(
        duplicates[kind][where]["pairs"]
        for kind in DUPLICATE_KINDS
        for where in ("across_splits", "within_split")
    )
    kept = duplicates.get("kept_in_one_split")
    if kept and kept["images"]:
        parts.append(
            f"{kept['images']} images kept in one split by content ({kept['moved']} moved)"
        )
    if found or (kept and kept["images"]):
        print(f"duplicates: {'; '.join(parts)}")
    across = duplicates_across(duplicates)
    if across:
        first = [p for kind in DUPLICATE_KINDS for p in duplicates[kind]["across_splits"]["first"]]
        more = " ..." if across > len(first) else ""
        hint = "" if kept is not None else "; --duplicates same-split keeps them in one split"
        print(
            f"warning: {across} pairs of duplicate images lie in different splits (leakage): "
            f"{'; '.join(first)}{more}{hint}",
            file=sys.stderr,
        )


def _to_write(images: dict) -> int:
    """The examples the job tried to write: images referenced, and their copies in the other
    splits their source lists them in."""
    return images["referenced"] + images["copies_in_other_splits"]


def _images_hint(manifest: dict, folder: str) -> str:
    """ "; --images FOLDER? ..." when the first image not found is in a folder named like one
    of images near the annotations (`images_folder_near`), else "". The errors file of the
    build in `folder` names it."""
    if not manifest["errors"]["count"]:
        return ""
    with FileSystems.open(FileSystems.join(folder, ERRORS_FILE)) as handle:
        for line in itertools.islice(handle, 1000):
            error = json.loads(line)
            if error["stage"] == STAGE_IMAGE and error["reason"] == NOT_FOUND and error["image"]:
                inputs = manifest["inputs"]
                found = images_folder_near(inputs["annotations"], error["image"], inputs["images"])
                return f"; --images {found}? (the first image not found is there)" if found else ""
    return ""


def _rejected(rejected: int, referenced: int, manifest: dict, beside: bool, hint: str) -> str:
    """How many images were rejected, mostly why, and where they were looked for; `hint`:
    where they may be (`_images_hint`)."""
    prefix = f"{STAGE_IMAGE}: "
    reasons = {
        reason.removeprefix(prefix): count
        for reason, count in manifest["errors"]["by_reason"].items()
        if reason.startswith(prefix)
    }
    most = f" (most: {max(reasons, key=reasons.get)})" if reasons else ""
    root = manifest["inputs"]["images"]
    where = (
        f"beside the annotation files that name them, under {root}"
        if beside
        else f"under {root}: is --images right?"
    )
    return (
        f"{rejected} of {referenced} images were rejected{most}; images were looked for {where}"
        f"{hint}"
    )


def _outcome(manifest: dict, folder: str, beside: bool) -> int:
    """The exit code: 1 when no example was written, since an empty dataset must not pass for
    a finished one; a loud warning when most images were rejected, which usually means a
    wrong --images rather than bad data, or most of one split's (a download that lacks many
    of the images its annotations list), and when most objects of the input, a split or a
    class were rejected (label lines of a format the reader does not take, a label map that
    lacks a class), beyond what the images' warnings already said. `folder`: where the build
    is; `beside`: images were looked for beside their annotation files, not under
    --images."""
    images = manifest["images"]
    hint = functools.cache(lambda: _images_hint(manifest, folder))  # Read when it is needed.
    if not images["written"]:
        if images["referenced"]:
            why = _rejected(images["rejected"], images["referenced"], manifest, beside, hint())
        else:
            count = manifest["errors"]["count"]
            why = "the annotations name no image" + (f" ({count} errors)" if count else "")
        print(f"odrecords create: error: no example was written: {why}", file=sys.stderr)
        return 1
    build = manifest["build"]
    if not build["published"]:
        print(
            f"odrecords create: error: not published: {'; '.join(build['not_published_because'])}"
            f"; the build is in {folder}, the published output is unchanged",
            file=sys.stderr,
        )
        return 1
    warnings, said = [], set()
    if 2 * images["rejected"] > _to_write(images):
        warnings.append(_rejected(images["rejected"], _to_write(images), manifest, beside, hint()))
        said = {None, *(f"split {name}" for name in manifest["splits"])}
    else:
        for name, split in manifest["splits"].items():
            referenced = split["examples"] + split["rejected"]
            if 2 * split["rejected"] > referenced:
                why = _rejected(split["rejected"], referenced, manifest, beside, hint())
                warnings.append(f"split {name}: {why}")
                said.add(f"split {name}")
    lost = lost_objects(manifest)
    overall = lost[0]["most"] if lost and lost[0]["where"] is None else None
    for entry in lost:
        # A split or class that lost its objects as the whole input did adds nothing to the
        # input's warning, nor one that lost them with its images to an image warning.
        as_input = entry["where"] is not None and entry["most"] == overall
        with_images = bool(said) and entry["most"].startswith(f"{STAGE_IMAGE}: ")
        if entry["where"] not in said and not as_input and not with_images:
            warnings.append(lost_objects_text(entry))
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return 0


def print_counters(result: beam.runners.runner.PipelineResult) -> None:
    """Beam's counters of the run, as the Dataflow and Flink UIs show them; none for a runner
    that keeps no metrics (some raise NotImplementedError, others fail to query them): the
    manifest's counts are what the run is judged by, and a summary never fails for this."""
    try:
        counters = result.metrics().query()["counters"]
    except Exception as error:  # Each runner fails in its own way.
        _LOG.info("no counters from the runner: %s", error)
        return
    totals: dict[str, int] = {}
    for counter in counters:
        name = counter.key.metric.name
        totals[name] = totals.get(name, 0) + (counter.committed or counter.attempted or 0)
    if totals:
        print("counters:")
        for name, value in sorted(totals.items()):
            print(f"  {value:>10}  {name}")


def _claim_output(settings: CreateSettings, parts: str) -> BuildLock:
    """Removes what failed or killed builds left in the output, and the builds left
    unpublished, then takes this build's lock
    (`transforms.builds.lock`): the first write into the output, so one that cannot be
    written is found before the job starts. Raises UsageError."""
    output = settings.output
    try:
        for build_id in remove_abandoned(output, written_by_create):
            print(
                f"odrecords create: removed what the failed or killed build {build_id} left",
                file=sys.stderr,
            )
        for build_id in remove_held_back(output, written_by_create):
            print(f"odrecords create: removed the unpublished build {build_id}", file=sys.stderr)
        return BuildLock(output, settings.layout.build_id, parts)
    except Exception as error:  # Each filesystem raises its own error types.
        raise unwritable(output, error) from None


def run(settings: CreateSettings, beam_args: Sequence[str]) -> int:
    """Builds and runs the pipeline, then prints the summary and returns the exit code, or only
    submits it (`--detach`, and inside a Dataflow Flex Template launcher, which must not
    wait). A job that fails or is interrupted is reported in one line, and what its build
    wrote is removed, so the same command can run again in the space it had."""
    options = pipeline_options(beam_args)
    layout = settings.layout
    parts = parts_dir(
        layout.build, options.view_as(GoogleCloudOptions).temp_location, layout.build_id
    )
    try:
        lock = _claim_output(settings, parts)
    except UsageError as error:
        print(f"odrecords create: error: {error}", file=sys.stderr)
        return 2
    try:
        pipeline = beam.Pipeline(options=options)
        processes = local_processes(options, settings.processes)
        if processes != 1 and usable_cores() > 1:
            prepare_workers()
        build_pipeline(pipeline, settings, parts, runs_locally(options), processes)
        _LOG.info(
            "reading %s (%s) with %s",
            settings.source.pattern,
            settings.format.name,
            options.get_all_options()["runner"],
        )
        result = pipeline.run()
        if settings.detach or os.environ.get("FLEX_TEMPLATE_PYTHON_PY_FILE"):
            lock.release()  # The runner has the build now; see `transforms.builds.lock`.
            where = settings.layout.published
            print(f"submitted; {FileSystems.join(where, MANIFEST)} appears when it is done")
            return 0
        result.wait_until_finish()
    except BaseException as error:  # Interrupted too: what the build wrote is removed.
        _LOG.info("the job failed", exc_info=True)  # With -v.
        remove_unfinished(settings.output, layout.build_id, parts, written_by_create)
        lock.release()
        stopped = interrupted(error)
        what = "interrupted" if stopped else f"failed: {failure_line(error, layout.build)}"
        print(
            f"odrecords create: error: the build {what}; what it wrote was removed, the "
            f"published output in {settings.output} is unchanged",
            file=sys.stderr,
        )
        return 130 if stopped else 1
    lock.release()
    manifest, folder = _read_manifest(settings.layout)
    _print_summary(manifest, folder)
    checks = manifest["build"].get("checks")
    if checks is not None:  # --strict: the checks the build was published by, or held back.
        validate.print_findings([Finding.from_entry(entry) for entry in checks])
    if manifest["build"]["published"] and settings.layout.versions:
        print(f"published version {settings.layout.build_id} in {settings.output}")
    print_counters(result)
    return _outcome(manifest, folder, settings.source.options.images_beside_annotations)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code: 0, 1 when the build was not published (no
    example was written, `--max-error-rate`, or with `--strict` a check of `odrecords
    validate` failed on it), 2 for unusable arguments. `--dry-run` prints the plan instead
    (`pipelines.dry_run`), with the same codes."""
    try:
        settings, beam_args = parse_create_args(sys.argv[1:] if argv is None else argv)
    except UsageError as error:
        print(f"odrecords create: error: {error}", file=sys.stderr)
        return 2
    if settings.dry_run is not None:
        return dry_run.run(settings, beam_args)
    return run(settings, beam_args)


if __name__ == "__main__":
    sys.exit(main())
