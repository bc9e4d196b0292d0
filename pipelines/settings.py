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
import posixpath
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

import yaml
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from transforms.images import DEFAULT_MAX_IMAGE_BYTES, DEFAULT_MAX_IMAGE_PIXELS
from transforms.label_map import LabelMapError, read_label_map
from transforms.readers.base import ReaderOptions
from transforms.readers.class_map import load_class_map
from transforms.readers.coco import split_name
from transforms.readers.detect import detect_format
from transforms.readers.read_annotations import FOLDER_GLOBS
from transforms.readers.yolo import YoloDataset, load_dataset, read_names
from transforms.report import MANIFEST
from transforms.splits import parse_splits

# Ten shards per split: enough files for the TF OD API's parallel, interleaved reads and
# file-level shuffling, few enough that a small dataset is not scattered over many files.
# For large datasets aim at 100-200 MB per shard.
DEFAULT_NUM_SHARDS = 10
DEFAULT_SPLITS = "train=1"
_PATH_KEYS = ("annotations", "images", "output", "label_map", "classes", "class_map")


class UsageError(Exception):
    """Arguments the job cannot run with; the message is printed as one line."""


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are UsageErrors (one line, exit code 2), and whose
    `--two-words` flags also answer to `--two_words`, the spelling of Beam's own options and
    of Dataflow template parameters."""

    def error(self, message: str):
        raise UsageError(message)

    def add_argument(self, *names, **options):
        aliases = [
            "--" + n[2:].replace("-", "_") for n in names if n.startswith("--") and "-" in n[2:]
        ]
        return super().add_argument(*names, *aliases, **options)


# The runner used when none is given: Beam's in-process FnApiRunner. Beam's `DirectRunner`
# first tries to download and start the Prism runner, which needs the network.
DEFAULT_RUNNER = "FnApiRunner"


def use_filesystem_options(beam_args: Sequence[str]) -> None:
    """Lets the launcher's own checks reach remote storage (S3 endpoint and credentials, GCP
    project, ...) with the same options the pipeline will get."""
    FileSystems.set_options(PipelineOptions(list(beam_args)))


def is_local(options: PipelineOptions) -> bool:
    """Whether the runner runs the workers in this process (or on this machine)."""
    runner = options.view_as(StandardOptions).runner or DEFAULT_RUNNER
    return runner.split(".")[-1] in StandardOptions.LOCAL_RUNNERS


def pipeline_options(beam_args: Sequence[str]) -> PipelineOptions:
    """Beam options from the flags odrecords does not use, with the local default runner."""
    options = PipelineOptions(list(beam_args))
    standard = options.view_as(StandardOptions)
    standard.runner = standard.runner or DEFAULT_RUNNER
    return options


def _parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="odrecords create",
        description="Convert an object-detection dataset into sharded TFRecords. Flags not "
        "listed here are Beam pipeline options (--runner, --temp_location, ...).",
        allow_abbrev=False,
    )
    parser.add_argument("--config", help="YAML file with these settings; flags override it")
    parser.add_argument("--format", help=f"annotation format: {', '.join(FOLDER_GLOBS)} or auto")
    parser.add_argument("--annotations", help="annotation file, folder or glob")
    parser.add_argument(
        "--images",
        help="root folder that image names resolve against (default: the annotations' folder)",
    )
    parser.add_argument("--output", help="output folder")
    parser.add_argument("--label-map", dest="label_map", help="existing label_map.pbtxt")
    parser.add_argument(
        "--splits", help=f"NAME=FRACTION,... or 'source' (default {DEFAULT_SPLITS})"
    )
    parser.add_argument(
        "--num-shards", dest="num_shards", type=int, help=f"shards per split ({DEFAULT_NUM_SHARDS})"
    )
    parser.add_argument("--max-image-bytes", dest="max_image_bytes", type=int)
    parser.add_argument("--max-image-pixels", dest="max_image_pixels", type=int)
    parser.add_argument("--classes", help="class names, one per line (YOLO formats)")
    parser.add_argument("--class-map", dest="class_map", help="YAML: old name → new name or null")
    for flag, text in [
        ("--detach", "submit the job to a remote runner and exit without waiting"),
        ("--include-masks", "write instance masks (COCO, LabelMe, Labelbox polygons)"),
        ("--include-keypoints", "write COCO keypoints"),
        ("--keep-empty-classes", "keep declared classes without objects in the label map"),
    ]:
        parser.add_argument(flag, action="store_true", default=None, help=text)
    return parser


@dataclass
class CreateSettings:
    """Checked settings of one create job."""

    format: str
    annotations: str
    pattern: str
    output: str
    splits: dict[str, float] | None  # None: the source's own splits, named in split_names.
    split_names: list[str]
    num_shards: int
    reader: ReaderOptions
    max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
    label_map_path: str | None = None
    label_map: dict[str, int] | None = None
    keep_empty_classes: bool = False
    detach: bool = False
    class_map: dict[str, str | None] | None = None
    yolo_dataset: YoloDataset | None = None
    voc_split_files: tuple[tuple[str, str], ...] = ()
    previous_files: list[str] = field(default_factory=list)

    @property
    def images(self) -> str:
        return self.reader.images

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


def _is_folder(path: str) -> bool:
    return (_is_local(path) and os.path.isdir(path)) or path.endswith("/")


def _pattern(fmt: str, annotations: str) -> str:
    """A folder means every file of the format directly inside it."""
    glob = FOLDER_GLOBS[fmt]
    if glob and _is_folder(annotations):
        return FileSystems.join(annotations, glob)
    return annotations


def _default_images(annotations: str, yolo: YoloDataset | None) -> str:
    """Without --images, image names resolve against the folder the annotations are in."""
    if yolo is not None:
        return yolo.root
    if _is_folder(annotations):
        return annotations.rstrip("/") or "/"
    folder = posixpath.dirname(annotations.split("*", 1)[0])
    return folder or "."


def _voc_split_files(annotations: str) -> tuple[tuple[str, str], ...]:
    """VOC's `ImageSets/Main/{train,val,test}.txt` beside the annotations folder."""
    base = posixpath.dirname(annotations.rstrip("/").split("*", 1)[0].rstrip("/"))
    main = FileSystems.join(base, "ImageSets", "Main")
    files = tuple(
        (split, FileSystems.join(main, f"{split}.txt"))
        for split in ("train", "val", "test")
        if FileSystems.exists(FileSystems.join(main, f"{split}.txt"))
    )
    if not files:
        raise UsageError(f"--splits source: no train.txt, val.txt or test.txt in {main}")
    return files


def _source_split_names(fmt: str, pattern: str, yolo: YoloDataset | None, voc_files) -> list[str]:
    if fmt == "coco":
        return sorted({split_name(m.path) for m in FileSystems.match([pattern])[0].metadata_list})
    if fmt == "yolo" and yolo is not None and all(split for split, _ in yolo.sources):
        return list(dict.fromkeys(split for split, _ in yolo.sources))
    if fmt == "voc":
        return [split for split, _ in voc_files]
    raise UsageError(
        f"--splits source: these {fmt} annotations carry no splits; give fractions instead"
    )


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


def check_beam_flags(flags: list[str]) -> None:
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


def _read_option_file(values: dict, key: str, read):
    path = values.get(key)
    if not path:
        return None
    try:
        return read(path)
    except (OSError, ValueError) as error:
        raise UsageError(f"--{key.replace('_', '-')} {path}: {error}") from None


def parse_create_args(argv: Sequence[str]) -> tuple[CreateSettings, list[str]]:
    """Returns the checked settings and the remaining flags, which are Beam options."""
    args, beam_args = _parser().parse_known_args(argv)
    values, config_flags = _load_config(args.config) if args.config else ({}, [])
    use_filesystem_options(config_flags + list(beam_args))
    for key, value in vars(args).items():
        if value is not None and key != "config":
            values[key] = value
    for key in ("format", "annotations", "output"):
        if not values.get(key):
            raise UsageError(f"--{key} is required (as a flag or in the config)")
    for key in _PATH_KEYS:  # Workers may run elsewhere than the launcher's folder.
        if isinstance(values.get(key), str) and _is_local(values[key]):
            values[key] = os.path.abspath(values[key])
    fmt, annotations, output = values["format"], values["annotations"], values["output"]
    if fmt == "auto":
        try:
            fmt = detect_format(annotations)
        except (OSError, ValueError) as error:
            raise UsageError(f"--format auto: {error}") from None
        print(f"odrecords create: detected format {fmt}", file=sys.stderr)
    if fmt not in FOLDER_GLOBS:
        raise UsageError(f"unknown format {fmt!r}; choose one of {', '.join(FOLDER_GLOBS)}, auto")
    class_names = _read_option_file(values, "classes", read_names) or ()
    yolo = None
    if fmt == "yolo":
        try:
            yolo = load_dataset(annotations.rstrip("/"), values.get("classes"))
        except (OSError, ValueError) as error:
            raise UsageError(f"YOLO dataset {annotations}: {error}") from None
    if fmt == "yolo-keras" and not class_names:
        raise UsageError("--format yolo-keras needs --classes FILE (keras-yolo3's classes file)")
    pattern = _pattern(fmt, annotations)
    if fmt != "yolo":
        try:
            if not FileSystems.match([pattern])[0].metadata_list:
                raise UsageError(f"no annotation files match {pattern}")
        except UsageError:
            raise
        except Exception as error:
            raise UsageError(f"cannot list annotations {pattern}: {error}") from None
    images = values.get("images") or _default_images(annotations, yolo)
    if _is_local(images) and not os.path.isdir(images):
        raise UsageError(f"images folder {images} does not exist")
    split_spec = str(values.get("splits") or DEFAULT_SPLITS)
    voc_files: tuple[tuple[str, str], ...] = ()
    if split_spec == "source":
        if fmt == "voc":
            voc_files = _voc_split_files(annotations)
        splits = None
        split_names = _source_split_names(fmt, pattern, yolo, voc_files)
    else:
        try:
            splits = parse_splits(split_spec)
        except ValueError as error:
            raise UsageError(f"--splits: {error}") from None
        split_names = list(splits)
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
        output=output,
        splits=splits,
        split_names=split_names,
        num_shards=num_shards,
        reader=ReaderOptions(
            images=images,
            include_masks=bool(values.get("include_masks")),
            include_keypoints=bool(values.get("include_keypoints")),
            source_splits=splits is None,
            class_names=tuple(yolo.names if yolo else class_names),
        ),
        max_image_bytes=int(values.get("max_image_bytes") or DEFAULT_MAX_IMAGE_BYTES),
        max_image_pixels=int(values.get("max_image_pixels") or DEFAULT_MAX_IMAGE_PIXELS),
        label_map_path=label_map_path,
        label_map=label_map,
        keep_empty_classes=bool(values.get("keep_empty_classes")),
        detach=bool(values.get("detach")),
        class_map=_read_option_file(values, "class_map", load_class_map),
        yolo_dataset=yolo,
        voc_split_files=voc_files,
        previous_files=_previous_files(output),
    )
    flags = config_flags + list(beam_args)
    check_beam_flags(flags)
    return settings, flags
