"""`odrecords latest OUTPUT [--split NAME]`: where training jobs find the latest published
dataset of an output, whether written with versions or without.

Training configs take a path or glob, not a pointer file (the TF OD API and TF-Vision expand
`input_path` with `tf.io.gfile.glob`), so a job launched on a schedule resolves the pointer
once, here, and reads that one complete version to the end.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from apache_beam.io.filesystems import FileSystems

from pipelines.flags import UsageError, latest_parser
from pipelines.settings import use_filesystem_options
from transforms.builds.layout import MANIFEST, latest_folder
from transforms.builds.outputs import NotOurOutput, read_summary
from transforms.builds.report import shards_glob


def latest(output: str, split: str | None = None) -> str:
    """The latest published dataset's folder in `output`, or the glob of `split`'s shards in
    it. Raises LookupError when there is none, or no such split."""
    try:
        folder = latest_folder(output)
        if folder is None:
            raise LookupError(f"{output} holds no published odrecords output")
        if split is None:
            return folder
        splits = read_summary(FileSystems.join(folder, MANIFEST)).get("splits", {})
    except NotOurOutput as error:
        raise LookupError(str(error)) from None
    if split not in splits:
        raise LookupError(f"{folder} has no split {split!r}; it has {', '.join(splits)}")
    return shards_glob(folder, split)


def main(argv: Sequence[str] | None = None) -> int:
    """Prints the folder or glob; exit 1 when there is none, 2 for unusable arguments."""
    try:
        args, beam_args = latest_parser().parse_known_args(sys.argv[1:] if argv is None else argv)
        use_filesystem_options(beam_args)
    except UsageError as error:
        print(f"odrecords latest: error: {error}", file=sys.stderr)
        return 2
    try:
        print(latest(args.output, args.split))
    except (LookupError, OSError) as error:
        print(f"odrecords latest: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
