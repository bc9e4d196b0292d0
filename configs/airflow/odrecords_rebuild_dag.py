"""An Airflow DAG that rebuilds one dataset with `odrecords create` every night, as a new
version of its output (see "Scheduled rebuilds" in README.md).

The Apache Beam provider's BeamRunPythonPipelineOperator runs
`PY_INTERPRETER PY_OPTIONS PY_FILE --runner=RUNNER` followed by one flag per pipeline option:
here `ODRECORDS_PYTHON -m pipelines.create --runner=FnApiRunner --config=CONFIG --versions
--keep_versions=5 --max_error_rate=0.02 --reuse=stat --labels=airflow-version=...` (the
operator adds the Beam option `--labels`). odrecords is installed in a virtualenv of its own
on the machines the task runs on, since its TensorFlow, Beam and protobuf pins are not
Airflow's; this file imports nothing of it, so Airflow parses it without them.

The config says what the dataset is; the options here say how it is rebuilt, and win over the
config's. The task fails when create exits with another code than 0: 1 when the new version
was not published (nothing written, or more of the input rejected than max_error_rate), 2 for
unusable arguments. Either way the version published before stays the latest.
"""

from __future__ import annotations

import pendulum
from airflow.providers.apache.beam.operators.beam import BeamRunPythonPipelineOperator
from airflow.sdk import DAG

# The Python of the virtualenv odrecords is installed in (`pip install odrecords`).
ODRECORDS_PYTHON = "/opt/odrecords/.venv/bin/python"
# The dataset's config (configs/scheduled.yaml), a local path or a gs:// or s3:// one.
CONFIG = "/opt/odrecords/configs/scheduled.yaml"

with DAG(
    dag_id="odrecords_rebuild",
    description="Rebuild a TFRecord dataset with odrecords create, as a new version",
    schedule="30 2 * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    # A rebuild reads the dataset as it is now: missed nights have nothing of their own.
    catchup=False,
    # Two rebuilds of one output never run at once.
    max_active_runs=1,
    tags=["odrecords"],
):
    BeamRunPythonPipelineOperator(
        task_id="create",
        py_interpreter=ODRECORDS_PYTHON,
        py_options=["-m"],
        py_file="pipelines.create",
        # Beam's in-process runner; the operator's default, DirectRunner, would first download
        # Beam's Prism runner.
        runner="FnApiRunner",
        # True gives the bare flag (--versions); False and None leave the option out.
        pipeline_options={
            "config": CONFIG,
            "versions": True,
            "keep_versions": 5,
            "max_error_rate": 0.02,
            "reuse": "stat",
        },
    )
