"""Zoho CRM (API v8): OAuth per data centre, COQL incremental reads, upserts and Bulk Write, watch channels.

Settings (``[systems.NAME]`` with ``kind = "zoho"``; connections.example.toml documents each one):
data_centre, accounts_url, api_domain, upload_url, client_id, auth, soid, scope, redirect_uri, edition,
concurrency, sub_concurrency, bulk_threshold, bulk_poll_seconds, bulk_timeout_seconds, coql_page_size, fields,
full_record_modules, required_modules, notify_url, notify_modules, channel_hours, channel_margin_minutes,
daily_credit_budget, mint_limit, mint_wait_seconds.

Secrets (``mlconnector secrets set NAME FIELD``): client_secret, refresh_token (written by
``mlconnector auth zoho``), notify_token (generated on first subscribe). The access token is cached in the
same store (``access_token_cache``) so that the next run reuses it.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import json
import math
import secrets as secrets_module
import threading
import time
import zipfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
from filelock import FileLock

from mlconnector.auth import SecretTokenCache, Token, TokenAuth, utcnow
from mlconnector import jsonfile
from mlconnector.config import SystemConfig
from mlconnector.errors import (
    AuthError,
    BudgetExhausted,
    ConfigError,
    MLConnectorError,
    NotificationRejected,
    RateLimited,
    RemoteError,
    Unreachable,
)
from mlconnector.http import ApiClient, json_body, retry_policy, server_time
from mlconnector.systems import ConnectorContext, register_kind
from mlconnector.systems.base import Capabilities, Channel, ConnectorBase, Notification, PingResult, Record, WriteResult

KIND = "zoho"

# COQL needs ZohoCRM.coql.READ besides the module scope, and Bulk Write's file upload ZohoFiles.files.ALL.
SCOPES = ("ZohoCRM.modules.ALL,ZohoCRM.settings.ALL,ZohoCRM.org.READ,ZohoCRM.users.READ,"
          "ZohoCRM.notifications.ALL,ZohoCRM.bulk.ALL,ZohoCRM.coql.READ,ZohoFiles.files.ALL")
CLIENT_CREDENTIALS_SCOPES = SCOPES

MAX_UPSERT = 100           # records per insert/update/upsert call
COQL_MAX_LIMIT = 2000      # rows per COQL call
COQL_MAX_SELECT = 50       # columns per COQL select
MAX_PER_PAGE = 200          # records per page of a list call (deleted records)
MINT_WINDOW = timedelta(minutes=10)
ZOHO_MINTS_PER_WINDOW = 10
CREDIT_WINDOW = timedelta(hours=24)  # Zoho's credit pool is a rolling 24 hours
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
# Modules an edition lacks (Invoices, Sales and Purchase Orders need Professional or above).
EDITION_MISSING = {"free": frozenset({"Sales_Orders", "Invoices", "Purchase_Orders", "Quotes"}),
                   "standard": frozenset({"Sales_Orders", "Invoices", "Purchase_Orders"})}
REQUIRED_MODULES = ("Products", "Sales_Orders", "Invoices")
NOTIFY_MODULES = ("Accounts", "Contacts", "Products", "Sales_Orders", "Invoices", "Deals", "Quotes")
BULK_MAX = 25_000  # records in one Bulk Write file


@dataclass(frozen=True)
class DataCentre:
    """One Zoho data centre: where its accounts server, API and file uploads live."""

    name: str
    accounts_url: str
    api_domain: str
    upload_url: str


_TLDS = {"us": "com", "eu": "eu", "in": "in", "au": "com.au", "jp": "jp", "ca": "ca", "cn": "com.cn", "sa": "sa"}
_ACCOUNTS = {"us": "https://accounts.zoho.com", "eu": "https://accounts.zoho.eu", "in": "https://accounts.zoho.in",
             "au": "https://accounts.zoho.com.au", "jp": "https://accounts.zoho.jp",
             "ca": "https://accounts.zohocloud.ca", "cn": "https://accounts.zoho.com.cn",
             "sa": "https://accounts.zoho.sa"}
_UPLOADS = {"ca": "https://upload.zohocloud.ca", "sa": "https://files.zoho.sa"}


def data_centres() -> dict[str, DataCentre]:
    """us, eu, ... plus ``us-sandbox``/``us-developer`` etc.: sandbox and developer orgs sign in at the same
    accounts server but call their own API host."""
    found = {}
    for dc, tld in _TLDS.items():
        upload = _UPLOADS.get(dc, f"https://content.zohoapis.{tld}")
        found[dc] = DataCentre(dc, _ACCOUNTS[dc], f"https://www.zohoapis.{tld}", upload)
        for env in ("sandbox", "developer"):
            found[f"{dc}-{env}"] = DataCentre(f"{dc}-{env}", _ACCOUNTS[dc], f"https://{env}.zohoapis.{tld}", upload)
    found["sandbox"], found["developer"] = found["us-sandbox"], found["us-developer"]
    return found


DATA_CENTRES = data_centres()
ACCOUNTS_SERVERS = frozenset(_ACCOUNTS.values()) | {"https://accounts.zoho.uk"}

# Fields a COQL read selects when [systems.NAME.fields] names none for the module (COQL has no `*`, and
# the sandbox serves no /settings/fields); line items never come through COQL.
DEFAULT_FIELDS: dict[str, tuple[str, ...]] = {
    "Accounts": ("Account_Name", "Account_Number", "Account_Type", "Industry", "Phone", "Fax", "Website",
                 "Parent_Account", "Owner", "Description", "Billing_Street", "Billing_City", "Billing_State",
                 "Billing_Code", "Billing_Country", "Shipping_Street", "Shipping_City", "Shipping_State",
                 "Shipping_Code", "Shipping_Country", "Created_Time", "Modified_Time"),
    "Contacts": ("First_Name", "Last_Name", "Full_Name", "Email", "Phone", "Mobile", "Title", "Department",
                 "Account_Name", "Vendor_Name", "Mailing_Street", "Mailing_City", "Mailing_State", "Mailing_Zip",
                 "Mailing_Country", "Owner", "Created_Time", "Modified_Time"),
    "Products": ("Product_Name", "Product_Code", "Product_Active", "Product_Category", "Unit_Price",
                 "Qty_in_Stock", "Taxable", "Usage_Unit", "Vendor_Name", "Description", "Owner", "Created_Time",
                 "Modified_Time"),
    "Vendors": ("Vendor_Name", "Email", "Phone", "Website", "Category", "GL_Account", "Street", "City", "State",
                "Zip_Code", "Country", "Owner", "Created_Time", "Modified_Time"),
    "Deals": ("Deal_Name", "Stage", "Amount", "Closing_Date", "Account_Name", "Contact_Name", "Pipeline", "Owner",
              "Created_Time", "Modified_Time"),
}
_ORDER_FIELDS = ("Subject", "Account_Name", "Contact_Name", "Deal_Name", "Status", "Due_Date", "Sub_Total",
                 "Discount", "Tax", "Adjustment", "Grand_Total", "Owner", "Created_Time", "Modified_Time")
DEFAULT_FIELDS["Quotes"] = _ORDER_FIELDS + ("Quote_Stage", "Valid_Till")
DEFAULT_FIELDS["Sales_Orders"] = _ORDER_FIELDS + ("SO_Number", "Quote_Name")
DEFAULT_FIELDS["Invoices"] = _ORDER_FIELDS + ("Invoice_Number", "Invoice_Date", "Sales_Order")
# Modules whose line items (subforms) come only from a fetch by id: changes() fetches each one in full.
LINE_ITEM_MODULES = ("Quotes", "Sales_Orders", "Invoices", "Purchase_Orders")
COQL_IN_MAX = 50  # values in one COQL "in (...)"
# Key lookups: two "in" lists joined by "or" (COQL takes up to 25 criteria), so one query covers a write batch.
COQL_KEYS_PER_QUERY = 2 * COQL_IN_MAX


def register() -> None:
    register_kind(KIND, ZohoConnector)


def _now() -> datetime:
    return utcnow()


# -- quotas shared by processes: the mint governor and the credit ledger ------------------------------------------

class QuotaFile:
    """A small JSON record of token mints and API credits, shared by every process on the host.

    Zoho lets one refresh token mint 10 access tokens per 10 minutes and charges credits against a rolling
    24-hour pool; concurrent cron runs must see each other's use, so the record lives next to the state
    file, guarded by a file lock. It holds times and counts only, never a token: mints are keyed by a hash.
    """

    def __init__(self, path: Path, now: Callable[[], datetime] = _now) -> None:
        self.path = path
        self._lock = FileLock(str(path) + ".lock", timeout=30)
        self._now = now

    def _edit(self) -> AbstractContextManager[dict[str, Any]]:
        return jsonfile.edited(self.path, self._lock)

    def reserve_mint(self, key: str, limit: int) -> float:
        """Record a mint and return 0, or return the seconds to wait before one is allowed."""
        now = self._now()
        with self._edit() as data:
            mints = data.setdefault("mints", {})
            recent = [t for t in mints.get(key, []) if now - datetime.fromisoformat(t) < MINT_WINDOW]
            if len(recent) >= limit:
                mints[key] = recent
                oldest = datetime.fromisoformat(recent[0])
                return max(0.1, (oldest + MINT_WINDOW - now).total_seconds())
            mints[key] = [*recent, now.isoformat()]
            return 0.0

    def mints(self, key: str) -> int:
        now = self._now()
        with self._edit() as data:
            return sum(1 for t in data.get("mints", {}).get(key, [])
                       if now - datetime.fromisoformat(t) < MINT_WINDOW)

    def charge(self, system: str, credits: int, budget: int) -> int:
        """Add ``credits`` to the system's rolling 24 hours; refuse (BudgetExhausted) if that crosses ``budget``.
        Returns the credits spent in the window, this call included."""
        now = self._now()
        with self._edit() as data:
            ledger = data.setdefault("credits", {})
            minutes = {m: n for m, n in ledger.get(system, {}).items()
                       if now - datetime.fromisoformat(m) < CREDIT_WINDOW}
            spent = sum(minutes.values())
            if budget and spent + credits > budget:
                ledger[system] = minutes
                raise _over_budget(system, credits, budget, spent)
            minute = now.replace(second=0, microsecond=0).isoformat()
            minutes[minute] = minutes.get(minute, 0) + credits
            ledger[system] = minutes
            return spent + credits


def _over_budget(system: str, credits: int, budget: int, spent: int) -> BudgetExhausted:
    return BudgetExhausted(f"{system}: the next call would use {credits} API credit(s), crossing the daily budget of "
                           f"{budget} ({spent} spent in the last 24 hours); stopping here, the next run resumes")


class SharedQuota:
    """QuotaFile's record kept in the state database's ledger (``ConnectorContext.ledger``): hosts sharing one
    PostgreSQL state, and one refresh token, count their mints and credits together."""

    def __init__(self, ledger: Any, now: Callable[[], datetime] = _now) -> None:
        self.ledger = ledger
        self._now = now

    def reserve_mint(self, key: str, limit: int) -> float:
        return self.ledger.reserve(f"zoho mint {key}", limit, MINT_WINDOW, self._now())

    def mints(self, key: str) -> int:
        return self.ledger.count(f"zoho mint {key}", MINT_WINDOW, self._now())

    def charge(self, system: str, credits: int, budget: int) -> int:
        done, spent = self.ledger.spend(f"zoho credits {system}", credits, budget, CREDIT_WINDOW, self._now())
        if not done:
            raise _over_budget(system, credits, budget, spent)
        return spent


def quota_of(context: ConnectorContext) -> "QuotaFile | SharedQuota":
    """The state database's ledger where the state is shared, else the file beside the state file."""
    return SharedQuota(context.ledger) if context.ledger is not None else QuotaFile(quota_path(context))


def quota_path(context: ConnectorContext) -> Path:
    """The quota record sits next to the state file in use."""
    return context.state_dir / "zoho-quota.json" if context.state_dir else default_quota_path()


def default_quota_path() -> Path:
    from mlconnector.state import default_state_path  # the quota record lives next to the state file

    return default_state_path().parent / "zoho-quota.json"


# -- OAuth ---------------------------------------------------------------------------------------------------------

TOKEN_ERRORS = {
    "invalid_client": "wrong data centre or client: the accounts server {accounts} does not know client_id "
                      "{client}; check data_centre (or accounts_url) and client_id",
    "invalid_client_secret": "client secret refused; store the right one with "
                             "`mlconnector secrets set {system} client_secret`",
    "invalid_code": "refresh token revoked or expired; run `mlconnector auth zoho {system}`",
    "missing_org_info": "client_credentials needs the org id: set soid in [systems.{system}]",
    "invalid_redirect_uri": "redirect_uri does not match the one registered for the client in Zoho's API "
                            "console; set redirect_uri in [systems.{system}]",
}


class ZohoAuth:
    """Mints Zoho access tokens (refresh-token or client-credentials grant) under the shared mint governor."""

    def __init__(self, system: SystemConfig, context: ConnectorContext, quota: QuotaFile | SharedQuota, *,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.system = system
        self.name = system.name
        self.secrets = context.secrets
        self.client_id: str = system.setting("client_id", required=True, type_=str)
        self.grant = system.setting("auth", "refresh_token", type_=str)
        if self.grant not in ("refresh_token", "client_credentials"):
            raise ConfigError(f"systems.{self.name}.auth must be \"refresh_token\" or \"client_credentials\"")
        self.data_centre = data_centre_of(system)
        self.quota = quota
        self.mint_limit = int(system.setting("mint_limit", ZOHO_MINTS_PER_WINDOW - 1, type_=int))
        self.mint_wait = float(system.setting("mint_wait_seconds", 60, type_=(int, float)))
        self._sleep = sleep
        self.http = ApiClient(self.name, transport=context.transport, counter=context.counter, sleep=sleep,
                              retry=retry_policy(system))

    @property
    def accounts_url(self) -> str:
        """accounts_url setting, else the server the refresh token came from (`auth zoho`), else the DC's."""
        configured = self.system.setting("accounts_url", type_=str)
        if configured:
            return configured.rstrip("/")
        stored = self.secrets.get(self.name, "accounts_server")
        return (stored or self.data_centre.accounts_url).rstrip("/")

    def mint(self, current: Token | None) -> Token:
        secret = self.secrets.require(self.name, "client_secret")
        form = {"client_id": self.client_id, "client_secret": secret}
        if self.grant == "client_credentials":
            soid = str(self.system.setting("soid", required=True, type_=(str, int)))
            form.update(grant_type="client_credentials", scope=self.system.setting(
                "scope", CLIENT_CREDENTIALS_SCOPES, type_=str),
                soid=soid if soid.startswith("ZohoCRM.") else f"ZohoCRM.{soid}")
            key = _digest(self.client_id, soid)
        else:
            refresh = self.secrets.require(self.name, "refresh_token")
            form.update(grant_type="refresh_token", refresh_token=refresh)
            key = _digest(self.client_id, refresh)
        self._govern(key)
        body = self._token_request(form, "refresh")
        return token_from(body, current)

    def _govern(self, key: str) -> None:
        waited = 0.0
        while True:
            wait = self.quota.reserve_mint(key, self.mint_limit)
            if not wait:
                return
            if waited + wait > self.mint_wait:
                raise RateLimited(self.name, wait, code="TOKEN_MINT_LIMIT", message=(
                    f"{self.mint_limit} access tokens were minted in the last 10 minutes (Zoho allows 10); "
                    f"the next is allowed in {math.ceil(wait)} s: try again then"))
            self._sleep(wait)
            waited += wait

    def _token_request(self, form: dict[str, str], purpose: str, accounts_url: str | None = None) -> dict[str, Any]:
        url = f"{accounts_url or self.accounts_url}/oauth/v2/token"
        response = self.http.request("POST", url, data=form)
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code >= 500 or not isinstance(body, dict):
            raise RemoteError(self.name, response.status_code, message=f"token endpoint {url} failed")
        if "access_token" in body:
            return body
        error = str(body.get("error") or f"HTTP {response.status_code}")
        if error == "Access Denied":
            raise RateLimited(self.name, 600, code="TOKEN_MINT_LIMIT", message=(
                "Zoho refused to mint another access token (more than 10 in 10 minutes); wait, then try again"))
        if error == "invalid_code" and purpose == "grant":
            raise AuthError(self.name, "the grant code is expired or already used (it works once, for a few "
                                       "minutes); run `mlconnector auth zoho` again")
        template = TOKEN_ERRORS.get(error, "token request refused ({error})")
        raise AuthError(self.name, template.format(accounts=url.rsplit("/oauth/", 1)[0], client=self.client_id,
                                                   system=self.name, error=error))

    def exchange_code(self, code: str, redirect_uri: str, accounts_url: str | None = None) -> dict[str, Any]:
        """The authorization-code grant; returns the token response (with refresh_token)."""
        secret = self.secrets.require(self.name, "client_secret")
        return self._token_request({"grant_type": "authorization_code", "client_id": self.client_id,
                                    "client_secret": secret, "code": code, "redirect_uri": redirect_uri},
                                   "grant", accounts_url)

    def close(self) -> None:
        self.http.close()


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:24]


def token_from(body: Mapping[str, Any], current: Token | None) -> Token:
    """A Token from Zoho's token response; ``api_domain`` is kept from the last one when a refresh omits it."""
    if "expires_in_sec" in body:  # historic shape: expires_in in milliseconds
        seconds = float(body["expires_in_sec"])
    else:
        seconds = float(body.get("expires_in") or 3600)
    extra = dict(current.extra) if current else {}
    if body.get("api_domain"):
        extra["api_domain"] = str(body["api_domain"]).rstrip("/")
    return Token(str(body["access_token"]), utcnow() + timedelta(seconds=seconds), extra)


def data_centre_of(system: SystemConfig) -> DataCentre:
    name = str(system.setting("data_centre", "us", type_=str)).lower()
    try:
        return DATA_CENTRES[name]
    except KeyError:
        raise ConfigError(f"systems.{system.name}.data_centre = {name!r} is not a Zoho data centre; use one of "
                          f"{', '.join(sorted(DATA_CENTRES))}") from None


def consent_url(system: SystemConfig, state: str | None = None) -> str:
    """Where the user grants access: offline access, so the exchange returns a refresh token."""
    accounts = system.setting("accounts_url", type_=str) or data_centre_of(system).accounts_url
    params = {"scope": SCOPES, "client_id": system.setting("client_id", required=True, type_=str),
              "response_type": "code", "access_type": "offline", "prompt": "consent",
              "redirect_uri": redirect_uri_of(system)}
    if state:
        params["state"] = state
    return f"{accounts.rstrip('/')}/oauth/v2/auth?{urlencode(params)}"


def redirect_uri_of(system: SystemConfig) -> str:
    return str(system.setting("redirect_uri", "http://localhost/callback", type_=str))


def parse_pasted_code(text: str) -> tuple[str, str | None]:
    """The grant code and the accounts server from a pasted code or the whole redirect URL."""
    text = text.strip()
    if "code=" not in text:
        if not text:
            raise ConfigError("no grant code given: paste the code, or the whole address the browser was sent to")
        return text, None
    query = parse_qs(urlsplit(text).query or text.split("?", 1)[-1])
    if "error" in query:
        raise AuthError(KIND, f"Zoho refused consent ({query['error'][0]})")
    code = (query.get("code") or [""])[0]
    if not code:
        raise ConfigError("the pasted address has no code=...; paste the code itself")
    server = (query.get("accounts-server") or [None])[0]
    return code, server.rstrip("/") if server else None


@dataclass(frozen=True)
class Authorised:
    """What `mlconnector auth zoho` reports: never the token itself."""

    system: str
    accounts_server: str
    api_domain: str | None
    scope: str | None
    stored_in: str


def authorise(system: SystemConfig, context: ConnectorContext, pasted: str) -> Authorised:
    """Exchange a grant code for a refresh token and store it (and its accounts server) in the secret store."""
    code, server = parse_pasted_code(pasted)
    configured = system.setting("accounts_url", type_=str)
    if server and not configured and server not in ACCOUNTS_SERVERS:
        raise ConfigError(f"accounts-server {server} in the pasted address is not a Zoho accounts server; "
                          "set accounts_url if you really use it")
    auth = ZohoAuth(system, context, quota_of(context))
    try:
        accounts = (configured or server or auth.data_centre.accounts_url).rstrip("/")
        body = auth.exchange_code(code, redirect_uri_of(system), accounts)
    finally:
        auth.close()
    refresh = body.get("refresh_token")
    if not refresh:
        raise AuthError(system.name, "Zoho returned no refresh token: the consent URL must ask for "
                                     "access_type=offline and prompt=consent; run `mlconnector auth zoho` again")
    store = context.secrets
    store.set(system.name, "refresh_token", str(refresh))
    store.set(system.name, "accounts_server", accounts)
    cache = SecretTokenCache(store, system.name)
    cache.clear()
    cache.save(token_from(body, None))  # the access token that came with it saves a mint
    location = getattr(store, "location", "the secret store")
    return Authorised(system.name, accounts, body.get("api_domain"), body.get("scope"), str(location))


# -- the connector -------------------------------------------------------------------------------------------------

def _zoho_time(moment: datetime) -> str:
    """A COQL datetime literal: whole seconds, with offset. Rounded up so ``>=``/``<`` bounds stay exact."""
    moment = moment.astimezone(timezone.utc)
    if moment.microsecond:
        moment = moment.replace(microsecond=0) + timedelta(seconds=1)
    return moment.strftime("%Y-%m-%dT%H:%M:%S+00:00")


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return moment if moment.tzinfo else None




def _is_invalid_token(response: httpx.Response) -> bool:
    if response.status_code != 401:
        return False
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


class ZohoConnector(ConnectorBase):
    """The Zoho CRM connector: see the module docstring for its settings."""

    capabilities = Capabilities(push=True, fetches_many=True, deletion_feed=True, deletes=True, flags=True)

    def __init__(self, system: SystemConfig, context: ConnectorContext, *,
                 sleep: Callable[[float], None] = time.sleep, quota: QuotaFile | SharedQuota | None = None) -> None:
        self.name = system.name
        self.system = system
        self.context = context
        self._sleep = sleep
        self.quota = quota or quota_of(context)
        self.zoho_auth = ZohoAuth(system, context, self.quota, sleep=sleep)
        self.auth = TokenAuth(self.zoho_auth.mint, SecretTokenCache(context.secrets, system.name),
                              header=lambda t: f"Zoho-oauthtoken {t.access_token}", is_invalid=_is_invalid_token)
        edition = system.setting("edition", type_=str)
        concurrency = system.setting("concurrency", EDITION_CONCURRENCY.get(edition or "", DEFAULT_CONCURRENCY),
                                     type_=int)
        self.http = ApiClient(system.name, auth=self.auth, transport=context.transport, counter=context.counter,
                              max_concurrency=concurrency, is_retryable=_is_throttled, sleep=sleep,
                              retry=retry_policy(system))
        # At most this many resource-intensive calls in flight (is_heavy), within the http client's limit.
        self.sub_concurrency = max(1, int(system.setting("sub_concurrency", DEFAULT_SUB_CONCURRENCY, type_=int)))
        self._heavy_slots = threading.BoundedSemaphore(self.sub_concurrency)
        self.bulk_threshold = int(system.setting("bulk_threshold", 5000, type_=int))
        self.bulk_poll_seconds = float(system.setting("bulk_poll_seconds", 5, type_=(int, float)))
        self.bulk_timeout = float(system.setting("bulk_timeout_seconds", 1800, type_=(int, float)))
        self.page_size = min(int(system.setting("coql_page_size", COQL_MAX_LIMIT, type_=int)), COQL_MAX_LIMIT)
        self.notify_url: str | None = system.setting("notify_url", type_=str)
        self.channel_hours = float(system.setting("channel_hours", 24, type_=(int, float)))
        self.renew_margin = timedelta(minutes=float(system.setting("channel_margin_minutes", 120,
                                                                     type_=(int, float))))
        self.budget = int(system.setting("daily_credit_budget", 0, type_=int))
        self.credits_used = 0
        self._org: dict[str, Any] | None = None
        self._read_clock: dict[str, datetime | None] = {}
        self._also_read: dict[str, list[str]] = {}

    # -- plumbing --------------------------------------------------------------------------------------------------
    @property
    def api_domain(self) -> str:
        """api_domain setting, else a sandbox/developer DC's own host, else the token's, else the DC default."""
        configured = self.system.setting("api_domain", type_=str)
        if configured:
            return configured.rstrip("/")
        dc = self.zoho_auth.data_centre
        if dc.name.endswith(("sandbox", "developer")):
            return dc.api_domain
        return str(self.auth.token().extra.get("api_domain") or dc.api_domain).rstrip("/")

    @property
    def upload_url(self) -> str:
        """File uploads go to Zoho's content host of the DC; with an api_domain of our own, to that."""
        configured = self.system.setting("upload_url", type_=str)
        if configured:
            return configured.rstrip("/")
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

    def write_concurrency(self, entity: str, batch_size: int) -> int:
        """How many write calls of ``batch_size`` records are worth keeping in flight: writes of more than 10
        records are resource-intensive, so at most ``sub_concurrency`` of them run at once."""
        if batch_size > HEAVY_WRITE_RECORDS:
            return min(self.http.max_concurrency, self.sub_concurrency)
        return self.http.max_concurrency

    def _call(self, method: str, path: str, *, credits: int = 1, idempotent: bool | None = None,
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

    def _fail(self, response: httpx.Response, what: str) -> RemoteError:
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

    # -- reads -----------------------------------------------------------------------------------------------------
    def fields(self, entity: str) -> list[str]:
        """The fields a COQL read selects: [systems.NAME.fields] for the module, else the built-in list."""
        table = self.system.setting("fields", {}, type_=Mapping)
        chosen = table.get(entity)
        names = list(chosen) if chosen else list(DEFAULT_FIELDS.get(entity, ()))
        names = [n for n in dict.fromkeys(names) if n != "id"]
        if "Modified_Time" not in names:
            names.append("Modified_Time")
        if len(names) > COQL_MAX_SELECT:
            raise ConfigError(f"systems.{self.name}.fields.{entity} names {len(names)} fields; COQL selects at "
                              f"most {COQL_MAX_SELECT}")
        extra = [n for n in self._also_read.get(entity, ()) if n not in names]
        return names + extra[:COQL_MAX_SELECT - len(names)]

    def also_read(self, entity: str, fields: list[str]) -> None:
        self._also_read[entity] = list(dict.fromkeys([*self._also_read.get(entity, ()), *fields]))

    def _full_record_modules(self) -> set[str]:
        return set(self.system.setting("full_record_modules", list(LINE_ITEM_MODULES), type_=list))

    def changes(self, entity: str, since: datetime | None, until: datetime | None = None) -> Iterator[Record]:
        """Records modified in [since, until), ascending by (Modified_Time, id), via COQL.

        Pages with a keyset cursor rather than OFFSET: a record edited during the read leaves the window
        (its new Modified_Time is past ``until``) and would shift every later offset, skipping a record;
        the cursor also goes past COQL's 100,000-row offset reach.
        """
        columns = ", ".join(self.fields(entity))
        full = entity in self._full_record_modules()
        cursor: tuple[str, str] | None = None
        self._read_clock.pop(entity, None)
        while True:
            where = self._window(since, until, cursor)
            query = (f"select {columns} from {entity} where {where} "
                     f"order by Modified_Time asc, id asc limit {self.page_size}")
            response = self._call("POST", "/crm/v8/coql", credits=_coql_credits(self.page_size),
                                  idempotent=True, json={"select_query": query})
            if cursor is None:
                # Zoho's clock when the read began: its Date, less the call's duration (the Date is taken as
                # it answers, perhaps after rows written during the query).
                self._read_clock[entity] = _began(response)
            if response.status_code == 204:
                return
            if response.status_code != 200:
                raise self._fail(response, f"COQL on {entity}")
            body = response.json()
            rows = body.get("data") or []
            for row in rows:
                record = self.get(entity, str(row["id"])) if full else self._record(entity, row)
                if record is not None:
                    yield record
            if not rows or not (body.get("info") or {}).get("more_records"):
                return
            last = rows[-1]
            cursor = (str(last["Modified_Time"]), str(last["id"]))

    def key_form(self, entity: str, field: str, value: Any) -> str:
        """How Zoho's duplicate check compares a unique field's values (the upsert's duplicate_check_fields,
        https://www.zoho.com/crm/developer/docs/api/v8/upsert-records.html): text without case or surrounding
        spaces, so "Shared@Example.COM " finds the record of "shared@example.com"."""
        return str(value).strip().casefold()

    def coarse_stamps(self, entity: str) -> bool:
        """Modified_Time carries whole seconds (https://www.zoho.com/crm/developer/docs/api/v8/get-records.html):
        two edits within one second share a stamp, so a record re-read with the stamp last synced may still be a
        newer version. The engine then tells versions apart by content."""
        return True

    def read_clock(self, entity: str) -> datetime | None:
        """Zoho's own clock (the Date of its answer) when the last ``changes`` read of ``entity`` began; None if
        it did not say. Every record stamped before then that the read did not return was not there yet."""
        return self._read_clock.get(entity)

    @staticmethod
    def _window(since: datetime | None, until: datetime | None, cursor: tuple[str, str] | None) -> str:
        """The WHERE clause, parenthesised pairwise as COQL requires."""
        if cursor:
            stamp, last_id = cursor
            lower = (f"((Modified_Time > {_quote(stamp)}) or "
                     f"((Modified_Time = {_quote(stamp)}) and (id > {_quote(last_id)})))")
        elif since:
            lower = f"(Modified_Time >= {_quote(_zoho_time(since))})"
        else:
            lower = "(Modified_Time is not null)"
        if until is None:
            return lower
        return f"({lower} and (Modified_Time < {_quote(_zoho_time(until))}))"

    def _record(self, entity: str, data: Mapping[str, Any]) -> Record:
        return Record(system=self.name, entity=entity, id=str(data["id"]),
                      modified=_parse_time(data.get("Modified_Time")), data=dict(data))

    def get(self, entity: str, id: str) -> Record | None:
        """The full record, with subforms (line items come only this way); None when it is gone."""
        response = self._call("GET", f"/crm/v8/{entity}/{id}")
        if response.status_code == 204:
            return None
        if response.status_code != 200:
            raise self._fail(response, f"GET {entity}/{id}")
        data = (response.json().get("data") or [None])[0]
        return self._record(entity, data) if data else None

    def get_many(self, entity: str, ids: list[str]) -> dict[str, Record]:
        """Several records in one call (GET /{module}?ids=, up to 100), for notifications naming many ids.
        Modules with line items are fetched one by one: only a fetch by id returns their subforms."""
        if entity in LINE_ITEM_MODULES:
            return {r.id: r for r in (self.get(entity, i) for i in ids) if r is not None}
        found: dict[str, Record] = {}
        for start in range(0, len(ids), MAX_UPSERT):
            chunk = ids[start:start + MAX_UPSERT]
            response = self._call("GET", f"/crm/v8/{entity}", params={
                "ids": ",".join(chunk), "fields": ",".join(self.fields(entity))})
            if response.status_code == 204:
                continue
            if response.status_code != 200:
                raise self._fail(response, f"GET {entity}?ids=")
            for data in response.json().get("data") or []:
                record = self._record(entity, data)
                found[record.id] = record
        return found

    # -- deletions -------------------------------------------------------------------------------------------------
    def deleted_since(self, entity: str, since: datetime | None) -> list[str]:
        """Ids in the module's recycle bin (or purged) deleted at or after ``since``: GET /{module}/deleted with
        If-Modified-Since (https://www.zoho.com/crm/developer/docs/api/v8/get-deleted-records.html)."""
        headers = {"If-Modified-Since": _zoho_time(since)} if since else {}
        ids: list[str] = []
        page = 1
        while True:
            response = self._call("GET", f"/crm/v8/{entity}/deleted", idempotent=True, headers=headers,
                                  params={"type": "all", "page": page, "per_page": MAX_PER_PAGE})
            if response.status_code == 204:
                return ids
            if response.status_code != 200:
                raise self._fail(response, f"deleted {entity}")
            body = response.json()
            ids.extend(str(row["id"]) for row in body.get("data") or [])
            if not (body.get("info") or {}).get("more_records"):
                return ids
            page += 1

    def delete(self, entity: str, ids: list[str]) -> dict[str, str | None]:
        """DELETE /{module}?ids= (up to 100; https://www.zoho.com/crm/developer/docs/api/v8/delete-records.html):
        the records go to the recycle bin. One already gone answers INVALID_DATA: that is done too."""
        done: dict[str, str | None] = {}
        for start in range(0, len(ids), MAX_UPSERT):
            chunk = ids[start:start + MAX_UPSERT]
            response = self._call("DELETE", f"/crm/v8/{entity}", idempotent=True, params={"ids": ",".join(chunk)})
            done.update(self._per_record(response, chunk, f"delete {entity}", gone_is_done=True))
        return done

    def flag_deleted(self, entity: str, ids: list[str], source: str) -> dict[str, str | None]:
        """Tag the records "Deleted in SOURCE" (the ``deleted_tag`` setting; POST /{module}/actions/add_tags,
        https://www.zoho.com/crm/developer/docs/api/v8/add-tags.html): sales sees them, reports can filter them,
        and nothing is lost."""
        return self._tagging("add_tags", entity, ids, source, {"over_write": False})

    def unflag_deleted(self, entity: str, ids: list[str], source: str) -> dict[str, str | None]:
        """Take the tag off again (POST /{module}/actions/remove_tags, the same body,
        https://www.zoho.com/crm/developer/docs/api/v8/remove-tags.html)."""
        return self._tagging("remove_tags", entity, ids, source, {})

    def _tagging(self, action: str, entity: str, ids: list[str], source: str,
                 extra: dict[str, Any]) -> dict[str, str | None]:
        tag = self.system.setting("deleted_tag", "Deleted in {source}", type_=str).replace("{source}", source)
        done: dict[str, str | None] = {}
        for start in range(0, len(ids), MAX_UPSERT):
            chunk = ids[start:start + MAX_UPSERT]
            response = self._call("POST", f"/crm/v8/{entity}/actions/{action}", idempotent=True,
                                  json={"tags": [{"name": tag}], "ids": chunk, **extra})
            done.update(self._per_record(response, chunk, f"{action.replace('_', ' ')} {entity}",
                                         gone_is_done=False))
        return done

    def _per_record(self, response: httpx.Response, ids: list[str], what: str, *,
                    gone_is_done: bool) -> dict[str, str | None]:
        """A per-record answer (``data[]``, status 200/207/400) as id -> None (done) or why not."""
        body = json_body(response)
        items = body.get("data") if isinstance(body, dict) else None
        if response.status_code not in (200, 207, 400) or not isinstance(items, list):
            raise self._fail(response, what)
        answers: dict[str, str | None] = {}
        for record_id, item in zip(ids, items):
            details = item.get("details") or {}
            record_id = str(details.get("id") or record_id)
            if item.get("status") == "success" or (gone_is_done and item.get("code") == "INVALID_DATA"):
                answers[record_id] = None
            else:
                answers[record_id] = f"{item.get('code')}: {item.get('message')}"
        return answers

    # -- writes ----------------------------------------------------------------------------------------------------
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
                               version=_parse_time(details.get("Modified_Time")))
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

    def connect(self) -> None:
        """What every run asks first (a token, then the org, which tells the edition), asked now: the engine asks
        each system's at once, rather than one system after another."""
        self.org()

    def org(self) -> dict[str, Any]:
        if self._org is None:
            response = self._call("GET", "/crm/v8/org")
            if response.status_code != 200:
                raise self._fail(response, "GET /org")
            self._org = (response.json().get("org") or [{}])[0]
        return self._org

    def bulk_write(self, entity: str, payloads: list[dict[str, Any]], key: str) -> list[WriteResult]:
        """Bulk Write: one zipped CSV, an upsert job on ``key``, polled to completion, its result file parsed.

        Empty cells are ignored (``ignore_empty``): a CSV cannot tell "clear this field" from "not given".
        """
        header = list(dict.fromkeys(name for p in payloads for name in p if name != "id"))
        lookups = {name for p in payloads for name, value in p.items() if isinstance(value, Mapping)}
        text = io.StringIO()
        writer = csv.writer(text)
        writer.writerow(header)
        for payload in payloads:
            writer.writerow([_cell(payload.get(name)) for name in header])
        archive = io.BytesIO()
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zipped:
            zipped.writestr(f"{entity}.csv", text.getvalue())
        zgid = str(self.org().get("zgid") or "")
        upload = self._call("POST", f"{self.upload_url}/crm/v8/upload", credits=0, idempotent=False,
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

    # -- push channels ---------------------------------------------------------------------------------------------
    def push_entities(self) -> tuple[str, ...]:
        if not self.notify_url:
            return ()
        # Channels are opened only for the modules a pair's flows read (sync/push.py): a module listed here that no
        # flow reads costs nothing. Deals and Quotes are watched by default, as the CRM side's sales events.
        return tuple(self.system.setting("notify_modules", list(NOTIFY_MODULES), type_=list))

    def _notify_token(self) -> str:
        token = self.context.secrets.get(self.name, "notify_token")
        if not token:
            token = secrets_module.token_urlsafe(30)[:40]  # Zoho caps the token at 50 characters
            self.context.secrets.set(self.name, "notify_token", token)
        return token

    def subscribe(self, entity: str, notify_url: str | None = None) -> Channel:
        """Enable a watch channel for every create/edit/delete of ``entity``."""
        url = notify_url or self.notify_url
        if not url:
            raise ConfigError(f"systems.{self.name}.notify_url is not set: where should Zoho send notifications?")
        channel_id = str(int(time.time() * 1000) * 1000 + secrets_module.randbelow(1000))
        item = {"channel_id": channel_id, "events": [f"{entity}.all"], "notify_url": url,
                "channel_expiry": self._expiry_text(), "token": self._notify_token()}
        return self._channel_call("POST", entity, item, "enable channel")

    def renew(self, channel: Channel) -> Channel:
        """Push the channel's expiry out again (PATCH changes only the expiry)."""
        item = {"channel_id": channel.channel_id, "channel_expiry": self._expiry_text(),
                "token": self._notify_token()}
        return self._channel_call("PATCH", channel.entity, item, "renew channel", channel.notify_url)

    def needs_renewal(self, channel: Channel, now: datetime | None = None) -> bool:
        return channel.expires - (now or utcnow()) < self.renew_margin

    def renew_expiring_channels(self, channels: list[Channel], now: datetime | None = None) -> list[Channel]:
        """Renew the channels with less than channel_margin_minutes left; returns them all, renewed or not."""
        return [self.renew(c) if self.needs_renewal(c, now) else c for c in channels]

    def unsubscribe(self, channel: Channel | str) -> None:
        channel_id = channel.channel_id if isinstance(channel, Channel) else str(channel)
        response = self._call("DELETE", "/crm/v8/actions/watch", params={"channel_ids": channel_id})
        body = json_body(response)
        item = ((body or {}).get("watch") or [{}])[0] if isinstance(body, dict) else {}
        if response.status_code not in (200, 204) and item.get("code") != "NOT_SUBSCRIBED":
            raise self._fail(response, f"disable channel {channel_id}")
        state = self.context.state
        if state is not None:
            state.delete_channel(self.name, channel_id)

    def _expiry_text(self) -> str:
        expiry = utcnow() + timedelta(hours=min(self.channel_hours, 24 * 7))
        return expiry.replace(microsecond=0).isoformat()

    def _channel_call(self, method: str, entity: str, item: dict[str, Any], what: str,
                      notify_url: str | None = None) -> Channel:
        response = self._call(method, "/crm/v8/actions/watch", json={"watch": [item]})
        body = json_body(response)
        answer = ((body or {}).get("watch") or [{}])[0] if isinstance(body, dict) else {}
        if response.status_code not in (200, 201) or answer.get("status") != "success":
            code = answer.get("code") or (body or {}).get("code", "") if isinstance(body, dict) else ""
            raise RemoteError(self.name, response.status_code, str(code),
                              f"{what} {item['channel_id']} for {entity}: {answer.get('message', '')} "
                              f"{json.dumps(answer.get('details') or {}, sort_keys=True)}".strip())
        events = answer.get("details", {}).get("events") or [{}]
        expires = _parse_time(events[0].get("channel_expiry")) or datetime.fromisoformat(item["channel_expiry"])
        channel = Channel(self.name, entity, str(item["channel_id"]), expires.astimezone(timezone.utc),
                          str(item.get("notify_url") or notify_url or self.notify_url or ""))
        state = self.context.state
        if state is not None:
            state.save_channel(system=self.name, entity=entity, channel_id=channel.channel_id,
                               expires=channel.expires, notify_url=channel.notify_url)
        return channel

    def verify(self, body: bytes | str | Mapping[str, Any], headers: Mapping[str, str] | None = None,
               query: Mapping[str, str] | None = None) -> list[Notification]:
        """Accept a notification only if it echoes our channel token; Zoho signs nothing else."""
        if isinstance(body, Mapping):
            payload: Any = body
        else:
            try:
                payload = json.loads(body)
            except ValueError:
                raise NotificationRejected(f"{self.name}: notification body is not JSON", 400) from None
        if not isinstance(payload, dict) or not isinstance(payload.get("ids"), list) or not payload.get("module"):
            raise NotificationRejected(f"{self.name}: notification lacks module or ids", 400)
        expected = self.context.secrets.get(self.name, "notify_token")
        given = payload.get("token")
        # Compared as bytes: compare_digest refuses str with characters outside ASCII (a forged token may hold any).
        if not expected or not isinstance(given, str) or not hmac.compare_digest(
                given.encode("utf-8", "surrogatepass"), expected.encode()):
            raise NotificationRejected(f"{self.name}: notification token does not match our channel's", 403)
        operation = {"insert": "create", "update": "update", "delete": "delete"}.get(
            str(payload.get("operation")), str(payload.get("operation") or "update"))
        channel_id = payload.get("channel_id")
        return [Notification(self.name, str(payload["module"]), tuple(str(i) for i in payload["ids"]), operation,
                             str(channel_id) if channel_id is not None else None)]

    def unavailable(self, entity: str) -> str | None:
        """Why records of ``entity`` cannot be written in this org (its edition lacks the module), or None.

        The engine asks before a flow runs, so such a flow is skipped with this reason instead of failing
        record by record."""
        licence = self.org().get("license_details") or {}
        edition = str(licence.get("paid_type") or "unknown")
        if not licence.get("paid") and licence.get("trial_type"):
            edition = str(licence["trial_type"])  # a trial has its trial edition's modules
        if entity in EDITION_MISSING.get(edition, frozenset()):
            return (f"the Zoho {edition} edition has no {entity} module: flow skipped (upgrade the edition, "
                    "or leave this flow out of pairs.*.flows)")
        return None

    # -- ping ------------------------------------------------------------------------------------------------------
    def ping(self) -> PingResult:
        """Token, api_domain, org and edition, current user; warns when needed modules lack in the edition."""
        base = ""
        try:
            self.auth.token()
            base = self.api_domain
            org = self.org()
            users = self._call("GET", "/crm/v8/users", params={"type": "CurrentUser"})
            user = ((json_body(users) or {}).get("users") or [{}])[0] if users.status_code == 200 else {}
        except AuthError as exc:
            return PingResult(self.name, False, base, error=str(exc), exit_code=exc.exit_code)
        except (Unreachable, RemoteError) as exc:
            return PingResult(self.name, False, base, error=str(exc), exit_code=exc.exit_code)
        except MLConnectorError as exc:
            return PingResult(self.name, False, base, error=str(exc), exit_code=exc.exit_code)
        licence = org.get("license_details") or {}
        edition = str(licence.get("paid_type") or "unknown")
        details = [f"org {org.get('company_name', '?')} ({org.get('type', 'production')}, edition {edition})"]
        if user:
            details.append(f"user {user.get('full_name', '?')} <{user.get('email', '?')}>")
        details.append(f"{self.credits_used} credits used")
        needed = self.system.setting("required_modules", list(REQUIRED_MODULES), type_=list)
        missing = [m for m in needed if m in EDITION_MISSING.get(edition, frozenset())]
        warnings = []
        if missing:
            warnings.append(f"the {edition} edition has no {', '.join(missing)}: flows that need them will fail")
        if licence.get("trial_type") and not licence.get("paid"):
            warnings.append(f"trial of {licence['trial_type']} until {licence.get('trial_expiry')}")
        return PingResult(self.name, True, base, tuple(details), tuple(warnings))


def _began(response: httpx.Response) -> datetime | None:
    """The server's clock when the request arrived, at the latest: its Date less the call's duration."""
    clock = server_time(response)
    if clock is None:
        return None
    try:
        return clock - response.elapsed
    except RuntimeError:  # a transport that does not time its calls (an in-process test app)
        return clock


def check_fields(key: str) -> list[str]:
    """An upsert key may name several duplicate-check fields, tried in order ("Account_Number,Account_Name");
    Bulk Write finds by the first only."""
    return [name.strip() for name in key.split(",") if name.strip()]


def _coql_credits(limit: int) -> int:
    return 1 if limit <= 200 else 2 if limit <= 1000 else 3


def _flat(payloads: list[dict[str, Any]]) -> bool:
    """Bulk Write takes one CSV per module: records with subforms (line items) must go through upsert."""
    return not any(isinstance(v, list) for p in payloads for v in p.values())


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
        text = archive.read(name).decode("utf-8-sig")
    results = []
    # Row by row: the file repeats every uploaded column, and 25,000 rows held as dicts at once were tens of MB.
    for row in csv.DictReader(io.StringIO(text)):
        status = (row.get("STATUS") or "").upper()
        if status in ("ADDED", "UPDATED"):
            results.append(WriteResult("create" if status == "ADDED" else "update", row.get("RECORD_ID") or None))
        else:
            errors = row.get("ERRORS") or status or "SKIPPED"
            code, _, field = errors.partition("-")
            results.append(WriteResult("fail", None, error=f"{code}: bulk write skipped the row"
                                       + (f" ({field})" if field else ""), error_class=code))
    if len(results) != expected:
        raise RemoteError(system, 200, "BULK_RESULT", f"bulk write result has {len(results)} rows for {expected} "
                          "records")
    return results


__all__ = ["ZohoConnector", "register", "authorise", "consent_url", "parse_pasted_code", "QuotaFile",
           "DATA_CENTRES", "token_from"]
