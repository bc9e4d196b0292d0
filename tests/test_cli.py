"""The `odrecords` command itself: its version, and output into a pipe that closes early."""

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
