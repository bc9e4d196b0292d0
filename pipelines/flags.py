"""The flags of every `odrecords` command, built without Beam or TensorFlow.

Importing either costs seconds and hundreds of MB; keeping the parsers here (with only
argparse and cheap constants) lets `odrecords COMMAND --help` and the usage errors argparse
finds answer at once, before `pipelines.cli` imports the command itself.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Sequence

from transforms.choices import (
    AUTO,
    DEFAULT_KEEP_VERSIONS,
    DEFAULT_MAX_IMAGE_BYTES,
    DEFAULT_MAX_IMAGE_PIXELS,
    OPTIONS,
    PARALLEL_SHARD_IMAGES,
    PARALLEL_SHARDS,
    POLICIES,
    POOL_MIN_IMAGES,
    REPORT,
    REUSE,
    SAME_SPLIT,
    STAT,
    TARGET_SHARD_BYTES,
)
from transforms.readers import FORMAT_NAMES

DEFAULT_SPLITS = "train=1"
EXPORT_FORMATS = ("coco", "voc", "csv", "yolo", "cvat", "labelstudio")
# What `create --dry-run` checks of each image: that its file is found (a regular file inside
# the images root, within the size limit), or that it also loads and converts as in a build.
DRY_RUN_FILES = "files"
DRY_RUN_DECODE = "decode"
DRY_RUNS = (DRY_RUN_FILES, DRY_RUN_DECODE)
# The shells `odrecords completion` writes scripts for (the ones shtab knows).
SHELLS = ("bash", "zsh", "tcsh")


class UsageError(Exception):
    """Arguments the job cannot run with; the message is printed as one line."""


def misspelled(wanted: Sequence[str], given: Sequence[str]) -> str:
    """ "; did you mean --annotations (not --anotations)?" when a flag in `given` is not one of
    `wanted` but close to one, else "": a misspelled flag makes its right spelling missing."""
    names = {arg.split("=", 1)[0] for arg in given if arg.startswith("--")} - set(wanted)
    for name in sorted(names):
        close = difflib.get_close_matches(name, wanted, n=1, cutoff=0.8)
        if close:
            return f"; did you mean {close[0]} (not {name})?"
    return ""


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are UsageErrors (one line, exit code 2), naming the
    flag a misspelled one was meant to be, and whose `--two-words` flags also answer to
    `--two_words`, the spelling of Beam's own options and of Dataflow template parameters."""

    _given: Sequence[str] = ()

    def parse_known_args(self, args=None, namespace=None):
        self._given = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(args, namespace)

    def error(self, message: str):
        known = [name for action in self._actions for name in action.option_strings]
        raise UsageError(message + misspelled(known, self._given))

    def add_argument(self, *names, **options):
        aliases = [
            "--" + n[2:].replace("-", "_") for n in names if n.startswith("--") and "-" in n[2:]
        ]
        return super().add_argument(*names, *aliases, **options)


def add_check_flags(parser: Parser) -> None:
    """The thresholds of `odrecords validate`, which `create --strict` applies to its build.
    Each defaults to none at all: a check passes only a clean output unless told what to
    tolerate."""
    parser.add_argument(
        "--max-missing-classes",
        dest="max_missing_classes",
        type=int,
        help="fail when more classes of the label map are missing from a split, counted over "
        "the splits (default 0; read from stats.json)",
    )
    parser.add_argument(
        "--max-rejected-objects",
        dest="max_rejected_objects",
        type=float,
        help="fail when a larger share of the objects read was rejected; 0 to 1 (default 0)",
    )
    parser.add_argument(
        "--max-leakage-pairs",
        dest="max_leakage_pairs",
        type=int,
        help="fail when more pairs of images in different splits are the same image: one "
        "the source lists in several splits, or exact and near duplicates (default 0)",
    )


def create_parser() -> Parser:
    """The flags of `odrecords create`; any others are Beam pipeline options."""
    parser = Parser(
        prog="odrecords create",
        description="Convert an object-detection dataset into sharded TFRecords. Flags not "
        "listed here are Beam pipeline options (--runner, --temp_location, ...).",
        allow_abbrev=False,
    )
    parser.add_argument("--config", help="YAML file with these settings; flags override it")
    parser.add_argument("--format", help=f"annotation format: {', '.join(FORMAT_NAMES)} or auto")
    parser.add_argument("--annotations", help="annotation file, folder or glob")
    parser.add_argument(
        "--images",
        help="root folder that image names resolve against (default: images are looked for "
        "beside the annotation file that names them)",
    )
    parser.add_argument("--output", help="output folder")
    parser.add_argument("--label-map", dest="label_map", help="existing label_map.pbtxt")
    parser.add_argument(
        "--splits", help=f"NAME=FRACTION,... or 'source' (default {DEFAULT_SPLITS})"
    )
    parser.add_argument(
        "--num-shards",
        dest="num_shards",
        type=int,
        help=f"shards per split (default: from each split's size, about "
        f"{TARGET_SHARD_BYTES >> 20} MiB a shard; a split of {POOL_MIN_IMAGES} images or more "
        f"in at least {POOL_MIN_IMAGES // PARALLEL_SHARD_IMAGES}, up to {PARALLEL_SHARDS}, for "
        "the processes that write them)",
    )
    parser.add_argument(
        "--processes",
        type=int,
        help="processes that write shards when the runner is local (default: one per core "
        f"this process may use, when there are {POOL_MIN_IMAGES} images or more; 1: the "
        "runner's own)",
    )
    parser.add_argument(
        "--max-image-bytes",
        dest="max_image_bytes",
        type=int,
        help=f"reject larger image files (default {DEFAULT_MAX_IMAGE_BYTES})",
    )
    parser.add_argument(
        "--max-image-pixels",
        dest="max_image_pixels",
        type=int,
        help="reject images with more pixels, checked from their header "
        f"(default {DEFAULT_MAX_IMAGE_PIXELS})",
    )
    parser.add_argument(
        "--exif-orientation",
        dest="exif_orientation",
        metavar="{" + ",".join(OPTIONS) + "}",
        help=f"the frame boxes on images with an EXIF orientation were drawn in (default {AUTO}: "
        "from the declared size where it tells, else the displayed image); the pixels written "
        "are made to match it",
    )
    parser.add_argument(
        "--duplicates",
        choices=POLICIES,
        help=f"{REPORT} (default): report exact and near-duplicate images across and within "
        f"splits; {SAME_SPLIT}: also put each group of duplicates in one split, chosen by "
        "their content",
    )
    parser.add_argument(
        "--keep-versions",
        dest="keep_versions",
        type=int,
        help=f"with --versions: the published versions kept (default {DEFAULT_KEEP_VERSIONS})",
    )
    parser.add_argument(
        "--max-error-rate",
        dest="max_error_rate",
        type=float,
        help="do not publish the new output, and exit 1, when a larger share of the input "
        "(images, and annotation records that could not be read) is rejected; 0 to 1",
    )
    parser.add_argument(
        "--reuse",
        choices=REUSE,
        help=f"copy the examples of images unchanged since the previous build instead of "
        f"converting them again; {STAT} (default): unchanged when the annotations and the image "
        "file's size and modification time are; content: when the image's sha256 is; off",
    )
    parser.add_argument(
        "--classes",
        help="class names, one per line (YOLO formats), or a classes CSV (Open Images' class "
        "descriptions, RetinaNet's class_name,id)",
    )
    parser.add_argument(
        "--class-attribute",
        dest="class_attribute",
        help="CVAT: take an object's class from this attribute's value (its label where it "
        "has none); VIA: the region attribute that names each region's class (default: the "
        "only one)",
    )
    parser.add_argument("--class-map", dest="class_map", help="YAML: old name → new name or null")
    parser.add_argument(
        "--dry-run",
        dest="dry_run",
        nargs="?",
        const=DRY_RUN_FILES,
        choices=DRY_RUNS,
        help=f"write nothing: read the annotations, check each image's file and print the "
        f"plan (splits, label map, errors); {DRY_RUN_FILES} (default): each file is found, a "
        f"regular file inside the images root; {DRY_RUN_DECODE}: each image is also decoded "
        "and converted as a build would. Reads in this process, whatever --runner says",
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        default=None,
        help="publish the build only when it passes the checks of odrecords validate (with "
        "its --max-* thresholds); when one fails, the published output is unchanged and the "
        "command exits 1",
    )
    add_check_flags(parser)
    for flag, text in [
        ("--detach", "submit the job to a remote runner and exit without waiting"),
        (
            "--versions",
            "write each build as a new version in OUTPUT/versions/ and publish it by rewriting "
            "the pointer OUTPUT/LATEST last (for scheduled rebuilds read while they run)",
        ),
        (
            "--include-masks",
            "write instance masks (COCO, LabelMe, Labelbox, CVAT, VIA, Label Studio polygons "
            "and brushes, YOLO-seg polygons)",
        ),
        ("--include-keypoints", "write COCO keypoints"),
        ("--keep-empty-classes", "keep declared classes without objects in the label map"),
    ]:
        parser.add_argument(flag, action="store_true", default=None, help=text)
    return parser


def export_parser() -> Parser:
    """The flags of `odrecords export`; any others are Beam pipeline options."""
    parser = Parser(
        prog="odrecords export",
        description="Turn TFRecords back into COCO, VOC, CSV, YOLO, CVAT or Label Studio "
        "annotations and images. Flags not listed here are Beam pipeline options.",
        allow_abbrev=False,
    )
    parser.add_argument("--input", action="append", required=True, help="GLOB, NAME=GLOB or DIR")
    parser.add_argument("--format", required=True, help=f"one of {', '.join(EXPORT_FORMATS)}")
    parser.add_argument("--output", required=True)
    parser.add_argument("--label-map", dest="label_map")
    return parser


def inspect_parser() -> Parser:
    """The arguments of `odrecords inspect`, which takes no Beam options."""
    parser = Parser(
        prog="odrecords inspect",
        description="`odrecords inspect`: what is inside TFRecord files, and what is wrong "
        "with them.",
    )
    parser.add_argument(
        "pattern", nargs="+", help="TFRecord files or globs, or the output folder of create"
    )
    parser.add_argument("--label-map", dest="label_map")
    parser.add_argument("--render", help="folder for contact sheets and a class histogram")
    parser.add_argument("--limit", type=int, default=16, help="examples to render (16)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    return parser


def report_parser() -> Parser:
    """The flags of `odrecords report`; any others are Beam pipeline options."""
    parser = Parser(
        prog="odrecords report",
        description="The dataset report of TFRecords: counts per split and class, sizes and "
        "places of boxes, unusual boxes, duplicate images and records that cannot be read, in "
        "OUTPUT/stats.json. Flags not listed here are Beam pipeline options (--name=value).",
        allow_abbrev=False,
    )
    parser.add_argument(
        "records",
        nargs="+",
        help="TFRecord files, globs, NAME=GLOB (NAME: the split) or odrecords output folders",
    )
    parser.add_argument("--output", required=True, help="the folder the report is written to")
    parser.add_argument("--label-map", dest="label_map", help="names classes and orders them")
    return parser


def latest_parser() -> Parser:
    """The arguments of `odrecords latest`; others are Beam's filesystem options (S3
    endpoint and credentials, GCP project)."""
    parser = Parser(
        prog="odrecords latest",
        description="The folder of the latest published version of an output `odrecords "
        "create --versions` writes (an output without versions: the folder itself), for "
        "training jobs to read: with --split, the glob of that split's shards. Flags not "
        "listed here are Beam's filesystem options (--s3_endpoint_url, --project, ...).",
    )
    parser.add_argument("output", help="the --output of odrecords create")
    parser.add_argument("--split", help="print the glob of this split's shards")
    return parser


def validate_parser() -> Parser:
    """The arguments of `odrecords validate`, which takes no Beam options but filesystem
    ones."""
    parser = Parser(
        prog="odrecords validate",
        description="Check an output of odrecords create for what a CI pipeline should stop "
        "on: classes missing from a split, rejected objects, the same image in several "
        "splits. Exits 1, naming the files involved, when a finding passes its threshold. "
        "Flags not listed here are Beam's filesystem options (--s3_endpoint_url, ...).",
        allow_abbrev=False,
    )
    parser.add_argument("output", help="the --output of odrecords create")
    add_check_flags(parser)
    return parser


def completion_parser() -> Parser:
    """The arguments of `odrecords completion`."""
    parser = Parser(
        prog="odrecords completion",
        description="Print the shell completion script of odrecords' commands and flags, "
        "to be sourced by the shell (bash: `source <(odrecords completion bash)`).",
    )
    parser.add_argument("shell", choices=SHELLS)
    return parser


def command_parsers() -> dict[str, Parser]:
    """The parser of each command, by name: what `check_flags` parses with, and what the
    completion script is made from."""
    return {
        "create": create_parser(),
        "export": export_parser(),
        "inspect": inspect_parser(),
        "latest": latest_parser(),
        "report": report_parser(),
        "validate": validate_parser(),
        "completion": completion_parser(),
    }


# Commands that take no flags but their own; the others pass the rest on to Beam.
_OWN_FLAGS_ONLY = {"inspect", "completion"}


def check_flags(command: str, argv: Sequence[str]) -> None:
    """Parses `argv` as `command` will: prints its `--help`, or raises the UsageError argparse
    finds (a missing required flag, a count that is not a number), before the command's heavy
    imports. The other commands pass flags they do not know on to Beam (create, export and
    report) or take Beam's filesystem options (latest, validate)."""
    parser = command_parsers()[command]
    if command in _OWN_FLAGS_ONLY:
        parser.parse_args(argv)
    else:
        parser.parse_known_args(argv)
