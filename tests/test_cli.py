"""The `odrecords` command itself: its version and help (without TensorFlow or Beam), and output
into a pipe that closes early."""

import importlib.metadata
import subprocess
import sys

import pytest
from conftest import SAMPLE, run_create

ODRECORDS = [sys.executable, "-m", "pipelines.cli"]


def test_version_comes_without_tensorflow_or_beam():
    probe = (
        "import sys; from pipelines.cli import main; code = main(['--version']); "
        "print(sorted(m for m in ('tensorflow', 'apache_beam') if m in sys.modules)); "
        "sys.exit(code)"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    version = importlib.metadata.version("odrecords")
    assert done.stdout.splitlines() == [f"odrecords {version}", "[]"]


HEAVY = "['tensorflow', 'apache_beam']"


@pytest.mark.parametrize(
    "args, shown",
    [
        (["--help"], "commands:"),
        (["--version"], "odrecords "),
        (["create", "--help"], "--max-image-pixels"),
        (["export", "--help"], "--input"),
        (["inspect", "--help"], "--render"),
    ],
)
def test_help_comes_without_tensorflow_or_beam(args, shown):
    """`--help` is what people run first; TensorFlow and Beam would take seconds and
    hundreds of MB to print it."""
    probe = (
        "import sys; from pipelines.cli import main\n"
        f"try: main({args!r})\n"
        "except SystemExit as done: assert done.code == 0\n"
        f"print([m for m in {HEAVY} if m in sys.modules])"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert shown in done.stdout
    assert done.stdout.splitlines()[-1] == "[]"


@pytest.mark.parametrize(
    "args, error",
    [
        (["create", "--num-shards", "x"], "odrecords create: error: argument --num-shards"),
        (["export", "--format", "coco"], "odrecords export: error: the following arguments"),
        (["inspect"], "odrecords inspect: error: the following arguments are required"),
    ],
)
def test_usage_errors_argparse_finds_come_without_tensorflow_or_beam(args, error):
    probe = (
        "import sys; from pipelines.cli import main\n"
        f"code = main({args!r})\n"
        f"print([m for m in {HEAVY} if m in sys.modules]); sys.exit(code)"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.startswith(error) and len(done.stderr.splitlines()) == 1, done.stderr
    assert done.stdout.splitlines() == ["[]"]


def test_the_create_help_names_every_format():
    """The help's list is kept beside the registry without importing the readers."""
    from pipelines.flags import create_parser
    from transforms.readers import FORMAT_NAMES, formats

    assert FORMAT_NAMES == tuple(formats())
    help = create_parser()._option_string_actions["--format"].help
    assert help == f"annotation format: {', '.join(formats())} or auto"


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    out = tmp_path_factory.mktemp("records")
    assert run_create("--format", "voc", "--annotations", f"{SAMPLE}/annotations",
                      "--images", f"{SAMPLE}/images", "--output", out) == 0  # fmt: skip
    return f"{out}/train/*"


@pytest.mark.parametrize("args", [["--version"], ["inspect", "RECORDS"]])
def test_a_reader_that_closes_early_ends_the_command_quietly(records, args):
    args = [records if arg == "RECORDS" else arg for arg in args]
    whole = subprocess.run([*ODRECORDS, *args], capture_output=True, text=True)
    assert whole.returncode == 0 and whole.stdout, whole.stderr
    # The reader goes away before the command has printed anything, as `| head -n 0` would.
    process = subprocess.Popen(
        [*ODRECORDS, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    process.stdout.close()
    stderr = process.stderr.read()
    assert process.wait() == 1
    assert stderr == ""
