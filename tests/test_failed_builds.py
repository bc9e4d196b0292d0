"""A build that cannot be written, or fails or is killed while it runs: found before the job
where it can be, said in one line, and never in the way of the next build.

Faults are injected at the filesystem layer: a real full and a real read-only filesystem (a
small tmpfs, when the tests run as root, as in CI), and `ENOSPC`/`EACCES` raised at the Nth
file opened for writing or renamed in the output, by an audit hook in the `odrecords`
process (Python raises an audit hook's exception from the `open` or `rename` itself).
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import SAMPLE, run_create

from pipelines import cli
from transforms.builds.lock import BuildLock

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_ARGS = [
    "--format", "voc",
    "--annotations", f"{SAMPLE}/annotations",
    "--images", f"{SAMPLE}/images",
    "--splits", "train=0.75,valid=0.25",
    "--num-shards", "2",
]  # fmt: skip
AS_ROOT = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("mount"), reason="mounting a tmpfs needs root"
)

# Runs `odrecords` with a fault: the Nth open for writing, or rename, of a path under OUT
# raises OSError(ERRNO); N = 0 prints how many there were instead. Arguments: OUT N ERRNO,
# then odrecords' own.
FAULTY = """
import errno, os, sys
out, nth, code = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
count = 0
def inside(path):
    # Writes under the output are made relative to its folders, opened one by one.
    return isinstance(path, str) and (path.startswith(out) or not os.path.isabs(path))
def writes(event, args):
    if event == "open":
        path, mode, flags = args
        writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
            mode is None and isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR))
        return writing and inside(path)
    if event in ("os.rename", "os.replace"):
        return inside(str(args[1]))
    return False
def hook(event, args):
    global count
    if writes(event, args):
        count += 1
        if count == nth:
            raise OSError(code, os.strerror(code), str(args[0]))
sys.addaudithook(hook)
from pipelines import cli
exit_code = cli.main(sys.argv[4:])
if nth == 0:
    print(count, file=sys.stderr)
sys.exit(exit_code)
"""


def odrecords(*args: str, fault: tuple[str, int, int] | None = None, **kw):
    """Runs the odrecords command in a process of its own."""
    if fault is None:
        command = [sys.executable, "-m", "pipelines.cli", *args]
    else:
        out, nth, code = fault
        command = [sys.executable, "-c", FAULTY, out, str(nth), str(code), *args]
    return subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False, **kw
    )


def files(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (dot-folders too) by relative path, but the manifest and the
    dataset card, which name the build's time, id and folder."""
    return {
        str(path.relative_to(folder)): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name not in ("manifest.json", "README.md")
    }


def leftovers(output: Path) -> list[str]:
    """What a build left besides the published output: build folders, locks, part files."""
    return sorted(str(p.relative_to(output)) for p in output.rglob("*") if ".builds" in p.parts)


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


@pytest.fixture
def tmpfs(tmp_path):
    """Mounts a tmpfs of the given size in KiB at a new folder; unmounted at the end."""
    mounts = []

    def mount(size_kib: int, read_only: bool = False) -> Path:
        point = tmp_path / f"fs{len(mounts)}"
        point.mkdir()
        options = f"size={size_kib}k" + (",ro" if read_only else "")
        subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)], check=True)
        mounts.append(point)
        return point

    yield mount
    for point in mounts:
        subprocess.run(["umount", "-l", str(point)], check=False)


def test_unknown_runner_is_one_line_before_the_job(tmp_path, capsys):
    code = cli.main(["create", *SAMPLE_ARGS, "--output", str(tmp_path / "o"), "--runner=Flinkk"])
    line = one_error_line(capsys.readouterr().err)
    assert code == 2
    assert "unknown --runner Flinkk; did you mean FlinkRunner?" in line
    assert not (tmp_path / "o").exists()


def test_unavailable_runner_class_is_one_line(tmp_path, capsys):
    code = cli.main(["create", *SAMPLE_ARGS, "--output", str(tmp_path), "--runner=no.such.Runner"])
    assert code == 2
    assert "--runner no.such.Runner is not available here" in one_error_line(
        capsys.readouterr().err
    )


@pytest.mark.parametrize(
    "command, args, wrong, meant",
    [
        ("create", ["--format", "voc", "--anotations", "a", "--output", "o"], 2, "--annotations"),
        ("create", ["--format", "voc", "--annotations", "a", "--ouptut", "o"], 4, "--output"),
        ("export", ["--inptu", "x", "--format", "coco", "--output", "o"], 0, "--input"),
        ("inspect", ["x.tfrecord", "--rendr", "r"], 1, "--render"),
    ],
)
def test_misspelled_flags_get_did_you_mean(command, args, wrong, meant, capsys):
    assert cli.main([command, *args]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert f"did you mean {meant} (not {args[wrong]})?" in line


@AS_ROOT
def test_read_only_output_is_refused_before_the_job(tmpfs):
    point = tmpfs(1024)
    assert odrecords("create", *SAMPLE_ARGS, "--output", str(point / "out")).returncode == 0
    before = files(point / "out")
    subprocess.run(["mount", "-o", "remount,ro", str(point)], check=True)
    for output in (point / "out", point / "new"):
        result = odrecords("create", *SAMPLE_ARGS, "--output", str(output))
        assert result.returncode == 2
        line = one_error_line(result.stderr)
        assert f"cannot write to output folder {output}: Read-only file system" in line
    assert files(point / "out") == before


@AS_ROOT
def test_a_publication_to_finish_on_a_read_only_output_is_one_line(tmpfs, monkeypatch):
    from transforms.builds import publish

    point = tmpfs(512)
    output = point / "out"
    assert run_create(*SAMPLE_ARGS, "--output", output) == 0
    move = publish.move_file

    def killed_after_the_first_move(root, source, target, *rest):
        move(root, source, target, *rest)
        if ".builds" in source and ".builds" not in target:
            raise RuntimeError("killed")

    monkeypatch.setattr(publish, "move_file", killed_after_the_first_move)
    assert run_create(*SAMPLE_ARGS, "--output", output, "--num-shards", "3") == 1
    monkeypatch.undo()
    subprocess.run(["mount", "-o", "remount,ro", str(point)], check=True)
    result = odrecords("create", *SAMPLE_ARGS, "--output", str(output))
    assert result.returncode == 2
    line = one_error_line(result.stderr)
    assert f"cannot write to output folder {output}: Read-only file system" in line


@AS_ROOT
def test_a_full_disk_fails_in_one_line_and_the_same_command_fits_again(tmpfs, tmp_path):
    reference = tmp_path / "reference"
    assert odrecords("create", *SAMPLE_ARGS, "--output", str(reference)).returncode == 0
    size = sum(len(data) for data in files(reference).values())
    point = tmpfs(size * 5 // 2 // 1024 + 64)
    output = point / "out"
    assert odrecords("create", *SAMPLE_ARGS, "--output", str(output)).returncode == 0
    published = files(output)
    # Fill the disk so the rebuild runs out of space half-way.
    free = shutil.disk_usage(point).free
    (point / "blocker").write_bytes(b"\0" * (free - size // 2))
    for _ in range(3):  # Each try fails alike and leaves nothing.
        result = odrecords("create", *SAMPLE_ARGS, "--output", str(output), "--reuse", "off")
        assert result.returncode == 1, result.stderr
        line = one_error_line(result.stderr)
        assert "the build failed: No space left on device (ENOSPC), writing " in line
        assert str(output) in line
        assert "the published output in" in line
        assert leftovers(output) == []
        assert files(output) == published
    (point / "blocker").unlink()
    result = odrecords("create", *SAMPLE_ARGS, "--output", str(output), "--reuse", "off")
    assert result.returncode == 0, result.stderr
    assert leftovers(output) == []
    assert files(output) == files(reference)


@pytest.fixture(scope="module")
def sample_build(tmp_path_factory) -> tuple[dict[str, bytes], int]:
    """The sample's files as a build without faults writes them, and how many files that
    build opens for writing or renames in its output."""
    output = tmp_path_factory.mktemp("reference") / "out"
    command = [sys.executable, "-c", FAULTY, str(output), "0", "0", "create", *SAMPLE_ARGS]
    done = subprocess.run(
        [*command, "--output", str(output)], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return files(output), int(done.stderr.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "code, at",
    [
        (errno.ENOSPC, (1, 3, 1 / 3, 1 / 2, -1, 0)),
        (errno.EACCES, (2, 2 / 3, -2)),
    ],
)
def test_a_fault_at_any_write_never_blocks_the_next_build(tmp_path, sample_build, code, at):
    """`at`: which writes fail: a share of them (a float), a count from the start (> 0) or
    from the last (<= 0)."""
    reference, total = sample_build
    assert total > 10
    for n in at:
        nth = max(1, int(total * n)) if isinstance(n, float) else n if n > 0 else total + n
        output = tmp_path / f"out-{nth}"
        args = ("create", *SAMPLE_ARGS, "--output", str(output))
        result = odrecords(*args, fault=(str(output), nth, code))
        assert result.returncode or nth == total, (nth, result.stdout)
        if result.returncode:
            line = one_error_line(result.stderr)
            assert os.strerror(code) in line, line
            before_job = "cannot write to output folder" in line
            assert result.returncode == (2 if before_job else 1), (nth, line)
            assert before_job or nth > 1, line  # The first write is before the job.
        # Whatever the fault hit, the same command then publishes the whole dataset.
        result = odrecords(*args)
        assert result.returncode == 0, (nth, result.stderr)
        assert leftovers(output) == []
        assert files(output) == reference, nth


def test_a_killed_build_is_removed_before_the_next_one_writes(tmp_path):
    output = tmp_path / "out"
    args = ["create", *SAMPLE_ARGS, "--output", str(output)]
    process = subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", *args],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while not any((output / ".builds").glob("*/train/*")) and process.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    if (output / "manifest.json").exists():
        pytest.skip("the build finished before it could be killed")
    (killed,) = [p.name for p in (output / ".builds").iterdir() if p.is_dir()]
    result = odrecords(*args)
    assert result.returncode == 0, result.stderr
    assert f"removed what the failed or killed build {killed} left" in result.stderr
    assert leftovers(output) == []


def test_a_running_build_is_never_taken_for_abandoned(tmp_path):
    """A build whose launcher holds its lock is left alone, however old; one whose lock
    nobody holds is removed, its temporary files elsewhere too (only files named as part files
    are: the folder a lock names may hold someone else's)."""
    output = tmp_path / "out"
    assert run_create(*SAMPLE_ARGS, "--output", output) == 0
    running_id, gone_id = "20000101T000000000000Z-aaaaaa", "20000101T000000000000Z-bbbbbb"
    parts = tmp_path / "temp" / f"odrecords-{gone_id}"
    for build_id in (running_id, gone_id):
        shard = output / ".builds" / build_id / "train" / "train.tfrecord-00000-of-00002"
        shard.parent.mkdir(parents=True)
        shard.write_bytes(b"x")
    parts.mkdir(parents=True)
    (parts / f"train-00000-{'0' * 32}").write_bytes(b"x")
    (parts / "notes.txt").write_bytes(b"mine")
    running = BuildLock(str(output), running_id, str(output / ".builds" / running_id / ".parts"))
    gone = BuildLock(str(output), gone_id, str(parts))
    gone._handle.close()  # As when its process died: the kernel lets the lock go.
    try:
        assert run_create(*SAMPLE_ARGS, "--output", output) == 0
        assert (output / ".builds" / running_id / "train").is_dir()
        assert not (output / ".builds" / gone_id).exists()
        assert [p.name for p in parts.iterdir()] == ["notes.txt"]
        assert sorted(p.name for p in (output / ".builds").iterdir()) == [
            running_id,
            f"{running_id}.lock",
        ]
    finally:
        running.release()


def test_a_shard_worker_process_fails_in_the_same_one_line_as_the_step(tmp_path):
    """An error a shard worker process raises (here: its part file cannot be made, as
    `--temp_location` is a file) is said as the same line as when the step writes itself."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_bytes(b"mine")
    lines = []
    for processes in ("1", "2"):
        output = tmp_path / f"out-{processes}"
        result = odrecords(
            "create", *SAMPLE_ARGS, "--output", str(output), "--processes", processes,
            f"--temp_location={blocker}",
        )  # fmt: skip
        assert result.returncode == 1, result.stderr
        lines.append(one_error_line(result.stderr).replace(str(output), "OUT"))
        assert leftovers(output) == []
    assert lines[0] == lines[1]
    assert f"the build failed: File exists (EEXIST), writing {blocker}" in lines[0]
    assert blocker.read_bytes() == b"mine"


def test_an_export_that_cannot_be_written_or_fails_is_one_line_and_can_run_again(tmp_path):
    records = tmp_path / "records"
    assert run_create(*SAMPLE_ARGS, "--output", records) == 0
    output = tmp_path / "export"
    args = ("export", "--input", str(records), "--format", "coco", "--output", str(output))
    for nth in (1, 5, 20):
        result = odrecords(*args, fault=(str(output), nth, errno.ENOSPC))
        line = one_error_line(result.stderr)
        assert result.returncode == (2 if nth == 1 else 1), line
        assert "No space left on device" in line
        assert not output.exists() or not any(output.iterdir()), sorted(output.rglob("*"))
    result = odrecords(*args)
    assert result.returncode == 0, result.stderr
    assert (output / "export.json").is_file()


@pytest.mark.parametrize("error", [NotImplementedError, RuntimeError("no metrics service")])
def test_a_runner_without_metrics_never_fails_the_summary(error, capsys):
    from pipelines.create import print_counters

    class Result:
        def metrics(self):
            raise error

    print_counters(Result())
    assert "counters" not in capsys.readouterr().out


def test_ctrl_c_wrapped_by_beam_is_an_interruption():
    from pipelines.failures import interrupted

    try:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as error:
            raise RuntimeError(f"{error!r} [while running 'WriteShards']") from error
    except RuntimeError as wrapped_error:
        assert interrupted(wrapped_error)
    assert not interrupted(RuntimeError("OSError: [Errno 28] No space left on device"))


@AS_ROOT
def test_render_into_a_read_only_or_full_folder_is_one_line(tmpfs, tmp_path):
    records = tmp_path / "records"
    assert run_create(*SAMPLE_ARGS, "--output", records) == 0
    shards = str(records / "train" / "*")
    read_only, full = tmpfs(100, read_only=True), tmpfs(40)
    for folder, code, text in ((read_only, 2, "Read-only file system"), (full, 1, "No space")):
        result = odrecords("inspect", shards, "--render", str(folder / "r"))
        assert result.returncode == code
        lines = [line for line in result.stderr.splitlines() if "odrecords" in line]
        assert len(lines) == 1 and text in lines[0], result.stderr
        assert "Traceback" not in result.stderr


def test_an_unpublished_build_is_removed_when_the_next_build_starts(tmp_path):
    annotations = tmp_path / "annotations"
    shutil.copytree(f"{SAMPLE}/annotations", annotations)
    xml = (annotations / "shapes-002.xml").read_text()
    (annotations / "missing.xml").write_text(xml.replace("shapes-002.jpg", "missing.jpg"))
    output = tmp_path / "out"
    args = [*SAMPLE_ARGS, "--output", str(output), "--max-error-rate", "0"]
    args[args.index(f"{SAMPLE}/annotations")] = str(annotations)
    held_back = []
    for _ in range(2):
        result = odrecords("create", *args)
        assert result.returncode == 1, result.stderr
        assert "not published" in result.stderr
        (folder,) = [p.name for p in (output / ".builds").iterdir()]
        held_back.append(folder)
    assert f"removed the unpublished build {held_back[0]}" in result.stderr
    assert held_back[0] != held_back[1]
