"""Writes to Zoho CRM: linked records updated by id, the rest upserted on the flow's key (Zoho's duplicate check)
in hundreds, or handed to Bulk Write above ``bulk_threshold``; line items replaced, not added to."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from mlconnector.http import json_body
from mlconnector.systems.base import Record, WriteResult
from mlconnector.systems.zoho.client import MAX_UPSERT, ZohoApi
from mlconnector.systems.zoho.reads import COQL_IN_MAX, COQL_KEYS_PER_QUERY, LINE_ITEM_MODULES, parse_zoho_time, _quote

BULK_MAX = 25_000  # records in one Bulk Write file


class Writes:
    """Updates and upserts of one org's records."""

    def __init__(self, api: ZohoApi, get: Callable[[str, str], Record | None],
                 bulk_write: Callable[[str, list[dict[str, Any]], str], list[WriteResult]],
                 bulk_threshold: int) -> None:
        self.name = api.name
        self._call, self._fail = api.call, api.fail
        self.get = get
        self.bulk_write = bulk_write
        self.bulk_threshold = bulk_threshold

    def write(self, entity: str, payloads: list[dict[str, Any]], key: str,
              ids: list[str | None] | None = None) -> list[WriteResult]:
        """Records already linked (``ids``) are updated by id; the rest are upserted by the duplicate-check
        field ``key`` in batches of 100, or through Bulk Write above bulk_threshold."""
        if not payloads:
            return []
        ids = ids or [None] * len(payloads)
        if entity in LINE_ITEM_MODULES:
            payloads = self._replacing_lines(entity, payloads, key, ids)
        results: list[WriteResult | None] = [None] * len(payloads)
        linked = [i for i, known in enumerate(ids) if known]
        for start in range(0, len(linked), MAX_UPSERT):
            chunk = linked[start:start + MAX_UPSERT]
            outcomes = self._upsert(entity, [{**payloads[i], "id": ids[i]} for i in chunk], key, update=True)
            for i, outcome in zip(chunk, outcomes):
                # A linked record deleted in Zoho since: upsert it again below (by its key).
                if not (outcome.error_class == "INVALID_DATA" and "(id" in (outcome.error or "")):
                    results[i] = outcome
        fresh = [i for i, result in enumerate(results) if result is None]
        if self.bulk_threshold and len(fresh) > self.bulk_threshold and _flat([payloads[i] for i in fresh]):
            for start in range(0, len(fresh), BULK_MAX):  # one job per file of at most 25,000 records
                chunk = fresh[start:start + BULK_MAX]
                for i, outcome in zip(chunk, self.bulk_write(entity, [payloads[i] for i in chunk], key)):
                    results[i] = outcome
            return results  # type: ignore[return-value]
        for start in range(0, len(fresh), MAX_UPSERT):
            chunk = fresh[start:start + MAX_UPSERT]
            for i, outcome in zip(chunk, self._upsert(entity, [payloads[i] for i in chunk], key)):
                results[i] = outcome
        return results  # type: ignore[return-value]

    def write_calls(self, entity: str, payloads: list[dict[str, Any]], key: str,
                    ids: list[str | None] | None = None) -> int:
        """The calls ``write`` makes for these payloads, for a dry run's estimate: updates by id and upserts in
        hundreds (or Bulk Write jobs: upload, job, a poll or two, the result); documents with line items first
        look up those not linked (COQL, a hundred keys a call) and read each linked one (its current lines)."""
        ids = ids or [None] * len(payloads)
        linked = sum(1 for known in ids if known)
        fresh = len(payloads) - linked
        calls = math.ceil(linked / MAX_UPSERT)
        if entity in LINE_ITEM_MODULES:
            keyed = sum(1 for p, known in zip(payloads, ids) if not known and p.get(key) not in (None, ""))
            calls += math.ceil(keyed / COQL_KEYS_PER_QUERY) + linked
        if self.bulk_threshold and fresh > self.bulk_threshold and _flat(payloads):
            return calls + math.ceil(fresh / BULK_MAX) * 5
        return calls + math.ceil(fresh / MAX_UPSERT)

    def _replacing_lines(self, entity: str, payloads: list[dict[str, Any]], key: str,
                         ids: list[str | None]) -> list[dict[str, Any]]:
        """Zoho adds the line items an update sends to those the record has. To replace them, each row the
        record has now is sent along with ``_delete``. Without this, a document sent again (after a crash
        between its write and our commit, or after a change) would carry its lines twice."""
        lines = {k for p in payloads for k, v in p.items() if isinstance(v, list)}
        if not lines:
            return payloads
        known = list(ids)
        by_key = [i for i, target in enumerate(ids) if not target and payloads[i].get(key) not in (None, "")]
        for start in range(0, len(by_key), COQL_KEYS_PER_QUERY):
            chunk = by_key[start:start + COQL_KEYS_PER_QUERY]
            found = self._ids_by_key(entity, key, [str(payloads[i][key]) for i in chunk])
            for i in chunk:
                known[i] = found.get(str(payloads[i][key]))
        out = []
        for payload, target in zip(payloads, known):
            current = self.get(entity, target) if target else None
            if current is None:
                out.append(payload)
                continue
            replaced = dict(payload)
            for name in lines:
                if isinstance(payload.get(name), list):
                    old = [{"id": row["id"], "_delete": None} for row in current.get(name) or []
                           if isinstance(row, Mapping) and row.get("id")]
                    replaced[name] = old + list(payload[name])
            out.append(replaced)
        return out

    def _ids_by_key(self, entity: str, key: str, values: list[str]) -> dict[str, str]:
        """Key value -> record id, for the records that already exist: one COQL call for up to 100 values (two
        "in" lists of 50, Zoho's most per list, joined by "or")."""
        lists = [values[start:start + COQL_IN_MAX] for start in range(0, len(values), COQL_IN_MAX)]
        criteria = [f"{key} in ({', '.join(_quote(v) for v in part)})" for part in lists]
        where = criteria[0] if len(criteria) == 1 else "(" + " or ".join(criteria) + ")"
        query = f"select {key} from {entity} where {where} limit {max(1, len(values)) * 2}"
        response = self._call("POST", "/crm/v8/coql", credits=1, idempotent=True, json={"select_query": query})
        if response.status_code == 204:
            return {}
        if response.status_code != 200:
            raise self._fail(response, f"COQL on {entity}")
        return {str(row.get(key)): str(row["id"]) for row in response.json().get("data") or [] if row.get("id")}

    def initial_load_batch(self, entity: str) -> int | None:
        """How many records a first load should hand to one write: a whole Bulk Write file where the
        module's records are flat (no line items) and bulk writing is on."""
        return BULK_MAX if self.bulk_threshold and entity not in LINE_ITEM_MODULES else None

    def _upsert(self, entity: str, batch: list[dict[str, Any]], key: str, *, update: bool = False) -> list[WriteResult]:
        if update:  # PUT /{module}: update by the id each record carries
            response = self._call("PUT", f"/crm/v8/{entity}", credits=math.ceil(len(batch) / 10),
                                  idempotent=True, json={"data": batch})
        else:
            response = self._call("POST", f"/crm/v8/{entity}/upsert", credits=math.ceil(len(batch) / 10),
                                  idempotent=True, json={"data": batch, "duplicate_check_fields": check_fields(key)})
        body = json_body(response)
        items = body.get("data") if isinstance(body, dict) else None
        if response.status_code in (200, 201, 202, 207, 400) and isinstance(items, list) and len(items) == len(batch):
            return [self._outcome(item) for item in items]
        if response.status_code == 400 and isinstance(body, dict) and body.get("code"):
            # The whole call was refused (bad module, key not a duplicate-check field): every record fails.
            error = self._fail(response, f"upsert {entity}")
            return [WriteResult("fail", error=str(error), error_class=body["code"]) for _ in batch]
        raise self._fail(response, f"upsert {entity}")

    @staticmethod
    def _outcome(item: Mapping[str, Any]) -> WriteResult:
        details = item.get("details") or {}
        if item.get("status") == "success":
            action = "create" if item.get("action") == "insert" else "update"
            return WriteResult(action, str(details.get("id")) if details.get("id") else None,
                               version=parse_zoho_time(details.get("Modified_Time")))
        code = str(item.get("code") or "ERROR")
        where = details.get("api_name") or ""
        if details.get("json_path"):
            where = f"{where} at {details['json_path']}".strip()
        message = f"{code}: {item.get('message', '')}".rstrip(": ")
        if where:
            message += f" ({where})"
        if code == "DUPLICATE_DATA" and isinstance(details.get("duplicate_record"), dict):
            message += f"; duplicate of record {details['duplicate_record'].get('id')}"
        return WriteResult("fail", None, error=message, error_class=code)


def check_fields(key: str) -> list[str]:
    """An upsert key may name several duplicate-check fields, tried in order ("Account_Number,Account_Name");
    Bulk Write finds by the first only."""
    return [name.strip() for name in key.split(",") if name.strip()]


def _flat(payloads: list[dict[str, Any]]) -> bool:
    """Bulk Write takes one CSV per module: records with subforms (line items) must go through upsert."""
    return not any(isinstance(v, list) for p in payloads for v in p.values())
