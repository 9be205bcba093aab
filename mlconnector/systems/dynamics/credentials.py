"""How the connector signs in: an Entra access token (client credentials, cached in the secret store), the web
service access key (Basic) or Windows authentication (Negotiate / NTLM through pyspnego), and what a refusal
says the server expects instead."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Generator

import httpx

from mlconnector.auth import Token, TokenAuth, entra_hints, entra_token
from mlconnector.config import SystemConfig
from mlconnector.errors import ConfigError
from mlconnector.http import ApiClient
from mlconnector.systems import ConnectorContext

BC_SCOPE = "https://api.businesscentral.dynamics.com/.default"
AUTHORITY = "https://login.microsoftonline.com"


def _challenges(response: httpx.Response) -> set[str]:
    header = ",".join(response.headers.get_list("www-authenticate"))
    return {part.strip().split(" ")[0].lower() for part in header.split(",") if part.strip()}


class NegotiateAuth(httpx.Auth):
    """Windows authentication (Negotiate, falling back to NTLM) through pyspnego: answers the server's 401
    challenge and steps the context until the server accepts or stops sending tokens."""

    requires_response_body = True

    def __init__(self, user: str | None, password: str | None) -> None:
        self.user = user
        self.password = password

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        response = yield request
        offered = _challenges(response)
        if response.status_code != 401 or not offered & {"negotiate", "ntlm"}:
            return
        import spnego  # imported here: only Windows-authenticated servers need it

        scheme = "Negotiate" if "negotiate" in offered else "NTLM"
        context = spnego.client(self.user, self.password, hostname=request.url.host, service="HTTP",
                                protocol=scheme.lower())
        out = context.step()
        for _ in range(4):  # Negotiate/NTLM finish in two or three legs
            if not out:
                return
            request.headers["Authorization"] = f"{scheme} {base64.b64encode(out).decode()}"
            response = yield request
            header = next((h for h in response.headers.get_list("www-authenticate")
                           if h.lower().startswith(scheme.lower() + " ")), None)
            if response.status_code != 401 or header is None or context.complete:
                return
            out = context.step(base64.b64decode(header.split(" ", 1)[1].strip()))


class Credentials:
    """The credential of one system (``auth``: entra, basic or windows) and the Entra token it mints."""

    def __init__(self, system: SystemConfig, context: ConnectorContext, auth_kind: str, *,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.name = system.name
        self.system = system
        self.context = context
        self.auth_kind = auth_kind
        self._sleep = sleep
        self.client_id: str | None = None
        self.token_url: str | None = None
        self.token_http: ApiClient | None = None

    def make_auth(self) -> httpx.Auth:
        if self.auth_kind == "entra":
            self.client_id = self.system.setting("client_id", required=True, type_=str)
            tenant = self.system.setting("tenant", required=True, type_=str)
            authority = str(self.system.setting("authority", AUTHORITY, type_=str)).rstrip("/")
            self.token_url = self.system.setting("token_url", f"{authority}/{tenant}/oauth2/v2.0/token", type_=str)
            self.token_http = ApiClient(self.name, transport=self.context.transport, counter=self.context.counter,
                                        sleep=self._sleep)
            return TokenAuth(self.mint, self.context.token_cache(self.name))
        user = self.system.setting("user", type_=str)
        if self.auth_kind == "windows":
            password = self.context.secrets.get(self.name, "password") if user else None
            return NegotiateAuth(user, password)
        if not user:
            raise ConfigError(f"systems.{self.name}.user is missing: the BC user whose web service access key "
                              f"you stored with `mlconnector secrets set {self.name} password`")
        return httpx.BasicAuth(user, self.context.secrets.require(self.name, "password"))

    def mint(self, current: Token | None) -> Token:
        assert self.token_http is not None and self.token_url is not None
        form = {"grant_type": "client_credentials", "client_id": self.client_id,
                "client_secret": self.context.secrets.require(self.name, "client_secret"),
                "scope": self.system.setting("scope", BC_SCOPE, type_=str)}
        hints = {**entra_hints(self.name, self.client_id),
                 70011: "scope refused; leave scope unset (https://api.businesscentral.dynamics.com/.default)"}
        return entra_token(self.token_http, self.token_url, form, self.name, hints)

    def refusal(self, response: httpx.Response) -> str:
        offered = _challenges(response)
        if self.auth_kind != "windows" and offered & {"negotiate", "ntlm"} and "basic" not in offered \
                and "bearer" not in offered:
            return "server expects Windows authentication; set auth = \"windows\" (user DOMAIN\\name and its " \
                   f"password via `mlconnector secrets set {self.name} password`)"
        if self.auth_kind == "windows":
            if "basic" in offered:
                return "server expects Basic authentication (credential type NavUserPassword); set auth = " \
                       f"\"basic\" and store the web service access key with `mlconnector secrets set " \
                       f"{self.name} password`"
            return "Windows authentication refused; check user (DOMAIN\\name) and its password"
        if self.auth_kind == "entra":
            return "Business Central refused the access token: register the app on BC's \"Microsoft Entra " \
                   "Applications\" page (client id, State = Enabled, permission sets) and check tenant/environment"
        if "bearer" in offered and "basic" not in offered:
            return "server expects Entra ID tokens (BC online no longer takes web service access keys); set " \
                   "auth = \"entra\" with tenant and client_id"
        return f"user {self.system.setting('user', '', type_=str)!r} or its web service access key was refused; " \
               f"store the key with `mlconnector secrets set {self.name} password` (the server's credential " \
               "type must be NavUserPassword)"
