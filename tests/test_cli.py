"""The `odrecords` command itself."""

import importlib.metadata
import subprocess
import sys


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
