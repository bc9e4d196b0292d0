"""Scheduled rebuilds as README.md's "Scheduled rebuilds" sets them up: the Airflow DAG in
`configs/airflow/` parses under real Airflow with the Apache Beam provider, its operator runs
command lines `odrecords create` accepts (as defined and moved to Dataflow), a DAG run rebuilds
the sample and fails when create does, and the README's cron lines are valid and run.

Airflow, the Beam provider and the Google provider (without which the Beam provider's
operators cannot even be built) bring some 300 packages of their own, so they live in a
virtualenv of their own (`.ci/run` makes `.venv-airflow`; `ODRECORDS_AIRFLOW_PYTHON` names
another one's Python), reached through `tests/airflow_check.py`. Without it those tests skip,
except in CI (`CI` set), where they fail.
"""

from __future__ import annotations

import fcntl
import os
import re
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import yaml
from conftest import SAMPLE, read_output
from services import run_json, virtualenv_python

from pipelines.flags import create_parser
from pipelines.latest import latest
from pipelines.settings import parse_create_args

REPO = Path(__file__).resolve().parent.parent
CHECK = REPO / "tests" / "airflow_check.py"
DAG_FILE = REPO / "configs" / "airflow" / "odrecords_rebuild_dag.py"
README = (REPO / "README.md").read_text(encoding="utf-8")
# The README's crontab entry: five time fields, then the command cron gives to /bin/sh.
CRONTAB = re.compile(r"^(\S+ \S+ \S+ \S+ \S+) (flock .*odrecords create .*)$", re.MULTILINE)
SCHEDULER = re.compile(r'gcloud scheduler jobs create http .*?--schedule="([^"]+)"', re.DOTALL)


def _python() -> str:
    return virtualenv_python("ODRECORDS_AIRFLOW_PYTHON", ".venv-airflow", "Airflow")


def _run_check(*args: str):
    # PYTHONPATH (this checkout) reaches the odrecords commands the DAG runs start.
    environment = {**os.environ, "PYTHONPATH": str(REPO)}
    return run_json([_python(), str(CHECK), *args], env=environment)


def _config(path: Path, output: Path, images: str) -> Path:
    """configs/scheduled.yaml pointed at the sample (and without its label map)."""
    config = yaml.safe_load((REPO / "configs" / "scheduled.yaml").read_text(encoding="utf-8"))
    del config["label_map"]
    config.update(annotations=f"{SAMPLE}/annotations", images=images, output=str(output))
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def dag() -> dict:
    return _run_check("render", str(DAG_FILE))["odrecords_rebuild"]


def test_dag_parses_under_airflow_and_rebuilds_nightly_one_run_at_a_time(dag):
    assert dag["tasks"] == {"create": "BeamRunPythonPipelineOperator"}
    assert dag["max_active_runs"] == 1 and dag["catchup"] is False
    # The README's crontab entry and Cloud Scheduler job keep the DAG's time.
    assert {m[0] for m in CRONTAB.findall(README)} == set(SCHEDULER.findall(README))
    assert set(SCHEDULER.findall(README)) == {dag["schedule"]}


@pytest.mark.parametrize("runner", ["defined", "dataflow"])
def test_operator_command_is_one_create_accepts(dag, tmp_path, runner):
    command = dag["commands"]["create"][runner]
    assert command[:3] == ["/opt/odrecords/.venv/bin/python", "-m", "pipelines.create"]
    config = _config(tmp_path / "scheduled.yaml", tmp_path / "out", f"{SAMPLE}/images")
    args = [f"--config={config}" if a.startswith("--config=") else a for a in command[3:]]
    # True became the bare flag, numbers their text, and all reached create's own flags.
    known, beam = create_parser().parse_known_args(args)
    assert known.versions is True and known.keep_versions == 5
    assert known.max_error_rate == 0.02 and known.reuse == "stat"
    assert {flag.split("=")[0] for flag in beam} == (
        {"--runner", "--labels"}
        if runner == "defined"
        else {"--runner", "--labels", "--job_name", "--project", "--region"}
    )
    # The Beam options the operator adds pass check_beam_flags, which refuses unknown ones.
    settings, flags = parse_create_args(args)
    assert settings.output == str(tmp_path / "out")
    assert flags == beam


def test_dag_run_rebuilds_the_dataset_and_fails_when_create_does(tmp_path):
    empty = tmp_path / "no-images"
    empty.mkdir()
    good = _config(tmp_path / "good.yaml", tmp_path / "good", f"{SAMPLE}/images")
    # Every image missing: nothing written, create exits 1.
    bad = _config(tmp_path / "bad.yaml", tmp_path / "bad", str(empty))
    runs = _run_check("run", str(DAG_FILE), sys.executable, str(good), str(bad))
    assert [(r["state"], r["tasks"], r["failures"]) for r in runs] == [
        ("success", {"create": "success"}, []),
        ("failed", {"create": "failed"}, ["Apache Beam process failed with return code 1"]),
    ]
    output = read_output(latest(str(tmp_path / "good")))
    assert sum(len(examples) for examples in output["splits"].values()) == 24


def test_readme_schedules_are_valid_nightly_cron_lines():
    expressions = {m[0] for m in CRONTAB.findall(README)} | set(SCHEDULER.findall(README))
    assert expressions
    for expression, checked in _run_check("cron", *expressions).items():
        assert "error" not in checked, (expression, checked)
        first, second = (datetime.fromisoformat(t) for t in checked["next"])
        assert second - first == timedelta(days=1), expression


def _crontab_command(tmp_path: Path) -> tuple[str, Path, Path]:
    """The README's crontab command with its paths moved into `tmp_path`."""
    ((_, command),) = CRONTAB.findall(README)
    lock, log = tmp_path / "odrecords.lock", tmp_path / "odrecords.log"
    config = _config(tmp_path / "scheduled.yaml", tmp_path / "out", f"{SAMPLE}/images")
    odrecords = Path(sys.executable).with_name("odrecords")
    for path, there in [
        ("/opt/odrecords/.venv/bin/odrecords", odrecords),
        ("/opt/odrecords/configs/scheduled.yaml", config),
        ("/var/lock/odrecords-voc.lock", lock),
        ("/var/log/odrecords/voc.log", log),
    ]:
        assert path in command
        command = command.replace(path, str(there))
    return command, lock, log


def test_crontab_command_rebuilds_logs_and_reports_only_failures(tmp_path):
    command, _, log = _crontab_command(tmp_path)
    done = subprocess.run(["/bin/sh", "-c", command], capture_output=True, text=True)
    # Cron mails what a command prints: nothing when the rebuild succeeded.
    assert done.returncode == 0 and done.stdout == "" and done.stderr == "", done
    assert "images: 24 referenced = 24 written" in log.read_text()
    output = read_output(latest(str(tmp_path / "out")))
    assert sum(len(examples) for examples in output["splits"].values()) == 24


def test_crontab_command_skips_a_night_while_the_last_rebuild_runs(tmp_path):
    command, lock, log = _crontab_command(tmp_path)
    with open(lock, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # As the running rebuild's flock holds it.
        done = subprocess.run(["/bin/sh", "-c", command], capture_output=True, text=True)
    assert done.stdout.strip().endswith("exit 75"), done
    assert not log.exists() or log.read_text() == ""
    assert not (tmp_path / "out").exists()


def test_missing_virtualenv_skips_or_fails_in_ci(monkeypatch, tmp_path):
    monkeypatch.setenv("ODRECORDS_AIRFLOW_PYTHON", str(tmp_path / "none" / "python"))
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception):
        _python()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception):
        _python()
