"""Zuora's REST API as the connector calls it: the host per region and environment, the OAuth token, calls and
their business errors, creates made safe to repeat with an Idempotency-Key, and Zuora's clock as a read began."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import httpx

from mlconnector.auth import Token, TokenAuth, utcnow
from mlconnector.config import SystemConfig
from mlconnector.errors import AuthError, ConfigError, RemoteError
from mlconnector.http import ApiClient, json_body, retry_policy, server_time
from mlconnector.systems.zuora.errors import ZuoraFailure, _is_transient, failure_of

# REST base URL per (region, environment), from Zuora's API reference servers list and its UI -> REST table.
# "test" is the Developer & Central Sandbox (also Test Drive), "sandbox" the older API Sandbox.
BASE_URLS: dict[tuple[str, str], str] = {
    ("us1", "production"): "https://rest.na.zuora.com",
    ("us1", "sandbox"): "https://rest.sandbox.na.zuora.com",
    ("us1", "test"): "https://rest.test.zuora.com",
    ("us2", "production"): "https://rest.zuora.com",
    ("us2", "sandbox"): "https://rest.apisandbox.zuora.com",
    ("us2", "test"): "https://rest.test.zuora.com",
    ("eu", "production"): "https://rest.eu.zuora.com",
    ("eu", "sandbox"): "https://rest.sandbox.eu.zuora.com",
    ("eu", "test"): "https://rest.test.eu.zuora.com",
    ("apac", "production"): "https://rest.ap.zuora.com",
    ("apac", "test"): "https://rest.test.ap.zuora.com",
}
REGION_NAMES = {"us1": "us1", "us-cloud-1": "us1", "na": "us1", "us2": "us2", "us-cloud-2": "us2", "us": "us2",
                "eu": "eu", "apac": "apac", "ap": "apac"}
ENVIRONMENT_NAMES = {"production": "production", "prod": "production", "sandbox": "sandbox",
                     "api-sandbox": "sandbox", "test": "test", "central-sandbox": "test",
                     "developer-sandbox": "test", "developer": "test"}
DEFAULT_VERSION = "2025-08-12"   # the minor version Zuora's 2026 reference documents as latest
DEFAULT_CONCURRENCY = 8          # well under Zuora's 40 (default), 200 (high volume) and 80 (Object Query)
CREATE_ATTEMPTS = 4


def base_url_of(system: SystemConfig) -> tuple[str, str]:
    """(base URL, how it was chosen) from base_url, else region and environment."""
    configured = system.setting("base_url", type_=str)
    if configured:
        return configured.rstrip("/"), "base_url"
    region_text = str(system.setting("region", "us2", type_=str)).lower()
    environment_text = str(system.setting("environment", "production", type_=str)).lower()
    region = REGION_NAMES.get(region_text)
    environment = ENVIRONMENT_NAMES.get(environment_text)
    if region is None:
        raise ConfigError(f"systems.{system.name}.region = {region_text!r}: use us1 (US Cloud 1, rest.na), us2 "
                          "(US Cloud 2, rest.zuora.com), eu or apac")
    if environment is None:
        raise ConfigError(f"systems.{system.name}.environment = {environment_text!r}: use production, sandbox "
                          "(API Sandbox) or test (Developer & Central Sandbox)")
    url = BASE_URLS.get((region, environment))
    if url is None:
        offered = ", ".join(e for r, e in BASE_URLS if r == region)
        raise ConfigError(f"systems.{system.name}: Zuora documents no {environment} host for {region} (it has "
                          f"{offered}); set environment accordingly or base_url")
    return url, f"{region} {environment}"


def _digest(*parts: Any) -> str:
    return hashlib.sha256("\0".join(str(p) for p in parts).encode()).hexdigest()[:40]


def fingerprint(value: Any) -> str:
    return _digest(json.dumps(value, sort_keys=True, default=str))


class ZuoraClient:
    """The calls of one Zuora system: its token (minted with the client credentials, cached in the secret store),
    requests, answers checked for business errors, keyed creates, and Zuora's clock as each entity's read began."""

    def __init__(self, system: SystemConfig, context: Any, base: str, client_id: str, headers: dict[str, str], *,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.name = system.name
        self.context = context
        self.base = base
        self.client_id = client_id
        self._sleep = sleep
        self._token_http = ApiClient(self.name, self.base, transport=context.transport, counter=context.counter,
                                     sleep=sleep, headers={k: v for k, v in headers.items() if k != "Zuora-Version"},
                                     retry=retry_policy(system))
        self.auth = TokenAuth(self.mint, context.token_cache(self.name),
                              early=timedelta(minutes=5))
        self.http = ApiClient(self.name, self.base, auth=self.auth, transport=context.transport,
                              counter=context.counter, headers=headers, is_retryable=_is_transient(self.name),
                              max_concurrency=int(system.setting("concurrency", DEFAULT_CONCURRENCY, type_=int)),
                              sleep=sleep, retry=retry_policy(system))
        # entity -> Zuora's clock when the last ``changes`` read of it began (see read_clock)
        self.read_clock: dict[str, datetime | None] = {}

    def mint(self, current: Token | None) -> Token:
        secret = self.context.secrets.require(self.name, "client_secret")
        response = self._token_http.request("POST", "/oauth/token", data={
            "client_id": self.client_id, "client_secret": secret, "grant_type": "client_credentials"})
        body = json_body(response)
        if response.status_code == 200 and isinstance(body, dict) and body.get("access_token"):
            seconds = float(body.get("expires_in") or 3599)
            return Token(str(body["access_token"]), utcnow() + timedelta(seconds=seconds),
                         {"scope": str(body.get("scope") or "")})
        if response.status_code in (400, 401, 403):
            detail = body.get("message") if isinstance(body, dict) else ""
            raise AuthError(self.name, f"Zuora refused the client credentials at {self.base} ({detail or 'HTTP '}"
                                       f"{'' if detail else response.status_code}); a client belongs to one tenant: "
                                       f"check region/environment and client_id, and store the secret with "
                                       f"`mlconnector secrets set {self.name} client_secret`")
        raise RemoteError(self.name, response.status_code, message=f"token request to {self.base}/oauth/token failed",
                          retryable=response.status_code >= 500)

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = self.http.request(method, path, **kwargs)
        if response.status_code == 401:
            raise AuthError(self.name, f"Zuora refused the access token even after a fresh one ({method} {path})")
        return response

    def ok(self, response: httpx.Response, what: str) -> dict[str, Any]:
        found = failure_of(self.name, response)
        if found is not None:
            found.message = f"{what}: {found.message}"
            found.args = (f"{self.name} answered HTTP {found.status} ({found.code}: {found.message})",)
            raise found
        body = json_body(response)
        return body if isinstance(body, dict) else {}

    def close(self) -> None:
        self.http.close()
        self._token_http.close()

    def note_clock(self, entity: str | None, response: httpx.Response) -> None:
        """Keep Zuora's clock as the read of ``entity`` began: only its first call counts."""
        if entity is not None and entity not in self.read_clock:
            self.read_clock[entity] = _began(response)

    def create(self, path: str, body: dict[str, Any], key: str, what: str) -> dict[str, Any]:
        """POST with an Idempotency-Key: a timeout or 5xx is resent with the same key (Zuora replays the
        first answer, so nothing is made twice). A transient business failure is remembered under its key for
        24 hours, so the next try uses a key derived from this one and the failure's processId: every later run
        walks the same chain and finds whatever succeeded."""
        error: ZuoraFailure | None = None
        for attempt in range(CREATE_ATTEMPTS):
            response = self.call("POST", path, json=body, idempotent=True, headers={"Idempotency-Key": key})
            if response.status_code == 422:
                raise ZuoraFailure(self.name, 422, "", f"{what}: Zuora refused the Idempotency-Key (used before with "
                                                       "another request)")
            error = failure_of(self.name, response)
            if error is None:
                body_out = json_body(response)
                return body_out if isinstance(body_out, dict) else {}
            error.message = f"{what}: {error.message}"
            error.args = (f"{self.name} answered HTTP {error.status} ({error.code}: {error.message})",)
            if not error.retryable:
                raise error
            if not response.headers.get("Idempotent-Replayed"):
                wait = response.headers.get("Retry-After")
                self._sleep(min(float(wait), 60.0) if wait and wait.isdigit() else self.http.retry.backoff * (attempt + 1))
            key = _digest(key, error.process_id or attempt)
        assert error is not None
        raise error

    def key(self, kind: str, source: Any, payload: Any) -> str:
        """Idempotency-Key: the system, the kind of create, the source record's key and its content (version)."""
        return f"mlc-{_digest(self.name, kind, source, fingerprint(payload))}"


def _began(response: httpx.Response) -> datetime | None:
    """Zuora's clock when it took the request, at the latest: the ``Date`` it answered with (whole seconds,
    rounded down) less the time the call took."""
    answered = server_time(response)
    if answered is None:
        return None
    try:
        took = response.elapsed
    except RuntimeError:  # not timed (a response made in process, never sent)
        return answered
    return answered - took
