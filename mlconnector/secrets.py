"""Where credentials live: the OS keyring, overridden by env vars, with an encrypted file for headless hosts.

Lookup order for one secret (``system``, ``field``):

1. the environment variable ``MLCONNECTOR_<SYSTEM>_<FIELD>`` (containers, CI);
2. the OS keyring, service ``mlconnector``, username ``"{system}:{field}"``;
3. on a host without a usable keyring (headless Linux cron), a Fernet-encrypted file whose key comes
   from ``MLCONNECTOR_MASTER_KEY`` or from a 0600 key file made by ``mlconnector secrets init-file``.

Nothing is ever written in plaintext. A keyring cannot enumerate its entries, so the store keeps a
non-secret index of (system, field) names next to the secrets, which ``list`` reads.
"""

from __future__ import annotations

import json
import os
import re
import stat
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import keyring
import keyring.errors
import platformdirs
from cryptography.fernet import Fernet, InvalidToken
from filelock import FileLock
from keyring.backend import KeyringBackend
from keyring.backends import chainer, fail

from mlconnector.errors import ConfigError, SecretStoreError

SERVICE = "mlconnector"
INDEX_USERNAME = "__index__"
ENV_PREFIX = "MLCONNECTOR_"
MASTER_KEY_ENV = "MLCONNECTOR_MASTER_KEY"
KEY_FILE_NAME = "secrets.key"
SECRETS_FILE_NAME = "secrets.enc"
BACKENDS = ("auto", "keyring", "file")

Source = Literal["keyring", "file", "env"]

GENERATE_KEY_COMMAND = 'python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"'


# The secret fields each kind of system needs; `secrets set SYSTEM` prompts for all of them.
KNOWN_FIELDS: dict[str, tuple[str, ...]] = {
    "zoho": ("client_id", "client_secret", "refresh_token"),
    "bc": ("client_secret",),
    "nav": ("password",),
    "finops": ("client_secret",),
    "gp": ("password",),
    "zuora": ("client_secret",),
    "state": ("password",),  # the PostgreSQL state database's ([state] url), stored as system "state"
}
# Every field a kind reads that a user may set (a typo such as `pasword` is refused, not stored unused). Kinds not
# listed here (plugins) take any field.
SETTABLE_FIELDS: dict[str, tuple[str, ...]] = {
    **KNOWN_FIELDS,
    "bc": ("client_secret", "password"),        # Entra apps; on-premises Basic or Windows
    "nav": ("password", "client_secret"),       # the web service access key or password; API mode with Entra
    "zuora": ("client_secret", "callout_password", "callout_secret"),
}


def required_secrets(system: Any) -> tuple[str, ...]:
    """The secrets a configured system (a SystemConfig) cannot work without, as its connector reads them: what
    `ping` checks for all at once before it tries any."""
    settings, kind = system.settings, system.kind
    auth = settings.get("auth")
    if kind == "zoho":
        return ("client_secret",) if auth == "client_credentials" else ("client_secret", "refresh_token")
    if kind in ("nav", "bc"):
        from mlconnector.systems.dynamics import endpoint_of

        default = "entra" if kind == "bc" and not endpoint_of(system).on_premises else "basic"
        auth = auth or default
        if auth == "entra":
            return ("client_secret",)
        return ("password",) if settings.get("user") else ()
    if kind == "finops":
        return ("client_secret",)
    if kind == "gp":
        return ("password",) if settings.get("user") else ()
    if kind == "zuora":
        callouts = {"basic": ("callout_password",), "header": ("callout_secret",)}
        callout = callouts.get(str(settings.get("callout_auth") or "basic"), ())
        return ("client_secret",) + (callout if settings.get("notify_url") else ())
    return ()


def field_for(kind: str | None, key: str) -> str:
    """The secret field a key found in the configuration most likely meant, for the message that refuses it."""
    allowed = SETTABLE_FIELDS.get(kind or "")
    if not allowed or key in allowed:
        return key
    lowered = key.lower()
    for hint, field in (("pass", "password"), ("pwd", "password"), ("accesskey", "password"),
                        ("secret", "client_secret"), ("token", "refresh_token")):
        if hint in lowered and field in allowed:
            return field
    return allowed[0]


def env_var_name(system: str, field: str) -> str:
    """The environment variable that overrides one secret, e.g. ``MLCONNECTOR_ZOHO_CLIENT_SECRET``."""
    return f"{ENV_PREFIX}{_env_part(system)}_{_env_part(field)}"


def _env_part(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]", "_", name).upper()


def default_directory() -> Path:
    """The per-user config directory that holds the encrypted file and its key file."""
    return platformdirs.user_config_path("mlconnector")


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


class _Backend(Protocol):
    """Where secrets are persisted: the keyring or the encrypted file."""

    source: Source
    location: str

    def read(self, system: str, field: str) -> str | None: ...
    def write(self, system: str, field: str, value: str) -> None: ...
    def remove(self, system: str, field: str) -> bool: ...
    def index(self) -> dict[str, list[str]]: ...


def _no_place_error(directory: Path) -> SecretStoreError:
    return SecretStoreError(
        "no usable place to keep secrets: no OS keyring backend is available and there is no key for "
        f"the encrypted file ({directory / KEY_FILE_NAME}). Fix it in one of these ways: install and "
        "unlock a keyring backend (Secret Service via gnome-keyring or KWallet, macOS Keychain, "
        "Windows Credential Manager); or run `mlconnector secrets init-file` to create a key for an "
        f"encrypted file; or set {MASTER_KEY_ENV} to a key made with `{GENERATE_KEY_COMMAND}`; or provide "
        "each secret as an environment variable MLCONNECTOR_<SYSTEM>_<FIELD>."
    )


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

    def __init__(self, backend: KeyringBackend) -> None:
        self._backend = backend
        self.location = f"OS keyring ({backend.name.removesuffix(' Keyring')})"
        self._index: dict[str, list[str]] | None = None

    def _call(self, method: str, *args: str) -> str | None:
        try:
            return getattr(self._backend, method)(SERVICE, *args)
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


def _write_private(path: Path, content: bytes, *, replace: bool) -> None:
    """Write a file that only its owner can read, never briefly readable by others."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not replace:
        # O_EXCL: an existing key file is never overwritten, even in a race.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
        return
    # mkstemp creates the file 0600; the rename makes the update atomic (no half-written file).
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _load_fernet(directory: Path, environ: Mapping[str, str]) -> tuple[Fernet, str] | None:
    """The file key from MLCONNECTOR_MASTER_KEY or the key file, with where it came from; None if neither."""
    key_file = directory / KEY_FILE_NAME
    if environ.get(MASTER_KEY_ENV):
        key, origin = environ[MASTER_KEY_ENV].strip().encode(), MASTER_KEY_ENV
        fix = f"set it to a key made with `{GENERATE_KEY_COMMAND}`"
    elif key_file.exists():
        mode = stat.S_IMODE(key_file.stat().st_mode)
        if os.name != "nt" and mode & 0o077:
            raise SecretStoreError(
                f"key file {key_file} can be read by other users (mode {mode:04o}); "
                f"fix it with `chmod 600 {key_file}`"
            )
        key, origin = key_file.read_bytes().strip(), f"key file {key_file}"
        fix = "move it away and run `mlconnector secrets init-file` (secrets it encrypted are lost)"
    else:
        return None
    try:
        return Fernet(key), origin
    except ValueError:
        raise SecretStoreError(f"{origin} does not hold a valid key: {fix}") from None


def init_secret_file(directory: Path | None = None) -> Path:
    """Create the 0600 key file for the encrypted secrets file; refuse to overwrite an existing one."""
    key_file = (directory or default_directory()) / KEY_FILE_NAME
    try:
        _write_private(key_file, Fernet.generate_key() + b"\n", replace=False)
    except FileExistsError:
        raise SecretStoreError(
            f"key file {key_file} exists already; not overwriting it, since the secrets encrypted "
            "with it could no longer be read"
        ) from None
    return key_file


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
        self._cache: dict[tuple[str, str], tuple[float, str]] = {}

    @property
    def location(self) -> str:
        """Where secrets live, for people: "OS keyring (SecretService)", "encrypted file /path"."""
        return self._backend().location

    def get(self, system: str, field: str) -> str | None:
        """The secret, from its env var if set, else from the store; None if it is not set anywhere."""
        from_env = self._environ.get(env_var_name(system, field))
        if from_env:
            return from_env
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
                f"or set {env_var_name(system, field)}"
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
        by_var = {env_var_name(s, f): (s, f) for s, f in known}
        systems = {s for s, _ in known} | ({system} if system else set())
        prefixes = sorted(((f"{ENV_PREFIX}{_env_part(s)}_", s) for s in systems),
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

    def _backend(self) -> _Backend:
        if self._resolved is None:
            self._resolved = self._resolve_backend()
        return self._resolved

    def _resolve_backend(self) -> _Backend:
        if self._backend_name in ("auto", "keyring"):
            found = _effective_keyring()
            if found is not None:
                return _KeyringBackend(found)
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
    directory = Path(env[DIRECTORY_ENV]).expanduser() if env.get(DIRECTORY_ENV) else directory
    return SecretStore(backend=backend, directory=directory, environ=env)
