"""The emulated tenant as tests see it (``app.state.zuora``): OAuth clients and tokens, the idempotency cache,
callout definitions, counters, and helpers to seed data, run bills, take payments and move time."""

from __future__ import annotations

import hashlib
import random
import secrets
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import httpx

from ..common import Faults, SandboxClock
from .callouts import EVENTS, Callout, Delivery, Dispatcher, render
from .store import Tenant, stamp
from .zoql import Engine

TOKEN_SECONDS = 3599            # Zuora's sample token answers say expires_in 3599 ("valid for an hour")
IDEMPOTENCY_HOURS = 24
AUTH_PER_MINUTE = 2000          # the AUTH rate limit of production and central sandbox tenants
API_PER_MINUTE = 50_000
CONCURRENCY = {"default": 40, "high-volume": 200, "object-query": 80}


@dataclass
class Client:
    client_id: str
    client_secret: str = field(repr=False)


@dataclass
class Token:
    token: str
    client_id: str
    expires_at: datetime
    entities: tuple[str, ...]


@dataclass
class Remembered:
    """What an Idempotency-Key stands for: the request it came with and, once done, the response."""

    method: str
    path: str
    body_hash: str
    created: datetime
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


class ZuoraSandbox:
    """One Zuora tenant. Counters for tests and benchmarks: ``calls`` (per route name), ``minted`` tokens."""

    def __init__(self, *, clock: SandboxClock, faults: Faults, entity_ids: tuple[str, ...],
                 notify_transport: httpx.AsyncBaseTransport | None, body_mismatch: str,
                 auth_per_minute: int, api_per_minute: int) -> None:
        if body_mismatch not in ("reject", "replay"):
            raise ValueError("body_mismatch must be 'reject' or 'replay'")
        self.clock = clock
        self.faults = faults
        self.entity_ids = entity_ids
        self.tenant_id = "19"
        self.body_mismatch = body_mismatch
        self.auth_per_minute = auth_per_minute
        self.api_per_minute = api_per_minute
        self.data = Tenant(clock.now)
        self.zoql = Engine(self.data, clock.now)   # /v1/action/query and queryMore cursors
        self.zoql_fault_status = 400               # undocumented for REST ZOQL faults: the sandbox's choice
        self.clients: dict[str, Client] = {}
        self.tokens: dict[str, Token] = {}
        self.minted = 0
        self.idempotency: dict[str, Remembered] = {}
        self.callouts: list[Callout] = []
        self.callout_repeat = 0.0        # share of callouts sent twice
        self.callout_reverse = False     # deliver each batch of callouts in reverse order
        self.dispatcher = Dispatcher(notify_transport, clock.now)
        self.calls: Counter[str] = Counter()
        self.in_flight: Counter[str] = Counter()
        self.windows: dict[str, tuple[datetime, int]] = {}
        self.rng = random.Random(faults.seed)
        self.injected: dict[str, list[tuple[int, str]]] = {}

    # -- helpers for tests, demos and benchmarks --------------------------------------------------------------
    def register_client(self, client_id: str | None = None, client_secret: str | None = None) -> Client:
        """An OAuth client as Settings > Administration > Manage Users creates one (36-char id)."""
        client = Client(client_id or str(uuid.uuid4()), client_secret or secrets.token_urlsafe(30)[:40])
        self.clients[client.client_id] = client
        return client

    def advance(self, **kwargs: float) -> None:
        """Move sandbox time on: tokens (an hour) and idempotency keys (24 hours) expire."""
        self.clock.advance(**kwargs)

    def add_custom_field(self, table: str, name: str) -> None:
        """A custom field on an object (Settings > Billing > Manage Custom Fields), e.g.
        ``add_custom_field("accounts", "Region__c")``: from then on every record of it reads with the field, null
        until set."""
        self.data.define_custom_field(table, name)

    def seed_account(self, name: str, *, email: str | None = None, currency: str = "USD",
                     **fields: Any) -> dict[str, Any]:
        contact = {"firstName": "Accounts", "lastName": name, "workEmail": email}
        return self.data.create_account({"name": name, "currency": currency, "billCycleDay": 1,
                                         "billToContact": contact, **fields})

    def seed_product(self, name: str, sku: str, price: float, *, plan: str = "Monthly",
                     currency: str = "USD") -> dict[str, Any]:
        """A product with one rate plan and one recurring per-unit monthly charge."""
        product = self.data.create_product({"Name": name, "SKU": sku})
        rate_plan = self.data.create_rate_plan({"Name": plan, "ProductId": product["id"]})
        self.data.create_charge({"Name": name, "ProductRatePlanId": rate_plan["id"], "ChargeModel": "Per Unit Pricing",
                                 "ChargeType": "Recurring", "TriggerEvent": "ContractEffective", "UOM": "Each",
                                 "ProductRatePlanChargeTierData": {"ProductRatePlanChargeTier": [
                                     {"Currency": currency, "Price": price}]}})
        return product

    def inject_failure(self, path: str, code: int, message: str, times: int = 1) -> None:
        """Answer the next ``times`` calls to ``path`` with a business error (HTTP 200, success false) before
        doing anything, e.g. ``inject_failure("/v1/orders", 53100350, "lock contention")``. The answer is
        remembered under the call's Idempotency-Key like any other."""
        self.injected.setdefault(path, []).extend([(code, message)] * times)

    def records(self, table: str) -> list[dict[str, Any]]:
        return list(self.data.tables[table].values())

    def subscriptions(self) -> list[dict[str, Any]]:
        """The latest version of every subscription."""
        return [s for s in self.data.tables["subscriptions"].values() if s["isLatestVersion"]]

    def edit(self, table: str, key: str, **changes: Any) -> dict[str, Any]:
        """Change a record as a Zuora user would in the UI: updatedDate moves."""
        row = self.data.tables[table][key]
        return self.data.touch(row, **changes)

    def remove(self, table: str, key: str) -> None:
        """Delete a record as a Zuora user would in the UI (a product): gone from Object Query and ZOQL alike."""
        del self.data.tables[table][key]

    def configure_callout(self, event: str, url: str, **settings: Any) -> Callout:
        """Define a notification with a callout for ``event`` (InvoicePosted or PaymentProcessed)."""
        if event not in EVENTS:
            raise ValueError(f"event {event!r}: one of {', '.join(EVENTS)}")
        callout = Callout(event, url, **settings)
        self.callouts.append(callout)
        return callout

    def bill_run(self, target_date: date | None = None, *, accounts: list[str] | None = None) -> list[dict[str, Any]]:
        """Invoice active subscriptions for the month of ``target_date`` and post the invoices; each posted
        invoice fires the Invoice Posted callouts."""
        invoices = self.data.bill(target_date or self.clock.now().date(), set(accounts) if accounts else None)
        self.fire("InvoicePosted", [self._invoice_values(i) for i in invoices])
        return invoices

    def pay(self, invoice: str, amount: float | None = None, *, kind: str = "Electronic") -> dict[str, Any]:
        """A payment applied to an invoice (by id or number). Electronic payments fire Payment Processed;
        external ones fire nothing, as Zuora documents."""
        row = self.data.find("invoices", invoice, "invoiceNumber")
        if row is None:
            raise KeyError(invoice)
        payment = self.data.pay(row, amount, kind)
        if kind == "Electronic":
            self.fire("PaymentProcessed", [{"Event.Type": "PaymentProcessed", "Payment.Id": payment["id"],
                                            "Payment.PaymentNumber": payment["paymentNumber"],
                                            "Account.Id": payment["accountId"]}])
        return payment

    def refund(self, payment: str, amount: float) -> dict[str, Any]:
        """Refund part or all of a payment (by id or number), as a Zuora user does from the payment's page."""
        return self.data.refund(self._payment(payment), amount)

    def cancel_payment(self, payment: str) -> dict[str, Any]:
        """Cancel a processed payment (by id or number)."""
        return self.data.cancel(self._payment(payment))

    def _payment(self, key: str) -> dict[str, Any]:
        row = self.data.find("payments", key, "paymentNumber")
        if row is None:
            raise KeyError(key)
        return row

    def resend_callouts(self, event: str | None = None) -> None:
        """Send every callout delivered so far again (Zuora's manual resend from the callout history)."""
        batch = [(c, Delivery(d.event, d.url, d.body, repeated=True)) for d in list(self.dispatcher.deliveries)
                 for c in self.callouts if c.event == d.event and c.url == d.url and (event in (None, d.event))]
        if batch:
            self.dispatcher.send(batch)

    def wait_for_callouts(self, timeout: float = 10.0) -> bool:
        return self.dispatcher.wait(timeout)

    @property
    def deliveries(self) -> list[Delivery]:
        return self.dispatcher.deliveries

    def reset_counters(self) -> None:
        self.calls.clear()
        self.minted = 0

    # -- shared by the routes ------------------------------------------------------------------------------------
    def mint(self, client: Client) -> Token:
        ttl = self.faults.token_ttl if self.faults.token_ttl is not None else TOKEN_SECONDS
        token = Token(secrets.token_hex(16), client.client_id, self.clock.now() + timedelta(seconds=ttl),
                      self.entity_ids)
        self.tokens[token.token] = token
        self.minted += 1
        return token

    def scope(self, token: Token) -> str:
        entities = " ".join(f"entity.{e}" for e in token.entities)
        return f"user.{hashlib.sha256(token.client_id.encode()).hexdigest()[:32]} {entities} " \
               f"service.echo.read tenant.{self.tenant_id}".replace("  ", " ")

    def take(self, window: str, limit: int) -> tuple[bool, int, int]:
        """Count one request in this minute's window: (allowed, remaining, seconds to reset)."""
        now = self.clock.now()
        start, used = self.windows.get(window, (now, 0))
        if (now - start).total_seconds() >= 60:
            start, used = now, 0
        reset = max(1, int(60 - (now - start).total_seconds()))
        if used >= limit:
            self.windows[window] = (start, used)
            return False, 0, reset
        self.windows[window] = (start, used + 1)
        return True, limit - used - 1, reset

    def remembered(self, key: str) -> Remembered | None:
        found = self.idempotency.get(key)
        if found and self.clock.now() - found.created > timedelta(hours=IDEMPOTENCY_HOURS):
            del self.idempotency[key]
            return None
        return found

    def fire(self, event: str, values: list[dict[str, Any]]) -> None:
        """Queue the callouts for events that just happened (in order, unless told to reverse or repeat)."""
        batch: list[tuple[Callout, Delivery]] = []
        for value in values:
            for callout in self.callouts:
                if callout.event != event or not callout.active:
                    continue
                body, _ = render(callout, value)
                delivery = Delivery(event, callout.url, body)
                if self.faults.roll(self.faults.drop):
                    delivery.dropped = True
                    self.dispatcher.deliveries.append(delivery)
                    continue
                batch.append((callout, delivery))
                if self.callout_repeat and self.rng.random() < self.callout_repeat:
                    batch.append((callout, Delivery(event, callout.url, body, repeated=True)))
        if self.callout_reverse:
            batch.reverse()
        if batch:
            self.dispatcher.send(batch)

    @staticmethod
    def _invoice_values(invoice: dict[str, Any]) -> dict[str, Any]:
        return {"Event.Type": "InvoicePosted", "Invoice.Id": invoice["id"],
                "Invoice.InvoiceNumber": invoice["invoiceNumber"], "Account.Id": invoice["accountId"]}

    def now_stamp(self) -> str:
        return stamp(self.clock.now())
