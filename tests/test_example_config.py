"""The documented example configuration must itself be valid."""

import re
from pathlib import Path

from mlconnector import api
from mlconnector.config import load_config

ROOT = Path(__file__).parents[1]


def test_connections_example_parses():
    config = load_config(Path(__file__).parents[1] / "connections.example.toml")
    assert {"zoho", "nav", "bc"} <= set(config.systems)
    assert config.pair("nav-zoho").systems == {"erp": "nav", "crm": "zoho"}


def _mapping_tables(config_text: str, tmp_path: Path) -> Path:
    path = tmp_path / "connections.toml"
    path.write_text(config_text)
    return path


def test_the_example_mapping_tables_are_valid_once_uncommented(tmp_path):
    """The commented [pairs.nav-zoho.mappings.*] tables of connections.example.toml parse and fit the pair."""
    text = (ROOT / "connections.example.toml").read_text()
    start = text.index("# [pairs.nav-zoho.mappings.customers]")
    lines = []
    for line in text[start:].splitlines():
        if not re.match(r"^# (\[pairs\.[\w.-]+\]|\w+ = .*)$", line):
            break
        lines.append(line[2:])
    runtime = api.Runtime(config_path=_mapping_tables("\n".join(lines), tmp_path))
    table = api.mappings(runtime, "nav-zoho")
    assert {(line.flow, line.target, line.change) for line in table} >= {
        ("customers", "Customer_Industry", "add"), ("customers", "Phone", "override"),
        ("customers", "Website", "drop"), ("items", "Unit_Price", "transform"),
        ("accounts_to_customers", "Industry_Code", "add"), ("customers", "(filter)", "filter")}


def test_the_documented_mapping_examples_are_valid_for_each_pair(tmp_path):
    readme = (ROOT / "docs" / "mappings.md").read_text()
    [block] = [b for b in re.findall(r"```toml\n(.*?)```", readme, re.S) if "[pairs.nav-zoho.mappings.customers]" in b]
    runtime = api.Runtime(config_path=_mapping_tables(block, tmp_path))
    for pair in ("nav-zoho", "bc-zoho", "fo-zoho", "gp-zoho", "nav-zuora"):
        assert [line for line in api.mappings(runtime, pair) if line.origin == "config"], pair
