"""`mlconnector secrets ...` as a user runs it: values are asked for hidden and never shown."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import keyring
import keyring.core
import keyring.errors
import pytest

from tests.helpers import MemoryKeyring
from keyring.backend import KeyringBackend
from keyring.backends import fail
from typer.testing import CliRunner

from mlconnector.cli import secrets as secrets_cli
from mlconnector.cli.secrets import app

runner = CliRunner()


def _use_keyring(monkeypatch: pytest.MonkeyPatch, backend: KeyringBackend) -> None:
    # Registers the current global backend for restoring, then swaps in ours: the real one is never used.
    monkeypatch.setattr(keyring.core, "_keyring_backend", keyring.core._keyring_backend)
    keyring.set_keyring(backend)


@pytest.fixture(autouse=True)
def secrets_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A clean environment whose secrets directory is a temp dir, never the user's."""
    for name in list(os.environ):
        if name.startswith("MLCONNECTOR_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "home" / ".config"))
    directory = tmp_path / "secrets"
    monkeypatch.setenv("MLCONNECTOR_SECRETS_DIR", str(directory))
    return directory


@pytest.fixture
def memory_keyring(monkeypatch: pytest.MonkeyPatch) -> MemoryKeyring:
    backend = MemoryKeyring()
    _use_keyring(monkeypatch, backend)
    return backend


@pytest.fixture
def no_keyring(monkeypatch: pytest.MonkeyPatch) -> None:
    _use_keyring(monkeypatch, fail.Keyring())


def _stored(backend: MemoryKeyring, system: str, field: str) -> str | None:
    return backend.passwords.get(("mlconnector", f"{system}:{field}"))


def test_set_prompts_hidden_and_never_shows_the_value(memory_keyring: MemoryKeyring) -> None:
    result = runner.invoke(app, ["set", "zoho", "client_secret"], input="s3cret-value\n")

    assert result.exit_code == 0, result.output
    assert "s3cret-value" not in result.output
    assert "client_secret for zoho:" in result.output  # the prompt
    assert "stored client_secret for zoho in OS keyring (" in result.stdout
    assert _stored(memory_keyring, "zoho", "client_secret") == "s3cret-value"


def test_set_without_field_asks_for_each_field_of_the_kind(memory_keyring: MemoryKeyring) -> None:
    result = runner.invoke(app, ["set", "zoho"], input="the-id\nthe-secret\nthe-token\n")

    assert result.exit_code == 0, result.output
    for value in ("the-id", "the-secret", "the-token"):
        assert value not in result.output
    assert _stored(memory_keyring, "zoho", "client_id") == "the-id"
    assert _stored(memory_keyring, "zoho", "refresh_token") == "the-token"


def test_set_uses_the_injected_kind(memory_keyring: MemoryKeyring, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(secrets_cli, "kind_of", lambda system: "nav" if system == "erp-main" else None)
    result = runner.invoke(app, ["set", "erp-main"], input="pw\n")

    assert result.exit_code == 0, result.output
    assert _stored(memory_keyring, "erp-main", "password") == "pw"


def test_set_unknown_kind_needs_a_field(memory_keyring: MemoryKeyring) -> None:
    result = runner.invoke(app, ["set", "warehouse"])

    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "error: cannot tell which secrets warehouse needs (kind warehouse): name the field, "
        "e.g. `mlconnector secrets set warehouse client_secret`"
    )


def test_set_value_from_stdin(memory_keyring: MemoryKeyring) -> None:
    result = runner.invoke(app, ["set", "bc", "client_secret", "--value-stdin"], input="from-pipe\n")

    assert result.exit_code == 0, result.output
    assert "from-pipe" not in result.output
    assert _stored(memory_keyring, "bc", "client_secret") == "from-pipe"


def test_list_json_shows_sources_not_values(memory_keyring: MemoryKeyring,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    runner.invoke(app, ["set", "gp", "password", "--value-stdin"], input="gp-pw\n")
    runner.invoke(app, ["set", "zoho", "client_secret", "--value-stdin"], input="zoho-secret\n")
    monkeypatch.setenv("MLCONNECTOR_ZOHO_CLIENT_SECRET", "env-secret")

    result = runner.invoke(app, ["list", "--json"])

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == [
        {"system": "gp", "field": "password", "source": "keyring"},
        {"system": "zoho", "field": "client_secret", "source": "env"},
    ]
    assert "secret" not in result.stdout.replace("client_secret", "")


def test_list_table(memory_keyring: MemoryKeyring) -> None:
    runner.invoke(app, ["set", "gp", "password", "--value-stdin"], input="gp-pw\n")

    result = runner.invoke(app, ["list"])

    assert result.exit_code == 0, result.output
    assert "gp-pw" not in result.output
    assert "secrets in OS keyring (" in result.stdout
    row = next(line for line in result.stdout.splitlines() if " gp " in line)
    assert "password" in row and "keyring" in row


def test_delete_asks_unless_yes(memory_keyring: MemoryKeyring) -> None:
    runner.invoke(app, ["set", "zoho", "--value-stdin"], input="a\nb\nc\n")

    refused = runner.invoke(app, ["delete", "zoho", "client_id"], input="n\n")
    assert refused.exit_code == 1
    assert _stored(memory_keyring, "zoho", "client_id") == "a"

    one = runner.invoke(app, ["delete", "zoho", "client_id"], input="y\n")
    assert one.exit_code == 0, one.output
    assert "deleted client_id of zoho" in one.stdout
    assert _stored(memory_keyring, "zoho", "client_id") is None

    rest = runner.invoke(app, ["delete", "zoho", "--yes"])
    assert rest.exit_code == 0, rest.output
    assert "deleted client_secret, refresh_token of zoho" in rest.stdout
    assert json.loads(runner.invoke(app, ["list", "--json"]).stdout) == []


def test_headless_host_without_key_gets_one_line_with_the_fix(no_keyring: None) -> None:
    result = runner.invoke(app, ["set", "nav", "password"], input="pw\n")

    assert result.exit_code == 2
    assert "password for nav:" not in result.output  # refused before asking for the value
    assert isinstance(result.exception, SystemExit)  # no traceback
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: no usable place to keep secrets")
    assert "`mlconnector secrets init-file`" in lines[0]


def test_init_file_then_set_uses_the_encrypted_file(no_keyring: None, secrets_dir: Path) -> None:
    created = runner.invoke(app, ["init-file"])
    assert created.exit_code == 0, created.output
    key_file = secrets_dir / "secrets.key"
    assert f"created key file {key_file} (mode 0600)" in created.stdout
    assert "MLCONNECTOR_MASTER_KEY" in created.stdout
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600

    stored = runner.invoke(app, ["set", "nav", "password"], input="nav-password\n")
    assert stored.exit_code == 0, stored.output
    assert f"stored password for nav in encrypted file {secrets_dir / 'secrets.enc'}" in stored.stdout
    assert b"nav-password" not in (secrets_dir / "secrets.enc").read_bytes()

    again = runner.invoke(app, ["init-file"])
    assert again.exit_code == 2
    assert "exists already" in again.stderr


def test_init_file_in_a_chosen_directory(tmp_path: Path) -> None:
    result = runner.invoke(app, ["init-file", "--dir", str(tmp_path / "elsewhere")])

    assert result.exit_code == 0, result.output
    assert (tmp_path / "elsewhere" / "secrets.key").exists()


def test_bad_backend_setting_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLCONNECTOR_SECRETS_BACKEND", "vault")
    result = runner.invoke(app, ["list"])

    assert result.exit_code == 2
    assert "MLCONNECTOR_SECRETS_BACKEND=vault is not a secrets backend" in result.stderr
