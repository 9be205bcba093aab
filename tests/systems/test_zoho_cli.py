"""`mlconnector auth zoho` and `mlconnector ping zoho` against the Zoho sandbox, in-process and over loopback."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

import pytest
import uvicorn
from typer.testing import CliRunner

from mlconnector.api import Runtime
from mlconnector.cli.main import build_app
from mlconnector.sandbox.zoho import create_app
from mlconnector.secrets import SecretStore
from mlconnector.systems.zoho import SCOPES

from tests.systems.zoho_env import CLIENT_ID, CLIENT_SECRET, REDIRECT_URI, ZohoEnv, make_env


@pytest.fixture
def env() -> Iterator[ZohoEnv]:
    made = make_env()
    yield made
    made.inner.close()


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "connections.toml"
    path.write_text(f'[systems.zoho]\nkind = "zoho"\ndata_centre = "us"\nclient_id = "{CLIENT_ID}"\n'
                    f'redirect_uri = "{REDIRECT_URI}"\n')
    return path


def invoke(env: ZohoEnv, *args: str, input: str | None = None):
    return CliRunner().invoke(build_app(), list(args), input=input, obj=Runtime(transport=env.transport))


def test_auth_zoho_exchanges_the_pasted_redirect_and_stores_the_refresh_token(env: ZohoEnv, config: Path) -> None:
    SecretStore().delete("zoho", "refresh_token")
    # The code carries exactly the scopes our consent URL asks for: enough for every call the connector makes.
    code = env.zoho.issue_grant_code(CLIENT_ID, redirect_uri=REDIRECT_URI, scope=SCOPES)
    redirect = f"{REDIRECT_URI}?code={code}&location=us&accounts-server={quote('https://accounts.zoho.com', safe='')}"
    result = invoke(env, "auth", "zoho", input=redirect + "\n")
    assert result.exit_code == 0, result.output

    consent = next(line for line in result.output.splitlines() if "/oauth/v2/auth?" in line)
    params = parse_qs(urlsplit(consent).query)
    assert consent.startswith("https://accounts.zoho.com/oauth/v2/auth?")
    assert params["scope"][0].split(",") == [
        "ZohoCRM.modules.ALL", "ZohoCRM.settings.ALL", "ZohoCRM.org.READ", "ZohoCRM.users.READ",
        "ZohoCRM.notifications.ALL", "ZohoCRM.bulk.ALL", "ZohoCRM.coql.READ", "ZohoFiles.files.ALL"]
    assert params["access_type"] == ["offline"] and params["prompt"] == ["consent"]
    assert params["client_id"] == [CLIENT_ID] and params["redirect_uri"] == [REDIRECT_URI]

    stored = SecretStore().get("zoho", "refresh_token")
    assert stored in env.zoho.accounts.refresh_tokens
    assert stored not in result.output and CLIENT_SECRET not in result.output
    assert "authorised" in result.output
    exchange = next(r for r in env.transport.requests if r.url.path == "/oauth/v2/token")
    assert exchange.url.host == "accounts.zoho.com"

    # ping proves the stored refresh token with a fresh access token (one mint), which later calls reuse.
    minted = env.zoho.accounts.minted
    ping = invoke(env, "ping", "zoho")
    assert ping.exit_code == 0, ping.output
    assert env.zoho.accounts.minted == minted + 1
    connector = env.connector(bulk_threshold=1)
    results = connector.write("Accounts", [{"Account_Name": "A"}, {"Account_Name": "B"}], "Account_Name")
    assert [r.action for r in results] == ["create", "create"]  # upload + bulk job: files and bulk scopes
    assert len(list(connector.changes("Accounts", None))) == 2  # COQL scope
    channel = connector.subscribe("Accounts", "http://listener.test/zoho/notify")
    connector.unsubscribe(channel)


def test_auth_zoho_follows_the_accounts_server_of_the_redirect(config: Path) -> None:
    env = make_env(data_centre="eu")
    try:
        code = env.zoho.issue_grant_code(CLIENT_ID, redirect_uri=REDIRECT_URI)
        redirect = f"{REDIRECT_URI}?code={code}&location=eu&accounts-server=https%3A%2F%2Faccounts.zoho.eu"
        result = invoke(env, "auth", "zoho", "--code", redirect)
        assert result.exit_code == 0, result.output
        assert "accounts.zoho.eu" in result.output  # and a note that data_centre says us
        ping = invoke(env, "ping", "zoho")
        assert ping.exit_code == 0, ping.output
        assert {r.url.host for r in env.transport.requests if r.url.path.endswith("/token")} == {"accounts.zoho.eu"}
    finally:
        env.inner.close()


def test_auth_zoho_with_a_used_code_exits_4(env: ZohoEnv, config: Path) -> None:
    code = env.zoho.issue_grant_code(CLIENT_ID, redirect_uri=REDIRECT_URI)
    assert invoke(env, "auth", "zoho", "--code", code).exit_code == 0
    again = invoke(env, "auth", "zoho", "--code", code)
    assert again.exit_code == 4
    assert "expired or already used" in again.output


def test_auth_zoho_refuses_a_foreign_accounts_server(env: ZohoEnv, config: Path) -> None:
    result = invoke(env, "auth", "zoho", "--code", f"{REDIRECT_URI}?code=x&accounts-server=https://evil.test")
    assert result.exit_code == 2 and "not a Zoho accounts server" in result.output
    assert not any(r.url.host == "evil.test" for r in env.transport.requests)


def test_auth_zoho_without_client_secret_says_how_to_set_it(env: ZohoEnv, config: Path) -> None:
    SecretStore().delete("zoho", "client_secret")
    result = invoke(env, "auth", "zoho", "--code", "x")
    assert result.exit_code == 2 and "mlconnector secrets set zoho client_secret" in result.output


# -- over real loopback HTTP --------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def served() -> Iterator[tuple[str, object]]:
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    app = create_app(api_domain=base)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started
    yield base, app.state.zoho
    server.should_exit = True
    thread.join(timeout=5)


def test_ping_zoho_over_loopback(served: tuple[str, object], tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    base, zoho = served
    client = zoho.register_client(CLIENT_ID, CLIENT_SECRET)
    refresh = zoho.issue_refresh_token(client.client_id)
    config = tmp_path / "loopback.toml"
    config.write_text(f'[systems.zoho]\nkind = "zoho"\nclient_id = "{CLIENT_ID}"\n'
                      f'accounts_url = "{base}"\napi_domain = "{base}"\n')
    monkeypatch.setenv("MLCONNECTOR_ZOHO_CLIENT_SECRET", CLIENT_SECRET)
    monkeypatch.setenv("MLCONNECTOR_ZOHO_REFRESH_TOKEN", refresh)
    result = CliRunner().invoke(build_app(), ["--config", str(config), "ping", "zoho"])
    assert result.exit_code == 0, result.output
    assert base in result.output and "Sandbox Trading Ltd" in result.output and "enterprise" in result.output
    assert refresh not in result.output and CLIENT_SECRET not in result.output
    assert zoho.calls["org"] == 1 and zoho.calls["users"] == 1

    zoho.revoke_refresh_token(refresh)
    from mlconnector.auth import SecretTokenCache

    SecretTokenCache(SecretStore(), "zoho").clear()
    refused = CliRunner().invoke(build_app(), ["--config", str(config), "ping", "zoho"])
    assert refused.exit_code == 4 and "mlconnector auth zoho" in refused.output
