"""The reliability rig: the sandboxes served on loopback by uvicorn in this process, a config and encrypted
secrets for them written by the same library code `mlconnector sandbox serve` uses, the real CLI run as
subprocesses, and checks that read the target systems afterwards.

Every secret the rig hands out or sees minted, and every output a CLI run printed, goes to the session's
registry (tests/reliability/leaks.py), which the last test scans.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from mlconnector.api import Runtime
from mlconnector.demo import SandboxConfig, crm_system_name, write_sandbox_config
from mlconnector.engine import open_pair
from mlconnector.errors import RecordError
from mlconnector.flows import SkipRecord
from mlconnector.sandbox import server as sandbox_server
from mlconnector.sandbox.server import Sandboxes
from mlconnector.state import State
from tests.reliability import leaks

ROOT = Path(__file__).parents[2]
SOAK = os.environ.get("MLCONNECTOR_SOAK", "") not in ("", "0")
MLCONNECTOR = [sys.executable, "-m", "mlconnector"]
PAIRS = {"nav-zoho": "nav", "bc-zoho": "bc"}
# Short retries: an outage must end the run within seconds, not the production backoff's quarter minute.
FAST_RETRIES = {"retry_attempts": 4, "retry_backoff_seconds": 0.05, "retry_max_wait_seconds": 1}


def figures() -> dict[str, int]:
    return leaks.FIGURES


def count(name: str, n: int = 1) -> None:
    leaks.FIGURES[name] = leaks.FIGURES.get(name, 0) + n


@dataclass
class Rig:
    tmp: Path
    sandboxes: Sandboxes
    setup: SandboxConfig
    sessions: dict[str, Any] = field(default_factory=dict)

    def session(self, pair: str) -> Any:
        """The pair's connectors, opened once (each httpx client costs an SSL context) and reused by checks."""
        if pair not in self.sessions:
            runtime = self.runtime()
            self.sessions[pair] = open_pair(runtime.config, pair, runtime.context())
        return self.sessions[pair]

    # -- the CLI, as cron runs it -------------------------------------------------------------------------------
    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLCONNECTOR_")}
        env.update(PYTHONPATH=str(ROOT), NO_COLOR="1", COLUMNS="200", MLCONNECTOR_CONFIG=str(self.setup.config_path))
        env.update(extra)
        return env

    def cli(self, *args: str, timeout: float = 120, env: dict[str, str] | None = None,
            stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([*MLCONNECTOR, *args], capture_output=True, text=True, timeout=timeout,
                                env=env or self.env(), input=stdin, cwd=self.tmp)
        self.seen(result.stdout, result.stderr)
        return result

    def popen(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        return subprocess.Popen([*MLCONNECTOR, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=env or self.env(), cwd=self.tmp)

    def finish(self, proc: subprocess.Popen[str], timeout: float = 120) -> tuple[int, str, str]:
        out, err = proc.communicate(timeout=timeout)
        self.seen(out, err)
        return proc.returncode, out, err

    def kill(self, proc: subprocess.Popen[str]) -> bool:
        """kill -9 if still running; True when it was."""
        if proc.poll() is not None:
            return False
        proc.send_signal(signal.SIGKILL)
        return True

    def seen(self, *texts: str) -> None:
        for text in texts:
            if text:
                leaks.OUTPUTS.append(text)
                count("cli_output_bytes", len(text))

    # -- the systems ---------------------------------------------------------------------------------------------
    def zoho(self, pair: str) -> Any:
        return self.sandboxes.zoho_sandboxes[PAIRS[pair]]

    def company(self, pair: str) -> str:
        return self.sandboxes.company(PAIRS[pair])

    def crm_name(self, pair: str) -> str:
        return crm_system_name(PAIRS[pair], tuple(e for e in ("nav", "bc") if e in self.sandboxes.zoho))

    def all_faults(self) -> list[Any]:
        return [self.sandboxes.dynamics.faults, *(z.faults for z in self.sandboxes.zoho_sandboxes.values())]

    def set_faults(self, **values: float | None) -> None:
        """Change fault injection on every sandbox while they run (the Faults objects are shared and mutable)."""
        for faults in self.all_faults():
            for name, value in values.items():
                setattr(faults, name, value)

    def quiet(self) -> None:
        self.set_faults(rate_limit=0.0, server_error=0.0, latency=0.0, drop=0.0, token_ttl=None)

    def state(self) -> State:
        return State(self.setup.state_path)

    def runtime(self) -> Runtime:
        return self.setup.runtime()

    def register_secrets(self) -> None:
        """Everything secret this rig knows of: stored credentials, minted tokens, the master key."""
        values = [v for v in (self.sandboxes.nav.access_key if self.sandboxes.nav else None,
                              self.sandboxes.bc.client_secret if self.sandboxes.bc else None) if v]
        for zoho in self.sandboxes.zoho.values():
            values += [zoho.client_secret, zoho.refresh_token]
        for org in self.sandboxes.zoho_sandboxes.values():
            values += list(org.accounts.access_tokens) + list(org.accounts.refresh_tokens)
        values += list(self.sandboxes.dynamics.identity.tokens)
        store = self.setup.secret_store()
        for entry in store.list():
            value = store.get(entry.system, entry.field)
            if value:
                values.append(value)
        key_file = self.setup.secrets_dir / "secrets.key"
        if key_file.exists():
            values.append(key_file.read_text().strip())
        leaks.register(values)
        leaks.FILES.extend(p for p in (self.setup.state_path, self.setup.config_path) if p.exists())
        leaks.FILES.extend(self.tmp.glob("*.log"))
        leaks.FILES.extend(self.setup.state_path.parent.glob(f"{self.setup.state_path.name}-wal"))
        leaks.FILES.extend(self.setup.state_path.parent.glob("*quota*"))

    def stop(self) -> None:
        try:
            self.register_secrets()
        finally:
            for session in self.sessions.values():
                session.close()
            self.sandboxes.stop()


def start_rig(tmp: Path, erps: tuple[str, ...] = ("nav", "bc"), *, seed: str | int = "small",
              faults: str | None = None, system_settings: dict[str, dict[str, Any]] | None = None,
              pair_settings: dict[str, Any] | None = None, notify_urls: dict[str, str] | None = None) -> Rig:
    sandboxes = sandbox_server.start(erps, seed=seed, faults=faults)
    try:
        setup = write_sandbox_config(sandboxes, tmp / "connections.toml", notify_urls=notify_urls)
        extra = {name: {**FAST_RETRIES, **values} for name, values in (system_settings or {}).items()}
        for erp in erps:  # the Zoho orgs give up fast by default; Dynamics keeps its own (fixed) policy
            extra.setdefault(crm_system_name(erp, erps), dict(FAST_RETRIES))
        _add_settings(setup.config_path, extra, pair_settings or {})
    except BaseException:
        sandboxes.stop()
        raise
    return Rig(tmp, sandboxes, setup)


def _add_settings(path: Path, systems: dict[str, dict[str, Any]], pairs: dict[str, Any]) -> None:
    """Append keys to existing [systems.X] / [pairs.X] tables of the written config."""
    import json

    lines = path.read_text().splitlines()
    out: list[str] = []
    table = None
    extra_for = {f"systems.{k}": v for k, v in systems.items()}
    extra_for.update({f"pairs.{k}": pairs for k in PAIRS})

    def flush() -> None:
        for key, value in (extra_for.get(table or "") or {}).items():
            out.append(f"{key} = {json.dumps(value)}")

    for line in lines:
        if line.startswith("[") and line.endswith("]"):
            flush()
            out.append("") if out and out[-1] != "" else None
            table = line[1:-1]
        elif line.startswith("#") and table:
            flush()
            table = None
        out.append(line)
    flush()
    path.write_text("\n".join(out) + "\n")


# -- checks on the target systems ----------------------------------------------------------------------------------
class _Links:
    """The MapContext a mapping sees, answered from the state file (as the engine answers it)."""

    def __init__(self, state: State, pair: str, options: Any) -> None:
        self.state, self.pair, self.options = state, pair, options

    def target_id(self, flow: str, source_id: str, *, what: str = "record") -> str:
        link = self.state.link(self.pair, flow, str(source_id))
        if link is None or not link.target_id:
            from mlconnector.errors import UnresolvedReference

            raise UnresolvedReference(f"{what} {source_id} not linked")
        return link.target_id

    def source_id(self, flow: str, target_id: str) -> str | None:
        link = self.state.link_by_target(self.pair, flow, str(target_id))
        return link.source_id if link else None


def same(expected: Any, actual: Any) -> bool:
    """``expected`` (a mapped payload) is contained in ``actual`` (the target's record)."""
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return False
        if set(expected) == {"id"}:
            return str(expected["id"]) == str(actual.get("id"))
        return all(same(v, actual.get(k)) for k, v in expected.items())
    if isinstance(expected, list):
        return isinstance(actual, list) and len(expected) == len(actual) and all(
            same(e, a) for e, a in zip(expected, actual))
    if isinstance(expected, (int, float)) and not isinstance(expected, bool) and isinstance(actual, (int, float)):
        return abs(expected - actual) < 1e-6
    return expected == actual


@dataclass
class Check:
    """What a look at the target found, for one pair."""

    pair: str
    checked: int = 0
    duplicates: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)
    unaudited: list[str] = field(default_factory=list)
    ahead: list[str] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        return self.duplicates + self.missing + self.wrong + self.unaudited + self.ahead

    def assert_clean(self) -> None:
        count("records_checked", self.checked)
        count("duplicates_found", len(self.duplicates))
        count("losses_found", len(self.missing) + len(self.ahead))
        assert not self.problems, f"{self.pair}: {len(self.problems)} problem(s): {self.problems[:15]}"


def check_pair(rig: Rig, pair: str, *, flows: tuple[str, ...] | None = None, below_watermark: bool = False,
               audit: bool = True) -> Check:
    """ERP -> Zoho flows of ``pair``: the source read through the real connector, mapped with the pair's own
    functions, and compared with the Zoho org's records found by the flow's natural key.

    Full check (default): every source record is there exactly once with the mapped values, and every link
    has an audit row. ``below_watermark``: only records older than the flow's watermark, each of which
    must already be in the target (or waiting in the replay queue): the watermark is never ahead."""
    check = Check(pair)
    org = rig.zoho(pair)
    session = rig.session(pair)
    with State(rig.setup.state_path) as state:
        if True:
            ctx = _Links(state, pair, session.config.options)
            queued = {(r["flow"], r["source_id"]) for r in state.replay_items(pair=pair)}
            audited = {(r[0], r[1], r[2]) for r in state.db.execute(
                "SELECT flow, source_id, target_id FROM audit WHERE pair = ? AND status = 'ok' "
                "AND action IN ('create', 'update')", [pair]).fetchall()}
            by_module: dict[str, dict[str, list[dict[str, Any]]]] = {}
            for flow in session.pair.flows:
                if flow.source != "erp" or (flows and flow.name not in flows):
                    continue
                key = flow.key_field(session.config.options)
                if flow.target_entity not in by_module:
                    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
                    for row in org.records(flow.target_entity):
                        grouped[str(row.get(key))].append(row)
                    by_module[flow.target_entity] = grouped
                targets = by_module[flow.target_entity]
                mark = state.watermark(pair, flow.name) if below_watermark else None
                if below_watermark and mark is None:
                    continue
                for record in session.connectors["erp"].changes(flow.source_entity, None):
                    if below_watermark and not (record.modified and record.modified < mark):
                        continue
                    label = f"{flow.name} {record.get('number') or record.id}"
                    if (flow.name, record.id) in queued:
                        continue  # failed and queued: replay owns it
                    try:
                        payload = flow.map(record, ctx)
                    except SkipRecord:
                        continue
                    except RecordError as exc:
                        (check.ahead if below_watermark else check.missing).append(f"{label}: {exc}")
                        continue
                    check.checked += 1
                    found = targets.get(str(payload.get(key)), [])
                    if len(found) > 1:
                        check.duplicates.append(f"{label}: {len(found)} records with {key}={payload.get(key)}")
                    if not found:
                        (check.ahead if below_watermark else check.missing).append(f"{label}: not in Zoho")
                        continue
                    if not same(payload, found[0]):
                        diff = {k: (v, found[0].get(k)) for k, v in payload.items() if not same(v, found[0].get(k))}
                        (check.ahead if below_watermark else check.wrong).append(f"{label}: {diff}")
                    link = state.link(pair, flow.name, record.id)
                    if audit and not below_watermark:
                        if link is None or link.target_id != str(found[0]["id"]):
                            check.unaudited.append(f"{label}: no link to {found[0]['id']}")
                        elif not any(a[0] == flow.name and a[1] == record.id and a[2] == link.target_id
                                     for a in audited):
                            check.unaudited.append(f"{label}: linked but no audit row")
            # Exactly one target record per key, across the module (no stray copies under other keys).
            if not below_watermark:
                for module, grouped in by_module.items():
                    for value, rows in grouped.items():
                        if len(rows) > 1:
                            check.duplicates.append(f"{module} {value}: {len(rows)} copies")
    check.duplicates = sorted(set(check.duplicates))
    return check


def wait_until(predicate: Any, timeout: float = 20.0, step: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return False


def exit_code_ok(code: int, allowed: tuple[int, ...], err: str) -> None:
    assert code in allowed, f"exit {code}, expected one of {allowed}: {err[-2000:]}"
    assert "Traceback" not in err, err[-3000:]


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text)


def audit_counts(state: State, pair: str) -> Counter[str]:
    return Counter(r[0] for r in state.db.execute("SELECT action FROM audit WHERE pair = ?", [pair]).fetchall())


# -- outages ---------------------------------------------------------------------------------------------------------
SERVER_INDEX = {"dynamics": 0}


def take_down(rig: Rig, which: str) -> tuple[Any, int]:
    """Stop one sandbox server (``dynamics`` or ``zoho-nav`` / ``zoho-bc``): connections are refused from now."""
    erps = [e for e in ("nav", "bc") if e in rig.sandboxes.zoho]
    index = 0 if which == "dynamics" else 1 + erps.index(which.split("-", 1)[1])
    server, thread = rig.sandboxes._servers[index]
    port = int(server.servers[0].sockets[0].getsockname()[1])
    server.should_exit = True
    thread.join(timeout=10)
    return server.config.app, port


def bring_up(rig: Rig, which: str, app: Any, port: int) -> None:
    erps = [e for e in ("nav", "bc") if e in rig.sandboxes.zoho]
    index = 0 if which == "dynamics" else 1 + erps.index(which.split("-", 1)[1])
    sock = sandbox_server.bind(rig.sandboxes.host, port)
    rig.sandboxes._servers[index] = sandbox_server.serve(app, sock, which)
