"""The example configs name only settings and Beam options that exist."""

from pathlib import Path

import pytest

from pipelines.settings import _load_config, check_beam_flags

CONFIGS = sorted((Path(__file__).resolve().parent.parent / "configs").glob("*.yaml"))


@pytest.mark.parametrize("config", CONFIGS, ids=lambda path: path.name)
def test_config_settings_and_beam_options_are_known(config):
    values, flags = _load_config(str(config))
    assert {"format", "annotations", "output"} <= set(values)
    check_beam_flags(flags)  # Raises UsageError on an unknown option.


def test_there_is_a_config_per_runner():
    assert {"local.yaml", "dataflow.yaml", "flink.yaml", "sample.yaml"} <= {c.name for c in CONFIGS}
