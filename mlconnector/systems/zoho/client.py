"""Zoho CRM's API as the connector calls it: the access token, the calls (the daily credit budget first, at most
``sub_concurrency`` resource-intensive ones in flight, errors by status), the API and upload hosts, the org."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import httpx

from mlconnector.auth import TokenAuth
from mlconnector.config import SystemConfig
from mlconnector.errors import AuthError, RemoteError
from mlconnector.http import ApiClient, json_body, retry_policy, server_time
from mlconnector.systems import ConnectorContext
from mlconnector.systems.zoho.oauth import DATA_CENTRES, ZohoAuth
from mlconnector.systems.zoho.quota import QuotaFile, SharedQuota

MAX_UPSERT = 100           # records per insert/update/upsert call
INVALID_TOKEN_CODES = frozenset({"INVALID_TOKEN", "AUTHENTICATION_FAILURE", "INVALID_OAUTHTOKEN"})

# Concurrent calls Zoho allows per org and client app, by edition (API limits page; its edition tables pair
# Enterprise with Zoho One and Ultimate with CRM Plus); a setting overrides.
EDITION_CONCURRENCY = {"free": 5, "standard": 10, "professional": 15, "enterprise": 20, "ultimate": 25,
                       "crmplus": 25, "zohoone": 20}
DEFAULT_CONCURRENCY = 5
# Resource-intensive calls Zoho allows in flight at once, in every edition (the sub-concurrency limit): among ours
# COQL, GET records with sort_by or cvid, and insert/update/upsert of more than HEAVY_WRITE_RECORDS records.
DEFAULT_SUB_CONCURRENCY = 10
HEAVY_WRITE_RECORDS = 10


def _is_invalid_token(response: httpx.Response) -> bool:
    """Whether a 401 says the token is no good (Zoho's INVALID_TOKEN and friends), not something else."""
    body = json_body(response)
    return isinstance(body, dict) and body.get("code") in INVALID_TOKEN_CODES


def _is_throttled(response: httpx.Response) -> bool:
    """Zoho's TOO_MANY_REQUESTS, which may come inside a 200. Every answer is asked, so the body is parsed only
    when it holds the code at all: a write's answer (100 results) was parsed twice, here and by its caller."""
    if b"TOO_MANY_REQUESTS" not in response.content:
        return False
    body = json_body(response) if response.headers.get("content-type", "").startswith("application/json") else None
    return isinstance(body, dict) and body.get("code") == "TOO_MANY_REQUESTS"


def is_heavy(method: str, path: str, params: Mapping[str, Any] | None = None, body: Any = None) -> bool:
    """Whether Zoho counts a call against its sub-concurrency limit: COQL, GET records with sort_by or cvid,
    insert/update/upsert of more than 10 records (API limits page)."""
    if urlsplit(path).path.rstrip("/").endswith("/coql"):
        return True
    if method.upper() == "GET":
        return params is not None and ("sort_by" in params or "cvid" in params)
    data = body.get("data") if method.upper() in ("POST", "PUT") and isinstance(body, Mapping) else None
    return isinstance(data, list) and len(data) > HEAVY_WRITE_RECORDS


class ZohoApi:
    """The calls of one Zoho CRM org."""

    def __init__(self, system: SystemConfig, context: ConnectorContext, quota: QuotaFile | SharedQuota, *,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.name = system.name
        self.system = system
        self.quota = quota
        self.zoho_auth = ZohoAuth(system, context, self.quota, sleep=sleep)
        self.auth = TokenAuth(self.zoho_auth.mint, context.token_cache(system.name),
                              scheme="Zoho-oauthtoken", is_invalid=_is_invalid_token)
        edition = system.setting("edition", type_=str)
        concurrency = system.setting("concurrency", EDITION_CONCURRENCY.get(edition or "", DEFAULT_CONCURRENCY),
                                     type_=int)
        self.http = ApiClient(system.name, auth=self.auth, transport=context.transport, counter=context.counter,
                              max_concurrency=concurrency, is_retryable=_is_throttled, sleep=sleep,
                              retry=retry_policy(system))
        # At most this many resource-intensive calls in flight (is_heavy), within the http client's limit.
        self.sub_concurrency = max(1, int(system.setting("sub_concurrency", DEFAULT_SUB_CONCURRENCY, type_=int)))
        self._heavy_slots = threading.BoundedSemaphore(self.sub_concurrency)
        self.budget = int(system.setting("daily_credit_budget", 0, type_=int))
        self.credits_used = 0
        self._org: dict[str, Any] | None = None
        # Hosts set in the settings, read once: every call asks for its host.
        self._api_domain = (system.setting("api_domain", type_=str) or "").rstrip("/")
        self._upload_url = (system.setting("upload_url", type_=str) or "").rstrip("/")

    @property
    def api_domain(self) -> str:
        """api_domain setting, else a sandbox/developer DC's own host, else the token's, else the DC default."""
        if self._api_domain:
            return self._api_domain
        dc = self.zoho_auth.data_centre
        if dc.name.endswith(("sandbox", "developer")):
            return dc.api_domain
        return str(self.auth.token().extra.get("api_domain") or dc.api_domain).rstrip("/")

    @property
    def upload_url(self) -> str:
        """File uploads go to Zoho's content host of the DC; with an api_domain of our own, to that."""
        if self._upload_url:
            return self._upload_url
        domain = self.api_domain
        known = next((dc for dc in DATA_CENTRES.values() if dc.api_domain == domain), None)
        return known.upload_url if known else domain

    def set_budget(self, credits: int) -> None:
        """A daily API-credit budget (rolling 24 hours, shared by runs on this host); 0 means none."""
        self.budget = max(0, int(credits))

    def _charge(self, credits: int) -> None:
        if self.budget:
            self.quota.charge(self.name, credits, self.budget)
        self.credits_used += credits

    def call(self, method: str, path: str, *, credits: int = 1, idempotent: bool | None = None,
              **kwargs: Any) -> httpx.Response:
        """One API call: budget first, then the request; auth failures and error statuses become errors.

        Credits are charged once per call: a 429 (concurrency or rate) retried by the http client did no work.
        A resource-intensive call (is_heavy) first waits for one of the ``sub_concurrency`` heavy slots."""
        self._charge(credits)
        url = path if path.startswith(("http://", "https://")) else f"{self.api_domain}{path}"
        heavy = is_heavy(method, path, kwargs.get("params"), kwargs.get("json"))
        with self._heavy_slots if heavy else nullcontext():
            response = self.http.request(method, url, idempotent=idempotent, **kwargs)
        if response.status_code == 401:
            body = json_body(response) or {}
            code = body.get("code", "") if isinstance(body, dict) else ""
            if code == "OAUTH_SCOPE_MISMATCH":
                raise AuthError(self.name, f"the token lacks the scope for {method} {path}; run "
                                           f"`mlconnector auth zoho {self.name}` to grant the full scope")
            raise AuthError(self.name, f"Zoho refused the access token ({code or 'HTTP 401'}) even after a "
                                       f"refresh; check data_centre, or run `mlconnector auth zoho {self.name}`")
        return response

    def fail(self, response: httpx.Response, what: str) -> RemoteError:
        body = json_body(response)
        code = body.get("code", "") if isinstance(body, dict) else ""
        message = body.get("message", "") if isinstance(body, dict) else ""
        details = body.get("details") if isinstance(body, dict) else None
        if details:
            message = f"{message} {json.dumps(details, sort_keys=True)}".strip()
        return RemoteError(self.name, response.status_code, code, f"{what}: {message}" if message else what,
                           retryable=response.status_code >= 500)

    def close(self) -> None:
        self.http.close()
        self.zoho_auth.close()

    def org(self) -> dict[str, Any]:
        if self._org is None:
            response = self.call("GET", "/crm/v8/org")
            if response.status_code != 200:
                raise self.fail(response, "GET /org")
            self._org = (response.json().get("org") or [{}])[0]
        return self._org


def _began(response: httpx.Response) -> datetime | None:
    """The server's clock when the request arrived, at the latest: its Date less the call's duration."""
    clock = server_time(response)
    if clock is None:
        return None
    try:
        return clock - response.elapsed
    except RuntimeError:  # a transport that does not time its calls (an in-process test app)
        return clock
