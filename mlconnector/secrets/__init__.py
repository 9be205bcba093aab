"""Where credentials live: the OS keyring, overridden by env vars, with an encrypted file for headless hosts.

Lookup order for one secret (``system``, ``field``):

1. the environment variable ``MLCONNECTOR_<SYSTEM>_<FIELD>`` (containers, CI);
2. the OS keyring, service ``mlconnector``, username ``"{system}:{field}"``;
3. on a host without a usable keyring (headless Linux cron), a Fernet-encrypted file whose key comes
   from ``MLCONNECTOR_MASTER_KEY`` or from a 0600 key file made by ``mlconnector secrets init-file``.

For a tenant (``mlconnector.tenants``): ``MLCONNECTOR_<TENANT>_<SYSTEM>_<FIELD>`` before the plain variable, the
keyring service ``mlconnector:<tenant>``, and the encrypted file in the tenant's folder of the secrets directory.

Nothing is ever written in plaintext. A keyring cannot enumerate its entries, so the store keeps a
non-secret index of (system, field) names next to the secrets, which ``list`` reads.

The package: ``kinds`` (the fields each kind of system reads, their environment variables), ``backends`` (the
keyring and the encrypted file), ``keyfile`` (the file's key); the store here chooses among them and reads through
them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from mlconnector import tenants
from mlconnector.errors import ConfigError, SecretStoreError
from mlconnector.secrets.backends import (INDEX_USERNAME, SERVICE, Source, _Backend, _effective_keyring,  # noqa: F401
                                          _FileBackend, _KeyringBackend)
from mlconnector.secrets.keyfile import (GENERATE_KEY_COMMAND, KEY_FILE_NAME, MASTER_KEY_ENV,  # noqa: F401
                                         SECRETS_FILE_NAME, _load_fernet, _write_private, default_directory,
                                         init_secret_file)
from mlconnector.secrets.kinds import (ENV_PREFIX, KNOWN_FIELDS, SETTABLE_FIELDS, _env_part,  # noqa: F401
                                       env_var_name, env_var_names, field_for, is_secret_key)

BACKENDS = ("auto", "keyring", "file")


class Secret:
    """A value that must not leak: ``str``, ``repr`` and f-strings show stars; ``reveal()`` gives it."""

    __slots__ = ("_value",)
    MASK = "**********"

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The real value; call it only where the value is sent to the system that needs it."""
        return self._value

    def __str__(self) -> str:
        return self.MASK

    def __repr__(self) -> str:
        return repr(self.MASK)

    def __format__(self, spec: str) -> str:
        return format(self.MASK, spec)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash((Secret, self._value))


@dataclass(frozen=True)
class SecretEntry:
    """One secret that is set, and where its value comes from. Never carries the value."""

    system: str
    field: str
    source: Source


def _no_place_error(directory: Path) -> SecretStoreError:
    return SecretStoreError(
        "no usable place to keep secrets: no OS keyring backend is available and there is no key for "
        f"the encrypted file ({directory / KEY_FILE_NAME}). Fix it in one of these ways: install and "
        "unlock a keyring backend (Secret Service via gnome-keyring or KWallet, macOS Keychain, "
        "Windows Credential Manager); or run `mlconnector secrets init-file` to create a key for an "
        f"encrypted file; or set {MASTER_KEY_ENV} to a key made with `{GENERATE_KEY_COMMAND}`; or provide "
        "each secret as an environment variable MLCONNECTOR_<SYSTEM>_<FIELD>."
    )


class SecretStore:
    """Read and write credentials; see the module docstring for where they live.

    The backend is chosen on first use, so a store built where only env vars are set works without
    a keyring or key. Writes go straight through. Reads see a value another process stored or rotated
    meanwhile (a long-running `listen` picks up a rotated notify token or client secret): the encrypted
    file is read again whenever it changed on disk, and keyring values are kept for ``KEYRING_TTL`` seconds
    at most, so a receiver verifying thousands of notifications does not ask the keyring for each.
    """

    KEYRING_TTL = 5.0

    def __init__(self, *, backend: str = "auto", directory: Path | None = None,
                 environ: Mapping[str, str] | None = None) -> None:
        if backend not in BACKENDS:
            raise ConfigError(f"unknown secrets backend {backend!r}: use one of {', '.join(BACKENDS)}")
        self._backend_name = backend
        self._directory = directory or default_directory()
        self._environ = os.environ if environ is None else environ
        self._resolved: _Backend | None = None
        self._service = tenants.keyring_service(SERVICE)  # chosen once: the store serves one tenant
        self._prefix = tenants.env_prefix()
        self._cache: dict[tuple[str, str], tuple[float, str]] = {}

    @property
    def location(self) -> str:
        """Where secrets live, for people: "OS keyring (SecretService)", "encrypted file /path"."""
        return self._backend().location

    def get(self, system: str, field: str) -> str | None:
        """The secret, from its env var if set, else from the store; None if it is not set anywhere."""
        for name in self._env_names(system, field):
            if self._environ.get(name):
                return self._environ[name]
        backend = self._backend()
        if backend.source == "file":
            return backend.read(system, field)  # cheap: the file is decrypted again only when it changed
        cached = self._cache.get((system, field))
        if cached is not None and time.monotonic() - cached[0] < self.KEYRING_TTL:
            return cached[1]
        value = backend.read(system, field)
        if value is None:
            # A missing secret is looked up again next time: another process may store it meanwhile
            # (the first sync subscribing while `listen` already runs).
            self._cache.pop((system, field), None)
        else:
            self._cache[(system, field)] = (time.monotonic(), value)
        return value

    def require(self, system: str, field: str) -> str:
        """Like ``get``, but a missing secret is a ConfigError that says how to set it."""
        value = self.get(system, field)
        if value is None:
            raise ConfigError(
                f"no secret {field} for system {system}: run `mlconnector secrets set {system} {field}` "
                f"or set {self._env_names(system, field)[0]}"
            )
        return value

    def set(self, system: str, field: str, value: str) -> None:
        """Store a secret (the env var, if set, still wins when reading)."""
        _check_name("system", system)
        _check_name("field", field)
        if not value:
            raise ConfigError(f"refusing to store an empty {field} for {system}")
        self._backend().write(system, field, value)
        self._cache[(system, field)] = (time.monotonic(), value)

    def delete(self, system: str, field: str | None = None) -> list[str]:
        """Delete one field, or every field, of a system; return the names of the fields deleted."""
        backend = self._backend()
        fields = [field] if field is not None else list(backend.index().get(system, []))
        deleted = [name for name in fields if backend.remove(system, name)]
        for name in fields:
            self._cache.pop((system, name), None)
        return deleted

    def list(self, system: str | None = None) -> list[SecretEntry]:
        """Which secrets are set (one entry per system and field, with the source that wins)."""
        stored = self._backend()
        entries: dict[tuple[str, str], Source] = {}
        for name, fields in stored.index().items():
            for field in fields:
                entries[(name, field)] = stored.source
        for name, field in self._env_secrets(set(entries), system):
            entries[(name, field)] = "env"
        return sorted(
            (SecretEntry(name, field, source) for (name, field), source in entries.items()
             if system is None or name == system),
            key=lambda e: (e.system, e.field),
        )

    def _env_secrets(self, known: set[tuple[str, str]], system: str | None) -> Iterator[tuple[str, str]]:
        """(system, field) for each set env var of a known system.

        An env var alone cannot say where the system name ends (MLCONNECTOR_NAV_PROD_PASSWORD), so
        only systems we know of are matched, the longest name first; a field already known keeps
        its own spelling.
        """
        by_var = {name: (s, f) for s, f in known for name in self._env_names(s, f)}
        systems = {s for s, _ in known} | ({system} if system else set())
        tenant_parts = ["", self._prefix] if self._prefix else [""]
        prefixes = sorted(((f"{ENV_PREFIX}{t}{_env_part(s)}_", s) for s in systems for t in tenant_parts),
                          key=lambda p: len(p[0]), reverse=True)
        for var, value in self._environ.items():
            if not value:
                continue
            if var in by_var:
                yield by_var[var]
                continue
            for prefix, name in prefixes:
                if var.startswith(prefix) and len(var) > len(prefix):
                    yield name, var[len(prefix):].lower()
                    break

    def _env_names(self, system: str, field: str) -> list[str]:
        return env_var_names(system, field, self._prefix)

    def _backend(self) -> _Backend:
        if self._resolved is None:
            self._resolved = self._resolve_backend()
        return self._resolved

    def _resolve_backend(self) -> _Backend:
        if self._backend_name in ("auto", "keyring"):
            found = _effective_keyring()
            if found is not None:
                return _KeyringBackend(found, self._service)
            if self._backend_name == "keyring":
                raise SecretStoreError(
                    "no usable OS keyring backend: install and unlock one (Secret Service via "
                    "gnome-keyring or KWallet, macOS Keychain, Windows Credential Manager), or use "
                    "MLCONNECTOR_SECRETS_BACKEND=file with `mlconnector secrets init-file`"
                )
        key = _load_fernet(self._directory, self._environ)
        if key is None:
            raise _no_place_error(self._directory)
        return _FileBackend(self._directory, *key)


def _check_name(kind: str, name: str) -> None:
    # ':' separates system and field in the keyring username; the index name is reserved.
    if not name or ":" in name or name == INDEX_USERNAME:
        raise ConfigError(f"invalid {kind} name {name!r}: it must be non-empty and contain no ':'")


BACKEND_ENV = "MLCONNECTOR_SECRETS_BACKEND"
DIRECTORY_ENV = "MLCONNECTOR_SECRETS_DIR"


def store_from_environment(environ: Mapping[str, str] | None = None, *, backend: str | None = None,
                           directory: Path | None = None) -> "SecretStore":
    """The store every command uses: MLCONNECTOR_SECRETS_BACKEND and MLCONNECTOR_SECRETS_DIR, else the
    ``backend`` and ``directory`` given (from connections.toml's [secrets]), else the defaults."""
    env = os.environ if environ is None else environ
    backend = env.get(BACKEND_ENV) or backend or "auto"
    if backend not in BACKENDS:
        raise ConfigError(f"{BACKEND_ENV}={backend} is not a secrets backend: use one of {', '.join(BACKENDS)}")
    # A tenant's encrypted file is in its folder of the shared directory; a [secrets] dir in its own config is its.
    if env.get(DIRECTORY_ENV):
        directory = tenants.below(Path(env[DIRECTORY_ENV]).expanduser())
    elif directory is None and tenants.current():
        directory = tenants.below(default_directory())
    return SecretStore(backend=backend, directory=directory, environ=env)
