"""What `status` and `audit` show, read from the state alone (no system is called): the state's figures, the
problems `status --check` finds, the Prometheus text, the audit rows."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from mlconnector import tenants
from mlconnector.clock import utcnow
from mlconnector.config import load_config
from mlconnector.health import Limits, Problem
from mlconnector.health import check as health_check
from mlconnector.state import StateLocation

if TYPE_CHECKING:
    from mlconnector.api import Runtime


@dataclass
class Status:
    state_file: str
    tenant: str | None = None  # the tenant whose state this is (--tenant), or None
    watermarks: list[dict[str, Any]] = field(default_factory=list)
    replay_queue: dict[str, int] = field(default_factory=dict)
    inbox_pending: int = 0
    channels: list[dict[str, Any]] = field(default_factory=list)
    last_runs: list[dict[str, Any]] = field(default_factory=list)
    # Last 24 hours: changes that came by notification, and those only the poll found (missed pushes).
    arrivals: list[dict[str, Any]] = field(default_factory=list)
    # Last 30 days: records deleted in their source, by what was done to their targets (see on_delete).
    deletions: list[dict[str, Any]] = field(default_factory=list)


def status(runtime: Runtime) -> Status:
    location = runtime.state_location()
    with location.errors(), location.open() as state:
        depth: dict[str, int] = defaultdict(int)
        for (pair, flow), n in state.replay_depth().items():
            depth[f"{pair}/{flow}"] = n
        return Status(
            state_file=location.shown,
            tenant=tenants.current(),
            watermarks=[{"pair": w["pair"], "flow": w["flow"], "watermark": w["value"]} for w in state.watermarks()],
            replay_queue=dict(depth),
            inbox_pending=state.inbox_depth(),
            channels=[{**c, "expires": c["expires"].isoformat() if c["expires"] else None}
                      for c in state.channels()],
            last_runs=[_as_seen(location, {k: r[k] for k in ("id", "pair", "started", "finished", "status", "exit_code")})
                       for r in state.last_runs(limit=10)],
            arrivals=state.arrivals(utcnow() - timedelta(days=1)),
            deletions=state.deletions(utcnow() - timedelta(days=30)),
        )


def check(runtime: Runtime, limits: Limits) -> list[Problem]:
    """`status --check`: what needs a look, from the state file alone (see mlconnector.health)."""
    config = load_config(runtime.config_path, required=False)
    location = runtime.state_location(config)
    with location.errors(), location.open() as state:
        return health_check(state, config.pairs, limits, utcnow(), location.run_alive)


def prometheus(runtime: Runtime, limits: Limits) -> str:
    """`status --prometheus`: the state file's figures in Prometheus' text format (see mlconnector.metrics)."""
    from mlconnector.metrics import render

    config = load_config(runtime.config_path, required=False)
    location = runtime.state_location(config)
    with location.errors(), location.open() as state:
        return render(state, config.pairs, limits, utcnow(), location.run_alive)


def _as_seen(location: StateLocation, run: dict[str, Any]) -> dict[str, Any]:
    """A run marked running whose pair's lock is free ended without a word (kill -9): it shows as interrupted (the
    next run of the pair records it so)."""
    if run["status"] == "running" and not location.run_alive(run["pair"]):
        return {**run, "status": "interrupted"}
    return run


def audit(runtime: Runtime, **filters: Any) -> list[dict[str, Any]]:
    """Audit rows, oldest first; an update's ``changes`` as a list of {field, old, new}."""
    location = runtime.state_location()
    with location.errors(), location.open() as state:
        return [{**row, "changes": json.loads(row["changes"]) if row.get("changes") else []}
                for row in state.audit_rows(**filters)]
