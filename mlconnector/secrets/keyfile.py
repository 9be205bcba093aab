"""The encrypted file's key: from ``MLCONNECTOR_MASTER_KEY`` or a 0600 key file made by ``mlconnector secrets
init-file``, in the per-user config directory; files only their owner can read."""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Mapping
from pathlib import Path

import platformdirs
from cryptography.fernet import Fernet

from mlconnector.errors import SecretStoreError

MASTER_KEY_ENV = "MLCONNECTOR_MASTER_KEY"
KEY_FILE_NAME = "secrets.key"
SECRETS_FILE_NAME = "secrets.enc"
GENERATE_KEY_COMMAND = 'python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"'


def default_directory() -> Path:
    """The per-user config directory that holds the encrypted file and its key file."""
    return platformdirs.user_config_path("mlconnector")

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
