"""The receiver's /health: whether notifications can be stored, what `status --check` finds, the inbox backlog.
Each test runs with the state in the SQLite file and in PostgreSQL (``state_store``)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from mlconnector import api
from mlconnector.cli.main import build_app
from mlconnector.health import Limits, parse_duration
from mlconnector.sandbox.common import InProcessTransport

runner = CliRunner()


@pytest.fixture
def push_config(config_file: Path) -> Path:
    config_file.write_text(config_file.read_text().replace(
        'kind = "testcrm"', 'kind = "testcrm"\nnotify_url = "https://hooks.example.com/hooks/crm"'))
    return config_file


def get(listener: api.Listener, path: str) -> httpx.Response:
    transport = InProcessTransport(listener.app)
    try:
        with httpx.Client(transport=transport, base_url="http://listener") as client:
            return client.get(path)
    finally:
        transport.close()


def post(listener: api.Listener, body: dict, token: str) -> httpx.Response:
    transport = InProcessTransport(listener.app)
    try:
        with httpx.Client(transport=transport, base_url="http://listener") as client:
            return client.post("/hooks/crm", content=json.dumps(body).encode(), headers={"x-token": token})
    finally:
        transport.close()


def test_health_reports_the_checks_and_the_inbox_backlog(push_config, erp, crm, monkeypatch, state_store):
    monkeypatch.setattr("mlconnector.webhooks.HEALTH_EVERY", 0)  # look afresh at every request
    erp.put("customer", {"number": "C1", "name": "Customer 1"})
    assert runner.invoke(build_app(), ["sync", "erp-crm"]).exit_code == 0  # subscribes the channel
    listener = api.Listener(api.Runtime(config_path=push_config))
    try:
        healthy = get(listener, "/health")
        assert healthy.status_code == 200
        assert healthy.json() == {"ok": True, "receiving": True, "systems": ["crm", "erp"], "problems": [],
                                  "inbox": {"waiting": 0, "oldest_seconds": None}}

        assert post(listener, {"channel_id": "ch-account-1", "ids": ["a-1"]}, "tok-ch-account-1").status_code == 202
        assert get(listener, "/health").json()["inbox"] == {"waiting": 1, "oldest_seconds": 0}

        crm.set_fault("reject", ["C2"])
        erp.put("customer", {"number": "C2", "name": "Customer 2"})
        assert runner.invoke(build_app(), ["sync", "erp-crm", "--flow", "customers"]).exit_code == 3
        found = get(listener, "/health")
        assert found.status_code == 200  # still receiving: a failed sync must not take the receiver offline
        assert found.json()["ok"] is False and [p["code"] for p in found.json()["problems"]] == [10]
        strict = get(listener, "/health?check=1")
        assert strict.status_code == 503 and strict.json()["problems"][0]["problem"].startswith("erp-crm: the last run ")
    finally:
        listener.close()


def test_health_applies_max_age(push_config, erp, state_store):
    listener = api.Listener(api.Runtime(config_path=push_config), limits=Limits(max_age=None))
    try:
        assert get(listener, "/health?check=1").status_code == 200
    finally:
        listener.close()
    listener = api.Listener(api.Runtime(config_path=push_config), limits=Limits(max_age=parse_duration("1h", "--max-age")))
    try:
        answer = get(listener, "/health?check=1")
        assert answer.status_code == 503 and answer.json()["problems"][0]["code"] == 11
    finally:
        listener.close()
