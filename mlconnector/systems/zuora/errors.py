"""Zuora's business errors: the failure an answer carries, whether a retry may succeed, and which calls the HTTP
client retries on its own."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from mlconnector.errors import RemoteError
from mlconnector.http import json_body

# reasons[].code % 100: the categories Zuora's error-codes page says to retry (locking contention, temporary
# error, concurrency limit, integration with a gateway or tax engine); everything else is fixed by changing data.
CATEGORIES = {10: "permission", 11: "authentication", 20: "invalid value", 21: "unknown field",
              22: "missing field", 23: "missing parameter", 27: "invalid query parameter", 30: "business rule",
              40: "not found", 45: "unsupported method", 50: "locking contention", 60: "internal error",
              61: "temporary error", 70: "concurrency limit", 90: "malformed request", 99: "integration error"}
RETRYABLE = frozenset({50, 61, 70, 99})


class ZuoraFailure(RemoteError):
    """A Zuora business error (success false): its code's category decides whether a retry may succeed."""

    def __init__(self, system: str, status: int, code: int | str, message: str, process_id: str = "") -> None:
        try:
            self.category = int(str(code)) % 100
        except ValueError:
            self.category = 0
        super().__init__(system, status, str(code), message, retryable=self.category in RETRYABLE)
        self.process_id = process_id

    @property
    def error_class(self) -> str:
        return "zuora_" + CATEGORIES.get(self.category, "error").replace(" ", "_")


def failure_of(system: str, response: httpx.Response) -> ZuoraFailure | None:
    """The business error a response carries (v1 success:false, CRUD Success:false, Object Query reasons)."""
    body = json_body(response)
    if isinstance(body, dict) and (body.get("faultcode") or body.get("FaultCode")):
        # ZOQL (Actions) faults: {"faultcode": "fns:INVALID_FIELD", "faultstring": ..., "detail": {...}}
        code = str(body.get("faultcode") or body.get("FaultCode")).removeprefix("fns:")
        return ZuoraFailure(system, response.status_code, code,
                            str(body.get("faultstring") or body.get("FaultMessage") or code))
    if not isinstance(body, dict):
        if response.status_code >= 400:
            return ZuoraFailure(system, response.status_code, "", f"HTTP {response.status_code}")
        return None
    if body.get("success") is False or body.get("Success") is False or (response.status_code >= 400 and (
            body.get("reasons") or body.get("message"))):
        reasons = body.get("reasons") or [{"code": e.get("Code", ""), "message": e.get("Message", "")}
                                          for e in body.get("Errors") or []]
        first = reasons[0] if reasons else {"code": "", "message": body.get("message") or "request failed"}
        message = "; ".join(str(r.get("message", "")) for r in reasons) or str(first.get("message"))
        return ZuoraFailure(system, response.status_code, first.get("code", ""), message,
                            str(body.get("processId") or ""))
    return None


def _not_found(failure: ZuoraFailure) -> bool:
    """A failure saying the object is not there (category 40, or an HTTP 404)."""
    return failure.category == 40 or failure.status == 404


def _is_transient(system: str) -> Callable[[httpx.Response], bool]:
    def check(response: httpx.Response) -> bool:
        try:
            keyed = bool(response.request.headers.get("idempotency-key"))
        except RuntimeError:
            keyed = False
        if response.status_code == 409 and keyed:
            return True  # the same key is still being processed: Zuora says wait and retry with the same key
        if keyed:
            return False  # a keyed answer is remembered for 24 hours; _create moves on to a new key instead
        found = failure_of(system, response) if response.status_code == 200 else None
        return bool(found and found.retryable)
    return check
