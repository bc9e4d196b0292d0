"""Flags and YAML configs of `odrecords create`, checked before any pipeline is built.

Everything that makes the job itself impossible (a missing folder, an unreadable label map, an
unknown format, bad split fractions) is reported here as one `UsageError` line; problems in the
data are never reported here, they become error records.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import yaml
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from transforms.images import DEFAULT_MAX_IMAGE_BYTES, DEFAULT_MAX_IMAGE_PIXELS
from transforms.label_map import LabelMapError, read_label_map
from transforms.read_annotations import FORMATS
from transforms.report import MANIFEST
from transforms.splits import parse_splits

# Ten shards per split: enough files for the TF OD API's parallel, interleaved reads and
# file-level shuffling, few enough that a small dataset is not scattered over many files.
# For large datasets aim at 100-200 MB per shard.
DEFAULT_NUM_SHARDS = 10
DEFAULT_SPLITS = "train=1"
_PATH_KEYS = ("annotations", "images", "output", "label_map")


class UsageError(Exception):
    """Arguments the job cannot run with; the message is printed as one line."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        raise UsageError(message)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="odrecords create",
        description="Convert an object-detection dataset into sharded TFRecords. Flags not "
        "listed here are Beam pipeline options (--runner, --temp_location, ...).",
        allow_abbrev=False,
    )
    parser.add_argument("--config", help="YAML file with these settings; flags override it")
    parser.add_argument("--format", help=f"annotation format: {', '.join(FORMATS)}")
    parser.add_argument("--annotations", help="annotation file, folder or glob")
    parser.add_argument("--images", help="root folder that image names resolve against")
    parser.add_argument("--output", help="output folder")
    parser.add_argument("--label-map", dest="label_map", help="existing label_map.pbtxt")
    parser.add_argument("--splits", help=f"NAME=FRACTION,... (default {DEFAULT_SPLITS})")
    parser.add_argument(
        "--num-shards", dest="num_shards", type=int, help=f"shards per split ({DEFAULT_NUM_SHARDS})"
    )
    parser.add_argument("--max-image-bytes", dest="max_image_bytes", type=int)
    parser.add_argument("--max-image-pixels", dest="max_image_pixels", type=int)
    return parser


@dataclass
class CreateSettings:
    """Checked settings of one create job."""

    format: str
    annotations: str
    pattern: str
    images: str
    output: str
    splits: dict[str, float]
    num_shards: int
    max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
    label_map_path: str | None = None
    label_map: dict[str, int] | None = None
    previous_files: list[str] = field(default_factory=list)

    def clear_previous_manifest(self) -> None:
        """Removes an earlier run's manifest first: while the new output is being written, the
        folder has no manifest, so nothing mistakes a half-replaced dataset for a whole one."""
        path = FileSystems.join(self.output, MANIFEST)
        if FileSystems.exists(path):
            FileSystems.delete([path])


def _is_local(path: str) -> bool:
    return FileSystems.get_scheme(path) is None


def _load_config(path: str) -> tuple[dict, list[str]]:
    """Reads a YAML config: settings (local paths made relative to the config's folder, so a
    scheduled job finds them from any working directory) and Beam flags."""
    try:
        with FileSystems.open(path) as handle:
            config = yaml.safe_load(handle.read()) or {}
    except (OSError, yaml.YAMLError) as error:
        raise UsageError(f"cannot read config {path}: {error}") from None
    if not isinstance(config, dict):
        raise UsageError(f"config {path} is not a mapping of settings")
    beam_options = config.pop("pipeline_options", None) or {}
    if not isinstance(beam_options, dict):
        raise UsageError(f"config {path}: pipeline_options must be a mapping")
    config = {key.replace("-", "_"): value for key, value in config.items()}
    known = {action.dest for action in _parser()._actions} - {"help", "config"}
    unknown = sorted(set(config) - known)
    if unknown:
        raise UsageError(f"config {path}: unknown settings {', '.join(unknown)}")
    if isinstance(config.get("splits"), dict):
        config["splits"] = ",".join(f"{name}={value}" for name, value in config["splits"].items())
    base = os.path.dirname(os.path.abspath(path)) if _is_local(path) else None
    for key in _PATH_KEYS:
        value = config.get(key)
        if base and isinstance(value, str) and _is_local(value) and not os.path.isabs(value):
            config[key] = os.path.normpath(os.path.join(base, value))
    flags = []
    for name, value in beam_options.items():
        if isinstance(value, bool):
            flags.append(f"--{name}" if value else f"--no{name}")
        else:
            flags.append(f"--{name}={value}")
    return config, flags


def _pattern(fmt: str, annotations: str) -> str:
    """A folder means every file of the format's extension directly inside it."""
    extension = FORMATS[fmt][1]
    if (_is_local(annotations) and os.path.isdir(annotations)) or annotations.endswith("/"):
        return FileSystems.join(annotations, f"*.{extension}")
    return annotations


def _previous_files(output: str) -> list[str]:
    """Shard files listed by an earlier run's manifest in `output`; refuses any other
    non-empty folder, which is more likely a typo than a place to write a dataset into."""
    manifest = FileSystems.join(output, MANIFEST)
    if FileSystems.exists(manifest):
        try:
            with FileSystems.open(manifest) as handle:
                splits = json.load(handle)["splits"]
            return sorted(f for split in splits.values() for f in split["files"])
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise UsageError(f"cannot read the earlier run's {manifest}: {error}") from None
    if _is_local(output) and os.path.isdir(output) and os.listdir(output):
        raise UsageError(
            f"output folder {output} is not empty and holds no odrecords output; "
            "choose an empty or new folder"
        )
    return []


def _check_beam_flags(flags: list[str]) -> None:
    """Refuses flags that neither odrecords nor Beam knows: Beam would only log and ignore
    them, and a mistyped `--num_shards` would silently write the default shard count."""
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
                o for p in (parsers[0], _parser()) for a in p._actions for o in a.option_strings
            ]
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise UsageError(f"unknown option {name}{hint}")
        raise UsageError(f"unexpected argument {flag!r}")


def parse_create_args(argv: Sequence[str]) -> tuple[CreateSettings, list[str]]:
    """Returns the checked settings and the remaining flags, which are Beam options."""
    args, beam_args = _parser().parse_known_args(argv)
    values, config_flags = _load_config(args.config) if args.config else ({}, [])
    for key, value in vars(args).items():
        if value is not None and key != "config":
            values[key] = value
    for key in ("format", "annotations", "images", "output"):
        if not values.get(key):
            raise UsageError(f"--{key} is required (as a flag or in the config)")
    fmt = values["format"]
    if fmt not in FORMATS:
        raise UsageError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    annotations, images, output = values["annotations"], values["images"], values["output"]
    pattern = _pattern(fmt, annotations)
    try:
        if not FileSystems.match([pattern])[0].metadata_list:
            raise UsageError(f"no annotation files match {pattern}")
    except UsageError:
        raise
    except Exception as error:
        raise UsageError(f"cannot list annotations {pattern}: {error}") from None
    if _is_local(images) and not os.path.isdir(images):
        raise UsageError(f"images folder {images} does not exist")
    try:
        splits = parse_splits(str(values.get("splits") or DEFAULT_SPLITS))
    except ValueError as error:
        raise UsageError(f"--splits: {error}") from None
    num_shards = int(values.get("num_shards", DEFAULT_NUM_SHARDS))
    if num_shards < 1:
        raise UsageError("--num-shards must be at least 1")
    label_map_path = values.get("label_map")
    label_map = None
    if label_map_path:
        try:
            label_map = read_label_map(label_map_path)
        except (OSError, LabelMapError) as error:
            raise UsageError(f"label map {label_map_path}: {error}") from None
    settings = CreateSettings(
        format=fmt,
        annotations=annotations,
        pattern=pattern,
        images=images,
        output=output,
        splits=splits,
        num_shards=num_shards,
        max_image_bytes=int(values.get("max_image_bytes") or DEFAULT_MAX_IMAGE_BYTES),
        max_image_pixels=int(values.get("max_image_pixels") or DEFAULT_MAX_IMAGE_PIXELS),
        label_map_path=label_map_path,
        label_map=label_map,
        previous_files=_previous_files(output),
    )
    flags = config_flags + list(beam_args)
    _check_beam_flags(flags)
    return settings, flags
