"""The documented example configuration must itself be valid."""

from pathlib import Path

from mlconnector.config import load_config


def test_connections_example_parses():
    config = load_config(Path(__file__).parents[1] / "connections.example.toml")
    assert {"zoho", "nav", "bc"} <= set(config.systems)
    assert config.pair("nav-zoho").systems == {"erp": "nav", "crm": "zoho"}
