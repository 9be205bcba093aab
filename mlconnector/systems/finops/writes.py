"""Documents booked in F&O (sales orders, free text invoices): looked up first by their key or the natural key the
pair sets, so none is booked twice; the rest sent as one changeset each, ``batch_documents`` to a ``$batch``."""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from mlconnector.auth import utcnow
from mlconnector.errors import ConfigError, RemoteError
from mlconnector.http import json_with_decimals
from mlconnector.systems.base import WriteResult
from mlconnector.systems.finops.batch import _Changeset, _Part, parse_batch_response
from mlconnector.systems.finops.client import FinOpsApi
from mlconnector.systems.finops.odata import ITEMLESS_LINES, LINES_FIELD, WRITABLE, error_text, quote_string

DEFAULT_BATCH_DOCUMENTS = 100    # documents (changesets) per $batch request
LOOKUP_CHUNK = 20                # values per "field eq a or field eq b ..." lookup


class Writes:
    """Document writes to one legal entity."""

    def __init__(self, api: FinOpsApi, lines: Callable[[str, Mapping[str, Any]], list[dict[str, Any]]],
                 batch_documents: int) -> None:
        self.name = api.name
        self.base_url = api.base_url
        self.legal_entity = api.legal_entity
        self.batch_documents = batch_documents
        self._info, self._company_filter, self._pages = api.info, api.company_filter, api.pages
        self._call, self._fail = api.call, api.fail
        self._lines = lines

    def write(self, entity: str, payloads: list[dict[str, Any]], key: str,
              ids: list[str | None] | None = None) -> list[WriteResult]:
        """Book each document once, header and lines in one changeset (all or nothing). ``key`` is the header
        field holding the source document's id (the natural key); a linked document (``ids``) is found by its
        own key first. Documents already in F&O are looked up in a few filtered reads; the rest go out as one
        ``$batch`` per ``batch_documents`` documents. See the module docstring."""
        if entity not in WRITABLE:
            raise ConfigError(f"{self.name}: writing {entity} is not supported (writable: {', '.join(WRITABLE)})")
        info = self._info(entity)
        known = list(ids or [None] * len(payloads))
        results: list[WriteResult | None] = [None] * len(payloads)
        documents: list[tuple[int, dict[str, Any], list[dict[str, Any]]]] = []
        for index, payload in enumerate(payloads):
            header = {k: v for k, v in payload.items() if k != LINES_FIELD and k != "dataAreaId"}
            lines = [dict(line) for line in payload.get(LINES_FIELD) or []]
            if header.get(key) in (None, ""):
                results[index] = WriteResult("fail", error=f"{entity}: the natural key {key} is empty; without it "
                                                           "a re-run could book the document twice",
                                             error_class="mapping")
            else:
                documents.append((index, header, lines))
        found = self._existing(entity, key, [(i, known[i], h[key]) for i, h, _ in documents])
        found.update(self._existing_by_lines(entity, [(i, lines) for i, _, lines in documents if i not in found]))
        changesets: list[_Changeset] = []
        first: dict[str, int] = {}     # natural key -> the payload that books it (a repeat in one call waits)
        repeats: dict[int, int] = {}
        for index, header, lines in documents:
            reference = header[key]
            what = f"{entity} for {key} {reference}"
            if index not in found and str(reference) in first:
                repeats[index] = first[str(reference)]
                continue
            first.setdefault(str(reference), index)
            try:
                if index in found:
                    outcome = self._complete(entity, found[index], header, lines)
                    if isinstance(outcome, WriteResult):
                        results[index] = outcome
                    else:
                        outcome.index = index
                        changesets.append(outcome)
                    continue
            except RemoteError as exc:
                if exc.retryable:
                    raise
                results[index] = WriteResult("fail", error=str(exc), error_class=f"http_{exc.status}")
                continue
            parts = [_Part("POST", f"{self.base_url}/{entity}", {"dataAreaId": self.legal_entity, **header},
                           "header")]
            parts += [_Part("POST", f"$HEADER/{info.lines}", self._line_body(entity, number, line),
                            f"line {number}" + (f" (item {line['ItemNumber']})" if line.get("ItemNumber") else ""))
                      for number, line in enumerate(lines, start=1)]
            changesets.append(_Changeset(index, what, parts, None))
        for start in range(0, len(changesets), self.batch_documents):
            chunk = changesets[start:start + self.batch_documents]
            for changeset, result in zip(chunk, self._send(entity, chunk)):
                results[changeset.index] = result
        for index, original in repeats.items():
            done = results[original]
            results[index] = WriteResult("update", done.target_id, done.version) if done and done.ok else done
        return [r or WriteResult("fail", error="no result", error_class="bug") for r in results]

    def write_calls(self, entity: str, payloads: list[dict[str, Any]], key: str,
                    ids: list[str | None] | None = None) -> int:
        """The calls ``write`` makes, for a dry run's estimate: the look-ups of documents already booked (linked
        ones by their own key, the rest by the natural key, LOOKUP_CHUNK a read) and one $batch per
        batch_documents documents."""
        ids = ids or [None] * len(payloads)
        linked = sum(1 for known in ids if known)
        return (math.ceil(linked / LOOKUP_CHUNK) + math.ceil(len(payloads) / LOOKUP_CHUNK)
                + math.ceil(len(payloads) / self.batch_documents))

    def _line_body(self, entity: str, number: int, line: Mapping[str, Any]) -> dict[str, Any]:
        info = self._info(entity)
        assert info.lines and info.line_sequence
        body = {info.line_sequence: number, **line}
        if info.lines in ITEMLESS_LINES:
            body.pop("ItemNumber", None)
        for name in info.money_fields:
            if body.get(name) not in (None, ""):
                body[name] = Decimal(str(body[name]))
        return body

    def _existing(self, entity: str, key: str, wanted: list[tuple[int, str | None, Any]]) -> dict[int, dict]:
        """The documents already in F&O, by payload index: by their own key where linked, else by the natural
        key, 20 values to a filtered read (a crash after F&O booked a document must not book it again)."""
        info = self._info(entity)
        found: dict[int, dict[str, Any]] = {}
        by_id = self._rows_where(entity, info.key, [target for _, target, _ in wanted if target])
        for index, target, _ in wanted:
            row = by_id.get(str(target)) if target else None
            if row is not None:
                found[index] = row
        rest = [(index, reference) for index, _, reference in wanted if index not in found]
        by_reference = self._rows_where(entity, key, [reference for _, reference in rest])
        for index, reference in rest:
            row = by_reference.get(str(reference))
            if row is not None:
                found[index] = row
        return found

    def _existing_by_lines(self, entity: str, wanted: list[tuple[int, list[dict[str, Any]]]]) -> dict[int, dict]:
        """Documents found by their first line's identifying fields (``line_keys``: an invoice number and customer
        account), wherever they were booked from; 20 values to a filtered read of the lines, then their headers."""
        info = self._info(entity)
        if not info.line_keys or not wanted or not info.lines or not info.line_parent:
            return {}
        first = info.line_keys[0]   # filtered on in F&O; the others compared here

        def identity(values: Mapping[str, Any]) -> tuple[str, ...]:
            return tuple(str(values.get(f) or "").strip().lower() for f in info.line_keys)
        keys = {index: identity(lines[0]) for index, lines in wanted if lines}
        holders: dict[tuple[str, ...], str] = {}
        distinct = list(dict.fromkeys(k[0] for k in keys.values() if k[0]))
        for start in range(0, len(distinct), LOOKUP_CHUNK):
            terms = " or ".join(f"{first} eq {quote_string(v)}" for v in distinct[start:start + LOOKUP_CHUNK])
            for row in self._pages(info.lines, {"$filter": self._company_filter(terms)}):
                holders.setdefault(identity(row), str(row.get(info.line_parent)))
        headers = self._rows_where(entity, info.key, list(dict.fromkeys(holders.values())))
        return {index: headers[holders[k]] for index, k in keys.items() if k in holders and holders[k] in headers}

    def _rows_where(self, entity: str, field: str, values: list[Any]) -> dict[str, dict[str, Any]]:
        """Rows whose ``field`` is one of ``values``, keyed by that value as text (the first row per value in
        key order when F&O holds more than one)."""
        rows: dict[str, dict[str, Any]] = {}
        distinct = list(dict.fromkeys(str(v) for v in values))
        numeric = field == "InvoiceIdentifier"
        for start in range(0, len(distinct), LOOKUP_CHUNK):
            chunk = distinct[start:start + LOOKUP_CHUNK]
            if numeric:
                chunk = [v for v in chunk if v.isdigit()]
                if not chunk:
                    continue
            terms = " or ".join(f"{field} eq {v if numeric else quote_string(v)}" for v in chunk)
            for row in self._pages(entity, {"$filter": self._company_filter(terms),
                                            "$orderby": self._info(entity).key}):
                rows.setdefault(str(row.get(field)), row)
        return rows

    def _complete(self, entity: str, found: Mapping[str, Any], header: Mapping[str, Any],
                  lines: list[dict[str, Any]]) -> WriteResult | _Changeset:
        """A document already booked (by an earlier run, maybe one that crashed before recording it): never a
        second document. Lines it lacks (a document booked line by line before F&O writes became atomic) are
        added in one changeset while it is still open."""
        info = self._info(entity)
        assert info.lines and info.line_parent and info.line_sequence
        target = str(found[info.key])
        customer = info.customer_field
        if customer and str(found.get(customer) or "").lower() != str(header.get(customer) or "").lower():
            return WriteResult("fail", error=f"{entity} {target} was booked for customer {found.get(customer)}; a "
                                             f"booked document is not moved to {header.get(customer)} (change it "
                                             "in F&O)", error_class="conflict")
        if found.get("IsPosted") == "Yes" or found.get("SalesOrderStatus") in ("Invoiced", "Canceled"):
            return WriteResult("update", target, utcnow())  # posted / closed in F&O: it is theirs now
        present = {float(line.get(info.line_sequence) or 0) for line in self._lines(entity, found)}
        parts = [_Part("POST", f"{self.base_url}/{info.lines}",
                       {"dataAreaId": self.legal_entity, info.line_parent: found[info.key],
                        **self._line_body(entity, number, line)}, f"line {number}")
                 for number, line in enumerate(lines, start=1) if float(number) not in present]
        if not parts:
            return WriteResult("update", target, utcnow())
        return _Changeset(-1, f"{entity} {target}", parts, target)

    def _send(self, entity: str, changesets: list[_Changeset]) -> list[WriteResult]:
        """One ``POST /data/$batch``: one changeset per document, so a document that fails rolls back alone and
        the others land. Returns a result per changeset, in order."""
        info = self._info(entity)
        boundary = f"batch_{uuid.uuid4()}"
        chunks: list[bytes] = []
        next_id = 1
        for changeset in changesets:
            inner = f"changeset_{uuid.uuid4()}"
            chunks.append(f"--{boundary}\r\nContent-Type: multipart/mixed; boundary={inner}\r\n\r\n".encode())
            header_id = str(next_id)
            changeset.content_ids = {}
            for part in changeset.parts:
                content_id = str(next_id)
                next_id += 1
                changeset.content_ids[content_id] = part
                url = part.url.replace("$HEADER", f"${header_id}", 1)
                body = json_with_decimals(part.body)   # amounts exact (Decimal) as JSON numbers
                chunks.append(f"--{inner}\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n"
                              f"Content-ID: {content_id}\r\n\r\n{part.method} {url} HTTP/1.1\r\n"
                              "Content-Type: application/json; odata.metadata=minimal\r\n"
                              "Accept: application/json\r\n\r\n".encode() + body + b"\r\n")
            chunks.append(f"--{inner}--\r\n".encode())
        chunks.append(f"--{boundary}--\r\n".encode())
        response = self._call("POST", "$batch", content=b"".join(chunks), idempotent=False,
                              headers={"Content-Type": f"multipart/mixed; boundary={boundary}"})
        if response.status_code >= 500:
            raise self._fail(response, f"POST $batch ({len(changesets)} {entity} documents)")
        if response.status_code != 200:
            error = f"F&O refused the batch: {error_text(response) or response.status_code}"
            return [WriteResult("fail", error=error, error_class=f"http_{response.status_code}")
                    for _ in changesets]
        try:
            answers = parse_batch_response(response.headers.get("content-type", ""), response.content)
        except ValueError as exc:
            raise RemoteError(self.name, 200, message=f"the $batch answer is unreadable ({exc}); what F&O booked "
                              "is found by the next run") from None
        if len(answers) != len(changesets):
            raise RemoteError(self.name, 200, message=f"$batch answered {len(answers)} parts for "
                              f"{len(changesets)} changesets; nothing can be told about these documents")
        results = []
        for changeset, answer in zip(changesets, answers):
            failed = next((a for a in answer if a.status >= 300), None)
            if failed is not None:
                part = changeset.content_ids.get(failed.content_id or "")
                where = part.what if part else "the document"
                code = failed.code
                results.append(WriteResult(
                    "fail", error=f"{changeset.what}: {where} refused by F&O ({failed.status}"
                                  f"{', ' + code if code else ''}), nothing of the document was booked: "
                                  f"{failed.message or 'error'}",
                    error_class=f"http_{failed.status}"))
            elif changeset.existing is not None:
                results.append(WriteResult("update", changeset.existing, utcnow()))
            else:
                created = next((a for a in answer if a.content_id == next(iter(changeset.content_ids))), answer[0])
                body = created.json()
                if not isinstance(body, dict) or body.get(info.key) in (None, ""):
                    raise RemoteError(self.name, created.status, message=f"{changeset.what}: F&O booked the "
                                      "document but its answer names no key; the next run finds it")
                results.append(WriteResult("create", str(body[info.key]), utcnow()))
        return results
