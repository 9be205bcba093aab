"""A client we did not write gets Entra tokens from the emulators unmodified: Microsoft's MSAL for Python reads the
tenant's OpenID discovery document, finds the token endpoint there and mints a client-credentials token, which
Business Central's API then takes. MSAL insists on an https authority, hence ``sandbox serve --tls``."""

from __future__ import annotations

import ssl
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import msal
import pytest

from mlconnector.sandbox.dynamics import create_app
from mlconnector.sandbox.server import bind, serve, url_of
from mlconnector.sandbox.tls import TlsFiles, self_signed

BC_SCOPE = "https://api.businesscentral.dynamics.com/.default"


@dataclass
class Served:
    url: str
    tls: TlsFiles
    tenant: str
    client_id: str
    secret: str


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    home: Path = tmp_path_factory.mktemp("tls")
    tls = self_signed(home / "sandbox.tls.pem", home / "sandbox.tls.key")
    app = create_app()
    tenant, client_id, secret = str(uuid.uuid4()), str(uuid.uuid4()), "s3cret-" + uuid.uuid4().hex
    app.state.dynamics.register_app(tenant, client_id, secret)
    app.state.dynamics.create_company("CRONUS USA, Inc.", currency_code="USD")
    sock = bind("127.0.0.1", 0)
    server, thread = serve(app, sock, "dynamics-tls", tls)
    with pytest.MonkeyPatch.context() as env:
        # requests (under MSAL) lets these variables override the ``verify`` MSAL is given; hosts that set them
        # to the system bundle would then distrust the sandbox's certificate.
        env.delenv("REQUESTS_CA_BUNDLE", raising=False)
        env.delenv("CURL_CA_BUNDLE", raising=False)
        yield Served(url_of(sock, https=True), tls, tenant, client_id, secret)
    server.should_exit = True
    thread.join(timeout=5)


def test_msal_finds_the_token_endpoint_in_the_discovery_document_and_bc_takes_its_token(served: Served) -> None:
    app = msal.ConfidentialClientApplication(
        served.client_id, client_credential=served.secret, authority=f"{served.url}/{served.tenant}",
        verify=str(served.tls.certificate), instance_discovery=False)
    result = app.acquire_token_for_client(scopes=[BC_SCOPE])
    assert "access_token" in result, result
    assert result["token_type"] == "Bearer"
    companies = httpx.get(f"{served.url}/v2.0/{served.tenant}/production/api/v2.0/companies",
                          headers={"Authorization": f"Bearer {result['access_token']}"},
                          verify=ssl.create_default_context(cafile=served.tls.certificate))
    assert companies.status_code == 200
    assert [c["name"] for c in companies.json()["value"]] == ["CRONUS USA, Inc."]


def test_msal_reports_entras_errors_from_the_emulator(served: Served) -> None:
    wrong = msal.ConfidentialClientApplication(
        served.client_id, client_credential="not-the-secret", authority=f"{served.url}/{served.tenant}",
        verify=str(served.tls.certificate), instance_discovery=False)
    result = wrong.acquire_token_for_client(scopes=[BC_SCOPE])
    assert result["error"] == "invalid_client" and 7000215 in result["error_codes"]
    with pytest.raises(ValueError):  # an unknown tenant has no discovery document
        msal.ConfidentialClientApplication(
            served.client_id, client_credential=served.secret, authority=f"{served.url}/{uuid.uuid4()}",
            verify=str(served.tls.certificate), instance_discovery=False)


def test_the_discovery_document_names_the_emulators_own_endpoints(served: Served) -> None:
    answer = httpx.get(f"{served.url}/{served.tenant}/v2.0/.well-known/openid-configuration",
                       verify=ssl.create_default_context(cafile=served.tls.certificate))
    assert answer.status_code == 200
    document = answer.json()
    assert document["token_endpoint"] == f"{served.url}/{served.tenant}/oauth2/v2.0/token"
    assert document["issuer"] == f"{served.url}/{served.tenant}/v2.0"
    assert "client_secret_post" in document["token_endpoint_auth_methods_supported"]


def test_msal_refuses_an_authority_that_is_not_https(served: Served) -> None:
    with pytest.raises(ValueError, match="https"):
        msal.ConfidentialClientApplication(served.client_id, client_credential=served.secret,
                                           authority=f"http://127.0.0.1:1/{served.tenant}", instance_discovery=False)
