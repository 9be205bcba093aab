"""The Zuora sandbox answers as Zuora documents: form-encoded tokens that expire, business errors inside a 200,
Idempotency-Key replay, Object Query cursor paging, zuora-version shapes and callouts with a Basic challenge."""

from __future__ import annotations

import base64
import email.utils
from datetime import datetime

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mlconnector.sandbox.common import InProcessTransport
from mlconnector.sandbox.zuora import create_app


class Receiver:
    """A callout endpoint that wants Basic credentials and remembers what it got."""

    def __init__(self) -> None:
        self.bodies: list[tuple[str, bytes]] = []
        expected = "Basic " + base64.b64encode(b"zuora:pw").decode()

        async def hook(request: Request) -> Response:
            if request.headers.get("authorization") != expected:
                return Response(status_code=401, headers={"WWW-Authenticate": 'Basic realm="test"'})
            self.bodies.append((request.headers["zuora-request-id"], await request.body()))
            return Response(status_code=200)
        self.app = Starlette(routes=[Route("/hook", hook, methods=["POST"])])


@pytest.fixture
def tenant():
    receiver = Receiver()
    app = create_app(notify_transport=httpx.ASGITransport(app=receiver.app))
    zuora = app.state.zuora
    client = zuora.register_client()
    transport = InProcessTransport(app)
    http = httpx.Client(transport=transport, base_url="https://rest.test.zuora.com")
    token = http.post("/oauth/token", data={"client_id": client.client_id, "client_secret": client.client_secret,
                                            "grant_type": "client_credentials"}).json()
    http.headers["Authorization"] = f"Bearer {token['access_token']}"
    yield zuora, http, client, receiver
    http.close()
    transport.close()


ACCOUNT = {"name": "Adatum", "currency": "USD", "billCycleDay": 1,
           "billToContact": {"firstName": "Amy", "lastName": "Lawrence"}}


def test_tokens_are_form_encoded_last_an_hour_and_then_answer_401(tenant):
    zuora, http, client, _ = tenant
    refused = http.post("/oauth/token", json={"client_id": client.client_id, "client_secret": client.client_secret,
                                              "grant_type": "client_credentials"})
    assert refused.status_code == 400
    wrong = http.post("/oauth/token", data={"client_id": client.client_id, "client_secret": "nope",
                                            "grant_type": "client_credentials"})
    assert wrong.status_code == 401 and "X-RateLimit-Remaining-minute" in wrong.headers
    assert http.get("/object-query/accounts").status_code == 200
    zuora.advance(minutes=61)
    expired = http.get("/object-query/accounts")
    assert expired.status_code == 401 and expired.json() == {"message": "Authentication error"}


def test_business_errors_are_http_200_with_success_false_and_a_categorised_code(tenant):
    _, http, _, _ = tenant
    http.post("/v1/accounts", json=ACCOUNT)
    answer = http.post("/v1/orders", json={"orderDate": "2025-01-01", "existingAccountNumber": "A00000001",
                                           "subscriptions": [{"orderActions": [{"type": "CreateSubscription",
                                                                                "createSubscription": {"terms": {
                                                                                    "initialTerm": {"termType": "X"}}}}]}]})
    assert answer.status_code == 200
    body = answer.json()
    assert body["success"] is False and body["processId"]
    assert body["reasons"][0]["code"] == 53100320 and "termType" in body["reasons"][0]["message"]


def test_an_idempotency_key_replays_the_first_answer_and_refuses_another_request(tenant):
    zuora, http, client, _ = tenant
    first = http.post("/v1/accounts", json=ACCOUNT, headers={"Idempotency-Key": "k-1"})
    again = http.post("/v1/accounts", json=ACCOUNT, headers={"Idempotency-Key": "k-1"})
    assert first.json() == again.json() and len(zuora.records("accounts")) == 1
    other_body = http.post("/v1/accounts", json={**ACCOUNT, "name": "Other"}, headers={"Idempotency-Key": "k-1"})
    assert other_body.status_code == 422
    other_path = http.post("/v1/orders", json={}, headers={"Idempotency-Key": "k-1"})
    assert other_path.status_code == 422
    failed = http.post("/v1/accounts", json={"name": "x"}, headers={"Idempotency-Key": "k-2"})
    assert http.post("/v1/accounts", json={"name": "x"}, headers={"Idempotency-Key": "k-2"}).json()["processId"] == \
        failed.json()["processId"]  # failures are remembered too
    zuora.advance(hours=25)
    http.headers["Authorization"] = f"Bearer {zuora.mint(client).token}"
    assert http.post("/v1/accounts", json=ACCOUNT, headers={"Idempotency-Key": "k-1"}).json()["accountNumber"] == \
        "A00000002"


def test_object_query_pages_with_a_cursor_and_filters_on_updated_date(tenant):
    zuora, http, _, _ = tenant
    for n in range(5):
        zuora.seed_account(f"Customer {n}")
    zuora.advance(seconds=5)
    late = zuora.seed_account("Late one")
    seen, cursor = [], None
    while True:
        params = {"pageSize": 2, "sort[]": "updateddate.ASC", **({"cursor": cursor} if cursor else {})}
        page = http.get("/object-query/accounts", params=params).json()
        seen += [row["name"] for row in page["data"]]
        cursor = page.get("nextPage")
        if not cursor:
            break
    assert len(seen) == 6 and seen[-1] == "Late one"
    recent = http.get("/object-query/accounts", params={"filter[]": f"updateddate.GE:{late['updatedDate']}"}).json()
    assert [row["name"] for row in recent["data"]] == ["Late one"]
    assert http.get("/object-query/accounts", params={"pageSize": 100}).status_code == 400


def test_the_zuora_version_header_changes_the_shape_of_product_rate_plans(tenant):
    zuora, http, _, _ = tenant
    zuora.seed_product("Desk", "1896-S", 100.0)
    old = http.get("/v1/catalog/products/1896-S").json()
    new = http.get("/v1/catalog/products/1896-S", headers={"zuora-version": "230.0"}).json()
    assert isinstance(old["productRatePlans"], list) and old["productRatePlans"][0]["productRatePlanCharges"]
    assert new["productRatePlans"].endswith("/productRatePlan")
    assert http.get(new["productRatePlans"]).json()["productRatePlans"][0]["name"] == "Monthly"


def test_callouts_wait_for_the_basic_challenge_and_external_payments_send_none(tenant):
    zuora, http, _, receiver = tenant
    zuora.configure_callout("InvoicePosted", "http://receiver.test/hook", auth="basic", username="zuora",
                            password="pw")
    zuora.configure_callout("PaymentProcessed", "http://receiver.test/hook", format="json", auth="basic",
                            username="zuora", password="pw")
    account = zuora.seed_account("Adatum")
    product = zuora.seed_product("Desk", "1896-S", 100.0)
    [plan] = zuora.data.plans_of(product["id"])
    http.post("/v1/orders", json={"orderDate": "2025-01-01", "existingAccountId": account["id"], "subscriptions": [
        {"orderActions": [{"type": "CreateSubscription", "createSubscription": {
            "terms": {"initialTerm": {"termType": "EVERGREEN"}},
            "subscribeToRatePlans": [{"productRatePlanId": plan["id"]}]}}]}]})
    [invoice] = zuora.bill_run()
    zuora.pay(invoice["id"], 40.0, kind="External")
    zuora.pay(invoice["id"], 60.0)
    assert zuora.wait_for_callouts()
    assert [d.attempts for d in zuora.deliveries] == [[401, 200], [401, 200]]
    # The two callouts are delivered concurrently: tell them apart by their bodies, not their order.
    [(first_id, xml)] = [(i, b) for i, b in receiver.bodies if b.startswith(b"<?xml")]
    [json_body] = [b for _, b in receiver.bodies if not b.startswith(b"<?xml")]
    assert f'<parameter name="InvoiceId">{invoice["id"]}</parameter>'.encode() in xml
    assert b'"PaymentId"' in json_body and len(first_id) == 32
    assert zuora.data.tables["invoices"][invoice["id"]]["balance"] == 0.0


def test_every_answer_carries_a_date_from_the_tenants_clock(tenant):
    zuora, http, client, _ = tenant
    zuora.advance(hours=-3)  # the tenant's clock, not this host's, is the one Zuora stamps records with
    before = zuora.clock.now().replace(microsecond=0)
    created = http.post("/v1/accounts", json=ACCOUNT)
    answers = [created, http.get("/object-query/accounts"), http.get("/v1/accounts/nope"),
               http.get("/no/such/path"), http.get("/object-query/accounts", headers={"Authorization": "Bearer x"}),
               http.post("/oauth/token", data={"client_id": client.client_id, "client_secret": "wrong",
                                               "grant_type": "client_credentials"})]
    after = zuora.clock.now()
    assert [a.status_code for a in answers] == [200, 200, 200, 404, 401, 401]
    for answer in answers:
        [date] = answer.headers.get_list("date")
        sent = email.utils.parsedate_to_datetime(date)
        assert date.endswith(" GMT") and before <= sent <= after, date
    [account] = zuora.records("accounts")
    assert before <= datetime.fromisoformat(account["updatedDate"].replace("Z", "+00:00")) <= after


def test_a_custom_field_defined_on_accounts_is_on_every_account_null_until_set(tenant):
    zuora, http, _, _ = tenant
    before = zuora.seed_account("Before")
    zuora.add_custom_field("accounts", "Region__c")  # Settings > Billing > Manage Custom Fields
    after = zuora.seed_account("After", Region__c="EMEA")
    page = http.get("/object-query/accounts", params={"includeNullFields": "true"}).json()
    rows = {r["name"]: r for r in page["data"]}
    assert rows["Before"]["Region__c"] is None and rows["After"]["Region__c"] == "EMEA"
    plain = http.get(f"/object-query/accounts/{before['id']}").json()
    assert "Region__c" not in plain  # Object Query leaves out null fields unless asked for them
    assert http.get(f"/v1/accounts/{after['id']}").json()["basicInfo"]["Region__c"] == "EMEA"
    with pytest.raises(ValueError):
        zuora.add_custom_field("accounts", "Region")
