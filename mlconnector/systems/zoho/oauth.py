"""Zoho's OAuth: the data centres (accounts server, API and upload hosts), access tokens minted with the refresh
token or client credentials under the shared mint governor, and `mlconnector auth zoho` (the consent URL, the
pasted grant code exchanged for a refresh token)."""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from mlconnector.auth import Token, utcnow
from mlconnector.config import SystemConfig
from mlconnector.errors import AuthError, ConfigError, RateLimited, RemoteError
from mlconnector.http import ApiClient, retry_policy
from mlconnector.systems import ConnectorContext
from mlconnector.systems.zoho.quota import ZOHO_MINTS_PER_WINDOW, QuotaFile, SharedQuota, quota_of

KIND = "zoho"

# COQL needs ZohoCRM.coql.READ besides the module scope, and Bulk Write's file upload ZohoFiles.files.ALL.
SCOPES = ("ZohoCRM.modules.ALL,ZohoCRM.settings.ALL,ZohoCRM.org.READ,ZohoCRM.users.READ,"
          "ZohoCRM.notifications.ALL,ZohoCRM.bulk.ALL,ZohoCRM.coql.READ,ZohoFiles.files.ALL")
CLIENT_CREDENTIALS_SCOPES = SCOPES


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
    cache = context.token_cache(system.name)
    cache.clear()
    cache.save(token_from(body, None))  # the access token that came with it saves a mint
    location = getattr(store, "location", "the secret store")
    return Authorised(system.name, accounts, body.get("api_domain"), body.get("scope"), str(location))
