"""The files in examples/ are real: each config parses, names known systems and flows, and the pair resolves."""

from pathlib import Path

import pytest

from mlconnector.config import load_config
from mlconnector.sync import resolve_roles
from mlconnector.pairs import all_pairs

EXAMPLES = Path(__file__).parents[1] / "examples"


@pytest.mark.parametrize("pair", ["nav-zoho", "bc-zoho"])
def test_example_config_of_each_pair_parses(pair: str) -> None:
    config = load_config(EXAMPLES / f"{pair}.toml")
    spec = all_pairs()[pair]
    roles = resolve_roles(config, spec)
    assert set(roles) == {"erp", "crm"}
    flows = config.pair(pair).flows
    assert set(flows) <= {flow.name for flow in spec.flows}
    assert config.state_path is not None


def test_cron_and_systemd_examples_run_real_commands() -> None:
    crontab = (EXAMPLES / "crontab").read_text()
    assert "mlconnector sync nav-zoho" in crontab and "mlconnector replay --all" in crontab
    service = (EXAMPLES / "systemd" / "mlconnector-sync@.service").read_text()
    assert "ExecStart=/usr/local/bin/mlconnector sync %i" in service and "SuccessExitStatus=75" in service
    assert "OnUnitActiveSec=15min" in (EXAMPLES / "systemd" / "mlconnector-sync@.timer").read_text()
    assert "listen --host 127.0.0.1 --port 8765 --process" in (EXAMPLES / "systemd" / "mlconnector-listen.service").read_text()
