"""The `odrecords` command itself: its version and help (without TensorFlow or Beam), and output
into a pipe that closes early."""

import importlib.metadata
import shutil
import subprocess
import sys

import pytest
from conftest import SAMPLE, read_output, run_create
from PIL import Image

from pipelines import cli
from pipelines.flags import command_parsers

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
        (["report", "--help"], "--label-map"),
        (["completion", "bash"], "_shtab_odrecords"),
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
        (["report", "x"], "odrecords report: error: the following arguments are required"),
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


def create_probe(*args: str) -> str:
    """`odrecords create ARGS` in a fresh interpreter that then prints whether TensorFlow was
    imported (the default runner runs the workers in that process too)."""
    return (
        "import sys; from pipelines.cli import main\n"
        f"code = main(['create', *{list(args)!r}])\n"
        "print('tensorflow' in sys.modules); sys.exit(code)"
    )


def test_create_on_the_sample_never_imports_tensorflow(tmp_path):
    """The sample's JPEGs and PNGs are all certified by the fast checks, examples are built
    without TensorFlow, and the manifest reads its version from the installed metadata:
    nothing in the sample needs the seconds and half gigabyte TensorFlow's import costs."""
    probe = create_probe("--format", "voc", "--annotations", f"{SAMPLE}/annotations",
                         "--images", f"{SAMPLE}/images", "--output", f"{tmp_path}/out")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "False"
    output = read_output(tmp_path / "out")
    examples = [e for split in output["splits"].values() for e in split]
    assert len(examples) == 24
    assert sum(e["image/format"] == b"png" for e in examples) == 4
    versions = output["manifest"]["versions"]
    assert versions["tensorflow"] == importlib.metadata.version("tensorflow")


def test_create_imports_tensorflow_for_the_images_only_it_can_judge(tmp_path):
    """A CMYK JPEG is decided by TensorFlow, imported on that first need (from one of the
    loader's threads) as quietly as before the command; the run still reads it and writes
    every example."""
    data = tmp_path / "data"
    shutil.copytree(SAMPLE, data, ignore=shutil.ignore_patterns("jpeg_variants"))
    jpeg = next(path for path in sorted((data / "images").iterdir()) if path.suffix == ".jpg")
    Image.open(jpeg).convert("CMYK").save(jpeg, "JPEG")
    probe = create_probe("--format", "voc", "--annotations", f"{data}/annotations",
                         "--images", f"{data}/images", "--output", f"{tmp_path}/out")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "True"
    assert done.stderr == ""
    examples = [e for split in read_output(tmp_path / "out")["splits"].values() for e in split]
    assert len(examples) == 24


COMPLETE = """
source "$1"
shift
COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}
_shtab_odrecords odrecords "${COMP_WORDS[-1]}" "${COMP_WORDS[-2]}"
printf '%s\\n' "${COMPREPLY[@]}"
"""


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_bash_completes_commands_flags_and_choices(tmp_path, capsys):
    assert cli.main(["completion", "bash"]) == 0
    script = tmp_path / "odrecords.bash"
    script.write_text(capsys.readouterr().out)

    def complete(*words: str) -> list[str]:
        done = subprocess.run(["bash", "-c", COMPLETE, "bash", script, "odrecords", *words],
                              capture_output=True, text=True, check=True)  # fmt: skip
        return sorted(done.stdout.split())

    assert complete("") == sorted(cli.COMMANDS)
    for name, parser in command_parsers().items():
        flags = {o for a in parser._actions for o in a.option_strings if o.startswith("--")}
        offered = complete(name, "--")
        # Each flag once, in the spelling --help shows (not its --two_words alias).
        assert set(offered) == {f for f in flags if "_" not in f}, name
    assert complete("create", "--num") == ["--num-shards"]
    assert complete("create", "--format", "yolo") == ["yolo", "yolo-keras"]
    assert complete("export", "--format", "c") == ["coco", "csv", "cvat"]


def test_zsh_completion_names_every_command(capsys):
    assert cli.main(["completion", "zsh"]) == 0
    script = capsys.readouterr().out
    assert script.startswith("#compdef odrecords")
    assert all(f"{name}:" in script for name in cli.COMMANDS)
    assert cli.main(["completion", "fish"]) == 2
