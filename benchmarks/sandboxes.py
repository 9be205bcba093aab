"""The sandboxes of one pair in a process of their own, on loopback, seeded for a benchmark and driven through
a pipe: so the tool's memory and CPU are measured apart from the emulators'."""

from __future__ import annotations

import multiprocessing
import random
import statistics
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

ERP_OF = {"nav-zoho": "nav", "bc-zoho": "bc"}
OVERLAP_SECONDS = 3


@dataclass(frozen=True)
class Size:
    customers: int
    items: int
    invoices: int
    lines: int = 3


def _start_zoho(running: Any, erp: str, faults: str | None) -> None:
    """The Zoho CRM org (enterprise edition) an ERP pairs with, served on loopback into ``running``."""
    from mlconnector.sandbox import server
    from mlconnector.sandbox.zoho import create_app as create_zoho_app

    socket = server.bind("127.0.0.1", 0)
    zoho_url = server.url_of(socket)
    zoho_app = create_zoho_app(faults=faults, api_domain=zoho_url, edition="enterprise")
    org = zoho_app.state.zoho
    org.set_home_currency("GBP" if erp == "nav" else "USD")  # the ERP company's currency (server._start_zoho)
    for module, unique in server.ZOHO_UNIQUE_FIELDS:
        org.mark_unique(module, unique)
    client = org.register_client()
    running.zoho[erp] = server.ZohoAccess(zoho_url, client.client_id, client.client_secret,
                                          org.issue_refresh_token(client.client_id))
    running.zoho_sandboxes[erp] = org
    running._servers.append(server.serve(zoho_app, socket, f"zoho-{erp}"))


def _start_empty(erp: str, faults: str | None, debounce: float, zoho: dict[str, str] | None = None) -> Any:
    """Like ``mlconnector.sandbox.server.start`` for one ERP, without the seed (the benchmark seeds its own).
    With ``zoho`` (a ZohoAccess's fields), the Zoho org runs elsewhere (a process of its own) and is only named."""
    import secrets

    from mlconnector.sandbox import server
    from mlconnector.sandbox.common import Faults
    from mlconnector.sandbox.dynamics import create_app as create_dynamics_app

    sockets = [server.bind("127.0.0.1", 0)]
    url = server.url_of(sockets[0])
    app = create_dynamics_app(faults=Faults.parse(faults), debounce=debounce)
    dynamics = app.state.dynamics
    running = server.Sandboxes(host="127.0.0.1", dynamics_url=url, dynamics=dynamics)
    if erp == "nav":
        key = secrets.token_urlsafe(32)
        dynamics.set_web_service_user("MLCONNECTOR", key)
        dynamics.create_company(server.NAV_COMPANY, currency_code="GBP")
        running.nav = server.NavAccess(f"{url}/{server.NAV_INSTANCE}", server.NAV_COMPANY, "MLCONNECTOR", key)
    else:
        tenant, client_id, secret = str(uuid.uuid4()), str(uuid.uuid4()), secrets.token_urlsafe(30)
        dynamics.register_app(tenant, client_id, secret)
        dynamics.create_company(server.BC_COMPANY, currency_code="USD")
        running.bc = server.BcAccess(f"{url}/v2.0/{tenant}/{server.BC_ENVIRONMENT}",
                                     f"{url}/{tenant}/oauth2/v2.0/token", tenant, server.BC_ENVIRONMENT,
                                     server.BC_COMPANY, client_id, secret)
    running._servers.append(server.serve(app, sockets[0], "dynamics"))
    if zoho is None:
        _start_zoho(running, erp, faults)
    else:
        running.zoho[erp] = server.ZohoAccess(**zoho)
    return running


def seed(dynamics: Any, company_name: str, size: Size, rng: random.Random) -> dict[str, list[str]]:
    """Customers and items written straight into the emulator's tables (its seed helper checks numbers by
    scanning the table, which does not scale to 100,000 rows), posted invoices with their lines through the
    store's own line logic (amounts, totals). Last modified: spread over the past year, oldest first."""
    from mlconnector.sandbox.dynamics.store import StoredRow

    db = dynamics.db
    company = db.company(company_name)
    now = datetime.now(timezone.utc)
    start = now - timedelta(days=400)

    def stamp(i: int, n: int) -> datetime:
        return (start + timedelta(seconds=(370 * 86400) * i / max(1, n))).replace(microsecond=0)

    cities = [("Atlanta", "GA", "US"), ("London", "", "GB"), ("Berlin", "BE", "DE"), ("Paris", "", "FR"),
              ("Toronto", "ON", "CA"), ("Sydney", "NSW", "AU")]
    customers = company.table("customers")
    ids: dict[str, list[str]] = {"customers": [], "items": [], "invoices": []}
    for i in range(size.customers):
        city, state, country = cities[i % len(cities)]
        row_id = str(uuid.uuid4())
        customers[row_id] = StoredRow({
            "id": row_id, "number": f"C{i + 1:06d}", "displayName": f"Customer {i + 1} {city} Trading",
            "addressLine1": f"{i % 240 + 1} Market Square", "city": city, "state": state,
            "country": country, "postalCode": f"{10000 + i % 89999}", "phoneNumber": f"+1 404 555 {i % 10000:04d}",
            "email": f"office{i + 1}@customer{i + 1}.example", "website": f"www.customer{i + 1}.example",
            "currencyCode": "", "creditLimit": 5000.0}, stamp(i, size.customers))
        ids["customers"].append(row_id)
    items = company.table("items")
    for i in range(size.items):
        row_id = str(uuid.uuid4())
        price = round(20 + (i * 37) % 1500 + 0.9, 2)
        items[row_id] = StoredRow({
            "id": row_id, "number": f"I{i + 1:06d}", "displayName": f"Item {i + 1} Desk",
            "baseUnitOfMeasureCode": "PCS", "unitPrice": price, "unitCost": round(price * 0.7, 2),
            "inventory": float(i % 120), "itemCategoryCode": "TABLE"}, stamp(i, size.items))
        ids["items"].append(row_id)
    spec_name = "salesInvoices"
    from mlconnector.sandbox.dynamics.schema import ENTITIES

    spec = ENTITIES[spec_name]
    invoices = company.table(spec_name)
    for i in range(size.invoices):
        posted = stamp(i, size.invoices)
        customer = ids["customers"][rng.randrange(len(ids["customers"]))]
        values = db._validated(spec, {
            "number": f"PS-INV{100001 + i}", "customerId": customer, "invoiceDate": posted.date().isoformat(),
            "postingDate": posted.date().isoformat(), "dueDate": (posted + timedelta(days=30)).date().isoformat(),
            "externalDocumentNumber": f"PO-{1000 + i % 9000}", "status": "Open" if i % 3 else "Paid"}, trusted=True)
        values["id"] = str(uuid.uuid4())
        db._fill_defaults(company, spec, values)
        header = StoredRow(values, posted)
        invoices[header.id] = header
        for item in rng.sample(ids["items"], k=min(size.lines, len(ids["items"]))):
            db.insert_line(company, spec_name, header, {"itemId": item, "quantity": float(rng.randint(1, 12))},
                           notify=False)
        header.version, header.modified = 1, posted
        ids["invoices"].append(header.id)
    return ids


class _World:
    """What lives in the sandbox process: the running emulators, the seeded ids and the config written."""

    def __init__(self, pair: str, directory: Path, size: Size, faults: str | None, settings: dict[str, dict[str, Any]],
                 debounce: float, zoho: dict[str, str] | None = None) -> None:
        from mlconnector.demo import write_sandbox_config

        self.pair, self.erp = pair, ERP_OF[pair]
        self.rng = random.Random(7)
        self.sandboxes = _start_empty(self.erp, faults, debounce, zoho)
        self.dynamics = self.sandboxes.dynamics
        self.zoho = self.sandboxes.zoho_sandboxes.get(self.erp)  # None: in a process of its own (ZohoWorld)
        self.company = self.sandboxes.company(self.erp)
        started = time.perf_counter()
        self.ids = seed(self.dynamics, self.company, size, self.rng)
        self.seed_seconds = time.perf_counter() - started
        setup = write_sandbox_config(self.sandboxes, directory / "connections.toml")
        text = setup.config_path.read_text(encoding="utf-8")
        for system, values in settings.items():
            lines = "".join(f"{k} = {_toml(v)}\n" for k, v in values.items())
            text = text.replace(f"[systems.{system}]\n", f"[systems.{system}]\n{lines}", 1)
        # A short overlap, so an incremental run a few seconds after the load reads what a cron run 15 minutes
        # later would (the sandbox config's 60 s would re-read everything the load just wrote).
        text = text.replace("overlap_seconds = 60", f"overlap_seconds = {OVERLAP_SECONDS}")
        setup.config_path.write_text(text, encoding="utf-8")
        self.config = setup.config_path
        self.modified = 0

    def counters(self) -> dict[str, Any]:
        calls = list(self.dynamics.calls)
        return {
            "erp": {"calls": sum(1 for c in calls if c.form != "token"),
                    "reads": sum(1 for c in calls if c.form != "token" and c.method == "GET"),
                    "writes": sum(1 for c in calls if c.form != "token" and c.method != "GET"),
                    "token_mints": sum(1 for c in calls if c.form == "token")},
            **(zoho_counters(self.zoho) if self.zoho is not None else {}),
        }

    def modify(self, entity: str, count: int) -> int:
        """Change ``count`` records spread over the table, as users would (new stamp, webhook)."""
        pool = self.ids[entity]
        step = max(1, len(pool) // max(1, count))
        changed = 0
        for row_id in pool[::step][:count]:
            self.modified += 1
            if entity == "items":
                self.dynamics.modify(self.company, entity, row_id, unitPrice=100 + self.modified % 900 + 0.5)
            else:
                self.dynamics.modify(self.company, entity, row_id, phoneNumber=f"+1 212 555 {self.modified % 10000:04d}")
            changed += 1
        return changed

    def plant_drift(self, count: int) -> dict[str, list[str]]:
        """``count`` customers' worth of drift between the ERP and Zoho, as people make it, spread over the table:
        two in five Accounts edited in Zoho (differs), one in five deleted there (missing), one in five customers
        deleted in the ERP (gone), one in ten customers added to the ERP with an Account entered by hand in Zoho
        before any run (unlinked), one in ten Accounts of Zoho's own (orphan). Returns the keys, by kind, that
        reconcile must name (and nothing else)."""
        if self.zoho is None:
            raise RuntimeError("plant_drift edits both systems: start the sandboxes without zoho_apart")
        from mlconnector.sandbox.dynamics.store import StoredRow

        company = self.dynamics.db.company(self.company)
        table = company.table("customers")
        shares = {"differs": 0.4, "missing": 0.2, "gone": 0.2, "unlinked": 0.1, "orphan": 0.1}
        counts = {kind: max(1, round(count * share)) for kind, share in shares.items()}
        existing = counts["differs"] + counts["missing"] + counts["gone"]
        pool = self.ids["customers"]
        picks = pool[::max(1, len(pool) // existing)][:existing]
        planted: dict[str, list[str]] = {kind: [] for kind in shares}
        for n, row_id in enumerate(picks):
            number = table[row_id].values["number"]
            account = self.zoho.store.find_same("Accounts", "Account_Number", number)
            if n < counts["differs"]:
                self.zoho.edit("Accounts", account["id"], Billing_City=f"Drifted {n}")
                planted["differs"].append(number)
            elif n < counts["differs"] + counts["missing"]:
                self.zoho.delete("Accounts", account["id"])
                planted["missing"].append(number)
            else:
                self.dynamics.db.delete(company, "customers", table[row_id])
                self.ids["customers"].remove(row_id)
                planted["gone"].append(number)
        now = datetime.now(timezone.utc).replace(microsecond=0)
        for n in range(counts["unlinked"]):
            number, row_id = f"N{n + 1:06d}", str(uuid.uuid4())
            name = f"New Customer {n + 1} Trading"
            table[row_id] = StoredRow({"id": row_id, "number": number, "displayName": name, "city": "Lyon",
                                       "country": "FR", "currencyCode": "", "creditLimit": 0.0}, now)
            self.zoho.seed("Accounts", [{"Account_Name": name, "Account_Number": number}])
            planted["unlinked"].append(number)
        self.zoho.seed("Accounts", [{"Account_Name": f"Zoho Own {n + 1}", "Account_Number": f"Z{n + 1:06d}"}
                                    for n in range(counts["orphan"])])
        planted["orphan"] = [f"Z{n + 1:06d}" for n in range(counts["orphan"])]
        return planted

    def set_latency(self, seconds: float) -> None:
        self.dynamics.faults.latency = seconds
        if self.zoho is not None:
            self.zoho.faults.latency = seconds

    def cpu_seconds(self) -> float:
        return time.process_time()

    def push_latency(self, count: int, timeout: float = 10.0) -> list[float | None]:
        """Change a record in the pushing system, then watch the other system until it shows the change."""
        if self.zoho is None:
            raise RuntimeError("push_latency watches both systems: start the sandboxes without zoho_apart")
        out: list[float | None] = []
        picks = self.ids["customers"][:: max(1, len(self.ids["customers"]) // max(1, count))][:count]
        table = self.dynamics.db.company(self.company).table("customers")
        for n, row_id in enumerate(picks):
            number = table[row_id].values["number"]
            city = f"Pushtown {n} {uuid.uuid4().hex[:6]}"
            account = self.zoho.store.find_same("Accounts", "Account_Number", number)
            if account is None:
                out.append(None)
                continue
            started = time.perf_counter()
            if self.erp == "bc":   # BC pushes: a customer changed in BC must reach the Zoho Account
                self.dynamics.modify(self.company, "customers", row_id, city=city)
                arrived = lambda: (self.zoho.store.get("Accounts", account["id"]) or {}).get("Billing_City") == city
            else:                  # nav-zoho: Zoho pushes: an Account changed in Zoho must reach the NAV customer
                self.zoho.edit("Accounts", account["id"], Billing_City=city)
                arrived = lambda: table[row_id].values.get("city") == city
            while not arrived():
                if time.perf_counter() - started > timeout:
                    break
                time.sleep(0.01)
            out.append(round(time.perf_counter() - started, 3) if arrived() else None)
            time.sleep(0.3 + self.rng.random() * 0.3)  # changes a user makes, not a burst
        return out


def zoho_counters(org: Any) -> dict[str, Any]:
    return {
        "zoho": {"calls": sum(org.calls.values()), "by_operation": dict(org.calls),
                 "credits": org.credits, "token_mints": org.accounts.minted,
                 # Zoho's concurrency limits (edition, and 10 for heavy calls such as upserts of 100)
                 "concurrency_refused": getattr(org, "concurrency_refused", 0),
                 "peak_in_flight": getattr(org, "peak_in_flight", None),
                 "peak_heavy_in_flight": getattr(org, "peak_heavy_in_flight", None)},
        "zoho_records": {m: len(org.store.records.get(m, {})) for m in ("Accounts", "Products", "Invoices")},
    }


class _ZohoWorld:
    """A pair's Zoho org alone, for a process of its own: the real services do not share one interpreter."""

    def __init__(self, erp: str, faults: str | None) -> None:
        from dataclasses import asdict

        from mlconnector.sandbox import server

        self.erp = erp
        self.sandboxes = server.Sandboxes(host="127.0.0.1")
        _start_zoho(self.sandboxes, erp, faults)
        self.zoho = self.sandboxes.zoho_sandboxes[erp]
        self.access = asdict(self.sandboxes.zoho[erp])

    def counters(self) -> dict[str, Any]:
        return zoho_counters(self.zoho)

    def set_latency(self, seconds: float) -> None:
        self.zoho.faults.latency = seconds

    def cpu_seconds(self) -> float:
        return time.process_time()


def _serve_zoho(conn: Any, erp: str, faults: str | None) -> None:
    serve_world(conn, lambda: _ZohoWorld(erp, faults),
                lambda world: {"config": "", "seed_seconds": 0.0, "access": world.access})


def _toml(value: Any) -> str:
    import json

    return json.dumps(value) if not isinstance(value, bool) else str(value).lower()


def serve_world(conn: Any, make_world: Callable[[], Any], ready: Callable[[Any], dict[str, Any]]) -> None:
    """The child side of a world process: build the world, say it is ready (or why not), then run the
    commands the parent sends (a world method name and its arguments) until ``stop``."""
    try:
        world = make_world()
    except BaseException:
        conn.send({"error": traceback.format_exc()})
        return
    conn.send(ready(world))
    try:
        while True:
            command, args = conn.recv()
            if command == "stop":
                break
            try:
                conn.send({"ok": getattr(world, command)(*args)})
            except Exception:
                conn.send({"error": traceback.format_exc()})
    finally:
        world.sandboxes.stop()
        conn.send({"ok": "stopped"})


def _serve(conn: Any, pair: str, directory: str, size: Size, faults: str | None,
           settings: dict[str, dict[str, Any]], debounce: float, zoho: dict[str, str] | None = None) -> None:
    serve_world(conn, lambda: _World(pair, Path(directory), size, faults, settings, debounce, zoho),
                lambda world: {"config": str(world.config), "seed_seconds": round(world.seed_seconds, 2)})


class WorldProcess:
    """A pair's sandboxes in a process of their own, started by ``target`` (a module-level function that calls
    ``serve_world``); ``.call("counters")`` runs a world method there, ``.stop()`` ends it."""

    def __init__(self, pair: str, target: Callable[..., None], args: tuple[Any, ...]) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self.process = context.Process(target=target, args=(child, *args), daemon=True)
        self.process.start()
        self.answer = self._conn.recv()
        if "error" in self.answer:
            self.process.join(5)
            raise RuntimeError(f"the {pair} sandboxes did not start:\n{self.answer['error']}")
        self.config = Path(self.answer["config"])
        self.seed_seconds = self.answer["seed_seconds"]
        self.pid = self.process.pid

    def call(self, command: str, *args: Any) -> Any:
        self._conn.send((command, args))
        answer = self._conn.recv()
        if "error" in answer:
            raise RuntimeError(f"sandbox command {command} failed:\n{answer['error']}")
        return answer["ok"]

    def stop(self) -> None:
        if self.process.is_alive():
            try:
                self._conn.send(("stop", ()))
                self._conn.recv()
            except (EOFError, OSError):
                pass
            self.process.join(10)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(5)


class SandboxProcess(WorldProcess):
    """Start with ``SandboxProcess(pair, directory, size, ...)``; call ``.call("counters")`` etc.; ``.stop()``."""

    def __init__(self, pair: str, directory: Path, size: Size, *, faults: str | None = None,
                 settings: dict[str, dict[str, Any]] | None = None, debounce: float = 0.2,
                 zoho_apart: bool = False) -> None:
        # zoho_apart: the Zoho org in a process of its own (WorldProcess), as the real services are apart; the
        # world's helpers that watch both systems at once (push_latency) then cannot run.
        self.zoho_process = WorldProcess(pair, _serve_zoho, (ERP_OF[pair], faults)) if zoho_apart else None
        access = self.zoho_process.answer["access"] if self.zoho_process else None
        try:
            super().__init__(pair, _serve, (pair, str(directory), size, faults, settings or {}, debounce, access))
        except BaseException:
            if self.zoho_process is not None:
                self.zoho_process.stop()
            raise

    def call(self, command: str, *args: Any) -> Any:
        answer = super().call(command, *args)
        if self.zoho_process is not None and command == "counters":
            answer = {**answer, **self.zoho_process.call("counters")}
        elif self.zoho_process is not None and command == "set_latency":
            self.zoho_process.call("set_latency", *args)
        return answer

    def cpu_seconds(self) -> float:
        """CPU the sandbox processes have used so far, every thread, as each process measures itself (the
        kernel's per-process tick counts from outside miss short bursts of work)."""
        own = WorldProcess.call(self, "cpu_seconds")
        return own + (self.zoho_process.call("cpu_seconds") if self.zoho_process is not None else 0.0)

    def stop(self) -> None:
        super().stop()
        if self.zoho_process is not None:
            self.zoho_process.stop()


def median_p95(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, max(0, round(0.95 * len(ordered)) - 1))]
    return statistics.median(ordered), p95
