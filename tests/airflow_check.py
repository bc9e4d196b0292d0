"""Runs in the Airflow virtualenv (`.venv-airflow`, made by `.ci/run`) for
tests/test_schedules.py, and prints JSON:

    airflow_check.py render DAG_FILE
        the DAGs the file defines (schedule, catch-up, runs at once, tasks) and, for each Beam
        Python task, the command line its operator runs: as defined, and moved to Dataflow
    airflow_check.py run DAG_FILE PYTHON CONFIG...
        one DAG run per config (`dag.test()`, the whole task runner), the Beam tasks' Python
        and `config` option replaced; the run's and its tasks' states, and why the commands
        the tasks ran failed
    airflow_check.py cron EXPRESSION...
        each cron expression's next two times after 2026-01-01 00:00 UTC (croniter), or why
        Airflow's cron timetable finds it invalid

Airflow's home is a new temporary folder, its DAGs folder the DAG file's. PYTHONPATH, when
set, reaches the commands the tasks run. Airflow logs to stdout: everything but the JSON goes
to stderr.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from unittest import mock

# The JSON's own stdout; Airflow's logs and the tasks' output go to stderr.
RESULT = os.fdopen(os.dup(1), "w")
os.dup2(2, 1)
# Before Airflow is imported: it reads its configuration once.
os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="airflow-home-")
atexit.register(shutil.rmtree, os.environ["AIRFLOW_HOME"], ignore_errors=True)
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
# The Google provider's Dataflow hook looks its connection up when built; it is never used.
os.environ["AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT"] = "google-cloud-platform://"
if len(sys.argv) > 2 and sys.argv[1] in ("render", "run"):
    os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = os.path.dirname(os.path.abspath(sys.argv[2]))

from airflow.dag_processing.dagbag import DagBag  # noqa: E402
from airflow.providers.apache.beam.hooks import beam as beam_hooks  # noqa: E402
from airflow.providers.apache.beam.operators.beam import BeamRunPythonPipelineOperator  # noqa: E402
from airflow.providers.google.cloud.hooks.dataflow import DataflowHook  # noqa: E402
from airflow.providers.google.cloud.links.dataflow import DataflowJobLink  # noqa: E402
from airflow.providers.google.cloud.operators.dataflow import DataflowConfiguration  # noqa: E402
from airflow.timetables.trigger import CronTriggerTimetable  # noqa: E402
from croniter import croniter  # noqa: E402

# Where the Dataflow variant runs; nothing is sent there.
DATAFLOW = {"job_name": "odrecords-rebuild", "project_id": "PROJECT", "location": "us-central1"}


def load_dags(dag_file: str) -> dict:
    """The file's DAGs, parsed by Airflow's DagBag as the DAG processor parses them."""
    bag = DagBag(dag_folder=dag_file)
    if bag.import_errors:
        sys.exit(f"{dag_file} does not import: {bag.import_errors}")
    return bag.dags


def command(operator: BeamRunPythonPipelineOperator) -> list[str]:
    """The command line the operator's `execute` starts, caught where the Beam hook would
    start it; the Dataflow service and the interpreter's Beam version check are stood in
    for."""
    started: list[list[str]] = []
    with (
        mock.patch.object(beam_hooks, "run_beam_command", lambda cmd, **_: started.append(cmd)),
        mock.patch.object(beam_hooks.subprocess, "check_output", return_value=b"2.77.0"),
        mock.patch.object(DataflowHook, "wait_for_done"),
        mock.patch.object(DataflowJobLink, "persist"),
    ):
        operator.execute({"ti": mock.MagicMock()})
    (cmd,) = started
    return cmd


def on_dataflow(task: BeamRunPythonPipelineOperator) -> BeamRunPythonPipelineOperator:
    """The task as README.md says to move it to Dataflow: the runner and a dataflow_config."""
    return BeamRunPythonPipelineOperator(
        task_id=f"{task.task_id}_on_dataflow",
        py_file=task.py_file,
        py_options=list(task.py_options),
        py_interpreter=task.py_interpreter,
        pipeline_options=dict(task.pipeline_options),
        runner="DataflowRunner",
        dataflow_config=DataflowConfiguration(**DATAFLOW),
    )


def render(dag_file: str) -> dict:
    dags = {}
    for dag_id, dag in load_dags(dag_file).items():
        commands = {}
        for task in dag.tasks:
            if isinstance(task, BeamRunPythonPipelineOperator):
                moved = on_dataflow(task)  # Before `execute` adds its labels to the task.
                commands[task.task_id] = {"defined": command(task), "dataflow": command(moved)}
        dags[dag_id] = {
            "schedule": getattr(dag.timetable, "expression", None),
            "catchup": dag.catchup,
            "max_active_runs": dag.max_active_runs,
            "tasks": {task.task_id: type(task).__name__ for task in dag.tasks},
            "commands": commands,
        }
    return dags


def run(dag_file: str, python: str, configs: list[str]) -> list[dict]:
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True
    )
    (dag,) = load_dags(dag_file).values()
    results = []
    for config in configs:
        for task in dag.tasks:
            if isinstance(task, BeamRunPythonPipelineOperator):
                task.py_interpreter = python
                task.pipeline_options["config"] = config
        failures: list[str] = []
        with mock.patch.object(beam_hooks, "run_beam_command", _noting(failures)):
            dag_run = dag.test()
        results.append(
            {
                "config": config,
                "state": str(dag_run.state),
                "tasks": {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()},
                "failures": failures,
            }
        )
    return results


def _noting(failures: list[str]):
    """The Beam hook's `run_beam_command`, noting why it failed (the command's exit code)."""
    real = beam_hooks.run_beam_command

    def run_beam_command(*args, **kwargs):
        try:
            return real(*args, **kwargs)
        except Exception as error:
            failures.append(str(error))
            raise

    return run_beam_command


def cron(expressions: list[str]) -> dict:
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    checked = {}
    for expression in expressions:
        timetable = CronTriggerTimetable(expression, timezone="UTC")
        try:
            timetable.validate()
        except Exception as error:  # Airflow's AirflowTimetableInvalid, from croniter's errors.
            checked[expression] = {"error": str(error)}
            continue
        times = croniter(expression, start)
        checked[expression] = {"next": [times.get_next(datetime).isoformat() for _ in range(2)]}
    return checked


def main(argv: list[str]) -> None:
    mode, *args = argv
    if mode == "render":
        result = render(args[0])
    elif mode == "run":
        result = run(args[0], args[1], args[2:])
    elif mode == "cron":
        result = cron(args)
    else:
        sys.exit(f"unknown mode {mode}")
    RESULT.write(json.dumps(result))
    RESULT.flush()


if __name__ == "__main__":
    main(sys.argv[1:])
