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
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from mlconnector.api import Runtime
from mlconnector.demo import CRM_ERPS, SandboxConfig, crm_system_name, write_sandbox_config
from mlconnector.sync import open_pair
from mlconnector.errors import RecordError
from mlconnector.flows import SkipRecord
from mlconnector.sandbox import server as sandbox_server
from mlconnector.sandbox.server import Sandboxes
from mlconnector.state import State, StateLocation, StateStore
from tests.helpers import kill_on_progress
from tests.reliability import leaks

ROOT = Path(__file__).parents[2]
SOAK = os.environ.get("MLCONNECTOR_SOAK", "") not in ("", "0")
MLCONNECTOR = [sys.executable, "-m", "mlconnector"]
# pair -> the sandbox key of its ERP side (its Zoho org, for the *-zoho pairs)
PAIRS = {"nav-zoho": "nav", "bc-zoho": "bc", "fo-zoho": "fo", "gp-zoho": "gp", "nav-zuora": "zuora"}
NEW_PAIRS = ("fo-zoho", "gp-zoho", "nav-zuora")
FO_COMPANY = sandbox_server.FO_LEGAL_ENTITY.lower()
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
        if os.environ.get("MLCONNECTOR_STATE_URL"):  # the test's state in PostgreSQL (state_store): cron's too
            env["MLCONNECTOR_STATE_URL"] = os.environ["MLCONNECTOR_STATE_URL"]
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

    def sync_killed(self, kill_at: dict[str, int | None], timeout: float = 60.0) -> dict[str, tuple[int, str, str]]:
        """Run ``sync`` of each pair side by side, as cron would, and ``kill -9`` each run once its systems have
        answered ``kill_at[pair]`` calls of it (see ``calls``; None: let it finish): the kill lands at the same
        point of a run whatever the speed of the machine. Returns each run's exit code, output and errors."""
        before = {pair: self.calls(pair) for pair in kill_at}
        procs = {pair: self.popen("sync", pair) for pair in kill_at}

        def reached(pair: str, at: int | None) -> Callable[[], bool]:
            return lambda: at is not None and self.calls(pair) - before[pair] >= at

        try:
            kill_on_progress(procs, {pair: reached(pair, at) for pair, at in kill_at.items()}, timeout=timeout)
        finally:
            ended = {pair: self.finish(proc) for pair, proc in procs.items()}
        return ended

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
        return crm_system_name(PAIRS[pair], tuple(e for e in CRM_ERPS if e in self.sandboxes.zoho))

    @property
    def finops(self) -> Any:
        return self.sandboxes.finops_sandbox

    @property
    def gp(self) -> Any:
        return self.sandboxes.gp_sandbox

    @property
    def zuora(self) -> Any:
        return self.sandboxes.zuora_sandbox

    def calls(self, pair: str) -> int:
        """API calls the systems of ``pair`` have taken so far (each emulator's own count): how far a run has
        got, as the systems see it. The Dynamics emulator serves NAV and BC at once: NAV's calls are those under
        its instance path, the rest are BC's."""
        erp = "nav" if pair == "nav-zuora" else PAIRS[pair]
        total = sum(self.zuora.calls.values()) if pair == "nav-zuora" else sum(self.zoho(pair).calls.values())
        if erp == "fo":
            return total + len(self.finops.calls)
        if erp == "gp":
            return total + len(self.gp.calls)
        dynamics = list(self.sandboxes.dynamics.calls)
        nav = self.sandboxes.nav
        nav_calls = 0 if nav is None else sum(1 for call in dynamics
                                              if call.path.startswith(urlsplit(nav.base_url).path))
        return total + (nav_calls if erp == "nav" else len(dynamics) - nav_calls)

    def all_faults(self) -> list[Any]:
        sandboxes = [self.sandboxes.dynamics, self.finops, self.gp, self.zuora, *self.sandboxes.zoho_sandboxes.values()]
        return list({id(s.faults): s.faults for s in sandboxes if s is not None}.values())

    def set_faults(self, **values: float | None) -> None:
        """Change fault injection on every sandbox while they run (the Faults objects are shared and mutable)."""
        for faults in self.all_faults():
            for name, value in values.items():
                setattr(faults, name, value)

    def quiet(self) -> None:
        self.set_faults(rate_limit=0.0, server_error=0.0, latency=0.0, drop=0.0, token_ttl=None)

    def state(self) -> StateStore:
        """The state the runs use: the sandbox's state file, or PostgreSQL where the test put it (state_store)."""
        if os.environ.get("MLCONNECTOR_STATE_URL"):
            return StateLocation(url=os.environ["MLCONNECTOR_STATE_URL"]).open()
        return State(self.setup.state_path)

    def runtime(self) -> Runtime:
        return self.setup.runtime()

    def register_secrets(self) -> None:
        """Everything secret this rig knows of: stored credentials, minted tokens, the master key."""
        sandboxes = self.sandboxes
        values = [v for v in (sandboxes.nav.access_key if sandboxes.nav else None,
                              sandboxes.bc.client_secret if sandboxes.bc else None,
                              sandboxes.finops.client_secret if sandboxes.finops else None,
                              sandboxes.gp.password if sandboxes.gp else None,
                              sandboxes.zuora.client_secret if sandboxes.zuora else None,
                              sandboxes.zuora.callout_password if sandboxes.zuora else None) if v]
        for zoho in sandboxes.zoho.values():
            values += [zoho.client_secret, zoho.refresh_token]
        for org in sandboxes.zoho_sandboxes.values():
            values += list(org.accounts.access_tokens) + list(org.accounts.refresh_tokens)
        if sandboxes.dynamics is not None:
            values += list(sandboxes.dynamics.identity.tokens)
        if self.finops is not None:  # every F&O access token minted, and the app secrets it knows
            values += list(self.finops.tokens) + [app.client_secret for app in self.finops.apps.values()]
        if self.zuora is not None:
            values += list(self.zuora.tokens) + [c.client_secret for c in self.zuora.clients.values()]
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
        leaks.FILES.extend(self.setup.state_path.parent.glob("gp-*-seen.json"))

    def stop(self) -> None:
        try:
            self.register_secrets()
        finally:
            for session in self.sessions.values():
                session.close()
            self.sandboxes.stop()

    def secrets_of(self, pair: str) -> int:
        """How many secret values the rig registers for ``pair``'s systems (for the figures)."""
        return len([e for e in self.setup.secret_store().list() if e.system in self.systems_of(pair)])

    def systems_of(self, pair: str) -> tuple[str, ...]:
        erp = PAIRS[pair]
        if pair == "nav-zuora":
            return ("nav", "zuora")
        return (erp, self.crm_name(pair))


def start_rig(tmp: Path, erps: tuple[str, ...] = ("nav", "bc"), *, pairs: tuple[str, ...] | None = None,
              seed: str | int = "small", faults: str | None = None,
              system_settings: dict[str, dict[str, Any]] | None = None,
              pair_settings: dict[str, Any] | None = None, notify_urls: dict[str, str] | None = None) -> Rig:
    """Sandboxes for ``erps`` (nav, bc: the Dynamics emulator and a Zoho org each), or for ``pairs`` (any of
    PAIRS: what those pairs need, each ERP with a Zoho org of its own, Zuora for nav-zuora)."""
    if pairs:
        sandboxes = sandbox_server.start_pairs(pairs, seed=seed, faults=faults)
    else:
        sandboxes = sandbox_server.start(erps, seed=seed, faults=faults)
    try:
        setup = write_sandbox_config(sandboxes, tmp / "connections.toml", notify_urls=notify_urls)
        crm_erps = tuple(e for e in CRM_ERPS if e in sandboxes.zoho)
        extra = {name: {**FAST_RETRIES, **values} for name, values in (system_settings or {}).items()}
        for erp in crm_erps:  # the Zoho orgs give up fast by default; Dynamics keeps its own (fixed) policy
            extra.setdefault(crm_system_name(erp, crm_erps), dict(FAST_RETRIES))
        if sandboxes.zuora is not None:
            extra.setdefault("zuora", dict(FAST_RETRIES))
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
    if isinstance(expected, Decimal) and isinstance(actual, (int, float, Decimal)) and not isinstance(actual, bool):
        return abs(expected - Decimal(str(actual))) < Decimal("0.000001")   # exact money, read back as a number
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


# What a target system holds, in the shape of the pair's payloads, read from the system itself.
@dataclass
class Target:
    rows: list[dict[str, Any]]              # each with "_id": the id the engine links to
    key: str                                # the natural key field in rows and payloads
    unique: tuple[str, ...] = ()            # more payload fields no two target rows may share (find_by, refs)
    ignore: tuple[str, ...] = ()            # payload fields the target keeps as it was created (not compared)
    grouped: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for row in self.rows:
            self.grouped.setdefault(str(row.get(self.key)), []).append(row)


# Flows checked elsewhere or not one-to-one: many Zuora invoices / payments land on one NAV customer's field.
NOT_ONE_TO_ONE = {("nav-zuora", "invoice_status"), ("nav-zuora", "payment_status")}


def _key_name(flow: Any, options: Any) -> str:
    # gp-zoho accounts upsert on "Account_Number,Account_Name": the first field is the stored key.
    return flow.key_field(options).split(",")[0]


def _zoho_target(rig: Rig, pair: str, flow: Any, key: str) -> Target:
    org = rig.zoho(pair)
    rows = [{**row, "_id": str(row["id"])} for row in org.records(flow.target_entity)]
    # An org without multi-currency has no Currency field: the connector leaves the home currency out.
    return Target(rows, key, ignore=() if org.schema.currencies.enabled else ("Currency",))


def _finops_target(rig: Rig, flow: Any, key: str) -> Target:
    """F&O documents as OData shows them: the header with its lines (in line order)."""
    from mlconnector.sandbox.finops.entities import ENTITIES

    spec = ENTITIES[flow.target_entity]
    rows = []
    for header in rig.finops.records(FO_COMPANY, flow.target_entity):
        ref = header[spec.keys[-1]]
        rows.append({**header, "_id": str(ref), "lines": rig.finops.lines(FO_COMPANY, flow.target_entity, ref)})
    return Target(rows, key)


def _gp_target(rig: Rig, key: str) -> Target:
    """GP sales orders as GetSalesOrderByKey shows them, in the pair's payload shape."""
    rows = []
    for order in rig.gp.sales_orders(rig.sandboxes.gp.company_id):
        lines = order.get("Lines", {}).get("SalesOrderLine") or []
        rows.append({"_id": order["Key"]["Id"], "Id": order["Key"]["Id"], "customerId": order["CustomerKey"]["Id"],
                     "customerPONumber": order.get("CustomerPONumber"), "comment": order.get("Comment"),
                     "date": str(order.get("Date") or "")[:10] or None,
                     "currency": (order.get("CurrencyKey") or {}).get("ISOCode"),
                     "lines": [{"item": line["ItemKey"]["Id"], "quantity": line["Quantity"]["Value"],
                                "unitPrice": line["UnitPrice"]["Value"], "description": line.get("ItemDescription")}
                               for line in lines]})
    return Target(rows, key, unique=("comment",))


def _zuora_target(rig: Rig, session: Any, flow: Any, key: str) -> Target:
    if flow.target_entity == "subscriptions":
        rows = []
        for sub in rig.zuora.subscriptions():
            if sub.get("status") == "Cancelled":
                continue
            lines = [{"productId": plan["productId"], "sku": plan.get("productSku"),
                      "quantity": charge.get("quantity"), "price": charge.get("price")}
                     for plan in sub.get("ratePlans") or [] for charge in plan.get("ratePlanCharges") or []]
            rows.append({"_id": str(sub["name"]), key: sub.get(key), "accountId": sub.get("accountId"),
                         "termType": sub.get("termType"), "orderDate": sub.get("contractEffectiveDate"),
                         "lines": sorted(lines, key=lambda line: str(line["productId"]))})
        return Target(rows, key)
    # Accounts and products read back through Zuora's Object Query, as the connector compares them.
    rows = [{**r.data, "_id": r.id} for r in session.connectors[flow.target].changes(flow.target_entity, None)]
    # Currency and bill cycle day are set when an account is created, never sent again.
    return Target(rows, key, ignore=("currency", "billCycleDay") if flow.target_entity == "accounts" else ())


# Journal documents (nav-zuora's invoices and payments): a document is its Document No. in the journal (or, once
# posted, among the customer ledger entries), for that customer; its lines and amounts are checked by the pair's tests.
JOURNAL_TEMPLATES = {"salesJournalLines": "SALES", "cashReceiptLines": "CASHRCPT"}
JOURNAL_FIELDS_NOT_CHECKED = ("journal", "postingDate", "dueDate", "externalDocumentNumber", "currencyCode",
                              "description", "balAccountNumber", "lines", "reversed", "reversal")


def _journal_target(rig: Rig, pair: str, flow: Any, key: str) -> Target:
    dynamics, company = rig.sandboxes.dynamics, rig.company(pair)
    documents = {(line["Document_No"], line["Account_No"]) for line in dynamics.journal_lines(company)
                 if line["Journal_Template_Name"] == JOURNAL_TEMPLATES[flow.target_entity]}
    documents |= {(entry["Document_No"], entry["Customer_No"]) for entry in dynamics.ledger_entries(company)}
    rows = [{"_id": number, key: number, "customerNumber": customer} for number, customer in sorted(documents)]
    return Target(rows, key, ignore=JOURNAL_FIELDS_NOT_CHECKED)


def _nav_target(rig: Rig, pair: str, flow: Any, key: str) -> Target:
    if flow.target_entity in JOURNAL_TEMPLATES:
        return _journal_target(rig, pair, flow, key)
    # the Customer card's extension fields (nav-zuora) travel under their page names, as the page shows them
    shown = sandbox_server.NAV_STATUS_FIELDS if flow.target_entity == "customers" else {}
    rows = [{**row, **{page: row.get(api) for page, api in shown.items()}, "_id": str(row["number"])}
            for row in rig.sandboxes.dynamics.records(rig.company(pair), flow.target_entity)]
    if flow.target_entity == "contacts":
        relations = _business_relations(rig, pair, session_mode=_mode(rig, pair))
        for row in rows:
            holder = row.get("companyNumber") or row["number"]
            if holder in relations:
                row["businessRelation"] = relations[holder]
    return Target(rows, key, unique=tuple(flow.find_by))


def _mode(rig: Rig, pair: str) -> str:
    session = rig.session(pair)
    return getattr(getattr(session.connectors["erp"], "endpoint", None), "mode", "odata")


def _business_relations(rig: Rig, pair: str, *, session_mode: str) -> dict[str, dict[str, str]]:
    """Company contact number -> the customer or vendor its Contact Business Relation names ({type, id} as the
    connector reads it: the number on pages, the id in API v2.0)."""
    company = rig.sandboxes.dynamics.db.company(rig.company(pair))
    contacts = company.table("contacts")
    out: dict[str, dict[str, str]] = {}
    for relation in company.relations:
        related = company.table("customers" if relation.link_to_table == "Customer" else "vendors").get(
            relation.related_id)
        contact = contacts.get(relation.contact_id)
        if related is None or contact is None:
            continue
        ident = str(related.values.get("number")) if session_mode == "odata" else relation.related_id
        out.setdefault(str(contact.values.get("number")), {"type": relation.link_to_table, "id": ident})
    return out


def _target(rig: Rig, pair: str, flow: Any, session: Any, key: str) -> Target:
    kind = _kind_of(session, flow.target)
    if kind == "zoho":
        return _zoho_target(rig, pair, flow, key)
    if kind == "finops":
        return _finops_target(rig, flow, key)
    if kind == "gp":
        return _gp_target(rig, key)
    if kind == "zuora":
        return _zuora_target(rig, session, flow, key)
    return _nav_target(rig, pair, flow, key)


def _kind_of(session: Any, role: str) -> str:
    name = type(session.connectors[role]).__module__.rsplit(".", 1)[-1]
    return {"dynamics": "nav"}.get(name, name)


def _expected(rig: Rig, pair: str, flow: Any, payload: dict[str, Any], target: Target) -> dict[str, Any]:
    """The payload as the target is expected to hold it."""
    expected = {k: v for k, v in payload.items() if k not in target.ignore}
    if flow.target_entity == "FreeTextInvoiceHeaders":  # free text invoice lines carry no item number
        expected["lines"] = [{k: v for k, v in line.items() if k != "ItemNumber"} for line in expected["lines"]]
    if flow.target_entity == "subscriptions":
        from mlconnector.systems.zuora import _merge_lines

        expected["lines"] = sorted(_merge_lines(expected.get("lines") or []), key=lambda l: str(l["productId"]))
    return expected


def _source_records(rig: Rig, session: Any, flow: Any, until: datetime | None) -> Any:
    connector = session.connectors[flow.source]
    if flow.source_entity == "glAccounts":
        # Read without the connector's first-seen list: changes() would record this read as seen.
        return [] if until is not None else connector._gl_accounts()
    # Read to now, not to ``until``: NAV pages give only a date, so a record changed today is stamped with the
    # end of the read window; read to now it stays above any watermark of today, which its re-read covers.
    return connector.changes(flow.source_entity, None)


def check_pair(rig: Rig, pair: str, *, flows: tuple[str, ...] | None = None, below_watermark: bool = False,
               audit: bool = True) -> Check:
    """Every flow of ``pair``, in both directions: the source read through the real connector, mapped with the
    pair's own functions, and compared with the target system's records found by the flow's natural key
    (Zoho orgs, F&O documents with their lines, GP sales orders, Zuora accounts, products and subscriptions,
    NAV customers and items).

    Full check (default): every source record is there exactly once with the mapped values, and every link
    has an audit row. ``below_watermark``: only records older than the flow's watermark, each of which
    must already be in the target (or waiting in the replay queue): the watermark is never ahead."""
    from mlconnector.systems.base import Record

    check = Check(pair)
    session = rig.session(pair)
    options = session.config.options
    with rig.state() as state:
        ctx = _Links(state, pair, options)
        queued = {(r["flow"], r["source_id"]) for r in state.replay_items(pair=pair)}
        audited = {(r["flow"], r["source_id"], r["target_id"]) for r in state.audit_rows(pair=pair, limit=None)
                   if r["status"] == "ok" and r["action"] in ("create", "update")}
        targets: dict[tuple[str, str], Target] = {}
        for flow in session.pair.flows:
            if (flows and flow.name not in flows) or (pair, flow.name) in NOT_ONE_TO_ONE:
                continue
            if flow.optional and flow.name not in (session.config.flows or ()):
                continue  # an optional flow the pair does not run (bc-zoho's purchase orders)
            key = _key_name(flow, options)
            mark = state.watermark(pair, flow.name) if below_watermark else None
            if below_watermark and mark is None:
                continue
            if (flow.target_entity, key) not in targets:
                targets[(flow.target_entity, key)] = _target(rig, pair, flow, session, key)
            target = targets[(flow.target_entity, key)]
            for record in _source_records(rig, session, flow, mark):
                if not isinstance(record, Record):
                    record = Record(session.connectors[flow.source].name, flow.source_entity, str(record["id"]),
                                    None, record)
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
                link = state.link(pair, flow.name, record.id)
                value = payload.get(key)
                if value in (None, "") and link is not None and link.target_id:
                    value = link.target_id  # the target numbered it (a record born on the other side)
                found = target.grouped.get(str(value), []) if value not in (None, "") else []
                if not found and below_watermark and link is not None and link.target_id:
                    # Landed and linked; the key it carries may come with a later run (a number sent back).
                    found = [r for r in target.rows if r["_id"] == link.target_id]
                    if found:  # linked back from the other side: its values go out with the next run
                        continue
                if len(found) > 1:
                    check.duplicates.append(f"{label}: {len(found)} records with {key}={value}")
                for name in target.unique:
                    if payload.get(name) not in (None, ""):
                        same_value = [r for r in target.rows if r.get(name) == payload[name]]
                        if len(same_value) > 1:
                            check.duplicates.append(f"{label}: {len(same_value)} records with {name}={payload[name]}")
                if not found:
                    (check.ahead if below_watermark else check.missing).append(
                        f"{label}: not in {flow.target_entity}")
                    continue
                if below_watermark and flow.echo_of and flow.target == "erp":
                    # Into the ERP, two-way: the ERP record may hold a later edit (the scenarios edit ERP records
                    # between runs) still on its way out (the opposite flow's job, later-wins). After a crash
                    # only its presence is checked here; its values in the full check after the re-runs.
                    continue
                expected = _expected(rig, pair, flow, {k: v for k, v in payload.items() if v is not None}, target)
                if not same(expected, found[0]):
                    diff = {k: (v, found[0].get(k)) for k, v in expected.items() if not same(v, found[0].get(k))}
                    (check.ahead if below_watermark else check.wrong).append(f"{label}: {diff}")
                if audit and not below_watermark:
                    if link is None or link.target_id != found[0]["_id"]:
                        check.unaudited.append(f"{label}: no link to {found[0]['_id']}")
                    elif (flow.name, record.id, link.target_id) not in audited and not (
                            # a record the opposite flow wrote is linked back; its audit row is that flow's
                            flow.echo_of and (flow.echo_of, link.target_id, record.id) in audited):
                        check.unaudited.append(f"{label}: linked but no audit row")
        # Exactly one target record per key, across the module (no stray copies under other keys).
        if not below_watermark:
            for (entity, key), target in targets.items():
                for value, rows in target.grouped.items():
                    if len(rows) > 1 and value not in ("None", ""):
                        check.duplicates.append(f"{entity} {value}: {len(rows)} copies")
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


def audit_counts(state: StateStore, pair: str) -> Counter[str]:
    return Counter(r["action"] for r in state.audit_rows(pair=pair, limit=None))


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


def sync_through_latency_spikes(rig: Rig, pairs: Any, *, spike: float, timeout: float) -> None:
    """Run the pairs' syncs side by side while every sandbox's latency jumps to ``spike`` for 0.1 s every half
    second. Retries ride out most of a storm; what outlasts them is queued (3) or stops the run (5), never a bug."""
    import threading

    stop = threading.Event()

    def spikes() -> None:
        while not stop.is_set():
            rig.set_faults(latency=spike)
            time.sleep(0.1)
            rig.set_faults(latency=0.0)
            time.sleep(0.4)

    spiker = threading.Thread(target=spikes, daemon=True)
    spiker.start()
    try:
        procs = {pair: rig.popen("sync", pair) for pair in pairs}
        for proc in procs.values():
            code, _, err = rig.finish(proc, timeout=timeout)
            exit_code_ok(code, (0, 3, 5), err)
    finally:
        stop.set()
        spiker.join()
