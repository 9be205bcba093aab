"""Where secrets are persisted: the OS keyring (with a non-secret index of names, since a keyring cannot list its
entries) or the Fernet-encrypted file, read again whenever another process changed it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal, Protocol

import keyring
import keyring.errors
from cryptography.fernet import Fernet, InvalidToken
from filelock import FileLock
from keyring.backend import KeyringBackend
from keyring.backends import chainer, fail

from mlconnector.errors import SecretStoreError
from mlconnector.secrets.keyfile import MASTER_KEY_ENV, SECRETS_FILE_NAME, _write_private

SERVICE = "mlconnector"
INDEX_USERNAME = "__index__"

Source = Literal["keyring", "file", "env"]


class _Backend(Protocol):
    """Where secrets are persisted: the keyring or the encrypted file."""

    source: Source
    location: str

    def read(self, system: str, field: str) -> str | None: ...
    def write(self, system: str, field: str, value: str) -> None: ...
    def remove(self, system: str, field: str) -> bool: ...
    def index(self) -> dict[str, list[str]]: ...

def _effective_keyring() -> KeyringBackend | None:
    """The keyring backend that would store our secrets, or None when there is no safe one."""
    backend = keyring.get_keyring()
    if isinstance(backend, chainer.ChainerBackend):
        # The chainer writes to its first backend; with none it silently stores nothing.
        backends = backend.backends
        backend = backends[0] if backends else None
    if backend is None or isinstance(backend, fail.Keyring) or backend.priority <= 0:
        return None  # fail/null backends: every call raises or is dropped
    if "plaintext" in type(backend).__name__.lower():
        return None  # keyrings.alt's PlaintextKeyring would store secrets unencrypted
    return backend


class _KeyringBackend:
    """Secrets in the OS keyring; the (system, field) index is a JSON entry of its own."""

    source: Source = "keyring"

    def __init__(self, backend: KeyringBackend, service: str = SERVICE) -> None:
        self._backend, self._service = backend, service  # mlconnector, or mlconnector:TENANT
        named = "" if service == SERVICE else f", service {service}"
        self.location = f"OS keyring ({backend.name.removesuffix(' Keyring')}{named})"
        self._index: dict[str, list[str]] | None = None

    def _call(self, method: str, *args: str) -> str | None:
        try:
            return getattr(self._backend, method)(self._service, *args)
        except keyring.errors.PasswordDeleteError:
            raise
        except keyring.errors.KeyringError as err:
            raise SecretStoreError(
                f"the {self.location} refused access ({err}): unlock it, or run "
                "`mlconnector secrets init-file` and set MLCONNECTOR_SECRETS_BACKEND=file"
            ) from None

    def read(self, system: str, field: str) -> str | None:
        return self._call("get_password", f"{system}:{field}")

    def write(self, system: str, field: str, value: str) -> None:
        self._call("set_password", f"{system}:{field}", value)
        index = self.index()
        if field not in index.get(system, []):
            index.setdefault(system, []).append(field)
            self._save_index(index)

    def remove(self, system: str, field: str) -> bool:
        try:
            self._call("delete_password", f"{system}:{field}")
            found = True
        except keyring.errors.PasswordDeleteError:
            found = False
        index = self.index()
        if field in index.get(system, []):
            index[system].remove(field)
            if not index[system]:
                del index[system]
            self._save_index(index)
            found = True
        return found

    def index(self) -> dict[str, list[str]]:
        if self._index is None:
            raw = self._call("get_password", INDEX_USERNAME)
            self._index = json.loads(raw) if raw else {}
        return self._index

    def _save_index(self, index: dict[str, list[str]]) -> None:
        self._call("set_password", INDEX_USERNAME, json.dumps(index, sort_keys=True))
        self._index = index


class _FileBackend:
    """Secrets in one Fernet-encrypted JSON file ``{system: {field: value}}``; its keys are the index."""

    source: Source = "file"

    def __init__(self, directory: Path, fernet: Fernet, key_origin: str) -> None:
        self.path = directory / SECRETS_FILE_NAME
        self.location = f"encrypted file {self.path}"
        self._fernet = fernet
        self._key_origin = key_origin
        self._data: dict[str, dict[str, str]] | None = None
        self._stamp: tuple[int, int, int] | None = None

    def _load(self) -> dict[str, dict[str, str]]:
        # Other processes write this file too (a sync subscribing while `listen` runs, two pairs caching
        # their tokens side by side): read it again whenever it has changed since we last did.
        try:
            info = self.path.stat()
            stamp: tuple[int, int, int] | None = (info.st_mtime_ns, info.st_size, info.st_ino)
        except FileNotFoundError:
            stamp = None
        if self._data is None or stamp != self._stamp:
            self._stamp = stamp
            if stamp is None:
                self._data = {}
            else:
                try:
                    self._data = json.loads(self._fernet.decrypt(self.path.read_bytes()))
                except InvalidToken:
                    raise SecretStoreError(
                        f"cannot decrypt {self.path} with the key from {self._key_origin}: it was written "
                        f"with another key. Use that key (the key file or {MASTER_KEY_ENV}), or move the "
                        "file away and store the secrets again"
                    ) from None
        return self._data

    def _save(self, data: dict[str, dict[str, str]]) -> None:
        token = self._fernet.encrypt(json.dumps(data, sort_keys=True).encode())
        _write_private(self.path, token, replace=True)
        self._data = data
        info = self.path.stat()
        self._stamp = (info.st_mtime_ns, info.st_size, info.st_ino)

    def read(self, system: str, field: str) -> str | None:
        return self._load().get(system, {}).get(field)

    def _locked(self) -> FileLock:
        """Read-modify-write under a lock, so that one process's write never drops another's."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        return FileLock(str(self.path.with_name(f"{self.path.name}.lock")), timeout=30)

    def write(self, system: str, field: str, value: str) -> None:
        with self._locked():
            data = self._load()
            data.setdefault(system, {})[field] = value
            self._save(data)

    def remove(self, system: str, field: str) -> bool:
        with self._locked():
            data = self._load()
            if field not in data.get(system, {}):
                return False
            del data[system][field]
            if not data[system]:
                del data[system]
            self._save(data)
            return True

    def index(self) -> dict[str, list[str]]:
        return {system: sorted(fields) for system, fields in self._load().items()}
