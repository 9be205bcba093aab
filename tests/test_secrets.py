"""The secret store: keyring roundtrip, env overrides, and the encrypted file on keyring-less hosts."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import keyring
import keyring.core
import keyring.errors
import pytest

from tests.helpers import MemoryKeyring
from cryptography.fernet import Fernet
from keyring.backend import KeyringBackend
from keyring.backends import fail

from mlconnector.errors import ConfigError, SecretStoreError
from mlconnector.secrets import (
    KEY_FILE_NAME,
    SECRETS_FILE_NAME,
    Secret,
    SecretEntry,
    SecretStore,
    init_secret_file,
)


def _use_keyring(monkeypatch: pytest.MonkeyPatch, backend: KeyringBackend) -> None:
    # Registers the current global backend for restoring, then swaps in ours: the real one is never used.
    monkeypatch.setattr(keyring.core, "_keyring_backend", keyring.core._keyring_backend)
    keyring.set_keyring(backend)


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may read or write the real user's config dir or environment."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "home" / ".config"))
    for name in list(os.environ):
        if name.startswith("MLCONNECTOR_"):
            monkeypatch.delenv(name)


@pytest.fixture
def memory_keyring(monkeypatch: pytest.MonkeyPatch) -> MemoryKeyring:
    backend = MemoryKeyring()
    _use_keyring(monkeypatch, backend)
    return backend


@pytest.fixture
def no_keyring(monkeypatch: pytest.MonkeyPatch) -> None:
    """A headless host: keyring found no backend."""
    _use_keyring(monkeypatch, fail.Keyring())


@pytest.fixture
def secrets_dir(tmp_path: Path) -> Path:
    return tmp_path / "secrets"


def test_keyring_roundtrip(memory_keyring: MemoryKeyring, secrets_dir: Path) -> None:
    store = SecretStore(directory=secrets_dir, environ={})
    store.set("zoho", "client_secret", "s3cret")
    store.set("zoho", "refresh_token", "1000.abc")
    store.set("nav", "password", "pw")

    again = SecretStore(directory=secrets_dir, environ={})
    assert again.get("zoho", "client_secret") == "s3cret"
    assert again.require("nav", "password") == "pw"
    assert again.get("zoho", "client_id") is None
    assert again.list() == [
        SecretEntry("nav", "password", "keyring"),
        SecretEntry("zoho", "client_secret", "keyring"),
        SecretEntry("zoho", "refresh_token", "keyring"),
    ]
    assert again.location == "OS keyring (helpers MemoryKeyring)"
    assert memory_keyring.passwords[("mlconnector", "zoho:client_secret")] == "s3cret"

    assert again.delete("zoho") == ["client_secret", "refresh_token"]
    assert again.get("zoho", "client_secret") is None
    assert again.list() == [SecretEntry("nav", "password", "keyring")]
    assert again.delete("nav", "password") == ["password"]
    assert again.delete("nav", "password") == []
    assert again.list() == []


def test_get_reads_the_keyring_once_and_set_writes_through(memory_keyring: MemoryKeyring,
                                                           secrets_dir: Path) -> None:
    store = SecretStore(directory=secrets_dir, environ={})
    store.set("bc", "client_secret", "one")
    reads = memory_keyring.reads
    assert store.get("bc", "client_secret") == "one"
    assert store.get("bc", "client_secret") == "one"
    assert memory_keyring.reads == reads  # served from the cache

    store.set("bc", "client_secret", "two")
    assert memory_keyring.passwords[("mlconnector", "bc:client_secret")] == "two"
    assert store.get("bc", "client_secret") == "two"


def test_a_secret_rotated_by_another_process_is_seen_by_a_long_running_one(
        memory_keyring: MemoryKeyring, secrets_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # `listen` keeps one store for hours; `secrets set` (another process) rotates the notify token.
    listener = SecretStore(directory=secrets_dir, environ={})
    SecretStore(directory=secrets_dir, environ={}).set("zoho", "notify_token", "old-token")
    assert listener.get("zoho", "notify_token") == "old-token"
    SecretStore(directory=secrets_dir, environ={}).set("zoho", "notify_token", "new-token")
    assert listener.get("zoho", "notify_token") == "old-token"  # within the keyring cache's few seconds
    later = time.monotonic() + SecretStore.KEYRING_TTL + 1
    monkeypatch.setattr("mlconnector.secrets.time.monotonic", lambda: later)
    assert listener.get("zoho", "notify_token") == "new-token"


def test_a_secret_rotated_in_the_encrypted_file_is_seen_at_once(no_keyring: None, secrets_dir: Path) -> None:
    init_secret_file(secrets_dir)
    listener = SecretStore(directory=secrets_dir, environ={})
    SecretStore(directory=secrets_dir, environ={}).set("bc", "client_state", "first")
    assert listener.get("bc", "client_state") == "first"
    SecretStore(directory=secrets_dir, environ={}).set("bc", "client_state", "second")
    assert listener.get("bc", "client_state") == "second"
    SecretStore(directory=secrets_dir, environ={}).delete("bc", "client_state")
    assert listener.get("bc", "client_state") is None


def test_env_var_overrides_and_list_shows_it(memory_keyring: MemoryKeyring, secrets_dir: Path) -> None:
    environ = {"MLCONNECTOR_NAV_PROD_PASSWORD": "from-env", "MLCONNECTOR_ZOHO_CLIENT_ID": "id-env"}
    store = SecretStore(directory=secrets_dir, environ=environ)
    store.set("nav-prod", "password", "from-keyring")
    store.set("nav", "password", "plain-nav")

    assert store.get("nav-prod", "password") == "from-env"
    assert store.get("nav", "password") == "plain-nav"
    assert store.list() == [
        SecretEntry("nav", "password", "keyring"),
        SecretEntry("nav-prod", "password", "env"),  # not mistaken for nav's "prod_password"
    ]
    # A system known only from env vars shows up when asked for by name.
    assert store.list("zoho") == [SecretEntry("zoho", "client_id", "env")]


def test_env_only_needs_no_keyring_or_key(no_keyring: None, secrets_dir: Path) -> None:
    store = SecretStore(directory=secrets_dir, environ={"MLCONNECTOR_GP_PASSWORD": "pw"})
    assert store.require("gp", "password") == "pw"


def test_require_names_the_fix(memory_keyring: MemoryKeyring, secrets_dir: Path) -> None:
    store = SecretStore(directory=secrets_dir, environ={})
    with pytest.raises(ConfigError) as caught:
        store.require("zuora-eu", "client_secret")
    assert str(caught.value) == (
        "no secret client_secret for system zuora-eu: run `mlconnector secrets set zuora-eu client_secret` "
        "or set MLCONNECTOR_ZUORA_EU_CLIENT_SECRET"
    )


def test_falls_back_to_an_encrypted_file(no_keyring: None, secrets_dir: Path) -> None:
    key_file = init_secret_file(secrets_dir)
    assert key_file == secrets_dir / KEY_FILE_NAME
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600

    store = SecretStore(directory=secrets_dir, environ={})
    store.set("finops", "client_secret", "very-secret-value")
    assert store.location == f"encrypted file {secrets_dir / SECRETS_FILE_NAME}"

    secrets_file = secrets_dir / SECRETS_FILE_NAME
    raw = secrets_file.read_bytes()
    assert b"very-secret-value" not in raw
    assert b"finops" not in raw  # the index is encrypted too
    assert stat.S_IMODE(secrets_file.stat().st_mode) == 0o600

    again = SecretStore(directory=secrets_dir, environ={})
    assert again.get("finops", "client_secret") == "very-secret-value"
    assert again.list() == [SecretEntry("finops", "client_secret", "file")]
    assert again.delete("finops") == ["client_secret"]
    assert SecretStore(directory=secrets_dir, environ={}).list() == []


def test_master_key_from_env(no_keyring: None, secrets_dir: Path) -> None:
    environ = {"MLCONNECTOR_MASTER_KEY": Fernet.generate_key().decode()}
    SecretStore(directory=secrets_dir, environ=environ).set("gp", "password", "pw")
    assert not (secrets_dir / KEY_FILE_NAME).exists()
    assert SecretStore(directory=secrets_dir, environ=environ).get("gp", "password") == "pw"


def test_no_keyring_and_no_key_says_how_to_fix(no_keyring: None, secrets_dir: Path) -> None:
    store = SecretStore(directory=secrets_dir, environ={})
    with pytest.raises(SecretStoreError) as caught:
        store.set("zoho", "client_secret", "x")
    message = str(caught.value)
    assert "no OS keyring backend" in message
    assert "`mlconnector secrets init-file`" in message
    assert "MLCONNECTOR_MASTER_KEY" in message
    assert "MLCONNECTOR_<SYSTEM>_<FIELD>" in message
    assert not secrets_dir.exists()  # nothing written anywhere, least of all in plaintext


def test_chainer_without_backends_counts_as_no_keyring(monkeypatch: pytest.MonkeyPatch,
                                                       secrets_dir: Path) -> None:
    from keyring.backends import chainer

    monkeypatch.setattr(chainer.ChainerBackend, "backends", [])
    _use_keyring(monkeypatch, chainer.ChainerBackend())
    with pytest.raises(SecretStoreError, match="init-file"):
        SecretStore(directory=secrets_dir, environ={}).get("zoho", "client_secret")


def test_wrong_master_key_is_a_clear_error(no_keyring: None, secrets_dir: Path) -> None:
    init_secret_file(secrets_dir)
    SecretStore(directory=secrets_dir, environ={}).set("nav", "password", "pw")

    other = {"MLCONNECTOR_MASTER_KEY": Fernet.generate_key().decode()}
    with pytest.raises(SecretStoreError) as caught:
        SecretStore(directory=secrets_dir, environ=other).get("nav", "password")
    assert str(caught.value).startswith(
        f"cannot decrypt {secrets_dir / SECRETS_FILE_NAME} with the key from MLCONNECTOR_MASTER_KEY: "
        "it was written with another key"
    )

    with pytest.raises(SecretStoreError, match="MLCONNECTOR_MASTER_KEY does not hold a valid key"):
        SecretStore(directory=secrets_dir, environ={"MLCONNECTOR_MASTER_KEY": "hunter2"}).get("nav", "password")


def test_key_file_readable_by_others_is_refused(no_keyring: None, secrets_dir: Path) -> None:
    key_file = init_secret_file(secrets_dir)
    key_file.chmod(0o644)
    with pytest.raises(SecretStoreError) as caught:
        SecretStore(directory=secrets_dir, environ={}).get("nav", "password")
    assert f"fix it with `chmod 600 {key_file}`" in str(caught.value)


def test_init_secret_file_refuses_to_overwrite(secrets_dir: Path) -> None:
    key_file = init_secret_file(secrets_dir)
    key = key_file.read_bytes()
    with pytest.raises(SecretStoreError, match="exists already"):
        init_secret_file(secrets_dir)
    assert key_file.read_bytes() == key


def test_keyring_backend_refuses_without_keyring(no_keyring: None, secrets_dir: Path) -> None:
    init_secret_file(secrets_dir)  # even with a key, "keyring" means the keyring
    with pytest.raises(SecretStoreError, match="no usable OS keyring backend"):
        SecretStore(backend="keyring", directory=secrets_dir, environ={}).get("nav", "password")


def test_file_backend_used_even_with_a_keyring(memory_keyring: MemoryKeyring, secrets_dir: Path) -> None:
    init_secret_file(secrets_dir)
    SecretStore(backend="file", directory=secrets_dir, environ={}).set("gp", "password", "pw")
    assert memory_keyring.passwords == {}
    assert (secrets_dir / SECRETS_FILE_NAME).exists()


def test_unknown_backend_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown secrets backend 'vault'"):
        SecretStore(backend="vault")


def test_secret_never_prints_its_value() -> None:
    secret = Secret("p@ss")
    assert str(secret) == "**********"
    assert repr(secret) == "'**********'"
    assert f"token={secret}" == "token=**********"
    assert "p@ss" not in repr({"password": secret})
    assert secret.reveal() == "p@ss"
    assert secret == Secret("p@ss") and secret != "p@ss"
