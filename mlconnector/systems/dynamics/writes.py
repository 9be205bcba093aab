"""Writes to NAV and Business Central, record by record in either protocol: the current row read by its link or
key, then PATCH with If-Match, or POST where it is absent (a record the ERP numbers: POST); a record changed
between our read and our write is read again, once. Documents written as journal lines go to
dynamics_journals.py."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

from mlconnector.errors import ConfigError, RemoteError
from mlconnector.systems.base import Record, WriteResult, write_each
from mlconnector.systems.dynamics.api import ApiV2
from mlconnector.systems.dynamics.client import DynamicsApi
from mlconnector.systems.dynamics.odata import Pager, _error
from mlconnector.systems.dynamics.pages import Pages
from mlconnector.systems.dynamics.api_journals import ApiJournalWriter
from mlconnector.systems.dynamics_journals import (JOURNAL_SERVICES, JournalRefused, JournalWriter, booked_documents,
                                                   check_mode)

WRITABLE = ("customers", "vendors", "contacts", "items")
# Fields we never send: BC computes them.
READ_ONLY = frozenset({"id", "lastModifiedDateTime", "relations", "businessRelation", "balanceDue", "balance",
                       "inventory", "contactBusinessRelation"})


class Writes:
    """Upserts through the system's protocol (API v2.0 or pages)."""

    def __init__(self, api: DynamicsApi, protocol: ApiV2 | Pages, pager: Pager, services: Mapping[str, Any]) -> None:
        self.name = api.name
        self.endpoint = api.endpoint
        self._call, self._fail, self.company_url = api.call, api.fail, api.company_url
        self._pages = pager.pages
        self.services = services
        self.protocol = protocol

    def write(self, entity: str, payloads: list[dict[str, Any]], key: str,
              ids: list[str | None] | None = None) -> list[WriteResult]:
        """Upsert each payload (API v2.0 field names): a linked record (``ids``) by its id, the rest by
        ``key``; POST when absent (without a key, the ERP numbers the new record), else PATCH with If-Match.
        A record changed meanwhile (409/412 Request_EntityChanged) is re-read and retried once."""
        if entity in JOURNAL_SERVICES:
            return self._write_journal(entity, payloads)
        if entity not in WRITABLE:
            raise ConfigError(f"{self.name}: writing {entity} is not supported (writable: "
                              f"{', '.join(WRITABLE + tuple(JOURNAL_SERVICES))})")
        known = ids or [None] * len(payloads)
        return write_each(zip(payloads, known), lambda each: self._upsert_one(entity, each[0], key, each[1]))

    def _write_journal(self, entity: str, payloads: list[dict[str, Any]]) -> list[WriteResult]:
        """Documents as journal lines, one document at a time: on NAV's journal pages (dynamics_journals.py), or in
        API mode as BC API v2.0 documents (api_journals.py)."""
        writer: JournalWriter | ApiJournalWriter
        if self.endpoint.mode == "odata":
            writer = JournalWriter(self.name, self._call, lambda url, params: self._pages(url, params),
                                   self.company_url, self.services, self._fail)
        else:
            writer = ApiJournalWriter(self.name, self._call, lambda url, params: self._pages(url, params),
                                      self.company_url, self._fail)

        def write_one(payload: dict[str, Any]) -> WriteResult:
            try:
                return writer.write_one(entity, payload)
            except JournalRefused as refused:
                return WriteResult("fail", error=str(refused), error_class=refused.error.code or "journal_refused")
        return write_each(payloads, write_one)

    def booked(self, entity: str, since: datetime | None = None) -> Iterator[Record]:
        """The documents booked as journal lines, as NAV holds them now (dynamics_journals.booked_documents): read
        whole, journal lines and ledger entries carrying no modification time."""
        if since is not None:
            raise ConfigError(f"{self.name}: {entity} are read whole (journal lines and ledger entries carry no "
                              "modification time)")
        check_mode(self.name, self.endpoint.mode, entity)
        for record in booked_documents(entity, lambda url, params: self._pages(url, params), self.company_url(),
                                       self.services):
            yield Record(self.name, entity, record.id, None, record.data)

    def write_calls(self, entity: str, payloads: list[dict[str, Any]], key: str,
                    ids: list[str | None] | None = None) -> int:
        """The calls ``write`` makes, for a dry run's estimate: per record, a read of the current row (by its
        linked id, else by its key; none for a new record the ERP numbers) and the POST or PATCH."""
        if entity in JOURNAL_SERVICES:
            # pages: the document's journal lines and ledger entries read, a line written; API mode: a payment's
            # G/L entries and journal lines read and a line written (its journal's id read once), an invoice read
            # and its header and line written
            return (3 if self.endpoint.mode == "odata" else 3 + (entity == "cashReceiptLines")) * len(payloads)
        ids = ids or [None] * len(payloads)
        return sum(2 if known or payload.get(key) not in (None, "") else 1 for payload, known in zip(payloads, ids))

    def _find(self, entity: str, key: str, value: Any, known_id: str | None) -> dict[str, Any] | None:
        """The current row: by its linked id first (it may have been renumbered), else by the key."""
        if known_id:
            found = self.protocol.row_by_id(entity, known_id)
            if found is not None:
                return found
        if value in (None, ""):
            return None
        return self.protocol.row_by_key(entity, key, str(value))

    def _upsert_one(self, entity: str, payload: Mapping[str, Any], key: str,
                    known_id: str | None = None) -> WriteResult:
        if entity == "contacts" and payload.get("businessRelation"):
            relation = payload["businessRelation"]
            company = self.protocol.company_contact(str(relation.get("type")), str(relation.get("id")))
            if company is None:
                what = f"{str(relation.get('type')).lower()} {relation.get('id')}"
                return WriteResult("fail", error=f"NAV has no company contact for {what} (Contact Business "
                                                 "Relations): create it from the customer or vendor card (Contact > "
                                                 "Create as Contact), then `mlconnector replay`",
                                   error_class="no_company_contact")
            payload = {**{k: v for k, v in payload.items() if k != "businessRelation"}, "companyNumber": company}
        value = payload.get(key)
        body = {k: v for k, v in payload.items()
                if k not in READ_ONLY and not k.startswith("@odata.") and not (k == key and v in (None, ""))}
        for attempt in (1, 2):
            try:
                found = self._find(entity, key, value, known_id)
                response = self.protocol.send(entity, found, body)
            except (RemoteError, ConfigError) as exc:
                if isinstance(exc, RemoteError) and exc.retryable:
                    raise
                return WriteResult("fail", error=str(exc), error_class=getattr(exc, "code", "") or "config")
            code = _error(response)[0]
            if attempt == 1 and ((response.status_code in (409, 412) and code in ("Request_EntityChanged", "")
                                  and found is not None)
                                 or (response.status_code == 409 and code == "Internal_EntityWithSameKeyExists")):
                continue  # changed (or created) by someone between our read and our write: read again, once
            if response.status_code in (200, 201):
                row = response.json()
                action = "create" if response.status_code == 201 else "update"
                return self.protocol.written(entity, row, action)
            if response.status_code >= 500:
                raise self._fail(response, f"write {entity} {value}")
            code, message = _error(response)
            return WriteResult("fail", error=f"{code or response.status_code}: {message}".strip(": "),
                               error_class=code or f"http_{response.status_code}")
        raise AssertionError("unreachable")  # pragma: no cover
