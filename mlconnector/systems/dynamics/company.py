"""API mode's company id, remembered across runs: a small JSON record beside the state file, or with the state in
PostgreSQL a document in its shared ledger (and in this process), so a run need not look the company up by name;
BC's answer for a company id it no longer has."""

from __future__ import annotations

import json
import re
import threading
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import httpx
from filelock import FileLock

from mlconnector import jsonfile
from mlconnector.systems import ConnectorContext
from mlconnector.systems.dynamics.odata import _error

# (record file or database, API root, company name) -> company id, for the life of this process.
_KNOWN_COMPANIES: dict[tuple[str, str, str], str] = {}
_KNOWN_LOCK = threading.Lock()


def company_record(context: ConnectorContext, system: str) -> CompanyRecord:
    """Where a system's company id is kept between runs: a small JSON record next to the state file in use, or the
    state's shared ledger in PostgreSQL."""
    return CompanyRecord(context.state_file(f"dynamics-{system}-company.json"), context.ledger,
                         f"dynamics {system} company")


class CompanyRecord:
    """The id API v2.0 gave the configured company, by API root and company name: the id does not change while
    the company lives, so a run need not ask for it again. Only ids and names are kept, never a credential; a
    record that cannot be read or written only costs the lookup. With ``ledger`` (the state in PostgreSQL) the
    record is the ledger's document ``name``, which every host sharing the state sees."""

    def __init__(self, path: Path, ledger: Any = None, name: str = "") -> None:
        self.path = path
        self._lock = FileLock(str(path) + ".lock", timeout=10)
        self._ledger, self._name = ledger, name
        self._where = ledger.url if ledger is not None else str(path)

    def _edited(self) -> AbstractContextManager[dict[str, Any]]:
        if self._ledger is not None:
            return self._ledger.edited(self._name)
        return jsonfile.edited(self.path, self._lock)

    def _stored(self) -> dict[str, Any]:
        """What the record holds now (nothing when it cannot be read)."""
        if self._ledger is not None:
            return self._ledger.read(self._name)
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    @staticmethod
    def _key(root: str, company: str) -> str:
        return f"{root} {company}"

    def get(self, root: str, company: str) -> str | None:
        with _KNOWN_LOCK:
            known = _KNOWN_COMPANIES.get((self._where, root, company))
        if known:
            return known
        found = self._stored().get(self._key(root, company))
        if not isinstance(found, str) or not re.fullmatch(r"[0-9a-fA-F-]{36}", found):
            return None
        with _KNOWN_LOCK:
            _KNOWN_COMPANIES[(self._where, root, company)] = found
        return found

    def put(self, root: str, company: str, company_id: str | None) -> None:
        """Remember ``company_id`` (None: forget it)."""
        with _KNOWN_LOCK:
            if company_id is None:
                _KNOWN_COMPANIES.pop((self._where, root, company), None)
            else:
                _KNOWN_COMPANIES[(self._where, root, company)] = company_id
        try:
            with self._edited() as data:
                if company_id is None:
                    data.pop(self._key(root, company), None)
                else:
                    data[self._key(root, company)] = company_id
        except OSError:
            pass  # the next run looks the company up again


def _company_not_found(response: httpx.Response) -> bool:
    """BC's answer for a company id it does not have (the company was deleted or recreated)."""
    if response.status_code not in (400, 404):
        return False
    code, message = _error(response)
    return code == "Internal_CompanyNotFound" or (
        response.status_code == 404 and bool(re.search(r"\bcompany\b.*\b(not|no longer)\b", message, re.I)))
