"""Flags and YAML configs of `odrecords create`, checked before any pipeline is built.

Everything that makes the job itself impossible (a missing folder, an unreadable label map, an
unknown format, bad split fractions) is reported here as one `UsageError` line; problems in the
data are never reported here, they become error records.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import (
    DirectOptions,
    PipelineOptions,
    StandardOptions,
)
from apache_beam.runners.runner import create_runner

from pipelines.failures import unwritable
from pipelines.flags import (
    DEFAULT_SPLITS,
    DRY_RUNS,
    UsageError,
    create_parser,
    misspelled,
)
from transforms.builds.checks import Thresholds
from transforms.builds.layout import (
    BUILDS,
    VERSIONS,
    Layout,
    PreviousBuild,
    find_previous,
    new_build_id,
)
from transforms.builds.outputs import NotOurOutput, listed_files, read_summary
from transforms.builds.publish import finish_publications
from transforms.builds.report import check_create_output, written_by_create
from transforms.builds.safe_write import UnsafeWrite
from transforms.choices import (
    AUTO,
    DEFAULT_KEEP_VERSIONS,
    DEFAULT_MAX_IMAGE_BYTES,
    DEFAULT_MAX_IMAGE_PIXELS,
    OPTIONS,
    POLICIES,
    REPORT,
    REUSE,
    SAME_SPLIT,
    STAT,
)
from transforms.label_map import LabelMapError, read_label_map
from transforms.readers import formats
from transforms.readers.base import (
    Format,
    Request,
    Source,
    UnusableSource,
    is_local,
    read_yaml,
)
from transforms.readers.class_map import load_class_map
from transforms.readers.detect import detect_format
from transforms.readers.yolo import read_names
from transforms.records import Extras, excerpt
from transforms.splits import parse_splits

_PATH_KEYS = ("annotations", "images", "output", "label_map", "classes", "class_map")


# The runner used when none is given: Beam's in-process FnApiRunner. Beam's `DirectRunner`
# first tries to download and start the Prism runner, which needs the network.
DEFAULT_RUNNER = "FnApiRunner"


def use_filesystem_options(beam_args: Sequence[str]) -> None:
    """Lets the launcher's own checks reach remote storage (S3 endpoint and credentials, GCP
    project, ...) with the same options the pipeline will get."""
    FileSystems.set_options(PipelineOptions(list(beam_args)))


def runs_locally(options: PipelineOptions) -> bool:
    """Whether the runner runs the workers in this process (or on this machine)."""
    runner = options.view_as(StandardOptions).runner or DEFAULT_RUNNER
    return runner.split(".")[-1] in StandardOptions.LOCAL_RUNNERS


def local_processes(options: PipelineOptions, processes: int | None) -> int | None:
    """How many processes write shards (`ShardSettings.processes`; None: as many as pay):
    `processes` when the runner runs every step in this one process (the in-process
    runners, unless Beam's own multi-process mode is chosen), else 1: a distributed runner
    already runs a worker per core, and more would only compete for them."""
    direct = options.view_as(DirectOptions)
    if not runs_locally(options) or direct.direct_running_mode == "multi_processing":
        return 1
    return processes


def pipeline_options(beam_args: Sequence[str]) -> PipelineOptions:
    """Beam options from the flags odrecords does not use, with the local default runner."""
    options = PipelineOptions(list(beam_args))
    standard = options.view_as(StandardOptions)
    standard.runner = standard.runner or DEFAULT_RUNNER
    return options


@dataclass(frozen=True)
class CreateSettings:
    """Checked settings of one create job: where the annotations are and how they are read
    (`source`), and what is written where."""

    format: Format
    annotations: str
    source: Source
    output: str
    splits: dict[str, float] | None  # None: the source's own splits, named in split_names.
    split_names: tuple[str, ...]
    num_shards: int | None
    layout: Layout  # Where this build is written and published.
    processes: int | None = None  # Processes that write shards on a local runner.
    max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
    label_map_path: str | None = None
    label_map: dict[str, int] | None = None
    keep_empty_classes: bool = False
    duplicates: str = REPORT
    detach: bool = False
    class_map: dict[str, str | None] | None = None
    exif_orientation: str = AUTO
    # The published build this one follows.
    previous: PreviousBuild | None = None
    max_error_rate: float | None = None
    reuse: str = STAT
    dry_run: str | None = None  # What a dry run checks of each image (`DRY_RUNS`).
    strict: bool = False  # Run `odrecords validate`'s checks on the build.
    checks: Thresholds = Thresholds()

    @property
    def images(self) -> str:
        return self.source.options.images

    @property
    def extras(self) -> Extras:
        return self.source.options.extras


def _load_config(path: str) -> tuple[dict, list[str]]:
    """Reads a YAML config: settings (local paths made relative to the config's folder, so a
    scheduled job finds them from any working directory) and Beam flags."""
    try:
        config = read_yaml(path) or {}
    except (OSError, ValueError) as error:
        raise UsageError(f"cannot read config {path}: {error}") from None
    if not isinstance(config, dict):
        raise UsageError(f"config {path} is not a mapping of settings")
    beam_options = config.pop("pipeline_options", None) or {}
    if not isinstance(beam_options, dict):
        raise UsageError(f"config {path}: pipeline_options must be a mapping")
    odd = [key for key in [*config, *beam_options] if not isinstance(key, str)]
    if odd:
        raise UsageError(f"config {path}: setting {excerpt(odd[0])} is not a name")
    config = {key.replace("-", "_"): value for key, value in config.items()}
    actions = {action.dest: action for action in create_parser()._actions}
    unknown = sorted(set(config) - set(actions) - {"help", "config"})
    if unknown:
        raise UsageError(f"config {path}: unknown settings {', '.join(unknown)}")
    if isinstance(config.get("splits"), dict):
        config["splits"] = ",".join(f"{name}={value}" for name, value in config["splits"].items())
    for key, value in config.items():
        _check_setting(path, key, value, actions[key])
    base = os.path.dirname(os.path.abspath(path)) if is_local(path) else None
    for key in _PATH_KEYS:
        value = config.get(key)
        if base and isinstance(value, str) and is_local(value) and not os.path.isabs(value):
            config[key] = os.path.normpath(os.path.join(base, value))
    flags = []
    for name, value in beam_options.items():
        if isinstance(value, bool):
            flags.append(f"--{name}" if value else f"--no{name}")
        else:
            flags.append(f"--{name}={value}")
    return config, flags


def _check_setting(path: str, key: str, value: object, action: argparse.Action) -> None:
    """A config value of the kind its flag takes: on/off flags true or false, counts,
    limits and rates numbers (checked further where they are used), anything else text."""
    if value is None:
        return
    if isinstance(action, argparse._StoreTrueAction):
        kind, fits = "true or false", isinstance(value, bool)
    elif action.type in (int, float):
        number = isinstance(value, (int, float, str)) and not isinstance(value, bool)
        kind, fits = "a number", number
    else:
        kind, fits = "text", isinstance(value, str)
    if not fits:
        raise UsageError(f"config {path}: {key} must be {kind}, not {excerpt(value)}")


def check_output_folder(output: str, summary: str) -> dict[str, dict]:
    """The files an earlier odrecords output in `output` lists, with their sizes and sha256s
    (see `transforms.builds.outputs`), read from its `summary` file (`manifest.json`,
    `export.json`). Refuses a path that is a file, and any other non-empty folder (a folder
    whose summary odrecords did not write included): that is more likely a typo than a
    place to write into, and nothing in it may be replaced."""
    if is_local(output):
        if os.path.exists(output) and not os.path.isdir(output):
            raise UsageError(f"--output {output} is a file, not a folder")
        if not os.path.isdir(output) or not os.listdir(output):
            return {}
    path = FileSystems.join(output, summary)
    if FileSystems.exists(path):
        try:
            return listed_files(read_summary(path))
        except NotOurOutput as error:
            raise UsageError(
                f"output folder {output} holds a {summary} that is not an earlier odrecords "
                f"output ({error}); choose an empty or new folder"
            ) from None
    if is_local(output):
        raise UsageError(
            f"output folder {output} is not empty and holds no odrecords output; "
            "choose an empty or new folder"
        )
    return {}


def previous_build(output: str, finish: bool = True) -> PreviousBuild | None:
    """The published build in `output` that a new build follows (see `transforms.builds.layout`),
    once the publication an interrupted run may have begun there is finished. Refuses a path
    that is a file, and a non-empty folder that holds no odrecords output or one changed
    since: more likely a typo than a place to write into, and nothing in it may be replaced.
    A folder holding only unfinished builds is odrecords' own. Without `finish` (a dry run,
    which writes nothing) such a publication is left for the next build to finish."""
    if is_local(output) and os.path.exists(output) and not os.path.isdir(output):
        raise UsageError(f"--output {output} is a file, not a folder")
    try:
        check_create_output(output)
        for build_id in finish_publications(output, written_by_create) if finish else ():
            print(f"odrecords create: finished publishing build {build_id}", file=sys.stderr)
    except UnsafeWrite as error:
        raise UsageError(
            f"output folder {output}: {error}; remove it or choose another folder"
        ) from None
    except OSError as error:
        raise unwritable(output, error) from None
    try:
        previous = find_previous(output)
    except NotOurOutput as error:
        raise UsageError(
            f"output folder {output} holds an output odrecords did not write, or one changed "
            f"since ({error}); choose an empty or new folder"
        ) from None
    if previous is None and is_local(output) and os.path.isdir(output):
        if set(os.listdir(output)) - {BUILDS, VERSIONS}:
            raise UsageError(
                f"output folder {output} is not empty and holds no odrecords output; "
                "choose an empty or new folder"
            )
    return previous


def _count(values: dict, key: str) -> int | None:
    """A count of findings tolerated, a whole number >= 0, or None when not given."""
    value = values.get(key)
    if value is None:
        return None
    with contextlib.suppress(TypeError, ValueError, OverflowError):
        if not isinstance(value, bool) and float(value) == int(value) and int(value) >= 0:
            return int(value)
    raise UsageError(f"--{key.replace('_', '-')} must be a whole number >= 0, not {excerpt(value)}")


def _share(values: dict, key: str) -> float | None:
    """A share from 0 to 1 (`--max-error-rate`, `--max-rejected-objects`), or None when not
    given."""
    value = values.get(key)
    if value is None:
        return None
    with contextlib.suppress(TypeError, ValueError):
        share = float(value)
        if 0 <= share <= 1 and not isinstance(value, bool):
            return share
    raise UsageError(
        f"--{key.replace('_', '-')} must be a number from 0 to 1, not {excerpt(value)}"
    )


def thresholds(values: dict) -> Thresholds:
    """The checked thresholds of `--max-missing-classes`, `--max-rejected-objects` and
    `--max-leakage-pairs`, from flags or a config; raises UsageError."""
    missing = _count(values, "max_missing_classes")
    rejected = _share(values, "max_rejected_objects")
    leakage = _count(values, "max_leakage_pairs")
    given = {
        name
        for name, value in (
            ("missing_classes", missing),
            ("rejected_objects", rejected),
            ("leakage_pairs", leakage),
        )
        if value is not None
    }
    return Thresholds(
        missing_classes=missing or 0,
        rejected_objects=rejected or 0.0,
        leakage_pairs=leakage or 0,
        given=frozenset(given),
    )


def _layout(values: dict, output: str) -> Layout:
    """Where the build goes: `--versions` and `--keep-versions`."""
    versions = bool(values.get("versions"))
    if values.get("keep_versions") is not None and not versions:
        raise UsageError("--keep-versions needs --versions")
    keep = _limit(values, "keep_versions", DEFAULT_KEEP_VERSIONS)
    return Layout(output, new_build_id(), versions, keep if versions else 1)


def _reuse(values: dict) -> str:
    value = values.get("reuse") or STAT
    if value not in REUSE:
        raise UsageError(f"--reuse must be one of {', '.join(REUSE)}, not {excerpt(value)}")
    return value


def check_runner(flags: list[str]) -> None:
    """Refuses a `--runner` Beam cannot make, naming the runners it knows, rather than let
    the job fail with a traceback; making a runner starts nothing."""
    name = PipelineOptions(flags).view_as(StandardOptions).runner
    if not name:
        return
    try:
        create_runner(name)
    except ImportError as error:
        raise UsageError(f"--runner {name} is not available here: {error}") from None
    except Exception:  # Beam raises ValueError, or anything a named class raises.
        known = StandardOptions.KNOWN_RUNNER_NAMES
        by_lower = {runner.lower(): runner for runner in known}
        close = difflib.get_close_matches(name.lower(), by_lower, n=1, cutoff=0.75)
        close = close or difflib.get_close_matches(f"{name}runner".lower(), by_lower, 1, 0.75)
        hint = f"did you mean {by_lower[close[0]]}? " if close else ""
        raise UsageError(
            f"unknown --runner {excerpt(name)}; {hint}Beam knows {', '.join(known)}"
        ) from None


def check_beam_flags(flags: list[str]) -> None:
    """Refuses flags that neither odrecords nor Beam knows: Beam would only log and ignore
    them, and a mistyped `--num_shards` would silently write the default shard count. Then
    checks the runner."""
    # Runner option classes register their flags when their modules are imported.
    import apache_beam.runners.portability.flink_runner  # noqa: F401
    import apache_beam.runners.portability.spark_runner  # noqa: F401

    parsers: list[argparse.ArgumentParser] = []
    PipelineOptions(flags).get_all_options(add_extra_args_fn=parsers.append)
    _, unknown = parsers[0].parse_known_args(flags)
    for flag in unknown:
        if flag.startswith("-"):
            name = flag.split("=", 1)[0]
            known = [
                o
                for p in (parsers[0], create_parser())
                for a in p._actions
                for o in a.option_strings
            ]
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise UsageError(f"unknown option {name}{hint}")
        raise UsageError(f"unexpected argument {flag!r}")
    check_runner(flags)


def _read_option_file(values: dict, key: str, read):
    path = values.get(key)
    if not path:
        return None
    try:
        return read(path)
    except (OSError, ValueError) as error:
        raise UsageError(f"--{key.replace('_', '-')} {path}: {error}") from None


_ARCHIVES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".7z", ".rar")


def _refuse_archive(flag: str, path: str) -> None:
    """Annotations or images given as an archive (a Roboflow or Kaggle download) are refused
    in one line: nothing is read from inside archives, and without this the job would read
    the zip as a broken annotation file and end with nothing written."""
    if is_local(path) and os.path.isdir(path):
        return
    name = path.rstrip("/").lower()
    for suffix in _ARCHIVES:
        if name.endswith(suffix):
            verb = "unzip" if suffix == ".zip" else "unpack"
            raise UsageError(f"{flag} {path} is a {suffix} archive: {verb} it first")


def _limit(values: dict, key: str, default: int) -> int:
    """A shard count or image limit: a whole number >= 1, from a flag or the config. 0 is
    refused rather than read as "the default" or "no limit": either would be a guess."""
    value = values.get(key)
    if value is None:
        return default
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UsageError(f"--{key.replace('_', '-')} must be a whole number >= 1, not {value!r}")
    return value


def _exif_orientation(values: dict) -> str:
    """`--exif-orientation`, from a flag or the config; checked here rather than by argparse
    so a config's value is checked alike."""
    value = values.get("exif_orientation", AUTO)
    if value not in OPTIONS:
        raise UsageError(f"--exif-orientation must be one of {', '.join(OPTIONS)}, not {value!r}")
    return value


def _duplicates(values: dict, splits: dict[str, float] | None) -> str:
    """The duplicates policy. Keeping duplicates in one split needs splits odrecords chooses:
    the source's own splits (`--splits source`) are what the source says, and are reported."""
    policy = values.get("duplicates") or REPORT
    if policy not in POLICIES:
        raise UsageError(f"--duplicates must be one of {', '.join(POLICIES)}, not {policy!r}")
    if policy == SAME_SPLIT and splits is None:
        raise UsageError(
            f"--duplicates {SAME_SPLIT} needs split fractions: with --splits source the splits "
            "are the source's own, and duplicates across them are only reported"
        )
    return policy


def _dry_run_and_checks(values: dict) -> tuple[str | None, bool, Thresholds]:
    """`--dry-run`, `--strict` and the thresholds `--strict` applies, which mean nothing
    without it; a dry run writes no build to check, nor submits one."""
    dry_run = values.get("dry_run")
    if dry_run is not None and dry_run not in DRY_RUNS:
        raise UsageError(f"--dry-run must be one of {', '.join(DRY_RUNS)}, not {excerpt(dry_run)}")
    strict = bool(values.get("strict"))
    checks = thresholds(values)
    if checks.given and not strict:
        flag = f"--max-{sorted(checks.given)[0].replace('_', '-')}"
        raise UsageError(f"{flag} needs --strict (or odrecords validate OUTPUT {flag} ...)")
    if dry_run is not None:
        for flag, given in (("--strict", strict), ("--detach", values.get("detach"))):
            if given:
                raise UsageError(f"--dry-run writes and submits nothing: drop {flag}")
    return dry_run, strict, checks


def parse_create_args(argv: Sequence[str]) -> tuple[CreateSettings, list[str]]:
    """Returns the checked settings and the remaining flags, which are Beam options."""
    args, beam_args = create_parser().parse_known_args(argv)
    values, config_flags = _load_config(args.config) if args.config else ({}, [])
    use_filesystem_options(config_flags + list(beam_args))
    for key, value in vars(args).items():
        if value is not None and key != "config":
            values[key] = value
    for key in ("format", "annotations", "output"):
        if not values.get(key):
            hint = misspelled([f"--{key}"], beam_args)
            raise UsageError(f"--{key} is required (as a flag or in the config){hint}")
    for key in _PATH_KEYS:  # Workers may run elsewhere than the launcher's folder.
        if isinstance(values.get(key), str) and is_local(values[key]):
            values[key] = os.path.abspath(values[key])
    fmt, annotations, output = values["format"], values["annotations"], values["output"]
    _refuse_archive("--annotations", annotations)
    if values.get("images"):
        _refuse_archive("--images", values["images"])
    if fmt == "auto":
        try:
            fmt = detect_format(annotations)
        except (OSError, ValueError) as error:
            raise UsageError(f"--format auto: {error}") from None
        print(f"odrecords create: detected format {fmt}", file=sys.stderr)
    known = formats()
    if fmt not in known:
        raise UsageError(f"unknown format {fmt!r}; choose one of {', '.join(known)}, auto")
    images = values.get("images")
    if images and is_local(images) and not os.path.isdir(images):
        raise UsageError(f"images folder {images} does not exist")
    split_spec = str(values.get("splits") or DEFAULT_SPLITS)
    splits = None
    if split_spec != "source":
        try:
            splits = parse_splits(split_spec)
        except ValueError as error:
            raise UsageError(f"--splits: {error}") from None
    request = Request(
        annotations=annotations,
        images=images,
        classes_file=values.get("classes"),
        class_names=_read_option_file(values, "classes", read_names) or (),
        source_splits=splits is None,
        extras=Extras(
            masks=bool(values.get("include_masks")),
            keypoints=bool(values.get("include_keypoints")),
        ),
        class_attribute=values.get("class_attribute") or "",
    )
    if request.class_attribute and fmt not in ("cvat", "via"):
        raise UsageError(f"--class-attribute is read by --format cvat and via only, not {fmt}")
    try:
        source = known[fmt].find(request)
    except (OSError, UnusableSource) as error:
        raise UsageError(str(error)) from None
    for notice in source.notices:
        print(f"odrecords create: {notice}", file=sys.stderr)
    duplicates = _duplicates(values, splits)
    dry_run, strict, checks = _dry_run_and_checks(values)
    num_shards = None if values.get("num_shards") is None else _limit(values, "num_shards", 1)
    label_map_path = values.get("label_map")
    label_map = None
    if label_map_path:
        try:
            label_map = read_label_map(label_map_path)
        except (OSError, LabelMapError) as error:
            raise UsageError(f"label map {label_map_path}: {error}") from None
    settings = CreateSettings(
        format=known[fmt],
        annotations=annotations,
        source=source,
        output=output,
        splits=splits,
        split_names=tuple(splits) if splits else source.split_names,
        num_shards=num_shards,
        processes=None if values.get("processes") is None else _limit(values, "processes", 1),
        max_image_bytes=_limit(values, "max_image_bytes", DEFAULT_MAX_IMAGE_BYTES),
        max_image_pixels=_limit(values, "max_image_pixels", DEFAULT_MAX_IMAGE_PIXELS),
        label_map_path=label_map_path,
        label_map=label_map,
        keep_empty_classes=bool(values.get("keep_empty_classes")),
        duplicates=duplicates,
        detach=bool(values.get("detach")),
        class_map=_read_option_file(values, "class_map", load_class_map),
        exif_orientation=_exif_orientation(values),
        layout=_layout(values, output),
        previous=previous_build(output, finish=dry_run is None),
        max_error_rate=_share(values, "max_error_rate"),
        reuse=_reuse(values),
        dry_run=dry_run,
        strict=strict,
        checks=checks,
    )
    flags = config_flags + list(beam_args)
    check_beam_flags(flags)
    return settings, flags
