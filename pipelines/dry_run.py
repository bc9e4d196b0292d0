"""`odrecords create --dry-run`: the plan of a build, with nothing written.

The create graph's own reading part (`pipelines.reading`) reads the annotations; each image is
then looked for as the build's loader looks for it (`ImageLoader.find`: inside the images root,
a regular file, within the size limit) or, with `--dry-run decode`, loaded and converted as the
build converts it. The counts go through the manifest's own arithmetic (`build_manifest`),
so the plan's numbers are the ones a build would write. Nothing is written anywhere: no
output folder, no lock, no temporary files; the graph runs in this process, and its results
are kept in memory (`_GATHERED`) for the launcher to print.
"""

from __future__ import annotations

import json
import sys
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence

import apache_beam as beam
from apache_beam.options.pipeline_options import DirectOptions, StandardOptions

from pipelines.failures import interrupted, wrapped
from pipelines.flags import DRY_RUN_DECODE
from pipelines.reading import image_loader, read_images
from pipelines.settings import DEFAULT_RUNNER, CreateSettings, pipeline_options
from transforms.builds.report import (
    build_manifest,
    class_id_history,
    class_ids_changed_text,
    copies_text,
    error_counts,
    quality,
)
from transforms.convert import ImagePlan, convert, image_paths
from transforms.counts import SumCounts
from transforms.images.loader import ImageLoader, ImageRejected
from transforms.records import (
    ERRORS,
    STAGE_IMAGE,
    ErrorRecord,
    Extras,
    ImageAnnotation,
    excerpt,
)
from transforms.tfrecord_sink import placed

# Errors printed one by one; the rest are counted by reason.
FIRST_ERRORS = 10
_PROG = "odrecords create --dry-run"
# What each run's graph gathered, by run id: the graph runs in this process.
_GATHERED: dict[str, dict] = {}


class CheckImage(beam.DoFn):
    """An image in its split (the split a build assigns it, `placed`) → what its example
    would add to the manifest's counts, or its error record (tag `errors`). `decode`: the
    image is loaded and converted (`transforms.convert.convert`), box checks included, as a
    build does; else only found (`ImageLoader.find`), its objects counted as annotated."""

    def __init__(
        self,
        loader: ImageLoader,
        splits: dict[str, float] | None,
        extras: Extras,
        decode: bool,
    ):
        self._loader = loader
        self._splits = splits
        self._extras = extras
        self._decode = decode

    def setup(self) -> None:
        self._loader.setup()

    def process(self, image: ImageAnnotation, label_map: dict[str, int]) -> Iterator:
        image = placed(image, self._splits)
        if self._decode:
            plan = ImagePlan(image, "", "", "", None)
            converted = convert(self._loader, plan, label_map, self._extras)
            if isinstance(converted, ErrorRecord):
                yield from self._rejected(converted)
                return
            _, row = converted
            for error in row.errors:
                yield beam.pvalue.TaggedOutput(ERRORS, error)
            yield row.stats
            return
        try:
            self._loader.find(image)
        except ImageRejected as error:
            yield from self._rejected(ErrorRecord.for_image(image, str(error)))
            return
        yield {
            "splits": {image.split: {"examples": 1, "objects": len(image.boxes)}},
            "classes": dict(Counter(box.label for box in image.boxes)),
        }

    @staticmethod
    def _rejected(error: ErrorRecord) -> Iterator:
        yield beam.pvalue.TaggedOutput(ERRORS, error)
        yield {"splits": {error.split: {"rejected": 1}}}


class _Keep(beam.DoFn):
    """Keeps a singleton of the graph as `name` of run `run` in `_GATHERED`."""

    def __init__(self, run: str, name: str):
        self._run = run
        self._name = name

    def process(self, value: object) -> Iterator:
        _GATHERED.setdefault(self._run, {})[self._name] = value
        return iter(())


def build_plan(pipeline: beam.Pipeline, settings: CreateSettings, run: str) -> None:
    """Adds the dry run's graph to `pipeline`: the create graph's reading, each image checked
    (`CheckImage`), and the counts, label map and errors kept for run `run`."""
    read = read_images(pipeline, settings)
    checked = read.images | "CheckImages" >> beam.ParDo(
        CheckImage(
            image_loader(settings),
            settings.splits,
            settings.extras,
            settings.dry_run == DRY_RUN_DECODE,
        ),
        beam.pvalue.AsSingleton(read.label_map),
    ).with_outputs(ERRORS, main="counts")
    errors = (*read.errors, checked[ERRORS]) | "AllErrors" >> beam.Flatten()
    counts = (
        (*read.counts, checked.counts, errors | "CountErrors" >> beam.Map(error_counts))
        | "AllCounts" >> beam.Flatten()
        | "SumCounts" >> beam.CombineGlobally(SumCounts())
    )
    kept = {
        "counts": counts,
        "label_map": read.label_map,
        "renumbered": read.renumbered,
        "errors": errors | "GatherErrors" >> beam.combiners.ToList(),
    }
    for name, value in kept.items():
        _ = value | f"Keep{name.title()}" >> beam.ParDo(_Keep(run, name))


def _plan_manifest(settings: CreateSettings, gathered: dict) -> dict:
    """The manifest a build would write, but for its files."""
    manifest = build_manifest(
        gathered["counts"],
        [],
        gathered["label_map"],
        gathered["renumbered"],
        {"options": {"split_names": list(settings.split_names), "duplicates": settings.duplicates}},
    )
    return manifest | class_id_history(gathered["label_map"], settings.previous)


def _error_lines(settings: CreateSettings, errors: list[ErrorRecord]) -> list[str]:
    """The first errors in the order of the build's errors file (sorted by their JSON line),
    each naming the path an image was looked for at."""
    first = sorted(errors, key=lambda error: json.dumps(error.to_json(), ensure_ascii=False))
    lines = []
    for error in first[:FIRST_ERRORS]:
        record = error.to_json()
        where = ""
        if error.stage == STAGE_IMAGE and error.image is not None:
            looked = image_paths(settings.images, ImageAnnotation(error.image, ()))[0]
            where = f" (looked for {looked})"
        lines.append(f"error: {record['source']}: {record['reason']}{where}")
    return lines


def print_plan(settings: CreateSettings, manifest: dict, errors: list[ErrorRecord]) -> None:
    """The plan: format and inputs, each split's images and objects, the label map, and the
    errors found (the first ones, then their counts by reason)."""
    found = "loaded and converted" if settings.dry_run == DRY_RUN_DECODE else "found"
    print(f"dry run ({settings.dry_run}: each image {found}); nothing was written")
    print(f"format: {settings.format.name}; annotations: {settings.annotations}")
    print(f"images: {settings.images}; output would be: {settings.output}")
    for name, split in manifest["splits"].items():
        rejected = f" ({split['rejected']} rejected)" if split["rejected"] else ""
        print(f"{name}: {split['examples']} images, {split['objects']} objects{rejected}")
    images, objects = manifest["images"], manifest["objects"]
    print(
        f"images: {images['referenced']} referenced{copies_text(images)} = {images['written']} "
        f"to write + {images['rejected']} rejected; objects: {objects['read']} read"
        f"{copies_text(objects)} = {objects['written']} to write + {objects['rejected']} "
        f"rejected" + (f" + {objects['dropped']} dropped" if objects["dropped"] else "")
    )
    print(f"label map ({len(manifest['classes'])} classes):")
    for name, entry in manifest["classes"].items():
        print(f"  {entry['id']:>4}  {name} ({entry['objects']} objects)")
    for line in _error_lines(settings, errors):
        print(line)
    by_reason = manifest["errors"]["by_reason"]
    if by_reason:
        print(f"{manifest['errors']['count']} errors by reason:")
        for reason, count in sorted(by_reason.items(), key=lambda item: (-item[1], item[0])):
            print(f"  {count:>6}  {reason}")
    several = images["in_several_splits"]
    if several["count"]:
        print(
            f"warning: {several['count']} images in several source splits (leakage): "
            f"{'; '.join(several['first'])}",
            file=sys.stderr,
        )
    if manifest["class_ids_changed"]:
        print(f"warning: {class_ids_changed_text(manifest['class_ids_changed'])}", file=sys.stderr)


def _outcome(settings: CreateSettings, manifest: dict) -> int:
    """The exit code create would give: 1 when no example would be written, or the build
    would not be published (`--max-error-rate`), else 0."""
    images = manifest["images"]
    if not images["written"]:
        reasons = manifest["errors"]["by_reason"]
        most = f" (most: {max(reasons, key=reasons.get)})" if reasons else ""
        print(
            f"{_PROG}: error: no example would be written: {images['rejected']} of "
            f"{images['referenced']} images would be rejected{most}",
            file=sys.stderr,
        )
        return 1
    gate = quality(manifest, settings.max_error_rate)
    if gate["published"]:
        return 0
    print(
        f"{_PROG}: error: the build would not be published: "
        f"{'; '.join(gate['not_published_because'])}",
        file=sys.stderr,
    )
    return 1


def run(settings: CreateSettings, beam_args: Sequence[str]) -> int:
    """Runs the dry run's graph in this process, prints the plan and returns the exit code.
    Beam's filesystem options apply (images on S3 or GCS are looked for there); the runner
    is always the in-process one, since the plan is gathered in this process's memory."""
    options = pipeline_options(beam_args)
    options.view_as(StandardOptions).runner = DEFAULT_RUNNER
    direct = options.view_as(DirectOptions)
    direct.direct_running_mode = "in_memory"
    direct.direct_num_workers = 1
    run_id = uuid.uuid4().hex
    try:
        with beam.Pipeline(options=options) as pipeline:
            build_plan(pipeline, settings, run_id)
        gathered = _GATHERED.pop(run_id)
    except BaseException as error:  # Interrupted too: nothing was written to remove.
        _GATHERED.pop(run_id, None)
        stopped = interrupted(error)
        first = list(wrapped(error))[-1]
        failed = f"failed: {type(first).__name__}: {excerpt(str(first))}"
        what = "was interrupted" if stopped else failed
        print(f"{_PROG}: error: the dry run {what}", file=sys.stderr)
        return 130 if stopped else 1
    manifest = _plan_manifest(settings, gathered)
    print_plan(settings, manifest, gathered["errors"])
    return _outcome(settings, manifest)
