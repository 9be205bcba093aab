"""API mode's company id, remembered across runs: a small JSON record beside the state file (and in this process),
so a run need not look the company up by name; BC's answer for a company id it no longer has."""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path

import httpx
from filelock import FileLock

from mlconnector import jsonfile
from mlconnector.systems import ConnectorContext
from mlconnector.systems.dynamics.odata import _error

# (record file, API root, company name) -> company id, for the life of this process.
_KNOWN_COMPANIES: dict[tuple[str, str, str], str] = {}
_KNOWN_LOCK = threading.Lock()


def company_record_path(context: ConnectorContext, system: str) -> Path:
    """Where a system's company id is kept between runs: a small JSON record next to the state file in use."""
    return context.state_file(f"dynamics-{system}-company.json")


class CompanyRecord:
    """The id API v2.0 gave the configured company, by API root and company name: the id does not change while
    the company lives, so a run need not ask for it again. Only ids and names are kept, never a credential; a
    record that cannot be read or written only costs the lookup."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = FileLock(str(path) + ".lock", timeout=10)

    @staticmethod
    def _key(root: str, company: str) -> str:
        return f"{root} {company}"

    def get(self, root: str, company: str) -> str | None:
        with _KNOWN_LOCK:
            known = _KNOWN_COMPANIES.get((str(self.path), root, company))
        if known:
            return known
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        found = data.get(self._key(root, company)) if isinstance(data, dict) else None
        if not isinstance(found, str) or not re.fullmatch(r"[0-9a-fA-F-]{36}", found):
            return None
        with _KNOWN_LOCK:
            _KNOWN_COMPANIES[(str(self.path), root, company)] = found
        return found

    def put(self, root: str, company: str, company_id: str | None) -> None:
        """Remember ``company_id`` (None: forget it)."""
        with _KNOWN_LOCK:
            if company_id is None:
                _KNOWN_COMPANIES.pop((str(self.path), root, company), None)
            else:
                _KNOWN_COMPANIES[(str(self.path), root, company)] = company_id
        try:
            with jsonfile.edited(self.path, self._lock) as data:
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
