"""Who may call: Entra ID client-credentials tokens (BC online), and on-premises credential types.

Token endpoint: ``POST /{tenant}/oauth2/v2.0/token`` as login.microsoftonline.com serves it, with Entra's error
JSON (``error``, ``error_description`` starting with an AADSTS code, ``error_codes``, ``trace_id`` ...).
On-premises the server instance has one credential type: NavUserPassword (Basic with user name + web service
access key), Windows (Negotiate/NTLM, which the sandbox cannot complete: it answers the challenge only, to
reproduce "wrong credential type") or Entra (Bearer tokens from the same token endpoint).
"""

from __future__ import annotations

import base64
import secrets
import uuid
from urllib.parse import parse_qs
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from starlette.requests import Request
from starlette.responses import Response

from mlconnector.sandbox.common import Faults, JSONResponse, SandboxClock

from . import errors

BC_SCOPE = "https://api.businesscentral.dynamics.com/.default"
ACCESS_TOKEN_LIFETIME = 3599
CREDENTIAL_TYPES = ("NavUserPassword", "Windows", "Entra")


@dataclass
class AppRegistration:
    tenant: str
    client_id: str
    client_secret: str
    bc_enabled: bool = True   # listed and Enabled on BC's "Microsoft Entra Applications" page


@dataclass
class AccessToken:
    tenant: str
    client_id: str
    expires_at: datetime


class Identity:
    """The Entra tenant(s), BC's app registrations and web-service users, and the tokens minted so far."""

    def __init__(self, clock: SandboxClock, faults: Faults) -> None:
        self.clock = clock
        self.faults = faults
        self.apps: dict[tuple[str, str], AppRegistration] = {}
        self.tokens: dict[str, AccessToken] = {}
        self.web_service_users: dict[str, str] = {}
        self.credential_type = "NavUserPassword"
        self.tokens_issued = 0

    # -- Entra token endpoint ---------------------------------------------------------------------------------

    def _known_tenant(self, tenant: str) -> bool:
        return any(app.tenant == tenant.lower() for app in self.apps.values())

    async def token_endpoint(self, request: Request) -> Response:
        tenant = request.path_params["tenant"].lower()
        # Parsed by hand: Starlette's request.form() needs python-multipart, and Entra takes urlencoded only.
        form = {k: v[-1] for k, v in parse_qs((await request.body()).decode("utf-8", "replace")).items()}
        client_id, client_secret = str(form.get("client_id", "")), str(form.get("client_secret", ""))
        basic = _basic_credentials(request)
        if basic and not client_secret:  # RFC 6749 2.3.1: the secret may come as HTTP Basic
            client_id, client_secret = basic
        if not self._known_tenant(tenant):
            return _entra_error(400, "invalid_request", 90002,
                                f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID "
                                "and are signing into the correct cloud.")
        if not form.get("grant_type"):
            return _entra_error(400, "invalid_request", 900144,
                                "The request body must contain the following parameter: 'grant_type'.")
        if form.get("grant_type") != "client_credentials":
            return _entra_error(400, "unsupported_grant_type", 70003,
                                "The app requested an unsupported grant type "
                                f"'{form.get('grant_type')}'.")
        if not client_id:
            return _entra_error(400, "invalid_request", 900144,
                                "The request body must contain the following parameter: 'client_id'.")
        app = self.apps.get((tenant, client_id))
        if app is None:
            return _entra_error(400, "unauthorized_client", 700016,
                                f"Application with identifier '{client_id}' was not found in the directory "
                                f"'{tenant}'. This can happen if the application has not been installed by the "
                                "administrator of the tenant or consented to by any user in the tenant.")
        if not client_secret:
            return _entra_error(401, "invalid_client", 7000218,
                                "The request body must contain the following parameter: 'client_assertion' or "
                                "'client_secret'.")
        if not secrets.compare_digest(client_secret, app.client_secret):
            return _entra_error(401, "invalid_client", 7000215,
                                "Invalid client secret provided. Ensure the secret being sent in the request is "
                                "the client secret value, not the client secret ID, for a secret added to app "
                                f"'{client_id}'.")
        if form.get("scope") != BC_SCOPE:
            return _entra_error(400, "invalid_scope", 70011,
                                "The provided request must include a 'scope' input parameter. The provided value "
                                f"for the input parameter 'scope' is not valid. The scope {form.get('scope')} is "
                                "not valid.")
        return JSONResponse(self._mint(app))

    def _mint(self, app: AppRegistration) -> dict[str, object]:
        # Faults.token_ttl makes the token die early while expires_in still says 3599: the client must cope
        # with a 401 on a token it believes valid.
        lifetime = self.faults.token_ttl if self.faults.token_ttl is not None else ACCESS_TOKEN_LIFETIME
        value = secrets.token_urlsafe(48)
        self.tokens[value] = AccessToken(app.tenant, app.client_id, self.clock.now() + timedelta(seconds=lifetime))
        self.tokens_issued += 1
        return {"token_type": "Bearer", "expires_in": ACCESS_TOKEN_LIFETIME,
                "ext_expires_in": ACCESS_TOKEN_LIFETIME, "access_token": value}

    # -- checks on API / ODataV4 calls -----------------------------------------------------------------------

    def check_bearer(self, request: Request, tenant: str | None) -> str:
        """Online: a valid, unexpired Bearer token for this tenant from an app enabled in BC."""
        challenge = {"WWW-Authenticate": 'Bearer authorization_uri="https://login.microsoftonline.com/'
                                         f'{tenant or "common"}/oauth2/authorize", '
                                         'resource_id="https://api.businesscentral.dynamics.com"'}
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value:
            # Basic (web service access keys) is no longer accepted by BC online.
            raise errors.invalid_credentials(challenge)
        token = self.tokens.get(value.strip())
        if token is None:
            raise errors.invalid_credentials({**challenge, "WWW-Authenticate": challenge["WWW-Authenticate"]
                                              + ', error="invalid_token"'})
        if token.expires_at <= self.clock.now():
            raise errors.invalid_credentials({"WWW-Authenticate": challenge["WWW-Authenticate"]
                                              + ', error="invalid_token", error_description="The token is expired"'})
        if tenant is not None and token.tenant != tenant.lower():
            raise errors.invalid_credentials(challenge)
        app = self.apps.get((token.tenant, token.client_id))
        if app is None or not app.bc_enabled:
            raise errors.invalid_credentials(challenge)
        return f"app:{token.client_id}"

    def check_on_premises(self, request: Request) -> str:
        """The server instance's credential type decides what is accepted."""
        if self.credential_type == "Windows":
            # http.sys answers with the Windows challenges; a Basic or Bearer client cannot get further.
            raise errors.ODataError(401, "Authentication_InvalidCredentials",
                                    "The server has rejected the client credentials.",
                                    {"WWW-Authenticate": "Negotiate, NTLM"})
        if self.credential_type == "Entra":
            return self.check_bearer(request, None)
        credentials = _basic_credentials(request)
        if credentials is None:
            raise errors.invalid_credentials({"WWW-Authenticate": 'Basic realm=""'})
        user, key = credentials
        expected = next((k for u, k in self.web_service_users.items() if u.lower() == user.lower()), None)
        if expected is None or not secrets.compare_digest(key, expected):
            raise errors.invalid_credentials({"WWW-Authenticate": 'Basic realm=""'})
        return f"user:{user.upper()}"


def _basic_credentials(request: Request) -> tuple[str, str] | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, _, password = base64.b64decode(value.strip()).decode("utf-8").partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    return user, password


def _entra_error(status: int, error: str, code: int, description: str) -> JSONResponse:
    trace, correlation = str(uuid.uuid4()), str(uuid.uuid4())
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
    return JSONResponse({
        "error": error,
        "error_description": f"AADSTS{code}: {description} Trace ID: {trace} Correlation ID: {correlation} "
                             f"Timestamp: {stamp}",
        "error_codes": [code], "timestamp": stamp, "trace_id": trace, "correlation_id": correlation,
        "error_uri": f"https://login.microsoftonline.com/error?code={code}",
    }, status_code=status)
