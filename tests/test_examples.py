"""The files in examples/ are real: each config parses, names known systems and flows, and the pair resolves."""

from pathlib import Path

import pytest


from mlconnector.config import load_config
from mlconnector.sync import open_pair, resolve_roles
from mlconnector.pairs import all_pairs
from mlconnector.secrets import SETTABLE_FIELDS, SecretStore, init_secret_file
from mlconnector.systems import ConnectorContext

EXAMPLES = Path(__file__).parents[1] / "examples"


PAIRS = ("nav-zoho", "bc-zoho", "fo-zoho", "gp-zoho", "nav-zuora")


def assert_runnable(config, pair: str, tmp_path: Path) -> None:
    """What a sync does before its first call: roles resolved, every system's connector built from its settings
    (each checks its own), the pair's options known to the pair."""
    spec = all_pairs()[pair]
    roles = resolve_roles(config, spec)
    assert set(roles) == set(spec.roles)
    assert set(config.pair(pair).flows) <= {flow.name for flow in spec.flows}
    init_secret_file(tmp_path / "secrets")
    store = SecretStore(backend="file", directory=tmp_path / "secrets", environ={})
    for name, system in config.systems.items():  # placeholders: connectors that read a secret as they start
        for field in SETTABLE_FIELDS.get(system.kind, ()):
            store.set(name, field, f"placeholder-{field}")
    # Opening the pair checks its options against what the pair declares (an unknown key is refused).
    session = open_pair(config, pair, ConnectorContext(secrets=store, state_dir=tmp_path))
    session.close()
    assert set(config.pair(pair).options) <= {option.name for option in spec.options}


@pytest.mark.parametrize("pair", PAIRS)
def test_example_config_of_each_pair_is_runnable(pair: str, tmp_path: Path) -> None:
    config = load_config(EXAMPLES / f"{pair}.toml")
    assert_runnable(config, pair, tmp_path)
    assert config.state_path is not None


def test_cron_and_systemd_examples_run_real_commands() -> None:
    crontab = (EXAMPLES / "crontab").read_text()
    assert "mlconnector sync nav-zoho" in crontab and "mlconnector replay --all" in crontab
    service = (EXAMPLES / "systemd" / "mlconnector-sync@.service").read_text()
    assert "ExecStart=/usr/local/bin/mlconnector sync %i" in service and "SuccessExitStatus=75" in service
    assert "OnFailure=mlconnector-alert@%i.service" in service
    alert = (EXAMPLES / "systemd" / "mlconnector-alert@.service").read_text()
    assert "ExecStart=/usr/local/bin/mlconnector alert failed %i --detail" in alert
    assert "mlconnector status --check --max-age 1h" in crontab
    assert "OnUnitActiveSec=15min" in (EXAMPLES / "systemd" / "mlconnector-sync@.timer").read_text()
    assert "listen --host 127.0.0.1 --port 8765 --process" in (EXAMPLES / "systemd" / "mlconnector-listen.service").read_text()
