"""The session's registry of secret values and of everything that might leak one: CLI outputs, state files,
logs, cassettes and the captured output and tracebacks of every test in the run (tests/conftest.py feeds
it). `find_leaks()` answers which secret turned up where; the reliability suite's last test asserts none."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

# Values shorter than this are not treated as secrets (a test's "x" or "pw" would match everywhere).
MIN_LENGTH = 12

SECRETS: set[str] = set()
OUTPUTS: list[str] = []          # stdout/stderr of CLI runs, captured test output, tracebacks
FILES: list[Path] = []           # state files, logs, configs to scan at the end
FIGURES: dict[str, int] = {}     # what the reliability suite did, for README


def register(values: Iterable[str | None]) -> None:
    for value in values:
        if not value or not isinstance(value, str):
            continue
        value = value.strip()
        if value.startswith("{"):
            # A cached token is JSON: the token inside is the secret.
            try:
                inner = json.loads(value)
            except ValueError:
                inner = None
            if isinstance(inner, dict):
                register(str(v) for k, v in inner.items() if k in ("access_token", "refresh_token"))
                continue
        if len(value) >= MIN_LENGTH:
            SECRETS.add(value)


def save(path: Path) -> None:
    """This process's registry, for the process that scans at the end (a pytest-xdist worker's, for the
    controller). The file holds test secrets only and lives in the run's throwaway folder."""
    path.write_text(json.dumps({"secrets": sorted(SECRETS), "outputs": OUTPUTS, "files": [str(p) for p in FILES],
                                "figures": FIGURES}), encoding="utf-8")


def load(path: Path) -> None:
    """Add a registry saved by :func:`save` to this process's."""
    data = json.loads(path.read_text(encoding="utf-8"))
    SECRETS.update(data["secrets"])
    OUTPUTS.extend(data["outputs"])
    FILES.extend(Path(p) for p in data["files"])
    for name, value in data["figures"].items():
        FIGURES[name] = FIGURES.get(name, 0) + value


def _haystacks(extra_dirs: Iterable[Path]) -> Iterable[tuple[str, str]]:
    for index, text in enumerate(OUTPUTS):
        yield f"output #{index}", text
    paths = list(dict.fromkeys(FILES))
    for directory in extra_dirs:
        if directory.is_dir():
            paths += [p for p in directory.rglob("*") if p.is_file()]
    for path in paths:
        try:
            data = path.read_bytes()
        except OSError:
            continue
        yield str(path), data.decode("utf-8", "replace")


def find_leaks(extra_dirs: Iterable[Path] = ()) -> list[str]:
    """Where each registered secret appears: ["<where>: <first 4 chars>...", ...]."""
    found = []
    secrets = sorted(SECRETS)
    for where, text in _haystacks(extra_dirs):
        for secret in secrets:
            if secret in text:
                found.append(f"{where}: a secret starting {secret[:4]!r}")
    return found
