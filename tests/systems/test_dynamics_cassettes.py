"""Microsoft's documented example responses, replayed with vcrpy, pin the Dynamics connector's parsing; the
cassettes hold no secret (the client secret and tokens are filtered on recording and checked here)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import vcr

from mlconnector.config import SystemConfig
from mlconnector.errors import AuthError
from mlconnector.secrets import SecretStore
from mlconnector.systems import ConnectorContext
from mlconnector.systems.dynamics import DynamicsConnector

CASSETTES = Path(__file__).parents[1] / "cassettes" / "dynamics"
TOKEN_FIELDS = ("access_token", "refresh_token", "id_token")
SECRET = "not-a-real-client-secret"


def scrub_response(response: dict[str, Any]) -> dict[str, Any]:
    """Token values in JSON bodies become REDACTED (on recording and on loading a cassette)."""
    raw = response["body"]["string"]
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    try:
        body = json.loads(text)
    except ValueError:
        return response
    if isinstance(body, dict) and any(field in body for field in TOKEN_FIELDS):
        scrubbed = json.dumps({k: ("REDACTED" if k in TOKEN_FIELDS else v) for k, v in body.items()})
        response["body"]["string"] = scrubbed.encode() if isinstance(raw, bytes) else scrubbed
    return response


# Re-recording against a real environment with record_mode="once" keeps the same filters.
dynamics_vcr = vcr.VCR(
    cassette_library_dir=str(CASSETTES), record_mode="none", serializer="yaml",
    filter_headers=[("authorization", "FILTERED")],
    filter_post_data_parameters=[("client_secret", "FILTERED")],
    before_record_response=scrub_response,
    match_on=["method", "scheme", "host", "port", "path", "query"],
)


@pytest.fixture
def connector() -> Iterator[DynamicsConnector]:
    store = SecretStore()
    store.set("bc", "client_secret", SECRET)
    made = DynamicsConnector(SystemConfig("bc", "bc", {"tenant": "contoso.onmicrosoft.com", "environment": "production",
                                                       "client_id": "0b7c8f0e-1111-2222-3333-444455556666",
                                                       "company": "CRONUS USA, Inc."}),
                             ConnectorContext(secrets=store), sleep=lambda s: None)
    yield made
    made.close()


def test_ping_against_the_documented_cloud_responses(connector: DynamicsConnector) -> None:
    with dynamics_vcr.use_cassette("ping_cloud.yaml") as cassette:
        result = connector.ping()
    assert cassette.all_played
    assert result.ok, result.error
    assert result.base_url == "https://api.businesscentral.dynamics.com/v2.0/contoso.onmicrosoft.com/production/api/v2.0"
    assert "company 'CRONUS USA, Inc.' (a0a0a0a0-bbbb-cccc-dddd-e1e1e1e1e1e1)" in result.details


def test_an_entra_error_becomes_an_auth_error_naming_the_fix(connector: DynamicsConnector) -> None:
    with dynamics_vcr.use_cassette("token_invalid_scope.yaml"):
        with pytest.raises(AuthError, match="scope refused") as caught:
            connector.auth.token()  # type: ignore[attr-defined]
    assert SECRET not in str(caught.value)


def test_posted_invoice_with_lines(connector: DynamicsConnector) -> None:
    with dynamics_vcr.use_cassette("posted_invoice_get.yaml"):
        invoice = connector.get("postedSalesInvoices", "9e0f5c9c-44e3-ea11-bb43-000d3a2feca1")
    assert invoice is not None and invoice["number"] == "PS-INV103001" and invoice["status"] == "Paid"
    assert invoice.modified == datetime(2020, 8, 21, 0, 25, 58, 337000, tzinfo=timezone.utc)
    [line] = invoice["salesInvoiceLines"]
    assert line["lineObjectNumber"] == "1928-S" and line["quantity"] == 3 and line["amountExcludingTax"] == 164.7
    assert "@odata.etag" not in line and "@odata.etag" not in invoice.data


def test_changes_follow_the_next_link_verbatim(connector: DynamicsConnector) -> None:
    with dynamics_vcr.use_cassette("customers_changes_nextlink.yaml") as cassette:
        [customer] = list(connector.changes("customers", None))
    assert cassette.all_played
    assert customer.id == "f2a5738a-44e3-ea11-bb43-000d3a2feca1" and customer["displayName"] == "Adatum Corporation"
    assert customer["blocked"] == " " and customer.modified == datetime(2020, 8, 21, 7, 38, 44, 293000, tzinfo=timezone.utc)


def test_no_cassette_holds_a_secret_or_token() -> None:
    for path in CASSETTES.glob("*.yaml"):
        text = path.read_text(encoding="utf-8")
        assert SECRET not in text
        assert "client_secret=FILTERED" in text or "client_secret" not in text
        for line in text.splitlines():
            if "Bearer " in line or '"access_token"' in line:
                assert "REDACTED" in line or "Bearer REDACTED" in line, (path.name, line)
