"""The library's entry points: what each CLI command calls. Usable without the CLI."""

from __future__ import annotations

import importlib
import json
import logging
import os
import queue
import sqlite3
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from functools import cached_property
from pathlib import Path
from typing import Any

import httpx
from filelock import FileLock, Timeout

from mlconnector import interrupt
from mlconnector.config import Config, load_config
from mlconnector.errors import ConfigError, LockHeld, MLConnectorError
from mlconnector.http import CallCounter
from mlconnector.pairs import all_pairs
from mlconnector.state import State, default_state_path, refuse_foreign_database
from mlconnector.sync import Engine, RunResult, open_pair, pair_lock, pair_lock_file, resolve_roles
from mlconnector.sync.reconcile import ReconcileReport, queue_fixes
from mlconnector.sync.reconcile import reconcile as run_reconcile
from mlconnector.sync.run import new_run_id
from mlconnector.systems import ConnectorContext, make_connector
from mlconnector.systems.base import PingResult

PLUGINS_ENV = "MLCONNECTOR_PLUGINS"
log = logging.getLogger("mlconnector")


def load_plugins(names: str | None = None) -> None:
    """Import the modules named in $MLCONNECTOR_PLUGINS (comma-separated): site-specific pairs and
    system kinds register themselves on import."""
    for name in filter(None, (n.strip() for n in (names or os.environ.get(PLUGINS_ENV, "")).split(","))):
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            raise ConfigError(f"{PLUGINS_ENV} names {name!r}, which cannot be imported ({exc})") from None
        register = getattr(module, "register", None)
        if callable(register):
            register()


@dataclass
class Runtime:
    """Where this invocation's configuration, state and secrets are."""

    config_path: Path | None = None
    state_path: Path | None = None
    secrets: Any = None
    transport: httpx.BaseTransport | None = None

    @cached_property
    def config(self) -> Config:
        return load_config(self.config_path)

    def state_file(self, config: Config | None = None) -> Path:
        if self.state_path:
            return Path(self.state_path)
        cfg = config if config is not None else load_config(self.config_path, required=False)
        return cfg.state_path or default_state_path()

    def open_state(self) -> State:
        return State(self.state_file())

    def secret_store(self) -> Any:
        if self.secrets is None:
            from mlconnector.secrets import store_from_environment

            config = load_config(self.config_path, required=False)
            self.secrets = store_from_environment(backend=config.secrets_backend, directory=config.secrets_dir)
        return self.secrets

    def context(self, state: State | None = None) -> ConnectorContext:
        return ConnectorContext(secrets=self.secret_store(), counter=CallCounter(), transport=self.transport,
                                state=state, state_dir=self.state_file().parent)


@contextmanager
def state_errors(path: Path) -> Iterator[None]:
    """An error of the state file itself during a run (a full disk, an I/O error, a file made read-only) is the
    operator's to fix, not a bug: one line naming the file and the fix (exit 2). What was written but not
    recorded is read again by the next run (the watermark stays before it)."""
    try:
        yield
    except sqlite3.OperationalError as exc:
        raise ConfigError(f"state file {path}: {exc}; make room on that disk or fix the file's permissions, "
                          "then run again (or pass --state PATH to use another file)") from None
    except sqlite3.DatabaseError as exc:
        if type(exc) is not sqlite3.DatabaseError:  # integrity and programming errors are bugs
            raise
        raise ConfigError(f"state file {path}: {exc}; move the damaged file aside and run again "
                          "(or pass --state PATH to use another file)") from None


@contextmanager
def locked_state(path: Path, pair: str) -> Iterator[State]:
    """The pair's lock, then its state file; runs of the pair left marked running (a kill -9) are closed as
    interrupted, since none can be alive while this process holds the lock."""
    refuse_foreign_database(path)
    _check_lock_can_be_taken(path, pair)
    with pair_lock(path, pair), State(path) as state, state_errors(path):
        state.close_abandoned_runs(pair)
        yield state


def _check_lock_can_be_taken(path: Path, pair: str) -> None:
    """The pair's lock file goes next to the state file: a directory that cannot be written is the operator's to
    fix (exit 2), not another run holding the lock (75) nor a bug."""
    lock = pair_lock_file(path, pair)
    try:
        lock.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.close(os.open(lock, os.O_RDWR | os.O_CREAT, 0o600))
    except OSError as exc:
        raise ConfigError(f"state file {path}: its directory {lock.parent} cannot be written ({exc.strerror or exc}); "
                          "fix its permissions, or pass --state PATH to use another") from None


def run_alive(path: Path, pair: str) -> bool:
    """Whether a run of ``pair`` holds its lock now."""
    lock = FileLock(str(pair_lock_file(path, pair)))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return True
    except OSError:
        return False  # no lock can be taken there (a read-only directory): no run is writing either
    lock.release()
    return False


def sync(runtime: Runtime, pair: str, *, flows: Iterable[str] | None = None, full: bool = False,
         since: datetime | None = None, dry_run: bool = False,
         progress: Callable[[str, int], None] | None = None,
         progress_total: Callable[[str, int], None] | None = None) -> RunResult:
    """Run one pair once: lock, open state and connectors, sync, close."""
    config = runtime.config
    path = runtime.state_file(config)
    with locked_state(path, pair) as state:
        refuse_flows_setup_found_missing(state, config, pair, flows)
        session = open_pair(config, pair, runtime.context(state))
        try:
            engine = Engine(session.pair, session.config, session.connectors, state,
                            counter=session.counter, progress=progress, progress_total=progress_total)
            return engine.sync(flows, full=full, since=since, dry_run=dry_run)
        finally:
            session.close()


def refuse_flows_setup_found_missing(state: State, config: Config, pair: str, flows: Iterable[str] | None) -> None:
    """A flow whose prerequisites the last `mlconnector setup` found missing does not start: it would only fail
    record by record. The first such line is the error (exit 2)."""
    missing = state.setup_missing(pair)
    if not missing:
        return
    chosen = list(flows or ()) or list(config.pair(pair).flows) or list(missing)
    for flow in chosen:
        if flow in missing:
            raise ConfigError(f"{pair} flow {flow} cannot run: {missing[flow][0].split(None, 1)[1]} (then run "
                              f"`mlconnector setup {pair}` again)")


def setup(runtime: Runtime, pair: str, *, apply: bool = False,
          plan: Callable[[Any], None] | None = None) -> Any:
    """`mlconnector setup PAIR`: check what the pair needs in its systems; with ``apply``, create what the vendors'
    APIs allow (``plan`` sees the report before anything is changed). The flows still lacking something are
    recorded, so sync refuses them until a later setup finds them done."""
    from mlconnector.setup import check_pair

    config = runtime.config
    path = runtime.state_file(config)
    with State(path) as state, state_errors(path):
        context = runtime.context(state)
        return check_pair(config, pair, context, state, apply=apply, plan=plan)


def drain(runtime: Runtime, pair: str) -> RunResult:
    """Process the pair's waiting notifications now (no poll), under the pair's lock."""
    config = runtime.config
    path = runtime.state_file(config)
    with locked_state(path, pair) as state:
        session = open_pair(config, pair, runtime.context(state))
        try:
            return Engine(session.pair, session.config, session.connectors, state,
                          counter=session.counter).drain()
        finally:
            session.close()


class Listener:
    """The webhook receiver with its connectors, inbox and, with ``process``, a worker that drains the
    inbox of each notified pair at once."""

    def __init__(self, runtime: Runtime, *, process: bool = False, body_timeout: float | None = None) -> None:
        from mlconnector.webhooks import BODY_TIMEOUT, Inbox, create_receiver

        config = runtime.config
        context = runtime.context()
        self.connectors: dict[str, Any] = {}
        consumers: dict[tuple[str, str], list[str]] = defaultdict(list)
        for spec in all_pairs().values():
            try:
                roles = resolve_roles(config, spec)
            except ConfigError:
                continue  # a pair this site does not run
            for flow in spec.flows:
                system = roles[flow.source]
                if system not in self.connectors:
                    self.connectors[system] = make_connector(config.system(system), context)
                if self.connectors[system].capabilities.push:
                    consumers[(system, flow.source_entity)].append(spec.name)
        push = {name: c for name, c in self.connectors.items() if c.capabilities.push}
        if not push:
            raise ConfigError(f"{config.path}: no configured pair reads from a system that can push "
                              "notifications; `mlconnector sync` polls instead")
        self.inbox = Inbox(runtime.state_file(config), consumers)
        self._runtime = runtime
        self._queue: "queue.Queue[str | None]" = queue.Queue()
        self._worker = threading.Thread(target=self._work, daemon=True) if process else None
        if self._worker:
            self._worker.start()
        self.app = create_receiver(push, self.inbox, self._queue_pairs if process else None,
                                   body_timeout=body_timeout or BODY_TIMEOUT)
        self.systems = sorted(push)

    def _queue_pairs(self, pairs: set[str]) -> None:
        for pair in pairs:
            self._queue.put(pair)

    def _work(self) -> None:
        while (pair := self._queue.get()) is not None:
            waiting = {pair}
            while not self._queue.empty():  # many notifications, one drain per pair
                more = self._queue.get()
                if more is None:
                    return
                waiting.add(more)
            for name in sorted(waiting):
                try:
                    drain(self._runtime, name)
                except LockHeld:
                    # A cron run holds the pair; it drains the inbox itself, but try again shortly.
                    threading.Timer(2.0, self._queue.put, (name,)).start()
                except MLConnectorError as exc:
                    log.error("%s: processing notifications failed: %s", name, exc)

    def close(self) -> None:
        if self._worker:
            self._queue.put(None)
            self._worker.join(timeout=30)
        self.inbox.close()
        for connector in self.connectors.values():
            connector.close()


def replay(runtime: Runtime, *, pair: str | None = None, flow: str | None = None,
           error_class: str | None = None, ids: list[str] | None = None, dry_run: bool = False,
           progress: Callable[[str, int], None] | None = None) -> list[RunResult]:
    """Retry queued records, pair by pair, each under that pair's lock."""
    config = runtime.config
    path = runtime.state_file(config)
    with State(path) as state:
        queued = state.replay_items(pair=pair, flow=flow, error_class=error_class, ids=ids)
    results = []
    for name in sorted({item["pair"] for item in queued}):
        if name not in all_pairs() or interrupt.requested() is not None:
            continue
        with locked_state(path, name) as state:
            session = open_pair(config, name, runtime.context(state))
            try:
                engine = Engine(session.pair, session.config, session.connectors, state,
                                counter=session.counter, progress=progress)
                results.append(engine.replay(flow=flow, error_class=error_class, ids=ids, dry_run=dry_run))
            finally:
                session.close()
    return results


@dataclass
class Reconciled:
    """What `reconcile` found and, with ``fix``, queued (and with ``now`` wrote)."""

    report: ReconcileReport
    queued: int = 0
    run: RunResult | None = None  # the replay --now made of what was queued


def reconcile(runtime: Runtime, pair: str, *, flows: Iterable[str] | None = None, fix: bool = False,
              now: bool = False) -> Reconciled:
    """`mlconnector reconcile PAIR`: read both sides of each flow whole and compare them record by record (and
    documents' totals by month), under the pair's lock so no run writes meanwhile. With ``fix`` each record that
    writing again would fix is queued for replay; with ``now`` that replay runs at once."""
    config = runtime.config
    path = runtime.state_file(config)
    with locked_state(path, pair) as state:
        session = open_pair(config, pair, runtime.context(state))
        try:
            chosen = [session.pair.flow(name) for name in _flow_names(session.pair, flows, session.config.flows)]
            report = run_reconcile(session.pair, session.config, session.connectors, state, session.counter,
                                   session.pair.ordered([f.name for f in chosen]))
            result = Reconciled(report)
            if not fix:
                return result
            queued = queue_fixes(report, session.pair, session.connectors, state, new_run_id())
            result.queued = report.queued = len(queued)
            if now and queued:
                engine = Engine(session.pair, session.config, session.connectors, state, counter=session.counter)
                result.run = engine.replay(error_class="reconcile", ids=sorted({i for _, i in queued}))
            return result
        finally:
            session.close()


def _flow_names(pair: Any, flows: Iterable[str] | None, configured: Iterable[str] | None) -> list[str]:
    names = list(flows or configured or [f.name for f in pair.flows if not f.optional])
    known = [f.name for f in pair.flows]
    for name in names:
        if name not in known:
            raise ConfigError(f"pair {pair.name} has no flow {name!r} (flows: {', '.join(known)})")
    return names


class _WithoutCachedTokens:
    """The secret store as `ping` sees it: no cached access token, so each system mints a fresh one and the stored
    credentials themselves are proven (a rotated secret shows now, not when the cached token expires at night).
    The fresh token is cached as usual."""

    def __init__(self, store: Any) -> None:
        self._store = store

    def get(self, system: str, field: str) -> str | None:
        from mlconnector.auth import SecretTokenCache

        return None if field == SecretTokenCache.FIELD else self._store.get(system, field)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def ping(runtime: Runtime, system: str | None = None) -> list[PingResult]:
    """Check each configured system (or one): reachability, credentials (with a freshly minted token), edition or
    permissions. A system whose secrets are missing is not tried: its result names every one of them."""
    from mlconnector.secrets import required_secrets

    config = runtime.config
    names = [system] if system else sorted(config.systems)
    if not names:
        raise ConfigError(f"{config.path}: no [systems.*] tables; run `mlconnector init`")
    results = []
    store = runtime.secret_store()
    context = replace(runtime.context(), secrets=_WithoutCachedTokens(store))
    for name in names:
        settings = config.system(name)
        missing = [field for field in required_secrets(settings) if not store.get(name, field)]
        if missing:
            steps = " and ".join(f"`mlconnector secrets set {name} {field}`" for field in missing)
            results.append(PingResult(name, False, error=f"missing secret{'s' if len(missing) > 1 else ''} "
                                      f"{', '.join(missing)}: run {steps}", exit_code=ConfigError.exit_code))
            continue
        connector = make_connector(settings, context)
        try:
            results.append(connector.ping())
        except MLConnectorError as exc:
            results.append(PingResult(name, False, error=str(exc), exit_code=exc.exit_code))
        finally:
            connector.close()
    return results


@dataclass
class Status:
    state_file: str
    watermarks: list[dict[str, Any]] = field(default_factory=list)
    replay_queue: dict[str, int] = field(default_factory=dict)
    inbox_pending: int = 0
    channels: list[dict[str, Any]] = field(default_factory=list)
    last_runs: list[dict[str, Any]] = field(default_factory=list)
    # Last 24 hours: changes that came by notification, and those only the poll found (missed pushes).
    arrivals: list[dict[str, Any]] = field(default_factory=list)


def status(runtime: Runtime) -> Status:
    path = runtime.state_file()
    with State(path) as state:
        depth: dict[str, int] = defaultdict(int)
        for (pair, flow), n in state.replay_depth().items():
            depth[f"{pair}/{flow}"] = n
        return Status(
            state_file=str(path),
            watermarks=[{"pair": w["pair"], "flow": w["flow"], "watermark": w["value"]} for w in state.watermarks()],
            replay_queue=dict(depth),
            inbox_pending=state.inbox_depth(),
            channels=[{**c, "expires": c["expires"].isoformat() if c["expires"] else None}
                      for c in state.channels()],
            last_runs=[_as_seen(path, {k: r[k] for k in ("id", "pair", "started", "finished", "status", "exit_code")})
                       for r in state.last_runs(limit=10)],
            arrivals=state.arrivals(datetime.now(timezone.utc) - timedelta(days=1)),
        )


def _as_seen(path: Path, run: dict[str, Any]) -> dict[str, Any]:
    """A run marked running whose pair's lock is free ended without a word (kill -9): it shows as interrupted (the
    next run of the pair records it so)."""
    if run["status"] == "running" and not run_alive(path, run["pair"]):
        return {**run, "status": "interrupted"}
    return run


def audit(runtime: Runtime, **filters: Any) -> list[dict[str, Any]]:
    """Audit rows, oldest first; an update's ``changes`` as a list of {field, old, new}."""
    with State(runtime.state_file()) as state:
        return [{**row, "changes": json.loads(row["changes"]) if row.get("changes") else []}
                for row in state.audit_rows(**filters)]
