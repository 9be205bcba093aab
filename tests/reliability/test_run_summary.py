"""The run summary adds up and says why: read = created + updated + unchanged + skipped + failed for every flow,
re-read records count as unchanged, every skip has its reason and count; a stopped run says so once, on one line."""

from __future__ import annotations

import json

from tests.reliability.harness import exit_code_ok


def _adds_up(flows: dict) -> None:
    for name, f in flows.items():
        assert f["read"] == f["created"] + f["updated"] + f["unchanged"] + f["skipped"] + f["failed"], (name, f)
        assert sum(f["skip_reasons"].values()) == f["skipped"], (name, f)


def test_the_summary_adds_up_and_gives_the_skip_reasons(make_rig):
    rig = make_rig(erps=("nav",))
    first = rig.cli("sync", "nav-zoho", "--json")
    exit_code_ok(first.returncode, (0,), first.stderr)
    _adds_up(json.loads(first.stdout)["flows"])

    again = rig.cli("sync", "nav-zoho", "--json")  # re-reads the overlap, reads back its own writes in Zoho
    exit_code_ok(again.returncode, (0,), again.stderr)
    flows = json.loads(again.stdout)["flows"]
    _adds_up(flows)
    assert flows["customers"]["read"] > 0 and flows["customers"]["unchanged"] == flows["customers"]["read"]
    reasons = flows["accounts_to_customers"]["skip_reasons"]
    assert reasons.get("echo of our own write by customers", 0) > 0, reasons
    assert reasons.get("a vendor account (goes to vendors)", 0) > 0, reasons

    table = rig.cli("sync", "nav-zoho")
    exit_code_ok(table.returncode, (0,), table.stderr)
    assert "accounts_to_customers: skipped " in table.stdout and "echo of our own write by customers" in table.stdout


def test_a_stopped_run_says_so_once_on_one_line(make_rig):
    rig = make_rig(erps=("nav",))
    first = rig.cli("sync", "nav-zoho")
    exit_code_ok(first.returncode, (0,), first.stderr)
    rig.sandboxes.dynamics.faults.server_error = 1.0  # NAV answers 500/503 to everything: the run stops
    stopped = rig.cli("sync", "nav-zoho", env=rig.env(COLUMNS="80"))
    assert stopped.returncode == 5, stopped.stderr
    lines = [line for line in stopped.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("stopped early: nav answered HTTP 50"), stopped.stderr
