"""A PostgreSQL schema of a test's own, so tests run in parallel against one server without meeting.

The server is MLCONNECTOR_TEST_POSTGRES_URL (default: the project machine's, 127.0.0.1:5432, database test, trust
authentication). Where none answers, the tests that need it skip with one line saying how to run them; under CI
(CI=true) they fail instead.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote

import pytest

# Read at import, before the suite's fixtures clear every MLCONNECTOR_ variable from each test's environment.
SERVER_URL = os.environ.get("MLCONNECTOR_TEST_POSTGRES_URL", "postgresql://127.0.0.1:5432/test")
_unreachable: list[str] = []


def _admin() -> object:
    import psycopg

    if _unreachable:
        _refuse(_unreachable[0])
    try:
        return psycopg.connect(SERVER_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        _unreachable.append(str(exc).strip().splitlines()[0])
        _refuse(_unreachable[0])
    raise AssertionError("unreachable")


def _refuse(reason: str) -> None:
    line = (f"PostgreSQL at {SERVER_URL} does not answer ({reason}); start it, or set "
            "MLCONNECTOR_TEST_POSTGRES_URL to a server where the tests may create schemas")
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(line, pytrace=False)
    pytest.skip(line)


def url_for(schema: str, base: str = SERVER_URL) -> str:
    """``base`` with its connections' search_path set to ``schema`` (libpq's options parameter)."""
    separator = "&" if "?" in base else "?"
    return f"{base}{separator}options={quote(f'-csearch_path={schema}')}"


@contextmanager
def schema_of_its_own() -> Iterator[str]:
    """Yields the URL of a fresh schema; afterwards the process's pools are closed and the schema dropped."""
    from mlconnector.state.pg_connection import close_pools

    admin = _admin()
    admin.execute("SET lock_timeout = '20s'")  # type: ignore[attr-defined]  # a connection left open fails the drop, not the suite
    schema = f"t_{uuid.uuid4().hex[:16]}"
    admin.execute(f"CREATE SCHEMA {schema}")  # type: ignore[attr-defined]
    try:
        yield url_for(schema)
    finally:
        close_pools()
        admin.execute(f"DROP SCHEMA {schema} CASCADE")  # type: ignore[attr-defined]
        admin.close()  # type: ignore[attr-defined]


@contextmanager
def drop_schemas(*schemas: str) -> Iterator[None]:
    """Schemas the code under test makes itself (a tenant's) dropped afterwards, with the process's pools closed
    first; skips (or fails under CI) where no server answers."""
    from mlconnector.state.pg_connection import close_pools

    admin = _admin()
    try:
        yield
    finally:
        close_pools()
        admin.execute("SET lock_timeout = '20s'")  # type: ignore[attr-defined]
        for schema in schemas:
            admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")  # type: ignore[attr-defined]
        admin.close()  # type: ignore[attr-defined]
