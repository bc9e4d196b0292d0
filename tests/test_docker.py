"""The container files cannot drift from setup.py: the worker image's Beam and Python versions
are the pinned ones, the files they copy exist, and the Flex Template's parameters are flags
`odrecords create` accepts."""

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SETUP = (ROOT / "setup.py").read_text()


def instructions(dockerfile: str) -> list[tuple[str, str]]:
    lines = (ROOT / "docker" / dockerfile).read_text().splitlines()
    return [
        tuple(line.split(maxsplit=1))
        for line in lines
        if line.strip() and not line.lstrip().startswith("#")
    ]


def test_worker_image_matches_the_pinned_beam_and_python():
    (base,) = [value for op, value in instructions("Dockerfile") if op == "FROM"]
    match = re.fullmatch(r"apache/beam_python(\d+)\.(\d+)_sdk:(\S+)", base)
    assert match, base
    python, beam = f"{match[1]}.{match[2]}", match[3]
    assert f'"apache-beam=={beam}"' in SETUP
    minimum = re.search(r'python_requires=">=(\d+)\.(\d+)"', SETUP)
    assert tuple(map(int, python.split("."))) >= (int(minimum[1]), int(minimum[2]))
    for extra in ("gcp", "aws"):
        assert f'"apache-beam[{extra}]=={beam}"' in SETUP


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "Dockerfile.flex-template"])
def test_dockerfiles_copy_existing_paths_and_install_the_project(dockerfile):
    steps = instructions(dockerfile)
    copied = [value.split()[:-1] for op, value in steps if op == "COPY"]
    for sources in copied:
        for source in sources:
            assert (ROOT / source).exists(), source
    assert any(op == "RUN" and "pip install" in value for op, value in steps)


def test_flex_template_launches_create_with_parameters_it_accepts():
    steps = dict(
        value.split("=", 1) for op, value in instructions("Dockerfile.flex-template") if op == "ENV"
    )
    assert steps["FLEX_TEMPLATE_PYTHON_PY_FILE"] == "/template/pipelines/create.py"
    python = [v for op, v in instructions("Dockerfile.flex-template") if op == "FROM"][0]
    assert "python311" in python
    from pipelines.flags import create_parser

    actions = {o: a for a in create_parser()._actions for o in a.option_strings}
    metadata = json.loads((ROOT / "docker" / "flex-template-metadata.json").read_text())
    for parameter in metadata["parameters"]:
        action = actions.get(f"--{parameter['name']}")
        assert action, parameter["name"]
        assert re.fullmatch(r"[a-zA-Z][a-zA-Z0-9_]*", parameter["name"])
        # A template parameter is a name and a value, `--name=value`: never an on/off switch.
        assert action.nargs != 0, parameter["name"]
        for choice in action.choices or ():
            assert any(re.fullmatch(r, choice) for r in parameter["regexes"]), choice
    from transforms.readers import FORMAT_NAMES

    (formats,) = next(p for p in metadata["parameters"] if p["name"] == "format")["regexes"]
    assert all(re.fullmatch(formats, name) for name in (*FORMAT_NAMES, "auto"))


def test_setup_py_works_as_beams_setup_file(tmp_path):
    """Beam stages `--setup_file` by running `setup.py sdist`; workers pip install that."""
    import subprocess
    import sys
    import tarfile

    subprocess.run(
        [sys.executable, "setup.py", "sdist", "--dist-dir", str(tmp_path)],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    (archive,) = tmp_path.glob("odrecords-*.tar.gz")
    names = tarfile.open(archive).getnames()
    for module in ("pipelines/create.py", "pipelines/export.py", "transforms/tfrecord_sink.py"):
        assert any(name.endswith(module) for name in names), module


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "Dockerfile.flex-template"])
def test_images_pin_tensorflow_within_setup_py_range(dockerfile):
    steps = instructions(dockerfile)
    (pin,) = [
        value.split("=", 1)[1] for op, value in steps if op == "ARG" and "TENSORFLOW" in value
    ]
    low, high = re.search(r'"tensorflow>=([\d.]+),<([\d.]+)"', SETUP).groups()
    version = tuple(map(int, pin.split(".")))
    assert tuple(map(int, low.split("."))) <= version < tuple(map(int, high.split(".")))
    assert any('"tensorflow==${TENSORFLOW_VERSION}"' in v for op, v in steps if op == "RUN")


def test_build_context_holds_only_what_the_images_copy(tmp_path):
    """The repository's `.dockerignore` lets in exactly the paths the Dockerfiles copy (the
    README's virtualenv alone is gigabytes of context), as Docker's own client reads it."""
    from docker.utils.build import exclude_paths

    copied = {
        source
        for dockerfile in ("Dockerfile", "Dockerfile.flex-template")
        for op, value in instructions(dockerfile)
        if op == "COPY"
        for source in value.split()[:-1]
    }
    wanted = {"setup.py", "README.md", "pipelines/cli.py", "transforms/readers/voc.py"}
    unwanted = {".venv/bin/python", "tests/sample/labels.csv", "out/sample/manifest.json",
                ".git/HEAD", "transforms/__pycache__/x.pyc", "docker/Dockerfile"}  # fmt: skip
    for relative in wanted | unwanted:
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text("x")
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    context = set(exclude_paths(str(tmp_path), patterns))
    assert wanted <= context
    assert not unwanted & context
    assert {source.rstrip("/") for source in copied} <= context
