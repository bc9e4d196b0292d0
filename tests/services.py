"""Local services the tests start as separate processes: Beam's job service and worker pool
(the portable runner's path, as on Flink or Dataflow), an S3-compatible server and a Google
Cloud Storage emulator."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

BIN = os.path.dirname(sys.executable)
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def virtualenv_python(variable: str, folder: str, what: str) -> str:
    """The Python of a test virtualenv of its own (`.ci/run` makes `folder` in the checkout;
    the environment variable `variable` may name another): a test that needs it is skipped
    when it is missing, and fails in CI, where it must be there."""
    python = os.environ.get(variable) or os.path.join(REPO, folder, "bin", "python")
    if not os.path.exists(python):
        reason = f"no {what} virtualenv at {python} (.ci/run makes it)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return python


def run_json(command: list[str], **options) -> dict:
    """Runs a check script in another virtualenv and returns the JSON it prints."""
    done = subprocess.run(command, capture_output=True, text=True, **options)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args} exited with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.2)
    raise TimeoutError(f"nothing listens on port {port} after {seconds} s")


@contextlib.contextmanager
def running(commands: list[list[str]], ports: list[int]) -> Iterator[None]:
    """Starts the commands (with this environment's executables first on PATH, as worker pools
    start workers by name), waits for their ports, and stops them afterwards."""
    environment = {**os.environ, "PATH": BIN + os.pathsep + os.environ.get("PATH", "")}
    processes = [
        subprocess.Popen(c, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for c in commands
    ]
    try:
        for port, process in zip(ports, processes, strict=True):
            wait_for_port(port, process)
        yield
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()


@contextlib.contextmanager
def portable_runner() -> Iterator[list[str]]:
    """A local job service and an EXTERNAL worker pool; yields the Beam flags that use them."""
    job_port, pool_port = free_port(), free_port()
    commands = [
        [sys.executable, "-m", "apache_beam.runners.portability.local_job_service_main",
         "--port", str(job_port)],
        [sys.executable, "-m", "apache_beam.runners.worker.worker_pool_main",
         "--service_port", str(pool_port)],
    ]  # fmt: skip
    with running(commands, [job_port, pool_port]):
        yield [
            "--runner=PortableRunner",
            f"--job_endpoint=localhost:{job_port}",
            "--environment_type=EXTERNAL",
            f"--environment_config=localhost:{pool_port}",
        ]


@contextlib.contextmanager
def s3_server() -> Iterator[str]:
    """An S3-compatible server (moto) on 127.0.0.1; yields its endpoint URL."""
    port = free_port()
    with running([[os.path.join(BIN, "moto_server"), "-H", "127.0.0.1", "-p", str(port)]], [port]):
        yield f"http://127.0.0.1:{port}"


@contextlib.contextmanager
def gcs_server() -> Iterator[str]:
    """A Google Cloud Storage emulator (gcp-storage-emulator, in memory) on 127.0.0.1; yields
    its endpoint URL, which the google-cloud-storage client takes from STORAGE_EMULATOR_HOST."""
    port = free_port()
    command = [os.path.join(BIN, "gcp-storage-emulator"), "start", "--host", "127.0.0.1",
               "--port", str(port), "--in-memory", "--quiet"]  # fmt: skip
    with running([command], [port]):
        yield f"http://127.0.0.1:{port}"
