"""Every test gets its own state file, config path, secrets directory and an in-memory keyring:
nothing touches the user's real keyring, state dir or the network beyond loopback."""

from __future__ import annotations

from pathlib import Path

import keyring
import pytest

from tests import fakes
from tests.helpers import MemoryKeyring


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> MemoryKeyring:
    """Point every default location at the test's own folder and use a throwaway keyring."""
    for name in list(__import__("os").environ):
        if name.startswith("MLCONNECTOR_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("MLCONNECTOR_STATE", str(tmp_path / "state" / "state.db"))
    monkeypatch.setenv("MLCONNECTOR_CONFIG", str(tmp_path / "connections.toml"))
    monkeypatch.setenv("MLCONNECTOR_SECRETS_DIR", str(tmp_path / "secrets"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg-state"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    ring = MemoryKeyring()
    previous = keyring.get_keyring()
    keyring.set_keyring(ring)
    yield ring
    keyring.set_keyring(previous)


@pytest.fixture
def erp(tmp_path: Path) -> fakes.Store:
    return fakes.Store(tmp_path / "erp.db")


@pytest.fixture
def crm(tmp_path: Path) -> fakes.Store:
    return fakes.Store(tmp_path / "crm.db")


@pytest.fixture
def config_file(tmp_path: Path, erp: fakes.Store, crm: fakes.Store) -> Path:
    """A connections.toml naming the two test systems and the test pair."""
    path = tmp_path / "connections.toml"
    path.write_text(f'''
[systems.erp]
kind = "testerp"
path = "{erp.path}"

[systems.crm]
kind = "testcrm"
path = "{crm.path}"

[pairs.erp-crm]
overlap_seconds = 60
batch_size = 10
''')
    return path
