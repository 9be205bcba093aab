"""Zoho's Bulk Write: a first load's records as one zipped CSV, an upsert job on the flow's key, polled until it
is done, its result file read row by row."""

from __future__ import annotations

import csv
import io
import time
import zipfile
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from mlconnector.errors import RemoteError
from mlconnector.systems.base import WriteResult
from mlconnector.systems.zoho.client import ZohoApi
from mlconnector.systems.zoho.writes import check_fields


class BulkWrite:
    """Bulk Write jobs, one at a time."""

    def __init__(self, api: ZohoApi, *, poll_seconds: float, timeout: float,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.name = api.name
        self.api = api
        self._call, self._fail, self.org = api.call, api.fail, api.org
        self.bulk_poll_seconds = poll_seconds
        self.bulk_timeout = timeout
        self._sleep = sleep

    def write(self, entity: str, payloads: list[dict[str, Any]], key: str) -> list[WriteResult]:
        """Bulk Write: one zipped CSV, an upsert job on ``key``, polled to completion, its result file parsed.

        Empty cells are ignored (``ignore_empty``): a CSV cannot tell "clear this field" from "not given".
        """
        header = list(dict.fromkeys(name for p in payloads for name in p if name != "id"))
        lookups = {name for p in payloads for name, value in p.items() if isinstance(value, Mapping)}
        archive = io.BytesIO()
        # The rows go through the compressor as they are written: the whole CSV held as text (25,000 rows, and four
        # bytes a character once one name is not Latin-1) and copied once more for the zip was a first load's peak.
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zipped, io.TextIOWrapper(
                zipped.open(f"{entity}.csv", "w"), encoding="utf-8", newline="") as text:
            writer = csv.writer(text)
            writer.writerow(header)
            for payload in payloads:
                writer.writerow([_cell(payload.get(name)) for name in header])
        zgid = str(self.org().get("zgid") or "")
        upload = self._call("POST", f"{self.api.upload_url}/crm/v8/upload", credits=0, idempotent=False,
                            files={"file": (f"{entity}.zip", archive.getvalue(), "application/zip")},
                            headers={"feature": "bulk-write", "X-CRM-ORG": zgid})
        if upload.status_code != 200:
            raise self._fail(upload, "bulk write upload")
        file_id = upload.json()["details"]["file_id"]
        mappings = [{"api_name": name, "index": i, **({"find_by": "id"} if name in lookups else {})}
                    for i, name in enumerate(header)]
        job = self._call("POST", "/crm/bulk/v8/write", credits=500, idempotent=False, json={
            "operation": "upsert", "ignore_empty": True,
            "resource": [{"type": "data", "module": {"api_name": entity}, "file_id": file_id, "find_by": check_fields(key)[0],
                          "field_mappings": mappings}]})
        if job.status_code not in (200, 201):
            raise self._fail(job, f"bulk write job for {entity}")
        job_id = job.json()["details"]["id"]
        details = self._poll_job(job_id)
        result_url = (details.get("result") or {}).get("download_url")
        if not result_url:
            raise RemoteError(self.name, 200, str(details.get("status", "")),
                              f"bulk write job {job_id} ended without a result file")
        result = self._call("GET", result_url)
        if result.status_code != 200:
            raise self._fail(result, f"bulk write result of job {job_id}")
        return _bulk_results(self.name, result.content, len(payloads))

    def _poll_job(self, job_id: str) -> dict[str, Any]:
        deadline = time.monotonic() + self.bulk_timeout
        while True:
            response = self._call("GET", f"/crm/bulk/v8/write/{job_id}")
            if response.status_code != 200:
                raise self._fail(response, f"bulk write job {job_id}")
            details = response.json()
            status = str(details.get("status", "")).upper()
            if status == "COMPLETED":
                return details
            if status == "FAILED":
                raise RemoteError(self.name, 200, "FAILED", f"bulk write job {job_id} failed")
            if time.monotonic() > deadline:
                raise RemoteError(self.name, 200, status, f"bulk write job {job_id} still {status} after "
                                  f"{self.bulk_timeout:g} s; raise bulk_timeout_seconds", retryable=True)
            self._sleep(self.bulk_poll_seconds)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, Mapping):
        return str(value.get("id", ""))
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _bulk_results(system: str, content: bytes, expected: int) -> list[WriteResult]:
    """Zoho's result file: the uploaded rows plus STATUS, RECORD_ID and ERRORS (``CODE-field``)."""
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        name = next(n for n in archive.namelist() if n.lower().endswith(".csv"))
        with io.TextIOWrapper(archive.open(name), encoding="utf-8-sig", newline="") as text:
            results = _rows_as_results(csv.DictReader(text))
    if len(results) != expected:
        raise RemoteError(system, 200, "BULK_RESULT", f"bulk write result has {len(results)} rows for {expected} "
                          "records")
    return results


def _rows_as_results(rows: Iterable[dict[str, str]]) -> list[WriteResult]:
    results = []
    # Row by row, as they are decompressed: the file repeats every uploaded column, and 25,000 rows held as dicts
    # (or as one text) at once were tens of MB.
    for row in rows:
        status = (row.get("STATUS") or "").upper()
        if status in ("ADDED", "UPDATED"):
            results.append(WriteResult("create" if status == "ADDED" else "update", row.get("RECORD_ID") or None))
        else:
            errors = row.get("ERRORS") or status or "SKIPPED"
            code, _, field = errors.partition("-")
            results.append(WriteResult("fail", None, error=f"{code}: bulk write skipped the row"
                                       + (f" ({field})" if field else ""), error_class=code))
    return results
