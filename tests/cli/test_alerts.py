"""Alerts: a failed run, a channel that cannot be renewed, and their recovery, each alerted once per incident to
a webhook (a local HTTP catcher here) and/or a command; never a secret in the body or in what is printed.
Each test runs with the state in the SQLite file and in PostgreSQL (``state_store``)."""

from __future__ import annotations

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mlconnector.cli.main import build_app

pytestmark = pytest.mark.usefixtures("state_store")

runner = CliRunner()
HOOK_SECRET = "T00K3N-in-the-path"


def cli(*args: str):
    return runner.invoke(build_app(), list(args))


class Catcher:
    """An incoming-webhook stand-in on loopback: keeps each JSON body, answers ``status``."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        self.status = 200
        catcher = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the standard library's name
                size = int(self.headers.get("Content-Length") or 0)
                catcher.bodies.append(json.loads(self.rfile.read(size)))
                self.send_response(catcher.status)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/services/{HOOK_SECRET}"

    def events(self) -> list[str]:
        return [b["event"] for b in self.bodies]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def catcher():
    made = Catcher()
    yield made
    made.close()


@pytest.fixture
def alerting(config_file: Path, catcher: Catcher, tmp_path: Path) -> Path:
    """The test config with [alerts]: the catcher's webhook and a command appending each body to a file."""
    sink = tmp_path / "alerts.jsonl"
    command = [sys.executable, "-c", f"import sys; open({str(sink)!r}, 'a').write(sys.stdin.read() + '\\n')"]
    config_file.write_text(config_file.read_text() + f'''
[alerts]
webhook_url = "{catcher.url}"
command = {json.dumps(command)}
''')
    return sink


def commanded(sink: Path) -> list[dict]:
    return [json.loads(line) for line in sink.read_text().splitlines()] if sink.exists() else []


def seed(erp, n=2):
    for i in range(1, n + 1):
        erp.put("customer", {"number": f"C{i}", "name": f"Customer {i}"})


def test_a_failing_run_alerts_once_then_on_recovery(alerting, catcher, erp, crm):
    seed(erp)
    crm.set_fault("reject", ["C2"])
    for _ in range(3):  # cron every 15 minutes, failing each time
        assert cli("sync", "erp-crm", "--flow", "customers").exit_code == 3
    assert catcher.events() == ["failed"]
    [alert] = catcher.bodies
    assert alert["pair"] == "erp-crm" and alert["exit_code"] == 3 and alert["run_id"]
    assert alert["text"].startswith("mlconnector on ") and "erp-crm: run " in alert["text"]
    assert "1 record(s) failed and wait in the replay queue" in alert["text"]
    assert commanded(alerting) == [alert | {"time": commanded(alerting)[0]["time"]}]  # the same alert, by command

    crm.set_fault("reject", [])
    assert cli("replay", "--all").exit_code == 0
    assert cli("sync", "erp-crm", "--flow", "customers").exit_code == 0
    assert cli("sync", "erp-crm", "--flow", "customers").exit_code == 0
    assert catcher.events() == ["failed", "recovered"]
    assert "runs are ok again" in catcher.bodies[1]["text"]
    assert [a["event"] for a in commanded(alerting)] == ["failed", "recovered"]


@pytest.fixture
def push_alerting(alerting: Path, config_file: Path) -> Path:
    config_file.write_text(config_file.read_text().replace(
        'kind = "testcrm"', 'kind = "testcrm"\nnotify_url = "https://hooks.example.com/hooks/crm"'))
    return config_file


def test_a_channel_that_cannot_be_renewed_alerts_and_its_renewal_settles_it(push_alerting, catcher, crm):
    crm.set_fault("no_subscribe", True)
    assert cli("sync", "erp-crm", "--flow", "accounts").exit_code == 5
    assert cli("sync", "erp-crm", "--flow", "accounts").exit_code == 5
    assert sorted(catcher.events()) == ["channel_failed", "failed"]
    channel = next(b for b in catcher.bodies if b["event"] == "channel_failed")
    assert "push channel crm account cannot be renewed" in channel["text"] and "polling only" in channel["text"]

    crm.set_fault("no_subscribe", False)
    assert cli("sync", "erp-crm", "--flow", "accounts").exit_code == 0
    assert sorted(catcher.events()[2:]) == ["channel_recovered", "recovered"]


def test_alert_failed_from_systemd_shares_the_incident(alerting, catcher, erp, crm):
    result = cli("alert", "failed", "erp-crm", "--detail", "mlconnector-sync@erp-crm.service failed")
    assert result.exit_code == 0 and result.stdout.strip() == "alert sent"
    assert catcher.bodies[0]["text"].endswith("erp-crm: mlconnector-sync@erp-crm.service failed")
    seed(erp)
    crm.set_fault("reject", ["C1"])
    assert cli("sync", "erp-crm", "--flow", "customers").exit_code == 3
    assert cli("alert", "failed", "erp-crm").stdout.startswith("not sent: the incident was alerted already")
    assert catcher.events() == ["failed"]


def test_alert_test_reports_a_refusing_webhook_by_its_host_only(alerting, catcher):
    assert cli("alert", "test").exit_code == 0 and catcher.events() == ["test"]
    catcher.status = 500
    result = cli("-v", "alert", "test")
    assert result.exit_code == 5
    host = catcher.url.split("/services/")[0]
    assert f"error: alert webhook at {host} answered HTTP 500" in result.stderr
    assert HOOK_SECRET not in result.output and HOOK_SECRET not in result.stderr


def test_alert_test_without_alerts_configured_says_what_to_add(config_file):
    result = cli("alert", "test")
    assert result.exit_code == 2 and "no [alerts] command or webhook_url" in result.stderr


@pytest.mark.parametrize("table, message", [
    ('webhook_url = "ftp://hooks.example.com/T00K3N"', "alerts.webhook_url is not an http(s) address"),
    ('hook = "x"', "alerts.hook is not a known key"),
    ("repeat_hours = -1", "alerts.repeat_hours = -1: use a number from 0 to 8784"),
    ("command = 7", "alerts.command must be a program and its arguments"),
])
def test_a_bad_alerts_table_is_one_line_and_exit_2(config_file, table, message):
    config_file.write_text(config_file.read_text() + f"\n[alerts]\n{table}\n")
    result = cli("sync", "erp-crm")
    assert result.exit_code == 2 and message in result.stderr and "T00K3N" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_run_stopped_by_sigterm_alerts_interrupted(alerting, catcher, erp, crm):
    import os
    import signal
    import subprocess
    import time

    seed(erp, 300)
    crm.set_fault("slow", 0.02)  # each record takes a moment to land: time to stop the run midway
    root = Path(__file__).parents[2]
    proc = subprocess.Popen([sys.executable, "-m", "mlconnector", "sync", "erp-crm", "--flow", "customers"],
                            env={**os.environ, "PYTHONPATH": str(root), "MLCONNECTOR_PLUGINS": "tests.fakes"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while crm.landed() < 3:
            assert proc.poll() is None and time.monotonic() < deadline, "the run did not get going"
            time.sleep(0.01)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 143, stderr
    assert catcher.events() == ["interrupted"]
    assert "erp-crm: run " in catcher.bodies[0]["text"] and "interrupted by SIGTERM" in catcher.bodies[0]["text"]
    assert catcher.bodies[0]["exit_code"] == 143


def test_no_secret_reaches_an_alert_when_credentials_are_refused(tmp_path, monkeypatch, catcher):
    """nav-zoho against the emulators, Zoho's refresh token revoked: the run fails (exit 4) and alerts, and neither
    the alert nor what is printed holds a secret."""
    from mlconnector import api
    from mlconnector.errors import AuthError
    from tests.pairs.world import make_world

    world = make_world(tmp_path, monkeypatch, "nav")
    try:
        world.config_path.write_text(world.config_path.read_text() + f'\n[alerts]\nwebhook_url = "{catcher.url}"\n')
        assert world.sync("nav-zoho", flows=["customers"]).exit_code == 0
        world.zoho.revoke_refresh_token(world.secrets["MLCONNECTOR_ZOHO_REFRESH_TOKEN"])
        with pytest.raises(AuthError) as refused:
            api.sync(api.Runtime(config_path=world.config_path, transport=world.router), "nav-zoho",
                     flows=["customers"])
        assert catcher.events() == ["failed"] and catcher.bodies[0]["exit_code"] == 4
        assert catcher.bodies[0]["text"].endswith("nav-zoho: sync failed (exit 4): zoho: refresh token revoked or "
                                                  "expired; run `mlconnector auth zoho zoho`")
        text = json.dumps(catcher.bodies) + str(refused.value)
        for secret in world.secrets.values():
            assert secret not in text
    finally:
        world.close()


def test_a_mass_delete_stop_alerts_with_the_way_through_and_the_allowed_run_recovers(tmp_path, monkeypatch, catcher):
    from tests.pairs.world import make_world

    world = make_world(tmp_path, monkeypatch, "bc")
    try:
        world.config_path.write_text(world.config_path.read_text().replace(
            "[pairs.bc-zoho]\n", '[pairs.bc-zoho]\ndeletes_every_hours = 0\non_delete = {customers = "delete"}\n')
            + f'\n[alerts]\nwebhook_url = "{catcher.url}"\n')

        def sync(*args: str):
            return runner.invoke(build_app(), ["sync", "bc-zoho", *args], obj=world.runtime())

        assert sync().exit_code == 0
        for number in ("C00020", "C00030"):
            world.dynamics.delete(world.company, "customers", number)
        assert sync().exit_code == 3 and sync().exit_code == 3
        assert catcher.events() == ["failed"]
        assert ("the mass-delete guard stopped 2 deletion(s): nothing was deleted; check the source, and if they "
                "are real run `mlconnector sync bc-zoho --allow-deletes`") in catcher.bodies[0]["text"]
        assert sync("--allow-deletes").exit_code == 0
        assert catcher.events() == ["failed", "recovered"]
    finally:
        world.close()
