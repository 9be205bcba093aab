"""The GP Web Services emulator as a client meets it: a Windows challenge a wrong password cannot pass, a WSDL
zeep can read, ModifiedDate criteria, faults with a log id, the policy CreateSalesOrder needs, an unmapped
account, and a server that refuses calls beyond its slots."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
import zeep

from mlconnector.sandbox.common import InProcessTransport
from mlconnector.sandbox.gp import SERVICE_PATH, create_app
from mlconnector.systems.dynamics import NegotiateAuth

URL = f"http://gp.sandbox{SERVICE_PATH}"
ACCOUNT, PASSWORD = "CONTOSO\\svc-gp", "Right-Pass-1"


@pytest.fixture
def served():
    app = create_app()
    gp = app.state.gp
    gp.add_user(ACCOUNT, PASSWORD)
    gp.add_user("CONTOSO\\intern", "Intern-Pass-2", gp_user=None)
    gp.seed_demo()
    transport = InProcessTransport(app)
    yield gp, transport
    transport.close()
    gp.auth.close()


def soap_client(transport: httpx.BaseTransport, user: str = ACCOUNT, password: str = PASSWORD) -> zeep.Client:
    http = httpx.Client(transport=transport, auth=NegotiateAuth(user, password))

    class Transport(zeep.Transport):
        def post(self, address, message, headers):
            return http.post(address, content=message, headers=headers)

        def _load_remote_data(self, url):
            response = http.get(url)
            response.raise_for_status()
            return response.content

    return zeep.Client(f"{URL}?wsdl", transport=Transport())


def context(client: zeep.Client, company: int = -1) -> dict:
    return {"OrganizationKey": client.get_type("ns0:CompanyKey")(Id=company)}


def test_without_credentials_the_server_challenges_for_negotiate_and_ntlm(served):
    gp, transport = served
    response = httpx.Client(transport=transport).get(f"{URL}?wsdl")
    assert response.status_code == 401
    assert response.headers.get_list("www-authenticate") == ["Negotiate", "NTLM"]


@pytest.mark.parametrize("scheme", ["Negotiate", "NTLM"])
def test_the_handshake_passes_with_the_password_and_fails_without_it(served, scheme):
    gp, transport = served
    gp.auth.schemes = (scheme,)
    good = httpx.Client(transport=transport, auth=NegotiateAuth(ACCOUNT, PASSWORD)).get(f"{URL}?wsdl")
    bad = httpx.Client(transport=transport, auth=NegotiateAuth(ACCOUNT, "wrong")).get(f"{URL}?wsdl")
    assert good.status_code == 200 and b"GetCustomerList" in good.content
    assert bad.status_code == 401


def test_zeep_reads_the_wsdl_and_modified_date_criteria_select_the_changed_customers(served):
    gp, transport = served
    client = soap_client(transport)
    everyone = client.service.GetCustomerList(criteria={}, context=context(client))
    assert [c.Key.Id for c in everyone] == ["AARONFIT0001", "ADAMPARK0001", "ALTONMAN0001"]
    gp.clock.advance(days=3)
    gp.modify("customers", "ADAMPARK0001", Name="Adam Park Resort & Spa")
    since = gp.stamp()
    changed = client.service.GetCustomerList(criteria={"ModifiedDate": {"From": since}}, context=context(client))
    assert [c.Key.Id for c in changed] == ["ADAMPARK0001"]
    full = client.service.GetCustomerByKey(key={"Id": "AARONFIT0001"}, context=context(client))
    assert full.CreditLimit.Amount.Value == 15000 and full.ShipToAddressKey.Id == "WAREHOUSE"


def test_a_date_without_time_is_a_validation_fault_whose_log_id_explains_it(served):
    gp, transport = served
    client = soap_client(transport)
    with pytest.raises(zeep.exceptions.Fault) as caught:
        client.service.GetCustomerList(criteria={"ModifiedDate": {"From": "2026-01-01"}}, context=context(client))
    assert caught.value.code == "soap:Client"
    detail = {node.tag.rsplit("}", 1)[-1]: node.text for node in caught.value.detail}
    assert detail["ExceptionType"] == "ValidationException"
    result = client.service.GetLoggedValidationResultByKey(logId=detail["LogId"], context=context(client))
    assert "date and a time" in result.Errors.ValidationError[0].Message


def test_create_sales_order_needs_the_policy_and_existing_customer_and_items(served):
    gp, transport = served
    client = soap_client(transport)
    order = {"Key": {"Id": "Z1001"}, "DocumentTypeKey": {"Type": "Order", "Id": "STDORD"},
             "CustomerKey": {"Id": "AARONFIT0001"}, "BatchKey": {"Id": "WEB"},
             "Lines": {"SalesOrderLine": [{"ItemKey": {"Id": "100XLG"}, "Quantity": {"Value": 2}}]}}
    with pytest.raises(zeep.exceptions.Fault):
        client.service.CreateSalesOrder(salesOrder=order, context=context(client), policy={"Key": {"Id": "made-up"}})
    policy = client.service.GetPolicyByOperation(operation="CreateSalesOrder", context=context(client))
    client.service.CreateSalesOrder(salesOrder=order, context=context(client), policy=policy)
    [stored] = gp.sales_orders()
    assert stored["Key"]["Id"] == "Z1001" and stored["TotalAmount"]["Value"] == pytest.approx(159.98)
    with pytest.raises(zeep.exceptions.Fault):  # the same number twice
        client.service.CreateSalesOrder(salesOrder=order, context=context(client), policy=policy)


def test_an_account_not_mapped_to_a_gp_user_is_denied_after_authenticating(served):
    gp, transport = served
    client = soap_client(transport, "CONTOSO\\intern", "Intern-Pass-2")
    with pytest.raises(zeep.exceptions.Fault) as caught:
        client.service.GetCustomerList(criteria={}, context=context(client))
    assert "Access denied" in caught.value.message


def test_calls_beyond_the_servers_slots_are_refused_with_503():
    app = create_app(delay=1.0, max_concurrent=1)
    gp = app.state.gp
    gp.add_user(ACCOUNT, PASSWORD)
    gp.seed_demo()
    transport = InProcessTransport(app)
    try:
        client = soap_client(transport)
        errors: list[BaseException] = []

        def call() -> None:
            try:
                client.service.GetCustomerList(criteria={}, context=context(client))
            except Exception as exc:  # noqa: BLE001 - collected
                errors.append(exc)

        threads = [threading.Thread(target=call) for _ in range(3)]
        threads[0].start()
        # The others are sent once the first holds the only slot (for the second of its delay).
        deadline = time.monotonic() + 10
        while gp.in_flight < 1:
            assert time.monotonic() < deadline, "the first call never reached the server"
            time.sleep(0.005)
        for thread in threads[1:]:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert gp.rejected == 2 and gp.max_in_flight == 1
        assert len(errors) == gp.rejected  # the refused calls failed; zeep cannot read the 503 page
    finally:
        transport.close()
        gp.auth.close()


def test_served_over_a_socket_a_connection_stays_authenticated_after_its_handshake_as_with_iis(monkeypatch):
    """IIS keeps Windows authentication for the connection: the next request on it passes without a handshake;
    a new connection, or one idle past IIS's connection timeout, must handshake again."""
    import socket

    from mlconnector.sandbox import server as sandbox_server
    from mlconnector.sandbox.gp import auth as gp_auth

    app = create_app()
    gp = app.state.gp
    gp.add_user(ACCOUNT, PASSWORD)
    gp.auth.per_connection = True
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    url = f"{sandbox_server.url_of(sock)}{SERVICE_PATH}?wsdl"
    server, thread = sandbox_server.serve(app, sock, "gp-test")
    statuses: list[int] = []
    hooks = {"response": [lambda response: statuses.append(response.status_code)]}
    try:
        with httpx.Client(auth=NegotiateAuth(ACCOUNT, PASSWORD), event_hooks=hooks) as client:
            assert client.get(url).status_code == 200
            assert statuses == [401, 401, 200] and gp.auth.handshakes == 1
            statuses.clear()
            assert client.get(url).status_code == 200 and client.get(url).status_code == 200
            assert statuses == [200, 200] and gp.auth.handshakes == 1  # the same connection, no handshake
            statuses.clear()
            sba = f"{sandbox_server.url_of(sock)}/GPService/Tenants(DefaultTenant)/help"
            assert client.get(sba).status_code == 200  # SBA authenticates every request on its own
            assert statuses == [401, 401, 200] and gp.auth.handshakes == 2
            statuses.clear()
            monkeypatch.setattr(gp_auth, "IDLE_SECONDS", 0.2)  # IIS's 120 s, shortened
            time.sleep(0.3)
            assert client.get(url).status_code == 200  # idle too long: authenticated anew
            assert statuses == [401, 401, 200] and gp.auth.handshakes == 3
        with httpx.Client() as other:  # another connection, no credentials: still refused
            assert other.get(url).status_code == 401
        with httpx.Client(auth=NegotiateAuth(ACCOUNT, "wrong")) as wrong:
            assert wrong.get(url).status_code == 401
    finally:
        server.should_exit = True
        thread.join(5)
        gp.auth.close()
