"""What the deletion tests of every pair share: the CLI as a user runs it, a pair's settings edited in its
connections.toml, a record's audit history, and a Zoho user of the org."""

from __future__ import annotations

import json
from typing import Any

import httpx
from typer.testing import CliRunner

from mlconnector.cli.main import build_app
from mlconnector.sandbox.zoho import ZohoSandbox
from tests.pairs.users import ZohoUser


def cli(world: Any, *args: str):
    return CliRunner().invoke(build_app(), list(args), obj=world.runtime())


def set_pair(world: Any, pair: str, *lines: str) -> None:
    text = world.config_path.read_text()
    world.config_path.write_text(text.replace(f"[pairs.{pair}]\n", f"[pairs.{pair}]\n" + "".join(
        line + "\n" for line in lines), 1))


def audit(world: Any, record: str) -> list[dict]:
    return json.loads(cli(world, "audit", "--record", record, "--json").stdout)


def zoho_user(router: httpx.BaseTransport, zoho: ZohoSandbox) -> ZohoUser:
    """Someone working in the Zoho org through its REST API, with a client of their own."""
    person = zoho.register_client()
    return ZohoUser(router, "http://zoho.sandbox", person.client_id, person.client_secret,
                    zoho.issue_refresh_token(person.client_id))
