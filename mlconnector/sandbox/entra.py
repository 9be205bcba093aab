"""Microsoft Entra ID's OpenID Connect discovery document, served next to the emulators' token endpoint.

``GET /{tenant}/v2.0/.well-known/openid-configuration`` (and the v1 ``/{tenant}/.well-known/openid-configuration``)
as login.microsoftonline.com answers it
(https://learn.microsoft.com/en-us/entra/identity-platform/v2-protocols-oidc#find-your-apps-openid-configuration-document-uri):
the endpoints, issuer and supported values. Clients that read it first (MSAL does, for any authority) find the
emulator's own token endpoint there. Endpoints are given on the host and scheme the request came to, so a client
reaching the emulator over https (``sandbox serve --tls``) is sent on over https. An unknown tenant is answered 400
with Entra's error JSON (AADSTS90002), as the real endpoint does.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone

from starlette.requests import Request
from starlette.responses import Response

from mlconnector.sandbox.common import JSONResponse


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def discovery_document(base: str, tenant: str, version: str = "v2.0") -> dict[str, object]:
    v2 = version == "v2.0"
    suffix = "/v2.0" if v2 else ""
    issuer = f"{base}/{tenant}/v2.0" if v2 else f"{base.replace('login.', 'sts.')}/{tenant}/"
    return {
        "token_endpoint": f"{base}/{tenant}/oauth2{suffix}/token",
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
        "jwks_uri": f"{base}/{tenant}/discovery{suffix}/keys",
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "issuer": issuer,
        "request_uri_parameter_supported": False,
        "userinfo_endpoint": "https://graph.microsoft.com/oidc/userinfo",
        "authorization_endpoint": f"{base}/{tenant}/oauth2{suffix}/authorize",
        "device_authorization_endpoint": f"{base}/{tenant}/oauth2{suffix}/devicecode",
        "http_logout_supported": True,
        "frontchannel_logout_supported": True,
        "end_session_endpoint": f"{base}/{tenant}/oauth2{suffix}/logout",
        "claims_supported": ["sub", "iss", "cloud_instance_name", "cloud_instance_host_name", "cloud_graph_host_name",
                             "msgraph_host", "aud", "exp", "iat", "auth_time", "acr", "nonce", "preferred_username",
                             "name", "tid", "ver", "at_hash", "c_hash", "email"],
        "kerberos_endpoint": f"{base}/{tenant}/kerberos",
        "tenant_region_scope": "EU",
        "cloud_instance_name": "microsoftonline.com",
        "cloud_graph_host_name": "graph.windows.net",
        "msgraph_host": "graph.microsoft.com",
        "rbac_url": "https://pas.windows.net",
    }


def _unknown_tenant(tenant: str) -> JSONResponse:
    trace, correlation = str(uuid.uuid4()), str(uuid.uuid4())
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
    return JSONResponse({
        "error": "invalid_tenant",
        "error_description": f"AADSTS90002: Tenant '{tenant}' not found. Check to make sure you have the correct "
                             f"tenant ID and are signing into the correct cloud. Trace ID: {trace} Correlation ID: "
                             f"{correlation} Timestamp: {stamp}",
        "error_codes": [90002], "timestamp": stamp, "trace_id": trace, "correlation_id": correlation,
        "error_uri": "https://login.microsoftonline.com/error?code=90002",
    }, status_code=400)


def openid_configuration(known_tenant: Callable[[str], bool],
                         version: str = "v2.0") -> Callable[[Request], Awaitable[Response]]:
    """The discovery endpoint for the tenants ``known_tenant`` accepts."""
    async def endpoint(request: Request) -> Response:
        tenant = request.path_params["tenant"]
        if not known_tenant(tenant):
            return _unknown_tenant(tenant)
        return JSONResponse(discovery_document(_base(request), tenant, version))
    return endpoint
