"""The emulated org: its state, the helpers tests use (``app.state.zoho``), notification delivery, bulk jobs."""

from __future__ import annotations

import asyncio
import secrets
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from ..background import BackgroundTasks
from ..common import Faults, SandboxClock
from . import bulk, watch
from .currencies import Currencies
from .errors import RecordError
from .fields import Field, label_for
from .modules import EDITIONS, ModuleSpec
from .schema import OrgSchema
from .oauth import API_DOMAINS, Accounts, Client
from .store import RecordStore, User, WriteOutcome

BULK_JOB_SECONDS = 2.0  # a job completes on the second poll, or once this much sandbox time has passed

# Calls in flight at once per org and client app, by edition (API limits page). Zoho's edition tables pair
# Enterprise with Zoho One and Ultimate with CRM Plus.
EDITION_CONCURRENCY = {"free": 5, "standard": 10, "professional": 15, "enterprise": 20, "zohoone": 20,
                       "ultimate": 25, "crmplus": 25}
# Resource-intensive calls in flight at once per org and client app, in every edition (the sub-concurrency limit).
SUB_CONCURRENCY = 10


@dataclass
class PageToken:
    """A ``page_token`` from a list call: bound to the call's parameters, valid 24 hours."""

    binding: tuple[Any, ...]
    offset: int
    expires_at: datetime


def _zone(name: str) -> tzinfo:
    try:
        return ZoneInfo(name)
    except Exception:  # no tz database on the host: fall back to UTC rather than fail to start
        return timezone.utc


class ZohoSandbox:
    """One Zoho CRM org in one data centre, with its accounts server.

    Reachable as ``app.state.zoho``. Counters for tests and benchmarks: ``calls`` (per operation),
    ``credits`` (API credits as Zoho charges them), ``deliveries`` (notifications sent or dropped),
    ``concurrency_refused`` (calls answered 429 for crossing a concurrency limit), ``peak_in_flight`` and
    ``peak_heavy_in_flight`` (the most calls, and resource-intensive calls, one client app had in flight at once).

    Concurrency: ``limit_concurrency`` (default True) refuses a call that would cross ``concurrency_limit`` (the
    edition's) or, when resource-intensive, ``sub_concurrency``; set it False to only count. ``in_flight`` and
    ``heavy_in_flight`` are the calls in flight now, per client id.
    """

    def __init__(self, *, clock: SandboxClock, faults: Faults, data_centre: str, edition: str,
                 api_domain: str | None, time_zone: str, notify_transport: httpx.AsyncBaseTransport | None,
                 bare: bool = False) -> None:
        self.clock = clock
        self.faults = faults
        self.data_centre = data_centre
        self.edition = ""
        self.set_edition(edition)
        self.api_domain = (api_domain or API_DOMAINS.get(data_centre, API_DOMAINS["us"])).rstrip("/")
        self.time_zone = time_zone
        self.tz = _zone(time_zone)
        self.org_id = "5725767000000330001"
        self.zgid = "808232144"
        self.user = User("5725767000000411001", "Patricia Boyle", "patricia.boyle@example.test")
        self.accounts = Accounts(clock.now, data_centre, self.zgid, self.api_domain, lambda: self.faults.token_ttl)
        self.schema = OrgSchema(bare=bare)
        self.store = RecordStore(clock.now, self.tz, self.user, self.schema)
        self.notify_transport = notify_transport
        self.calls: Counter[str] = Counter()
        self.credits = 0
        self.limit_concurrency = True
        self.sub_concurrency = SUB_CONCURRENCY
        self.in_flight: Counter[str] = Counter()
        self.heavy_in_flight: Counter[str] = Counter()
        self.concurrency_refused = 0
        self.peak_in_flight = 0
        self.peak_heavy_in_flight = 0
        self.channels: dict[str, watch.Channel] = {}
        self.deliveries: list[watch.Delivery] = []
        self.files: dict[str, bulk.UploadedFile] = {}
        self.jobs: dict[str, bulk.BulkJob] = {}
        self.page_tokens: dict[str, PageToken] = {}
        self._background = BackgroundTasks()
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- helpers for tests, demos and benchmarks --------------------------------------------------------------
    def register_client(self, client_id: str | None = None, client_secret: str | None = None, *,
                        redirect_uri: str | None = None, data_centre: str | None = None) -> Client:
        """Register an OAuth client (as in Zoho's API console) for this DC unless another is named."""
        return self.accounts.register_client(client_id, client_secret, redirect_uri=redirect_uri,
                                             data_centre=data_centre)

    def issue_grant_code(self, client_id: str, **kwargs: Any) -> str:
        """A one-time grant code, as the consent redirect (or a Self Client) would hand out; 3 minutes."""
        return self.accounts.issue_grant_code(client_id, **kwargs)

    def issue_refresh_token(self, client_id: str, **kwargs: Any) -> str:
        """A refresh token without the code exchange, for tests that do not exercise the OAuth dance."""
        return self.accounts.issue_refresh_token(client_id, **kwargs)

    def revoke_refresh_token(self, token: str) -> None:
        """Revoke a refresh token and every access token minted from it."""
        self.accounts.revoke(token)

    def set_edition(self, edition: str) -> None:
        if edition not in EDITIONS:
            raise ValueError(f"unknown edition {edition!r}; one of {', '.join(EDITIONS)}")
        self.edition = edition

    def advance(self, **kwargs: float) -> None:
        """Move sandbox time on (``advance(minutes=61)``): tokens, grant codes and channels expire."""
        self.clock.advance(**kwargs)

    def mark_unique(self, module: str, field: str) -> None:
        """Make a field "Do not allow duplicate values": insert/update refuse duplicates, upsert can key on it. A
        field the module lacks is first added as a custom single-line text field, as an admin would."""
        name = self._spec(module).api_name
        if self.schema.field(name, field) is None:
            self.add_field(name, field)
        self.schema.set_unique(name, field)

    def add_field(self, module: str, api_name: str, data_type: str = "text", *, length: int = 0,
                  lookup: str | None = None, unique: bool = False) -> Field:
        """Add a custom field to a module (Setup > Modules and Fields), as the Create Custom Field API would."""
        return self.schema.add_field(self._spec(module).api_name, Field(
            api_name, label_for(api_name), data_type, length, custom=True, unique=unique, lookup=lookup))

    def set_home_currency(self, iso_code: str) -> None:
        """The org's currency, as chosen when the org was signed up (Company Details); fixed once multi-currency is
        on."""
        if self.schema.currencies.enabled:
            raise ValueError("the home currency cannot be changed once multi-currency is on")
        self.schema.currencies = Currencies(home=iso_code.upper())

    def enable_multi_currency(self, home: str | None = None) -> None:
        """Activate multi-currency with this home currency, as an admin does in Setup > Company Details >
        Currencies (it cannot be undone; the home currency: the org's own unless given): existing records of the
        modules that keep amounts get the home currency at rate 1 (currencies.py)."""
        for module in self.schema.enable_multi_currency(home or self.schema.currencies.home):
            for record in self.store.all(module):
                record.setdefault("Currency", self.schema.currencies.home)
                record.setdefault("Exchange_Rate", 1.0)

    def add_currency(self, iso_code: str, exchange_rate: Any) -> None:
        """Add an active currency (Setup > Currencies > Add Currencies): units per unit of the home currency."""
        self.schema.currencies.add(iso_code, exchange_rate)

    def add_custom_module(self, api_name: str, plural: str | None = None, singular: str | None = None) -> ModuleSpec:
        """Create a custom module (Setup > Modules and Fields > Create New Module) with Zoho's default fields."""
        spec = self.schema.add_module(api_name, plural or label_for(api_name), singular or label_for(api_name))
        self.store.add_modules()
        return spec

    def seed(self, module: str, records: list[dict[str, Any]]) -> list[str]:
        """Insert records directly (no credits, no notifications), with the API's validation; returns ids."""
        spec = self._spec(module)
        ids = []
        for index, record in enumerate(records):
            try:
                ids.append(self.store.insert(spec, record, f"$.data[{index}]").record_id)
            except RecordError as error:
                raise ValueError(f"seed {module}[{index}]: {error.code} {error.details}") from None
        return ids

    def records(self, module: str) -> list[dict[str, Any]]:
        """Every record of a module, full (with line items), oldest first."""
        spec = self._spec(module)
        return [self.store.view(spec, r, subforms=True) for r in self.store.all(spec.api_name)]

    def record(self, module: str, record_id: str) -> dict[str, Any] | None:
        spec = self._spec(module)
        found = self.store.get(spec.api_name, record_id)
        return None if found is None else self.store.view(spec, found, subforms=True)

    def edit(self, module: str, record_id: str, **fields: Any) -> None:
        """Change a record as a CRM user would in the UI: Modified_Time moves and watchers are notified."""
        spec = self._spec(module)
        outcome = self.store.update(spec, record_id, fields, "$.data[0]")
        self.notify(spec, [outcome])

    def delete(self, module: str, record_id: str) -> None:
        """Delete a record as a CRM user would: to the recycle bin, watchers notified."""
        spec = self._spec(module)
        if self.store.delete(spec, record_id) is not None:
            self.notify(spec, [WriteOutcome(record_id, "delete")], operation="delete")

    @property
    def concurrency_limit(self) -> int:
        """The edition's limit on calls in flight at once per client app."""
        return EDITION_CONCURRENCY[self.edition]

    def reset_counters(self) -> None:
        self.calls.clear()
        self.credits = 0
        self.deliveries.clear()
        self.concurrency_refused = 0
        self.peak_in_flight = max(self.in_flight.values(), default=0)
        self.peak_heavy_in_flight = max(self.heavy_in_flight.values(), default=0)

    async def drain(self) -> None:
        """Wait until every notification POST in flight has finished (run on the app's loop)."""
        await self._background.drain()

    # -- shared by the routes ------------------------------------------------------------------------------------
    def enter_call(self, client_id: str, heavy: bool) -> bool:
        """Count an API call in flight for its client app, or return False (and count nothing) when it would
        cross the edition's concurrency limit or, for a resource-intensive call, the sub-concurrency limit.
        Runs on the event loop, with no await between the check and the count."""
        if self.limit_concurrency and (self.in_flight[client_id] >= self.concurrency_limit
                                       or heavy and self.heavy_in_flight[client_id] >= self.sub_concurrency):
            return False
        self.in_flight[client_id] += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight[client_id])
        if heavy:
            self.heavy_in_flight[client_id] += 1
            self.peak_heavy_in_flight = max(self.peak_heavy_in_flight, self.heavy_in_flight[client_id])
        return True

    def leave_call(self, client_id: str, heavy: bool) -> None:
        """The call's response is produced: it is no longer in flight."""
        self.in_flight[client_id] -= 1
        if not self.in_flight[client_id]:
            del self.in_flight[client_id]
        if heavy:
            self.heavy_in_flight[client_id] -= 1
            if not self.heavy_in_flight[client_id]:
                del self.heavy_in_flight[client_id]

    def _spec(self, module: str) -> ModuleSpec:
        spec = self.schema.spec(module, self.edition)
        if spec is None:
            raise KeyError(f"no module {module!r} in the {self.edition} edition")
        return spec

    def spec(self, module: str) -> ModuleSpec | None:
        return self.schema.spec(module, self.edition)

    def timestamp(self, moment: datetime | None = None) -> str:
        return (moment or self.clock.now()).astimezone(self.tz).replace(microsecond=0).isoformat()

    def new_id(self) -> str:
        return self.store.new_id()

    def new_page_token(self, binding: tuple[Any, ...], offset: int) -> tuple[str, str]:
        token = secrets.token_hex(16)
        expires = self.clock.now() + timedelta(hours=24)
        self.page_tokens[token] = PageToken(binding, offset, expires)
        return token, self.timestamp(expires)

    # -- notifications --------------------------------------------------------------------------------------------
    def notify(self, spec: ModuleSpec, outcomes: list[WriteOutcome], operation: str | None = None,
               values: dict[str, dict[str, Any]] | None = None) -> None:
        """Queue the POSTs for a batch of writes: one per channel and operation, with all the ids."""
        now = self.clock.now()
        for channel_id, channel in list(self.channels.items()):
            if channel.expiry <= now:
                del self.channels[channel_id]  # expired channels stop silently, as in Zoho
        by_operation: dict[str, list[WriteOutcome]] = {}
        for outcome in outcomes:
            by_operation.setdefault(operation or outcome.action, []).append(outcome)
        for op, done in by_operation.items():
            watching = [channel for channel in self.channels.values() if channel.wants(spec.api_name, op)]
            if not watching:
                continue
            ids = [o.record_id for o in done]
            changed = {o.record_id: list(o.changed) for o in done}
            current = values or {i: self._affected_values(spec, i, changed[i]) for i in ids}
            for channel in watching:
                body = watch.notification(channel, spec.api_name, op, ids, now, self.api_domain, changed, current)
                self._schedule(channel, body)

    def _affected_values(self, spec: ModuleSpec, record_id: str, changed: list[str]) -> dict[str, Any]:
        record = self.store.get(spec.api_name, record_id) or {}
        return {name: record.get(name) for name in changed if name != spec.line_items}

    def _schedule(self, channel: watch.Channel, body: dict[str, Any]) -> None:
        delivery = watch.Delivery(channel.channel_id, channel.notify_url, body)
        self.deliveries.append(delivery)
        if self.faults.roll(self.faults.drop):
            delivery.dropped = True
            return
        self.run_soon(self._post(delivery.url, body, delivery))

    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Remember the loop serving requests, so helpers called from other threads can deliver on it."""
        self._loop = loop

    def run_soon(self, coroutine: Any) -> None:
        """Start background work on the app's event loop, from a route or from a helper on another thread."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is not None:
            self._background.add(loop.create_task(coroutine))
        elif self._loop is not None and self._loop.is_running():
            self._loop.call_soon_threadsafe(lambda: self._background.add(self._loop.create_task(coroutine)))  # type: ignore[union-attr]
        else:
            coroutine.close()  # no loop has served a request yet: nothing can deliver

    async def _post(self, url: str, body: dict[str, Any], delivery: watch.Delivery | None = None) -> None:
        try:
            async with httpx.AsyncClient(transport=self.notify_transport, timeout=10.0) as client:
                response = await client.post(url, json=body)
            if delivery is not None:
                delivery.status = response.status_code
                delivery.sent_at = self.clock.now()
        except httpx.HTTPError as error:  # Zoho's retry policy is undocumented; the sandbox does not retry
            if delivery is not None:
                delivery.error = repr(error)

    # -- bulk write -------------------------------------------------------------------------------------------------
    def poll_job(self, job: bulk.BulkJob) -> None:
        """Jobs advance when polled: ADDED -> IN PROGRESS on the first poll, COMPLETED on the next (or after
        ``BULK_JOB_SECONDS`` of sandbox time), so clients must really poll."""
        job.polls += 1
        if job.status == "COMPLETED":
            return
        elapsed = (self.clock.now() - job.created_at).total_seconds()
        if job.polls >= 2 or elapsed >= BULK_JOB_SECONDS:
            self.run_job(job)
        else:
            job.status = "IN PROGRESS"

    def run_job(self, job: bulk.BulkJob) -> None:
        statuses: list[tuple[str, str, str]] = []
        done: list[WriteOutcome] = []
        for index, row in enumerate(job.file.rows[1:]):
            job.counts["total_count"] += 1
            try:
                outcome = self._bulk_row(job, row, index)
            except RecordError as error:
                job.counts["skipped_count"] += 1
                statuses.append(("SKIPPED", "", bulk.error_text(error)))
                continue
            done.append(outcome)
            key = "added_count" if outcome.action == "insert" else "updated_count"
            job.counts[key] += 1
            statuses.append(("ADDED" if outcome.action == "insert" else "UPDATED", outcome.record_id, ""))
        job.result_zip = bulk.result_zip(job, statuses)
        job.status = "COMPLETED"
        if job.callback:
            self.run_soon(self._post(job.callback["url"], bulk.job_details(job, self.api_domain)))

    def _bulk_row(self, job: bulk.BulkJob, row: list[str], index: int) -> WriteOutcome:
        record = bulk.row_record(job, row, self.store)
        path = f"$.data[{index}]"
        spec = job.module
        if job.operation == "insert":
            return self.store.insert(spec, record, path)
        key = job.find_by or "id"
        value = record.get(key)
        match = None
        if value not in (None, ""):
            match = self.store.find_same(spec.api_name, key, value)
        if match is not None:
            return self.store.update(spec, match["id"], {k: v for k, v in record.items() if k != "id"}, path,
                                     duplicate_field=key)
        if job.operation == "update":
            raise RecordError("NOT_FOUND", "record not found", {"api_name": key})
        return self.store.insert(spec, record, path)

    def module_names(self) -> list[str]:
        return list(self.schema.modules)
