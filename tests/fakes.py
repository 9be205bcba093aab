"""Two small systems for testing the engine: a file-backed store (so several processes can share it,
for crash tests) and its connector, plus a test pair that moves customers, items and invoices one way
and accounts back the other way. Nothing here names a vendor."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from mlconnector.config import SystemConfig
from mlconnector.errors import AuthError, BudgetExhausted, NotificationRejected, RateLimited, RecordError, RemoteError, Unreachable
from mlconnector.flows import Flow, MapContext, PairSpec, SkipRecord
from mlconnector.systems import ConnectorContext
from mlconnector.systems.base import Capabilities, Channel, ConnectorBase, Notification, PingResult, Record, WriteResult


def now() -> datetime:
    return datetime.now(timezone.utc)


class Store:
    """A remote system's data: entity -> records with id, modified time and fields, in one SQLite file."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._lock = threading.Lock()
        self.charging = threading.Lock()
        with self._conn() as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS records (entity TEXT, id TEXT, modified TEXT, data TEXT, "
                         "PRIMARY KEY (entity, id))")
            conn.execute("CREATE TABLE IF NOT EXISTS faults (name TEXT PRIMARY KEY, value TEXT)")
            conn.execute("CREATE TABLE IF NOT EXISTS seq (n INTEGER)")
            conn.execute("CREATE TABLE IF NOT EXISTS landed (n INTEGER)")
            conn.execute("INSERT INTO landed SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM landed)")

    def _conn(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        return conn

    def put(self, entity: str, data: dict[str, Any], id: str | None = None,
            modified: datetime | None = None, *, landed: bool = False) -> dict[str, Any]:
        """Insert or replace one record; a new one gets the next numeric id. ``landed``: a connector wrote it,
        counted (in the same transaction) by ``landed()``."""
        with self._lock, self._conn() as conn:
            if landed:
                conn.execute("UPDATE landed SET n = n + 1")
            if id is None:
                n = conn.execute("SELECT count(*) FROM seq").fetchone()[0] + 1
                conn.execute("INSERT INTO seq VALUES (?)", (n,))
                id = f"{entity[:3]}-{n}"
            stamp = (modified or now()).isoformat(timespec="microseconds")
            conn.execute("INSERT OR REPLACE INTO records VALUES (?,?,?,?)", (entity, id, stamp, json.dumps(data)))
        return {"id": id, "modified": stamp, **data}

    def update(self, entity: str, id: str, **fields: Any) -> dict[str, Any]:
        current = self.get(entity, id)
        assert current is not None, f"no {entity} {id}"
        data = {k: v for k, v in current.items() if k not in ("id", "modified")}
        data.update(fields)
        return self.put(entity, data, id)

    def get(self, entity: str, id: str) -> dict[str, Any] | None:
        with self._conn() as conn:
            row = conn.execute("SELECT id, modified, data FROM records WHERE entity=? AND id=?", (entity, id)).fetchone()
        return {"id": row[0], "modified": row[1], **json.loads(row[2])} if row else None

    def all(self, entity: str) -> list[dict[str, Any]]:
        with self._conn() as conn:
            rows = conn.execute("SELECT id, modified, data FROM records WHERE entity=? ORDER BY modified, id",
                                (entity,)).fetchall()
        return [{"id": r[0], "modified": r[1], **json.loads(r[2])} for r in rows]

    def find(self, entity: str, field: str, value: Any) -> list[dict[str, Any]]:
        return [r for r in self.all(entity) if r.get(field) == value]

    def landed(self) -> int:
        """Records connectors have written here so far, from every process: a run's progress as the target
        sees it."""
        with self._conn() as conn:
            return conn.execute("SELECT n FROM landed").fetchone()[0]

    def set_fault(self, name: str, value: Any) -> None:
        with self._conn() as conn:
            conn.execute("INSERT OR REPLACE INTO faults VALUES (?,?)", (name, json.dumps(value)))

    def fault(self, name: str) -> Any:
        with self._conn() as conn:
            row = conn.execute("SELECT value FROM faults WHERE name=?", (name,)).fetchone()
        return json.loads(row[0]) if row else None


class StoreConnector(ConnectorBase):
    """The connector contract over a Store; counts its calls like a real API client would."""

    capabilities = Capabilities(push=True)

    renew_margin = timedelta(hours=2)
    channel_life = timedelta(days=1)

    def __init__(self, name: str, store: Store, context: ConnectorContext, page_size: int = 50,
                 notify_url: str | None = None) -> None:
        self.name = name
        self.store = store
        self.counter = context.counter
        self.page_size = page_size
        self.notify_url = notify_url
        self.writes: list[int] = []
        self.clock = now

    # push: channels live in the store; a notification must carry its channel's token
    def push_entities(self) -> tuple[str, ...]:
        return ("account", "customer")

    def subscribe(self, entity: str, notify_url: str) -> Channel:
        self._call()
        if self.store.fault("no_subscribe"):
            raise RemoteError(self.name, 403, "NO_PERMISSION", "not allowed to create channels")
        channel_id = f"ch-{entity}-{len(self.store.fault('channels') or {}) + 1}"
        return self._save_channel(Channel(self.name, entity, channel_id, self.clock() + self.channel_life, notify_url,
                                          {"token": f"tok-{channel_id}"}))

    def renew(self, channel: Channel) -> Channel:
        self._call()
        if channel.channel_id not in (self.store.fault("channels") or {}):
            raise RemoteError(self.name, 404, "NOT_FOUND", "no such channel")
        return self._save_channel(Channel(self.name, channel.entity, channel.channel_id,
                                          self.clock() + self.channel_life, channel.notify_url, channel.extra))

    def unsubscribe(self, channel: Channel) -> None:
        channels = self.store.fault("channels") or {}
        channels.pop(channel.channel_id, None)
        self.store.set_fault("channels", channels)

    def _save_channel(self, channel: Channel) -> Channel:
        channels = self.store.fault("channels") or {}
        channels[channel.channel_id] = {"entity": channel.entity, "token": channel.extra["token"],
                                        "expires": channel.expires.isoformat()}
        self.store.set_fault("channels", channels)
        return channel

    def handshake(self, query: Mapping[str, str]) -> str | None:
        return query.get("validationToken")

    def verify(self, body: bytes, headers: Mapping[str, str], query: Mapping[str, str]) -> list[Notification]:
        try:
            note = json.loads(body)
            channel_id, ids = note["channel_id"], [str(i) for i in note["ids"]]
        except (ValueError, KeyError, TypeError):
            raise NotificationRejected("malformed notification body", 400) from None
        channel = (self.store.fault("channels") or {}).get(channel_id)
        if channel is None or headers.get("x-token") != channel["token"]:
            raise NotificationRejected("unknown channel or wrong token", 403)
        return [Notification(self.name, channel["entity"], tuple(ids), note.get("operation", "update"), channel_id)]

    budget = 0

    def set_budget(self, credits: int) -> None:
        self.budget = credits

    def _call(self) -> None:
        if self.budget:
            with self.store.charging:
                spent = (self.store.fault("credits") or 0) + 1
                if spent > self.budget:
                    raise BudgetExhausted(f"{self.name}: the daily budget of {self.budget} credits is reached")
                self.store.set_fault("credits", spent)
        self.counter.add(self.name)
        if self.store.fault("auth"):
            raise AuthError(self.name, "credentials refused; run `mlconnector secrets set`")
        if self.store.fault("down"):
            raise Unreachable(self.name, "connection refused")

    def changes(self, entity: str, since: datetime | None, until: datetime | None = None) -> Iterator[Record]:
        self._call()
        rows = [r for r in self.store.all(entity)
                if (since is None or datetime.fromisoformat(r["modified"]) >= since)
                and (until is None or datetime.fromisoformat(r["modified"]) < until)]
        for i, row in enumerate(rows):
            if i and i % self.page_size == 0:
                self._call()
            yield self._record(entity, row)

    def get(self, entity: str, id: str) -> Record | None:
        self._call()
        row = self.store.get(entity, id)
        return self._record(entity, row) if row else None

    def _record(self, entity: str, row: dict[str, Any]) -> Record:
        data = {k: v for k, v in row.items() if k not in ("id", "modified")}
        return Record(self.name, entity, row["id"], datetime.fromisoformat(row["modified"]), data)

    def find(self, entity: str, field: str, value: Any) -> list[Record]:
        self._call()
        return [self._record(entity, row) for row in self.store.find(entity, field, value)]

    def write(self, entity: str, payloads: list[dict[str, Any]], key: str,
              ids: list[str | None] | None = None) -> list[WriteResult]:
        self._call()
        self.writes.append(len(payloads))
        limited = self.store.fault("rate_limited")
        if limited:
            raise RateLimited(self.name, 30)
        results = []
        reject = self.store.fault("reject") or []
        delay = self.store.fault("slow")  # seconds each record takes to land: a batch lands one record at a time
        for payload, known in zip(payloads, ids or [None] * len(payloads)):
            if delay:
                time.sleep(delay)
            if payload.get(key) in reject:
                results.append(WriteResult("fail", error=f"INVALID_DATA: {key} {payload[key]} refused",
                                           error_class="INVALID_DATA"))
                continue
            if payload.get(key) is None:
                # this system numbers new records itself
                payload = {**payload, key: f"{entity[:1].upper()}-{len(self.store.all(entity)) + 1:04d}"}
            existing = ([self.store.get(entity, known)] if known else []) or self.store.find(entity, key, payload[key])
            if existing:
                row = self.store.put(entity, {**{k: v for k, v in existing[0].items()
                                                 if k not in ("id", "modified")}, **payload}, existing[0]["id"],
                                     landed=True)
                action = "update"
            else:
                row = self.store.put(entity, dict(payload), landed=True)
                action = "create"
            results.append(WriteResult(action, row["id"], datetime.fromisoformat(row["modified"])))
        return results

    def ping(self) -> PingResult:
        try:
            self._call()
        except (AuthError, Unreachable) as exc:
            return PingResult(self.name, False, f"file://{self.store.path}", error=str(exc), exit_code=exc.exit_code)
        return PingResult(self.name, True, f"file://{self.store.path}", details=("store readable",))

    def close(self) -> None:
        pass


def store_factory(system: SystemConfig, context: ConnectorContext) -> StoreConnector:
    return StoreConnector(system.name, Store(system.setting("path", required=True, type_=str)), context,
                          page_size=system.setting("page_size", 50, type_=int),
                          notify_url=system.setting("notify_url", type_=str))


# The test pair -----------------------------------------------------------------------------------
def customer_to_account(c: Record, ctx: MapContext) -> dict[str, Any]:
    if c.get("blocked"):
        raise SkipRecord("blocked customer")
    if not c.get("name"):
        raise RecordError("customer has no name", "INVALID_DATA")
    return {"number": c["number"], "account_name": c["name"], "city": c.get("city")}


def item_to_product(i: Record, ctx: MapContext) -> dict[str, Any]:
    return {"code": i["number"], "product_name": i["name"], "price": i.get("price")}


def invoice_to_invoice(inv: Record, ctx: MapContext) -> dict[str, Any]:
    return {
        "invoice_number": inv["number"],
        "account_id": ctx.target_id("customers", inv["customer_id"], what="customer"),
        "lines": [{"product_id": ctx.target_id("items", line["item_id"], what="item"), "qty": line["qty"]}
                  for line in inv["lines"]],
    }


def account_to_customer(a: Record, ctx: MapContext) -> dict[str, Any]:
    # A new CRM account has no number yet: the ERP assigns one, and customers sends it back.
    return {"number": a.get("number"), "name": a["account_name"], "city": a.get("city")}


TEST_PAIR = PairSpec(
    name="erp-crm",
    roles={"erp": ("testerp",), "crm": ("testcrm",)},
    flows=(
        Flow("customers", "erp", "customer", "crm", "account", "number", customer_to_account,
             echo_of="accounts", send_back_created=True),
        Flow("items", "erp", "item", "crm", "product", "code", item_to_product),
        Flow("invoices", "erp", "invoice", "crm", "invoice", "invoice_number", invoice_to_invoice,
             depends_on=("customers", "items")),
        Flow("accounts", "crm", "account", "erp", "customer", "number", account_to_customer,
             echo_of="customers", find_by=("name",)),
    ),
    description="test pair: customers, items and invoices to the CRM; accounts back",
)


def register() -> None:
    """Entry point for MLCONNECTOR_PLUGINS=tests.fakes (subprocess tests)."""
    from mlconnector import pairs, systems

    systems.register_kind("testerp", store_factory)
    systems.register_kind("testcrm", store_factory)
    pairs.register(TEST_PAIR)


register()
