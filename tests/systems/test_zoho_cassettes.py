"""Zoho's documented example responses, replayed with vcrpy, pin the connector's parsing; cassettes hold no secret."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
import vcr

from mlconnector.config import SystemConfig
from mlconnector.errors import AuthError
from mlconnector.secrets import SecretStore
from mlconnector.systems import ConnectorContext
from mlconnector.systems.zoho import ZohoConnector

CASSETTES = Path(__file__).parents[1] / "cassettes" / "zoho"
TOKEN_FIELDS = ("access_token", "refresh_token", "id_token")


def scrub_response(response: dict[str, Any]) -> dict[str, Any]:
    """Token values in JSON bodies become REDACTED (vcrpy runs this on recording and on loading a cassette)."""
    raw = response["body"]["string"]
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    try:
        body = json.loads(text)
    except ValueError:
        return response
    if isinstance(body, dict) and any(field in body for field in TOKEN_FIELDS):
        body = {k: ("REDACTED" if k in TOKEN_FIELDS else v) for k, v in body.items()}
        scrubbed = json.dumps(body)
        response["body"]["string"] = scrubbed.encode() if isinstance(raw, bytes) else scrubbed
    return response


# Re-recording against a real org with record_mode="once" keeps the same filters.
zoho_vcr = vcr.VCR(
    cassette_library_dir=str(CASSETTES), record_mode="none", serializer="yaml",
    filter_headers=[("authorization", "FILTERED")],
    filter_post_data_parameters=[(name, "FILTERED") for name in ("client_secret", "refresh_token", "code")],
    before_record_response=scrub_response,
)


@pytest.fixture
def connector() -> ZohoConnector:
    store = SecretStore()
    store.set("zoho", "client_secret", "not-a-real-secret")
    store.set("zoho", "refresh_token", "1000.not-a-real-refresh-token")
    made = ZohoConnector(SystemConfig("zoho", "zoho", {"client_id": "1000.CLIENT"}), ConnectorContext(secrets=store),
                         sleep=lambda s: None)
    yield made
    made.close()


def sending(connector: ZohoConnector) -> list[httpx.Request]:
    """The API requests the connector sends from now on (the cassette keeps only what was recorded)."""
    sent: list[httpx.Request] = []
    connector.http.client.event_hooks["request"].append(sent.append)
    return sent


def test_ping_parses_org_edition_and_user(connector: ZohoConnector) -> None:
    with zoho_vcr.use_cassette("ping_standard_edition.yaml") as cassette:
        result = connector.ping()
    assert cassette.all_played
    assert result.ok and result.base_url == "https://www.zohoapis.com"
    assert result.details[0] == "org zohoo (production, edition standard)"
    assert result.details[1] == "user Patricia Boyle <p.boyle@zylker.com>"
    assert result.warnings == ("the standard edition has no Sales_Orders, Invoices: flows that need them will fail",)


def test_upsert_update_and_insert(connector: ZohoConnector) -> None:
    with zoho_vcr.use_cassette("upsert_update_and_insert.yaml"):
        results = connector.write("Contacts", [{"Last_Name": "Lead_changed", "Email": "newcrmapi@zoho.com"},
                                               {"Last_Name": "New", "Email": "new@zoho.com"}], "Email")
    assert [(r.action, r.target_id) for r in results] == [("update", "4150868000000376008"),
                                                          ("create", "4150868000003194003")]
    assert results[0].version == datetime(2020, 10, 14, 5, 1, 43, tzinfo=timezone.utc)


def test_upsert_per_record_errors(connector: ZohoConnector) -> None:
    with zoho_vcr.use_cassette("upsert_per_record_errors.yaml"):
        results = connector.write("Contacts", [{"Last_Name": "x"}] * 4, "Email")
    assert [r.action for r in results] == ["fail", "fail", "fail", "create"]
    assert [r.error_class for r in results[:3]] == ["INVALID_DATA", "MANDATORY_NOT_FOUND", "DUPLICATE_DATA"]
    assert results[0].error == "INVALID_DATA: invalid data (Phone)"
    assert results[1].error == "MANDATORY_NOT_FOUND: required field not found (Last_Name at $.data[1].Last_Name)"
    assert results[2].error.endswith("(Unique_1 at $.data[2].Unique_1); duplicate of record 2008662000006256222")


def test_coql_rows_become_utc_records(connector: ZohoConnector) -> None:
    since = datetime(2024, 1, 20, 14, 45, tzinfo=timezone.utc)
    sent = sending(connector)
    with zoho_vcr.use_cassette("coql_modified_since.yaml"):
        rows = list(connector.changes("Contacts", since))
    query = json.loads(sent[0].content)["select_query"]
    assert "where (Modified_Time >= '2024-01-20T14:45:00+00:00') order by Modified_Time asc, id asc" in query
    assert [(r.id, r.modified) for r in rows] == [
        ("4150868000004010001", datetime(2024, 1, 20, 14, 45, tzinfo=timezone.utc)),
        ("4150868000004010002", datetime(2024, 1, 20, 15, 2, 11, tzinfo=timezone.utc))]
    assert rows[1]["Email"] is None and rows[0].system == "zoho" and rows[0].entity == "Contacts"


def test_invalid_client_answered_with_200(connector: ZohoConnector) -> None:
    with zoho_vcr.use_cassette("token_invalid_client.yaml"):
        with pytest.raises(AuthError, match="wrong data centre or client"):
            connector.get("Contacts", "1")


def test_watch_enable_answer_gives_the_channel_expiry(connector: ZohoConnector) -> None:
    requests = sending(connector)
    with zoho_vcr.use_cassette("watch_enable.yaml"):
        channel = connector.subscribe("Deals", "https://example.test/hooks/zoho")
    sent = json.loads(requests[0].content)["watch"][0]
    assert sent["events"] == ["Deals.all"] and sent["notify_url"] == "https://example.test/hooks/zoho"
    assert len(sent["token"]) <= 50
    assert channel.expires == datetime(2023, 8, 3, 3, 59, 50, tzinfo=timezone.utc)


# -- no cassette holds a token or secret --------------------------------------------------------------------

LEAKS = [
    re.compile(r"1000\.[0-9a-f]{16,}"),                          # Zoho access/refresh token shape
    re.compile(r"Zoho-oauthtoken\s+(?!FILTERED)\S+"),
    re.compile(r"(client_secret|refresh_token|code)=(?!FILTERED)[^&\s]+"),
    re.compile(r'"(access_token|refresh_token)":\s*"(?!REDACTED)[^"]*"'),
]


def test_no_cassette_holds_a_token_or_secret() -> None:
    files = sorted(CASSETTES.glob("*.yaml"))
    assert len(files) >= 5
    for path in files:
        text = path.read_text()
        for pattern in LEAKS:
            assert not pattern.search(text), f"{path.name}: {pattern.pattern}"
        for line in text.splitlines():
            if line.strip().lower().startswith("authorization"):
                following = text.split(line, 1)[1].splitlines()[1].strip()
                assert following == "- FILTERED", path.name


def test_recording_filters_scrub_tokens() -> None:
    recorded = scrub_response({"body": {"string": b'{"access_token": "1000.abcdef0123456789abcdef", '
                                                  b'"refresh_token": "1000.fedcba9876543210fedcba", '
                                                  b'"api_domain": "https://www.zohoapis.com"}'}})
    assert b"1000." not in recorded["body"]["string"] and b"zohoapis" in recorded["body"]["string"]
    assert ("authorization", "FILTERED") in zoho_vcr.filter_headers
