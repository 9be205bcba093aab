"""Business Central's JSON $batch on API v2.0: inner requests run in order with the batch's credentials and are
answered together; with ``Isolation: snapshot`` a failing inner request undoes the batch (use-odata-batch)."""

from __future__ import annotations

import httpx

from mlconnector.sandbox.common import InProcessTransport
from mlconnector.sandbox.dynamics import create_app
from tests.sandbox.test_erp_metadata import BC_SCOPE, CLIENT, SECRET, TENANT

BATCH = f"/v2.0/{TENANT}/production/api/v2.0/$batch"


def bc() -> tuple[httpx.Client, str]:
    app = create_app()
    app.state.dynamics.register_app(TENANT, CLIENT, SECRET)
    company_id = app.state.dynamics.create_company("CRONUS USA, Inc.")
    client = httpx.Client(transport=InProcessTransport(app), base_url="https://api.businesscentral.dynamics.com")
    token = client.post(f"/{TENANT}/oauth2/v2.0/token", data={"grant_type": "client_credentials",
                                                              "client_id": CLIENT, "client_secret": SECRET,
                                                              "scope": BC_SCOPE}).json()["access_token"]
    client.headers["Authorization"] = f"Bearer {token}"
    return client, company_id


def customers(client: httpx.Client, company_id: str) -> list[str]:
    answer = client.get(f"/v2.0/{TENANT}/production/api/v2.0/companies({company_id})/customers")
    return [c["displayName"] for c in answer.json()["value"]]


def test_a_json_batch_answers_each_request_in_order() -> None:
    client, cid = bc()
    try:
        answer = client.post(BATCH, json={"requests": [
            {"id": "1", "method": "POST", "url": f"companies({cid})/customers",
             "headers": {"Content-Type": "application/json"}, "body": {"displayName": "Adatum"}},
            {"id": "2", "method": "GET", "url": f"companies({cid})/customers?$select=displayName"},
            {"id": "3", "method": "PATCH", "url": f"companies({cid})/customers(00000000-0000-0000-0000-00000000abcd)",
             "headers": {"If-Match": "*"}, "body": {"displayName": "Nobody"}}]})
        assert answer.status_code == 200
        responses = answer.json()["responses"]
        assert [(r["id"], r["status"]) for r in responses] == [("1", 201), ("2", 200), ("3", 404)]
        assert responses[0]["body"]["displayName"] == "Adatum" and responses[0]["headers"]["etag"]
        assert [c["displayName"] for c in responses[1]["body"]["value"]] == ["Adatum"]
        assert responses[2]["body"]["error"]["code"]
        assert customers(client, cid) == ["Adatum"]
    finally:
        client.close()


def test_isolation_snapshot_undoes_the_batch_when_a_request_fails() -> None:
    client, cid = bc()
    try:
        answer = client.post(BATCH, headers={"Isolation": "snapshot"}, json={"requests": [
            {"id": "a", "method": "POST", "url": f"companies({cid})/customers", "body": {"displayName": "Fabrikam"}},
            {"id": "b", "method": "POST", "url": f"companies({cid})/customers", "body": {"noSuchField": 1}}]})
        assert answer.status_code == 200
        assert [r["status"] for r in answer.json()["responses"]] == [201, 400]
        assert customers(client, cid) == []
        unauthenticated = httpx.Client(transport=client._transport, base_url=str(client.base_url))
        assert unauthenticated.post(BATCH, json={"requests": []}).status_code == 401
    finally:
        client.close()
