"""`mlconnector ping nav` and `ping bc` against the Dynamics sandbox: in-process, and over real loopback HTTP."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from typer.testing import CliRunner

from mlconnector.api import Runtime
from mlconnector.cli.main import build_app
from mlconnector.sandbox.common import InProcessTransport
from mlconnector.sandbox.dynamics import DynamicsSandbox, create_app
from mlconnector.secrets import SecretStore

from tests.systems.dynamics_env import ACCESS_KEY, CLIENT_ID, CLIENT_SECRET, COMPANY, TENANT, USER


def _config(path: Path, base: str) -> Path:
    path.write_text(f'''
[systems.nav]
kind = "nav"
base_url = "{base}/DynamicsNAV110"
company = "{COMPANY}"
user = "{USER}"

[systems.bc]
kind = "bc"
tenant = "{TENANT}"
environment = "production"
client_id = "{CLIENT_ID}"
company = "{COMPANY}"
base_url = "{base}/v2.0/{TENANT}/production"
token_url = "{base}/{TENANT}/oauth2/v2.0/token"
''')
    return path


def _arrange(sandbox: DynamicsSandbox) -> None:
    sandbox.register_app(TENANT, CLIENT_ID, CLIENT_SECRET)
    sandbox.set_web_service_user(USER, ACCESS_KEY)
    sandbox.seed_demo(COMPANY)
    store = SecretStore()
    store.set("nav", "password", ACCESS_KEY)
    store.set("bc", "client_secret", CLIENT_SECRET)


@pytest.fixture
def inprocess(tmp_path: Path) -> Iterator[tuple[Runtime, DynamicsSandbox]]:
    app = create_app()
    _arrange(app.state.dynamics)
    transport = InProcessTransport(app)
    yield Runtime(transport=transport, config_path=_config(tmp_path / "connections.toml", "http://erp.test:7048")), \
        app.state.dynamics
    transport.close()


@pytest.mark.parametrize("system", ["nav", "bc"])
def test_ping_in_process(inprocess: tuple[Runtime, DynamicsSandbox], system: str) -> None:
    runtime, sandbox = inprocess
    result = CliRunner().invoke(build_app(), ["ping", system], obj=runtime)
    assert result.exit_code == 0, result.output
    assert COMPANY in result.output and "erp.test" in result.output
    tokens = list(sandbox.identity.tokens)
    for secret in [CLIENT_SECRET, ACCESS_KEY, *tokens]:
        assert secret not in result.output


def test_ping_nav_against_a_windows_server_exits_4_and_says_why(inprocess: tuple[Runtime, DynamicsSandbox]) -> None:
    runtime, sandbox = inprocess
    sandbox.use_windows_authentication()
    result = CliRunner().invoke(build_app(), ["ping", "nav"], obj=runtime)
    assert result.exit_code == 4
    assert "server expects Windows authentication" in " ".join(result.output.split())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_ping_nav_and_bc_over_loopback(tmp_path: Path) -> None:
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    app = create_app()
    _arrange(app.state.dynamics)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        assert server.started
        config = _config(tmp_path / "loopback.toml", base)
        result = CliRunner().invoke(build_app(), ["--config", str(config), "ping"])
        assert result.exit_code == 0, result.output
        assert f"{base}/DynamicsNAV110/ODataV4" in result.output
        assert f"{base}/v2.0/{TENANT}/production/api/v2.0" in result.output
        for secret in [CLIENT_SECRET, ACCESS_KEY, *app.state.dynamics.identity.tokens]:
            assert secret not in result.output
        # A closed port: the same explanation a real on-premises server gets.
        _config(config, f"http://127.0.0.1:{_free_port()}")
        refused = CliRunner().invoke(build_app(), ["--config", str(config), "ping", "nav"])
        assert refused.exit_code == 5
        assert "open and the service tier running" in " ".join(refused.output.split())
    finally:
        server.should_exit = True
        thread.join(timeout=5)
