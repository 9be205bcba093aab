"""Zoho's quotas shared by every process on the host: the mint governor (10 access tokens per refresh token in 10
minutes) and the credit ledger (a rolling 24-hour pool), in a small JSON file beside the state file."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from filelock import FileLock

from mlconnector import jsonfile
from mlconnector.auth import utcnow
from mlconnector.errors import BudgetExhausted
from mlconnector.systems import ConnectorContext

MINT_WINDOW = timedelta(minutes=10)
ZOHO_MINTS_PER_WINDOW = 10
CREDIT_WINDOW = timedelta(hours=24)  # Zoho's credit pool is a rolling 24 hours


def _now() -> datetime:
    return utcnow()


class QuotaFile:
    """A small JSON record of token mints and API credits, shared by every process on the host.

    Zoho lets one refresh token mint 10 access tokens per 10 minutes and charges credits against a rolling
    24-hour pool; concurrent cron runs must see each other's use, so the record lives next to the state
    file, guarded by a file lock. It holds times and counts only, never a token: mints are keyed by a hash.
    """

    def __init__(self, path: Path, now: Callable[[], datetime] = _now, mints_path: Path | None = None) -> None:
        self.path = path
        self._lock = FileLock(str(path) + ".lock", timeout=30)
        self._now = now
        # A tenant's mints go to the file every tenant on the host shares: Zoho counts them per refresh token.
        self._mints = QuotaFile(mints_path, now) if mints_path is not None and mints_path != path else self

    def _edit(self) -> AbstractContextManager[dict[str, Any]]:
        return jsonfile.edited(self.path, self._lock)

    def reserve_mint(self, key: str, limit: int) -> float:
        """Record a mint and return 0, or return the seconds to wait before one is allowed."""
        if self._mints is not self:
            return self._mints.reserve_mint(key, limit)
        now = self._now()
        with self._edit() as data:
            mints = data.setdefault("mints", {})
            recent = [t for t in mints.get(key, []) if now - datetime.fromisoformat(t) < MINT_WINDOW]
            if len(recent) >= limit:
                mints[key] = recent
                oldest = datetime.fromisoformat(recent[0])
                return max(0.1, (oldest + MINT_WINDOW - now).total_seconds())
            mints[key] = [*recent, now.isoformat()]
            return 0.0

    def mints(self, key: str) -> int:
        if self._mints is not self:
            return self._mints.mints(key)
        now = self._now()
        with self._edit() as data:
            return sum(1 for t in data.get("mints", {}).get(key, [])
                       if now - datetime.fromisoformat(t) < MINT_WINDOW)

    def charge(self, system: str, credits: int, budget: int) -> int:
        """Add ``credits`` to the system's rolling 24 hours; refuse (BudgetExhausted) if that crosses ``budget``.
        Returns the credits spent in the window, this call included."""
        now = self._now()
        with self._edit() as data:
            ledger = data.setdefault("credits", {})
            minutes = {m: n for m, n in ledger.get(system, {}).items()
                       if now - datetime.fromisoformat(m) < CREDIT_WINDOW}
            spent = sum(minutes.values())
            if budget and spent + credits > budget:
                ledger[system] = minutes
                raise _over_budget(system, credits, budget, spent)
            minute = now.replace(second=0, microsecond=0).isoformat()
            minutes[minute] = minutes.get(minute, 0) + credits
            ledger[system] = minutes
            return spent + credits


def _over_budget(system: str, credits: int, budget: int, spent: int) -> BudgetExhausted:
    return BudgetExhausted(f"{system}: the next call would use {credits} API credit(s), crossing the daily budget of "
                           f"{budget} ({spent} spent in the last 24 hours); stopping here, the next run resumes")


class SharedQuota:
    """QuotaFile's record kept in the state database's ledger (``ConnectorContext.ledger``): hosts sharing one
    PostgreSQL state, and one refresh token, count their mints and credits together."""

    def __init__(self, ledger: Any, now: Callable[[], datetime] = _now) -> None:
        self.ledger = ledger
        self._now = now

    # Zoho's limit is the refresh token's, whichever tenants use it: counted in the ledger all tenants share (the
    # key is a hash of client id and token, never the token).
    def reserve_mint(self, key: str, limit: int) -> float:
        return self._mints.reserve(f"zoho mint {key}", limit, MINT_WINDOW, self._now())

    def mints(self, key: str) -> int:
        return self._mints.count(f"zoho mint {key}", MINT_WINDOW, self._now())

    @property
    def _mints(self) -> Any:
        return getattr(self.ledger, "common", self.ledger)

    def charge(self, system: str, credits: int, budget: int) -> int:
        done, spent = self.ledger.spend(f"zoho credits {system}", credits, budget, CREDIT_WINDOW, self._now())
        if not done:
            raise _over_budget(system, credits, budget, spent)
        return spent


def quota_of(context: ConnectorContext) -> "QuotaFile | SharedQuota":
    """The state database's ledger where the state is shared, else the file beside the state file."""
    if context.ledger is not None:
        return SharedQuota(context.ledger)
    from mlconnector import tenants
    from mlconnector.state.common import host_state_dir

    shared = host_state_dir() / "zoho-quota.json" if tenants.current() else None
    return QuotaFile(quota_path(context), mints_path=shared)


def quota_path(context: ConnectorContext) -> Path:
    """The quota record sits next to the state file in use."""
    return context.state_file("zoho-quota.json")


def default_quota_path() -> Path:
    from mlconnector.state import default_state_path  # the quota record lives next to the state file

    return default_state_path().parent / "zoho-quota.json"
