"""Zoho Accounts: clients, grant codes, refresh and access tokens with Zoho's lifetimes and limits.

Errors are answered as Zoho's accounts server does: HTTP 200 with an ``error`` member.
"""

from __future__ import annotations

import secrets
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Callable
from urllib.parse import parse_qsl

from starlette.requests import Request

from mlconnector.sandbox.common import JSONResponse

ACCESS_TOKEN_SECONDS = 3600
GRANT_CODE_SECONDS = 180                 # "valid 3 minutes by default"
MINTS_PER_WINDOW = 10                    # access tokens per refresh token ...
MINT_WINDOW = timedelta(minutes=10)      # ... per 10 minutes
ACTIVE_ACCESS_PER_REFRESH = 15           # the 16th evicts the oldest
REFRESH_PER_CLIENT = 20                  # the 21st deletes the oldest (with its access tokens)

DEFAULT_SCOPE = ("ZohoCRM.modules.ALL,ZohoCRM.settings.ALL,ZohoCRM.org.READ,ZohoCRM.users.READ,"
                 "ZohoCRM.coql.READ,ZohoCRM.bulk.ALL,ZohoCRM.notifications.ALL,ZohoFiles.files.ALL")

# Accounts server per data centre (multi-DC page). A request's DC comes from its Host or a /accounts/{dc} prefix.
ACCOUNTS_HOSTS = {
    "us": "accounts.zoho.com", "eu": "accounts.zoho.eu", "in": "accounts.zoho.in", "au": "accounts.zoho.com.au",
    "jp": "accounts.zoho.jp", "ca": "accounts.zohocloud.ca", "cn": "accounts.zoho.com.cn", "sa": "accounts.zoho.sa",
    "uk": "accounts.zoho.uk",
}
API_DOMAINS = {
    "us": "https://www.zohoapis.com", "eu": "https://www.zohoapis.eu", "in": "https://www.zohoapis.in",
    "au": "https://www.zohoapis.com.au", "jp": "https://www.zohoapis.jp", "ca": "https://www.zohoapis.ca",
    "cn": "https://www.zohoapis.com.cn", "sa": "https://www.zohoapis.sa", "uk": "https://www.zohoapis.uk",
}

TOO_MANY = {"error_description": "You have made too many requests continuously. Please try again after some time.",
            "error": "Access Denied", "status": "failure"}


@dataclass
class Client:
    client_id: str
    client_secret: str
    data_centre: str
    redirect_uri: str | None = None


@dataclass
class GrantCode:
    code: str
    client_id: str
    scope: str
    redirect_uri: str | None
    expires_at: datetime
    used: bool = False


@dataclass
class RefreshToken:
    token: str
    client_id: str
    scope: str
    data_centre: str
    mints: deque[datetime] = field(default_factory=deque)
    access: deque[str] = field(default_factory=deque)
    refused: int = 0  # mints refused for the limit: a client that does not govern itself shows here


@dataclass
class AccessToken:
    token: str
    client_id: str
    scope: str
    data_centre: str
    expires_at: datetime
    refresh_token: str | None = None

    def allows(self, family: str, operation: str) -> bool:
        """Does a scope like ``ZohoCRM.modules.ALL`` or ``ZohoCRM.modules.accounts.READ`` cover the call?"""
        accepted = {"ALL", operation.upper()} | ({"WRITE"} if operation.upper() in ("CREATE", "UPDATE") else set())
        return any(scope.startswith(family + ".") and scope.rsplit(".", 1)[-1].upper() in accepted
                   for scope in self.scope.replace(" ", ",").split(","))


class Accounts:
    """Token bookkeeping. Times come from the sandbox clock so tests can expire things by advancing it."""

    def __init__(self, now: Callable[[], datetime], data_centre: str, org_id: str, api_domain: str,
                 token_ttl: Callable[[], float | None]) -> None:
        self.now = now
        self.data_centre = data_centre
        self.org_id = org_id
        self.api_domain = api_domain
        self.token_ttl = token_ttl
        self.clients: dict[str, Client] = {}
        self.grants: dict[str, GrantCode] = {}
        self.refresh_tokens: dict[str, RefreshToken] = {}
        self.access_tokens: dict[str, AccessToken] = {}
        self.minted = 0

    # -- helpers the sandbox exposes ---------------------------------------------------------------------
    def register_client(self, client_id: str | None = None, client_secret: str | None = None, *,
                        redirect_uri: str | None = None, data_centre: str | None = None) -> Client:
        client = Client(client_id or f"1000.{secrets.token_hex(15).upper()}", client_secret or secrets.token_hex(21),
                        data_centre or self.data_centre, redirect_uri)
        self.clients[client.client_id] = client
        return client

    def issue_grant_code(self, client_id: str, *, scope: str = DEFAULT_SCOPE, redirect_uri: str | None = None,
                         ttl_seconds: float = GRANT_CODE_SECONDS) -> str:
        if client_id not in self.clients:
            raise KeyError(f"unknown client {client_id}")
        code = f"1000.{secrets.token_hex(16)}.{secrets.token_hex(16)}"
        self.grants[code] = GrantCode(code, client_id, scope, redirect_uri,
                                      self.now() + timedelta(seconds=ttl_seconds))
        return code

    def issue_refresh_token(self, client_id: str, *, scope: str = DEFAULT_SCOPE) -> str:
        client = self.clients[client_id]
        return self._new_refresh_token(client, scope).token

    def revoke(self, token: str) -> bool:
        refresh = self.refresh_tokens.pop(token, None)
        if refresh is None:
            return self.access_tokens.pop(token, None) is not None
        for access in refresh.access:
            self.access_tokens.pop(access, None)
        return True

    def access_token(self, token: str) -> AccessToken | None:
        """A live access token for this data centre's API, or None (unknown, expired, revoked, other DC)."""
        access = self.access_tokens.get(token)
        if access is None or access.expires_at <= self.now() or access.data_centre != self.data_centre:
            return None
        return access

    # -- grants ------------------------------------------------------------------------------------------
    def exchange(self, params: dict[str, str], data_centre: str) -> dict[str, Any]:
        """The token endpoint: one of three grant types; errors are ``{"error": ...}`` bodies."""
        grant_type = params.get("grant_type", "")
        if grant_type not in ("authorization_code", "refresh_token", "client_credentials"):
            return {"error": "unsupported_grant_type"}
        client = self.clients.get(params.get("client_id", ""))
        if client is None or client.data_centre != data_centre:
            return {"error": "invalid_client"}  # a client is known only to its own DC's accounts server
        if params.get("client_secret") != client.client_secret:
            return {"error": "invalid_client_secret"}
        if grant_type == "authorization_code":
            return self._from_code(client, params)
        if grant_type == "refresh_token":
            return self._from_refresh(client, params)
        return self._from_client_credentials(client, params)

    def _from_code(self, client: Client, params: dict[str, str]) -> dict[str, Any]:
        grant = self.grants.get(params.get("code", ""))
        if grant is None or grant.used or grant.client_id != client.client_id or grant.expires_at <= self.now():
            return {"error": "invalid_code"}
        if grant.redirect_uri and params.get("redirect_uri") != grant.redirect_uri:
            return {"error": "invalid_redirect_uri"}
        grant.used = True  # grant codes work once
        refresh = self._new_refresh_token(client, grant.scope)
        access = self._mint(client, grant.scope, refresh)
        return {"access_token": access.token, "refresh_token": refresh.token, "scope": grant.scope,
                "api_domain": self._api_domain(client), "token_type": "Bearer", "expires_in": ACCESS_TOKEN_SECONDS}

    def _from_refresh(self, client: Client, params: dict[str, str]) -> dict[str, Any]:
        refresh = self.refresh_tokens.get(params.get("refresh_token", ""))
        if refresh is None or refresh.client_id != client.client_id:
            return {"error": "invalid_code"}  # what Zoho answers for a revoked refresh token
        now = self.now()
        while refresh.mints and now - refresh.mints[0] >= MINT_WINDOW:
            refresh.mints.popleft()
        if len(refresh.mints) >= MINTS_PER_WINDOW:
            refresh.refused += 1
            return dict(TOO_MANY)
        refresh.mints.append(now)
        access = self._mint(client, refresh.scope, refresh)
        return {"access_token": access.token, "scope": refresh.scope, "api_domain": self._api_domain(client),
                "token_type": "Bearer", "expires_in": ACCESS_TOKEN_SECONDS}

    def _from_client_credentials(self, client: Client, params: dict[str, str]) -> dict[str, Any]:
        soid = params.get("soid")
        if not soid:
            return {"error": "missing_org_info"}
        if soid != f"ZohoCRM.{self.org_id}":
            return {"error": "invalid_client"}
        scope = params.get("scope") or DEFAULT_SCOPE
        access = self._mint(client, scope, None)
        return {"access_token": access.token, "scope": scope, "api_domain": self._api_domain(client),
                "token_type": "Bearer", "expires_in": ACCESS_TOKEN_SECONDS}

    def _api_domain(self, client: Client) -> str:
        """The API host of the client's DC: this org's own domain, or another DC's public one."""
        if client.data_centre == self.data_centre:
            return self.api_domain
        return API_DOMAINS.get(client.data_centre, self.api_domain)

    # -- minting -----------------------------------------------------------------------------------------
    def _new_refresh_token(self, client: Client, scope: str) -> RefreshToken:
        mine = [t for t in self.refresh_tokens.values() if t.client_id == client.client_id]
        if len(mine) >= REFRESH_PER_CLIENT:
            self.revoke(mine[0].token)  # the 21st deletes the first, with its access tokens
        refresh = RefreshToken(f"1000.{secrets.token_hex(16)}.{secrets.token_hex(16)}", client.client_id, scope,
                               client.data_centre)
        self.refresh_tokens[refresh.token] = refresh
        return refresh

    def _mint(self, client: Client, scope: str, refresh: RefreshToken | None) -> AccessToken:
        ttl = self.token_ttl()
        lifetime = ACCESS_TOKEN_SECONDS if ttl is None else ttl  # faults may expire tokens before expires_in
        access = AccessToken(f"1000.{secrets.token_hex(16)}.{secrets.token_hex(16)}", client.client_id, scope,
                             client.data_centre, self.now() + timedelta(seconds=lifetime),
                             refresh.token if refresh else None)
        self.access_tokens[access.token] = access
        self.minted += 1
        if refresh is not None:
            refresh.access.append(access.token)
            if len(refresh.access) > ACTIVE_ACCESS_PER_REFRESH:
                self.access_tokens.pop(refresh.access.popleft(), None)
        return access


def request_data_centre(request: Request, default: str) -> str | None:
    """Which DC's accounts server a request reached: ``/accounts/{dc}/...`` prefix, else the Host, else default."""
    dc = request.path_params.get("dc")
    if dc:
        return dc.lower() if dc.lower() in ACCOUNTS_HOSTS else None
    host = request.headers.get("host", "").split(":")[0].lower()
    return next((name for name, accounts_host in ACCOUNTS_HOSTS.items() if accounts_host == host), default)


async def token_params(request: Request) -> dict[str, str]:
    """Zoho's docs send the parameters in the query string; its SDK sends a form body. Accept both."""
    params = dict(request.query_params)
    body = (await request.body()).decode("utf-8", "replace")
    if body and "json" not in request.headers.get("content-type", ""):
        params.update(parse_qsl(body, keep_blank_values=True))
    return params


def token_endpoint(accounts: Accounts) -> Callable[[Request], Any]:
    async def token(request: Request) -> JSONResponse:
        data_centre = request_data_centre(request, accounts.data_centre)
        params = await token_params(request)
        if data_centre is None:
            return JSONResponse({"error": "invalid_client"})
        return JSONResponse(accounts.exchange(params, data_centre))
    return token


def revoke_endpoint(accounts: Accounts) -> Callable[[Request], Any]:
    async def revoke(request: Request) -> JSONResponse:
        params = await token_params(request)
        accounts.revoke(params.get("token", ""))
        return JSONResponse({"status": "success"})  # Zoho answers success whether or not the token existed
    return revoke
