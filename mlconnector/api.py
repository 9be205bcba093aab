"""The library's entry points: what each CLI command calls. Usable without the CLI."""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import Any

import httpx

from mlconnector import alerts, interrupt
from mlconnector.clock import utcnow
from mlconnector.config import ALERTS_WEBHOOK_ENV, Config, load_config
from mlconnector.errors import ConfigError, MLConnectorError
from mlconnector.fieldmap.overlay import Line, check_rules, effective_table
from mlconnector.http import CallCounter
from mlconnector.pairs import all_pairs, get_pair
from mlconnector.prerequisites import FIELD
from mlconnector.health import Limits, Problem  # noqa: F401 (what check and prometheus take and give)
from mlconnector.reports import Status, audit, check, prometheus, status  # noqa: F401 (the API's own calls)
from mlconnector.state import (STATE_ENV, StateLocation, StateStore, database_errors, default_state_path,
                               refuse_foreign_database, resolve_state)
from mlconnector.urls import STATE_URL_ENV
from mlconnector.sync import Engine, RunResult, Session, mapped_fields, open_pair, resolve_roles
from mlconnector.sync.reconcile import ReconcileReport, queue_fixes
from mlconnector.sync.reconcile import reconcile as run_reconcile
from mlconnector.sync.run import new_run_id
from mlconnector.systems import ConnectorContext, make_connector
from mlconnector.systems.base import PingResult

PLUGINS_ENV = "MLCONNECTOR_PLUGINS"
log = logging.getLogger("mlconnector")


PLUGIN_GROUP = "mlconnector.plugins"


def load_plugins(names: str | None = None) -> None:
    """The plugins installed as packages (entry points in the group ``mlconnector.plugins``: a module, or a
    function called with no arguments), then the modules named in $MLCONNECTOR_PLUGINS (comma-separated):
    site-specific pairs and system kinds register themselves on import (or in their ``register()``)."""
    from importlib.metadata import entry_points

    for point in sorted(entry_points(group=PLUGIN_GROUP), key=lambda p: p.name):
        try:
            loaded = point.load()
        except Exception as exc:  # noqa: BLE001 - an installed package's fault, named for its owner to fix
            raise ConfigError(f"plugin {point.name} ({point.value}, entry point group {PLUGIN_GROUP}) cannot be "
                              f"loaded ({type(exc).__name__}: {exc}); fix or uninstall its package") from None
        register = loaded if callable(loaded) else getattr(loaded, "register", None)
        if callable(register):
            register()
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
        """The SQLite state file, where the state is one (see ``state_location``)."""
        if self.state_path:
            return Path(self.state_path)
        cfg = config if config is not None else load_config(self.config_path, required=False)
        return cfg.state_path or default_state_path()

    def state_location(self, config: Config | None = None) -> StateLocation:
        """Where the state is: --state PATH, $MLCONNECTOR_STATE_URL, [state] url or path, $MLCONNECTOR_STATE, else
        the user's state dir."""
        cfg = config if config is not None else load_config(self.config_path, required=False)
        return resolve_state(cli_path=self.state_path, config_url=cfg.state_url, config_path=cfg.state_path,
                             password=self._state_password)

    def _state_password(self) -> str | None:
        """The state database's password from the secrets (keyring or encrypted file); where none can be read,
        libpq's own PGPASSWORD and ~/.pgpass still apply."""
        try:
            return self.secret_store().get("state", "password")
        except MLConnectorError:
            return None

    def open_state(self) -> StateStore:
        return self.state_location().open()

    def secret_store(self) -> Any:
        if self.secrets is None:
            from mlconnector.secrets import store_from_environment

            config = load_config(self.config_path, required=False)
            self.secrets = store_from_environment(backend=config.secrets_backend, directory=config.secrets_dir)
        return self.secrets

    def context(self, state: StateStore | None = None) -> ConnectorContext:
        location = self.state_location()
        return ConnectorContext(secrets=self.secret_store(), counter=CallCounter(), transport=self.transport,
                                state=state, state_dir=location.directory, ledger=location.ledger())


@contextmanager
def locked_state(location: StateLocation, pair: str) -> Iterator[StateStore]:
    """The pair's lock, then its state; runs of the pair left marked running (a kill -9) are closed as
    interrupted, since none can be alive while this process holds the lock."""
    if location.path:
        refuse_foreign_database(location.path)
    with location.errors(), location.pair_lock(pair) as lock, location.open() as state:
        state.run_lock = lock  # checked before each batch is sent (PostgreSQL: the lock's connection alive)
        state.close_abandoned_runs(pair)
        yield state


def sync(runtime: Runtime, pair: str, *, flows: Iterable[str] | None = None, full: bool = False,
         since: datetime | None = None, dry_run: bool = False,
         progress: Callable[[str, int], None] | None = None,
         progress_total: Callable[[str, int], None] | None = None, allow_deletes: bool = False) -> RunResult:
    """Run one pair once: lock, open state and connectors, sync, close. ``allow_deletes`` lets deletions the
    mass-delete guard would stop through, this once."""
    config = runtime.config
    location = runtime.state_location(config)
    with locked_state(location, pair) as state:
        try:
            refuse_flows_setup_found_missing(state, config, pair, flows)
            session = open_pair(config, pair, runtime.context(state))
            try:
                refuse_fields_systems_cannot_carry(session, flows)
                engine = Engine(session.pair, session.config, session.connectors, state,
                                counter=session.counter, progress=progress, progress_total=progress_total,
                                allow_deletes=allow_deletes)
                result = engine.sync(flows, full=full, since=since, dry_run=dry_run)
            finally:
                session.close()
        except MLConnectorError as exc:
            if not dry_run:
                _after_run_quietly(lambda: alerts.run_error(state, config.alerts, pair, exc, exc.exit_code,
                                                            utcnow()))
            raise
        if not dry_run:
            _after_run_quietly(lambda: alerts.after_run(state, config.alerts, result, utcnow()))
            _after_run_quietly(lambda: alerts.channels(state, config.alerts, utcnow()))
            if config.audit_retention_days:
                # A little each run (a first run after an upgrade does not prune a year at once).
                _after_run_quietly(lambda: state.prune(
                    utcnow() - timedelta(days=config.audit_retention_days),
                    max_batches=RUN_PRUNE_BATCHES))
        return result


RUN_PRUNE_BATCHES = 5  # each of a few thousand rows


def _after_run_quietly(step: Callable[[], object]) -> None:
    """What follows a run (its alerts, the pruning) never changes how the run ended: a state file that cannot take
    it (the disk filled meanwhile) is logged, and the run's own result or error stands."""
    try:
        step()
    except (*database_errors(), OSError, MLConnectorError) as exc:
        log.warning("after the run: %s", exc)


@dataclass
class Pruned:
    before: datetime
    deleted: dict[str, int]
    bytes: int
    free_bytes: int


def prune(runtime: Runtime, *, days: int | None = None, vacuum: bool = False) -> Pruned:
    """`mlconnector prune`: delete audit rows, processed notifications and runs older than ``days`` (else
    `[state] audit_retention_days`); with ``vacuum``, give the freed space back to the disk."""
    config = load_config(runtime.config_path, required=False)
    keep = config.audit_retention_days if days is None else days
    if not keep:
        raise ConfigError("audit_retention_days is 0 (keep everything): pass --older-than DAYS to prune anyway")
    location = runtime.state_location(config)
    before = utcnow() - timedelta(days=keep)
    with location.errors(), location.open() as state:
        deleted = state.prune(before)
        if vacuum:
            state.vacuum()
        size = state.size()
    return Pruned(before, deleted, size["bytes"], size["free_bytes"])


def send_test_alert(runtime: Runtime) -> list[str]:
    """`mlconnector alert test`: one alert to every place `[alerts]` names; what went wrong delivering it."""
    config = runtime.config
    if not config.alerts.enabled:
        raise ConfigError(f"{config.path}: no [alerts] command or webhook_url (nor ${ALERTS_WEBHOOK_ENV}); add "
                          "one (see connections.example.toml)")
    return alerts.send(config.alerts, alerts.Alert("test", "a test alert: alerts reach you"))


def alert_failed(runtime: Runtime, pair: str, detail: str) -> bool:
    """`mlconnector alert failed PAIR`: a failure seen from outside (systemd's OnFailure=) opens the pair's incident
    as a failed run would: one alert, not two, and an ok run settles it. True when an alert was sent."""
    config = runtime.config
    location = runtime.state_location(config)
    with location.errors(), location.open() as state:
        return alerts.raise_incident(state, config.alerts, f"run:{pair}", alerts.Alert(
            "failed", f"{pair}: {detail}", pair), utcnow())


def refuse_flows_setup_found_missing(state: StateStore, config: Config, pair: str, flows: Iterable[str] | None) -> None:
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


def refuse_fields_systems_cannot_carry(session: Session, flows: Iterable[str] | None) -> None:
    """A chosen flow writing a field its pair's options name where the target's records cannot carry one however it
    is set up (``Connector.fixed_fields``: BC's API v2.0 entities) does not start: every record would fail. One line
    (exit 2) with the fix, before anything is read or written."""
    spec, options = session.pair, session.config.options
    if spec.prerequisites is None:
        return
    chosen = {f.name for f in spec.ordered(list(flows or ()) or list(session.config.flows) or None)}
    for need in spec.prerequisites(options):
        flow = next((name for name in need.flows if name in chosen), None)
        if need.kind != FIELD or not need.option or flow is None:
            continue
        connector = session.connectors[need.role]
        reason = connector.fixed_fields(need.target)
        if reason:
            raise ConfigError(f"{spec.name} flow {flow} writes {need.name} on {connector.name}'s {need.target}: "
                              f"{reason}; or turn the flow off (pairs.{spec.name}.options.{need.option} = \"\", or "
                              f"leave {flow} out of pairs.{spec.name}.flows)")


def setup(runtime: Runtime, pair: str, *, apply: bool = False,
          plan: Callable[[Any], None] | None = None) -> Any:
    """`mlconnector setup PAIR`: check what the pair needs in its systems; with ``apply``, create what the vendors'
    APIs allow (``plan`` sees the report before anything is changed). The flows still lacking something are
    recorded, so sync refuses them until a later setup finds them done."""
    from mlconnector.setup import check_pair

    config = runtime.config
    location = runtime.state_location(config)
    with location.errors(), location.open() as state:
        context = runtime.context(state)
        return check_pair(config, pair, context, state, apply=apply, plan=plan)


def keep_channels(runtime: Runtime, pair: str) -> RunResult:
    """Renew the pair's push channels that are missing or near expiry, under the pair's lock (a run holding it
    renews them itself: LockHeld). A channel that cannot be renewed alerts (`[alerts]`) and one renewed again
    settles it."""
    config = runtime.config
    location = runtime.state_location(config)
    # Looked at first without the pair's lock: taken every round, it would now and then make a cron sync starting
    # at that moment find it held and do nothing (exit 75). Renewals fall due about once a day.
    with location.errors(), location.open() as state:
        session = open_pair(config, pair, runtime.context(state))
        try:
            due = Engine(session.pair, session.config, session.connectors, state,
                         counter=session.counter).channels_due()
        finally:
            session.close()
    if not due:
        return RunResult(run_id=new_run_id(), pair=pair)
    with locked_state(location, pair) as state:
        session = open_pair(config, pair, runtime.context(state))
        try:
            result = Engine(session.pair, session.config, session.connectors, state,
                            counter=session.counter).keep_channels()
        finally:
            session.close()
        alerts.channels(state, config.alerts, utcnow())
        return result


def drain(runtime: Runtime, pair: str) -> RunResult:
    """Process the pair's waiting notifications now (no poll), under the pair's lock."""
    config = runtime.config
    location = runtime.state_location(config)
    with locked_state(location, pair) as state:
        session = open_pair(config, pair, runtime.context(state))
        try:
            refuse_fields_systems_cannot_carry(session, None)
            return Engine(session.pair, session.config, session.connectors, state,
                          counter=session.counter).drain()
        finally:
            session.close()


def replay(runtime: Runtime, *, pair: str | None = None, flow: str | None = None,
           error_class: str | None = None, ids: list[str] | None = None, dry_run: bool = False,
           progress: Callable[[str, int], None] | None = None) -> list[RunResult]:
    """Retry queued records, pair by pair, each under that pair's lock."""
    config = runtime.config
    location = runtime.state_location(config)
    with location.errors(), location.open() as state:
        queued = state.replay_items(pair=pair, flow=flow, error_class=error_class, ids=ids)
    results = []
    for name in sorted({item["pair"] for item in queued}):
        if name not in all_pairs() or interrupt.requested() is not None:
            continue
        with locked_state(location, name) as state:
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
    location = runtime.state_location(config)
    with locked_state(location, pair) as state:
        session = open_pair(config, pair, runtime.context(state))
        try:
            chosen = [session.pair.flow(name) for name in _flow_names(session.pair, flows, session.config.flows)]
            # A mapping naming a field its system lacks would make every record differ (and --fix write them).
            mapped_fields.check(session.pair, session.config, session.connectors, state, chosen, utcnow())
            report = run_reconcile(session.pair, session.config, session.connectors, state, session.counter,
                                   session.pair.ordered([f.name for f in chosen]))
            # `status --check` names a pair whose last reconcile found disagreement.
            state.save_reconcile(pair, report.agrees, sum(len(f.differences) + sum(not t.agrees for t in f.totals)
                                                          for f in report.flows.values()))
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


def mappings(runtime: Runtime, pair: str, *, flow: str | None = None) -> list[Line]:
    """`mlconnector mappings PAIR`: what each flow writes, field by field: the pair's own lines and the configured
    ones (`[pairs.PAIR.mappings.FLOW]`, checked against the pair as a run checks them), each saying where it comes
    from. Reads the configuration only (without one, the pair's own lines): no system is called."""
    config = load_config(runtime.config_path, required=False)
    spec = get_pair(pair)
    pair_config = config.pair(pair)
    options = spec.option_values(pair_config.options)
    if flow is not None:
        _flow_names(spec, [flow], None)
    return effective_table(spec, pair_config.mappings, options, flow)


def _flow_names(pair: Any, flows: Iterable[str] | None, configured: Iterable[str] | None) -> list[str]:
    names = list(flows or configured or [f.name for f in pair.flows if not f.optional])
    known = [f.name for f in pair.flows]
    for name in names:
        if name not in known:
            raise ConfigError(f"pair {pair.name} has no flow {name!r} (flows: {', '.join(known)})")
    return names


def show_config(runtime: Runtime) -> dict[str, Any]:
    """`mlconnector config show`: the configuration in effect, each value with where it came from; secrets as set
    or unset (see mlconnector.config_report)."""
    import tomllib

    from mlconnector.config import config_source
    from mlconnector.config_report import report

    config = runtime.config
    raw = tomllib.loads(config.path.read_text(encoding="utf-8")) if config.path else {}
    location = runtime.state_location(config)  # the order of resolve_state
    if runtime.state_path:
        state_source = "--state"
    elif os.environ.get(STATE_URL_ENV):
        state_source = f"${STATE_URL_ENV}"
    elif config.state_url:
        state_source = "[state] url"
    elif config.state_path:
        state_source = "[state] path"
    else:
        state_source = f"${STATE_ENV}" if os.environ.get(STATE_ENV) else "default"
    # location.shown: a PostgreSQL URL without its password
    return report(config, config_source(runtime.config_path), location.shown, state_source, runtime.secret_store(), raw)


def validate_config(runtime: Runtime) -> tuple[Config, list[str]]:
    """`mlconnector config validate`, offline: the file as every command reads it, then each configured pair: a
    registered one, its roles filled by systems of the right kinds, its flows and on_delete naming its flows."""
    config = runtime.config  # a file that cannot be read or has a wrong value raises here, naming it
    problems: list[str] = []
    known = all_pairs()
    for name, pair in sorted(config.pairs.items()):
        spec = known.get(name)
        if spec is None:
            problems.append(f"{config.path}: pairs.{name} is not a pair this installation knows "
                            f"(known: {', '.join(sorted(known))})")
            continue
        try:
            resolve_roles(config, spec)
        except ConfigError as exc:
            problems.append(str(exc))
        flows = [f.name for f in spec.flows]
        for key, named in (("flows", list(pair.flows)), ("on_delete", list(pair.on_delete))):
            problems += [f"{config.path}: pairs.{name}.{key} names no flow {flow!r} (flows: {', '.join(flows)})"
                         for flow in named if flow not in flows]
        problems += [f"{config.path}: pairs.{name}.on_delete.{flow} = {policy!r}: use ignore, unlink, flag or delete"
                     for flow, policy in pair.on_delete.items() if policy not in ("ignore", "unlink", "flag", "delete")]
        try:  # the configured mappings against the pair's flows, as a run checks them
            check_rules(spec, pair.mappings, spec.option_values(pair.options))
        except ConfigError as exc:
            problems.append(f"{config.path}: {exc}")
    return config, problems


def ping(runtime: Runtime, system: str | None = None) -> list[PingResult]:
    """Check each configured system (or one): reachability, credentials (with a freshly minted token), edition or
    permissions. A system whose secrets are missing is not tried: its result names every one of them."""
    from mlconnector.systems import required_secrets

    config = runtime.config
    names = [system] if system else sorted(config.systems)
    if not names:
        raise ConfigError(f"{config.path}: no [systems.*] tables; run `mlconnector init`")
    results = []
    store = runtime.secret_store()
    context = replace(runtime.context(), fresh_tokens=True)
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


def __getattr__(name: str) -> Any:
    """``api.Listener``: the webhook receiver lives in mlconnector.listener, which uses this module's calls."""
    if name == "Listener":
        from mlconnector.listener import Listener

        return Listener
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
