"""The `odrecords` command: `odrecords create ...` runs `pipelines.create`."""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
import os
import sys
from collections.abc import Sequence

from pipelines.flags import UsageError, check_flags
from transforms.lazy_tensorflow import tensorflow

COMMANDS = {
    "create": "create",
    "export": "export",
    "inspect": "inspect_records",
    "latest": "latest",
    "report": "report",
    "validate": "validate",
    "completion": "completion",
}
# Commands that use TensorFlow from the start. `create` imports it only when an image needs
# its verdict (`transforms.images.verify`), `latest` never.
WITH_TENSORFLOW = {"export", "inspect", "report"}
USAGE = """usage: odrecords COMMAND [options] [-v] | odrecords --version

commands:
  create   convert annotations and images into sharded TFRecords (odrecords create --help)
  export   turn TFRecords back into annotations with their images (odrecords export --help)
  inspect  summarize and check TFRecords (odrecords inspect --help)
  latest   where the latest published version of an output is (odrecords latest --help)
  report   the dataset report of TFRecords: classes, boxes, duplicates (odrecords report --help)
  validate check an output for CI: missing classes, rejected objects, leakage
           (odrecords validate --help)
  completion  print the shell completion script (odrecords completion bash|zsh|tcsh)

-v, --verbose  log what Beam and odrecords do (quiet by default)
--version      print the version of odrecords
"""


def _dispatch(argv: list[str]) -> int:
    """Runs the chosen subcommand; heavy imports wait until its flags have been parsed, so
    usage, `--version`, `COMMAND --help` and the usage errors argparse finds answer at once."""
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE, end="")
        return 0 if argv else 2
    if argv[0] == "--version":
        print(f"odrecords {importlib.metadata.version('odrecords')}")
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"odrecords: error: unknown command {command!r}", file=sys.stderr)
        return 2
    # TensorFlow and Beam are chatty at import and start-up; keep the console for results
    # unless -v asks for Beam's and odrecords' progress logs.
    verbose = any(arg in ("-v", "--verbose") for arg in rest)
    rest = [arg for arg in rest if arg not in ("-v", "--verbose")]
    try:
        check_flags(command, rest)  # `--help` prints and exits here.
    except UsageError as error:
        print(f"odrecords {command}: error: {error}", file=sys.stderr)
        return 2
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    logging.basicConfig(
        level=logging.INFO if verbose else logging.ERROR,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not verbose:
        # A failed job is reported in one line by the command; Beam would log its traceback.
        logging.getLogger("apache_beam").setLevel(logging.CRITICAL)
    if command in WITH_TENSORFLOW:
        tensorflow()  # Quietly, before Beam or the command can log anything.
    module = importlib.import_module(f"pipelines.{COMMANDS[command]}")
    return module.main(rest)


def main(argv: Sequence[str] | None = None) -> int:
    """The `odrecords` command; a reader that stops early (`odrecords inspect ... | head`)
    ends it quietly with exit code 1 instead of a BrokenPipeError traceback."""
    try:
        code = _dispatch(list(sys.argv[1:] if argv is None else argv))
        sys.stdout.flush()  # Inside the try: a closed pipe shows up on this last write.
    except KeyboardInterrupt:  # Ctrl-C before a job started (a running one says more).
        print("odrecords: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # As the Python docs' note on SIGPIPE says: point stdout at devnull, so the flush at
        # interpreter exit does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
