"""The GP connector against the GP sandbox: date windows on ModifiedDate, the chart of accounts compared with
the last read, sales orders created once with their policy, ping's explanations, and the limits it keeps
(concurrent requests, the pause between calls)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from datetime import timedelta

import pytest

from mlconnector.config import SystemConfig
from mlconnector.errors import AuthError, ConfigError
from mlconnector.sandbox.common import HostRouter, InProcessTransport
from mlconnector.sandbox.gp import create_app
from mlconnector.secrets import SecretStore
from mlconnector.systems import ConnectorContext, make_connector
from mlconnector.systems.gp import GPConnector

ACCOUNT, PASSWORD = "CONTOSO\\svc-mlconnector", "Gp-Conn-Pass-4R5t"
URL = "http://gp.sandbox:48620/DynamicsGPWebServices/DynamicsGPService.asmx"


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("MLCONNECTOR_GP_PASSWORD", PASSWORD)
    made: list = []

    def build(app_options: dict | None = None, *, sleep: Callable[[float], None] = lambda s: None,
              sandbox_clock: bool = False, **settings):
        app = create_app(**(app_options or {}))
        gp = app.state.gp
        gp.add_user(ACCOUNT, PASSWORD)
        gp.add_user("CONTOSO\\newhire", PASSWORD, gp_user=None)
        gp.seed_demo()
        transport = HostRouter({"gp.sandbox": InProcessTransport(app)})
        config = {"base_url": URL, "company_id": -1, "user": ACCOUNT, "delay_seconds": 0, **settings}
        connector = GPConnector(SystemConfig("gp", "gp", config),
                                ConnectorContext(secrets=SecretStore(), transport=transport, state_dir=tmp_path),
                                sleep=sleep, **({"now": gp.clock.now} if sandbox_clock else {}))
        made.append((connector, transport, gp))
        return connector, gp

    yield build
    for connector, transport, gp in made:
        connector.close()
        transport.close()
        gp.auth.close()


def test_the_gp_kind_is_registered(env, tmp_path):
    system = SystemConfig("gp", "gp", {"base_url": URL, "company_id": -1, "user": ACCOUNT})
    connector = make_connector(system, ConnectorContext(secrets=SecretStore(), state_dir=tmp_path))
    assert isinstance(connector, GPConnector)
    connector.close()


def test_customers_come_with_addresses_credit_limit_and_balance(env):
    connector, gp = env()
    [aaron, adam, alton] = list(connector.changes("customers", None))
    assert aaron.id == "AARONFIT0001" and aaron["creditLimit"] == 15000 and aaron["balance"] == pytest.approx(2318.4)
    assert aaron["billingAddress"]["city"] == "Redmond" and aaron["shippingAddress"]["city"] == "Tacoma"
    assert aaron.modified is not None and aaron.modified.tzinfo is not None
    # the field list configured mappings are checked against is what records carry (GP needs no call for it)
    assert set(aaron.data) == connector.field_names("customers")


def test_a_later_read_returns_only_what_changed_since(env):
    connector, gp = env(sandbox_clock=True)
    gp.clock.advance(days=2)  # GP keeps the day of a change: a read on a later day has them behind it
    first_until = gp.clock.now()
    assert len(list(connector.changes("customers", None, first_until))) == 3
    gp.clock.advance(days=2)
    gp.modify("customers", "ALTONMAN0001", Name="Alton Manufacturing Ltd")
    changed = list(connector.changes("customers", first_until, gp.clock.now()))
    assert [c.id for c in changed] == ["ALTONMAN0001"] and changed[0]["name"] == "Alton Manufacturing Ltd"
    # The criteria carried both date and time, in windows: the sandbox refuses anything else.
    assert all(call.status == 200 for call in gp.calls)


def test_full_date_times_are_used_as_they_come(env):
    connector, gp = env({"modified_precision": "datetime"}, modified_precision="datetime")
    start = gp.clock.now()
    gp.clock.advance(minutes=5)
    gp.modify("vendors", "ACETRAVE0001", Name="A Travel Company Inc")
    [vendor] = list(connector.changes("vendors", start, gp.clock.now() + timedelta(seconds=1)))
    assert vendor.id == "ACETRAVE0001" and vendor.modified == gp.company().vendors["ACETRAVE0001"]["ModifiedDate"]


def test_first_loads_over_years_of_history_take_few_calls(env):
    connector, gp = env(window_days=7)
    list(connector.changes("customers", None))
    assert gp.counts["GetCustomerList"] <= 8


def test_gl_accounts_are_compared_with_the_last_read(env, tmp_path):
    connector, gp = env()
    t1 = gp.clock.now()
    first = list(connector.changes("glAccounts", None, t1))
    assert [a.id for a in first] == ["000-1100-00", "000-1200-00", "000-2100-00", "000-4100-00", "000-4110-00",
                                     "000-5100-00"]  # Posting only
    t2 = t1 + timedelta(hours=1)
    assert list(connector.changes("glAccounts", t1, t2)) == []
    gp.modify("gl_accounts", "000-4110-00", Description="Sales - Consulting Services")
    t3 = t2 + timedelta(hours=1)
    [changed] = list(connector.changes("glAccounts", t2, t3))
    assert changed.id == "000-4110-00" and changed["description"] == "Sales - Consulting Services"
    assert t2 <= changed.modified < t3
    assert (tmp_path / "gp-gp-seen.json").exists()


def test_journal_entries_come_with_their_lines(env):
    connector, gp = env()
    entries = list(connector.changes("glTransactions", None))
    assert [e.id for e in entries] == ["2301", "2302"]
    assert entries[0]["total"] == 1200 and [l["account"] for l in entries[0]["lines"]] == ["000-1200-00", "000-4100-00"]
    assert set(entries[0].data) == connector.field_names("glTransactions")


def test_sales_orders_are_created_once_with_the_policy(env):
    connector, gp = env()
    order = {"Id": "Z5001", "customerId": "ADAMPARK0001", "lines": [{"item": "100XLG", "quantity": 3}]}
    [created] = connector.write("salesOrders", [order], "Id")
    assert created.action == "create" and created.target_id == "Z5001"
    assert gp.counts["GetPolicyByOperation"] == 1
    [again] = connector.write("salesOrders", [order], "Id")  # a run interrupted before it recorded the link
    assert again.action == "update" and len(gp.sales_orders()) == 1
    [linked] = connector.write("salesOrders", [{**order, "lines": [{"item": "100XLG", "quantity": 9}]}], "Id",
                               ids=["Z5001"])
    assert linked.action == "skip" and "already in GP" in (linked.error or "")
    assert gp.sales_orders()[0]["Lines"]["SalesOrderLine"][0]["Quantity"]["Value"] == 3


def test_a_rejected_order_fails_with_gps_logged_reasons(env):
    connector, gp = env()
    [result] = connector.write("salesOrders", [{"Id": "Z5002", "customerId": "NOBODY",
                                                "lines": [{"item": "NOSUCH", "quantity": 1}]}], "Id")
    assert result.action == "fail" and result.error_class == "ValidationException"
    assert "Customer NOBODY does not exist" in result.error and "item NOSUCH does not exist" in result.error


@pytest.mark.parametrize("transport", ["env", "sba"])  # Web Services, and the Service Based Architecture
def test_it_never_has_more_requests_in_flight_than_configured(transport, request):
    connector, gp = request.getfixturevalue(transport)({"delay": 0.05, "max_concurrent": 2, "overflow": "reject"})
    errors: list[BaseException] = []

    def read(i: int) -> None:
        try:
            connector.get("customers", ["AARONFIT0001", "ADAMPARK0001", "ALTONMAN0001"][i % 3])
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=read, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert errors == [] and gp.rejected == 0 and gp.max_in_flight <= 2


def test_concurrency_is_capped_at_five(env):
    with pytest.raises(ConfigError, match="1 to 5"):
        env(concurrency=6)


def test_calls_are_spaced_by_the_configured_delay(env):
    waits: list[float] = []
    connector, gp = env(delay_seconds=0.2, sleep=waits.append)
    list(connector.changes("customers", None))
    assert waits and all(0 < w <= 0.2 for w in waits)


def test_ping_explains_what_it_checked(env):
    connector, gp = env()
    result = connector.ping()
    assert result.ok, result.error
    assert "company -1 readable" in result.details and "CreateSalesOrder policy available" in result.details


def test_ping_explains_a_wrong_password(env, monkeypatch):
    monkeypatch.setenv("MLCONNECTOR_GP_PASSWORD", "not-it")
    connector, gp = env()
    result = connector.ping()
    assert not result.ok and result.exit_code == 4 and "Windows authentication refused" in result.error
    assert "not-it" not in result.error and PASSWORD not in result.error


def test_ping_explains_an_account_not_mapped_to_a_gp_user(env):
    connector, gp = env(user="CONTOSO\\newhire")
    result = connector.ping()
    assert not result.ok and result.exit_code == 4
    assert "Dynamics Security Console" in result.error


def test_ping_explains_a_wrong_company(env):
    connector, gp = env(company_id=7)
    result = connector.ping()
    assert not result.ok and result.exit_code == 2 and "company_id" in result.error


def test_ping_explains_a_closed_port(monkeypatch, tmp_path):
    monkeypatch.setenv("MLCONNECTOR_GP_PASSWORD", PASSWORD)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/DynamicsGPWebServices/DynamicsGPService.asmx"
    connector = GPConnector(SystemConfig("gp", "gp", {"base_url": url, "company_id": -1, "user": ACCOUNT}),
                            ConnectorContext(secrets=SecretStore(), state_dir=tmp_path), sleep=lambda s: None)
    try:
        result = connector.ping()
    finally:
        connector.close()
    assert not result.ok and result.exit_code == 5 and f"port {port}" in result.error and "firewall" in result.error


# -- Service Based Architecture (transport = "sba") ---------------------------------------------------------------
SBA_URL = "https://gp.sandbox/GPService/Tenants(DefaultTenant)/Companies(Fabrikam%2C%20Inc.)/"


def sba_settings(**settings):
    return {"transport": "sba", "sba_url": SBA_URL, "user": ACCOUNT, "delay_seconds": 0, **settings}


@pytest.fixture
def sba(tmp_path, monkeypatch):
    """A connector with transport = "sba" (and, when asked, Web Services beside it) against the sandbox."""
    monkeypatch.setenv("MLCONNECTOR_GP_PASSWORD", PASSWORD)
    made: list = []

    def build(app_options: dict | None = None, *, sleep: Callable[[float], None] = lambda s: None,
              sandbox_clock: bool = False, **settings):
        app = create_app(**(app_options or {}))
        gp = app.state.gp
        gp.add_user(ACCOUNT, PASSWORD)
        gp.add_user("CONTOSO\\newhire", PASSWORD, gp_user=None)
        gp.seed_demo()
        transport = HostRouter({"gp.sandbox": InProcessTransport(app)})
        connector = GPConnector(SystemConfig("gp", "gp", sba_settings(**settings)),
                                ConnectorContext(secrets=SecretStore(), transport=transport, state_dir=tmp_path),
                                sleep=sleep, **({"now": gp.clock.now} if sandbox_clock else {}))
        made.append((connector, transport, gp))
        return connector, gp

    yield build
    for connector, transport, gp in made:
        connector.close()
        transport.close()
        gp.auth.close()


def soap_calls(gp) -> list[str]:
    return [c.operation for c in gp.calls if not c.operation.startswith("GET ")]


def test_sba_reads_customers_vendors_and_contacts_over_rest_only(sba):
    connector, gp = sba()
    [aaron, adam, alton] = list(connector.changes("customers", None))
    assert aaron.id == "AARONFIT0001" and aaron["creditLimit"] == 15000 and aaron["balance"] == pytest.approx(2318.4)
    assert aaron["billingAddress"]["city"] == "Redmond" and aaron["shippingAddress"]["city"] == "Tacoma"
    assert [v.id for v in connector.changes("vendors", None)] == ["ACETRAVE0001", "ADVANCED0001"]
    contacts = list(connector.changes("vendorContacts", None))
    assert [(c.id, c["name"]) for c in contacts] == [("ACETRAVE0001/PRIMARY", "Greg Martin"),
                                                     ("ADVANCED0001/PRIMARY", "Dana Birkby")]
    assert connector.get("customers", "ADAMPARK0001")["name"] == "Adam Park Resort"
    assert connector.get("customers", "NOBODY") is None
    assert connector.get("vendorContacts", "ACETRAVE0001/PRIMARY")["name"] == "Greg Martin"
    assert soap_calls(gp) == [] and gp.counts["GET Sales/Customers"] == 1


def test_sba_rereads_the_list_but_hands_out_only_what_changed(sba, tmp_path):
    connector, gp = sba()
    t1 = gp.clock.now()
    assert len(list(connector.changes("customers", None, t1))) == 3
    t2 = t1 + timedelta(hours=1)
    assert list(connector.changes("customers", t1, t2)) == []
    gp.modify("customers", "ALTONMAN0001", Name="Alton Manufacturing Ltd")
    t3 = t2 + timedelta(hours=1)
    [changed] = list(connector.changes("customers", t2, t3))
    assert changed.id == "ALTONMAN0001" and changed["name"] == "Alton Manufacturing Ltd" and t2 <= changed.modified < t3
    assert gp.counts["GET Sales/Customers"] == 3  # no date filter in SBA: every read takes the whole list
    assert (tmp_path / "gp-gp-seen.json").exists()


def test_sba_body_names_and_list_envelope_are_configurable(sba):
    options = {"sba_list_key": "Items", "sba_rename": {"Name": "CustomerName", "City": "CityName"}}
    connector, gp = sba(options, sba_list_key="Items", sba_fields={"Name": "CustomerName", "City": "CityName"})
    aaron = next(iter(connector.changes("customers", None)))
    assert aaron["name"] == "Aaron Fitz Electrical" and aaron["billingAddress"]["city"] == "Redmond"


def test_sba_says_which_setting_fits_a_body_it_does_not_expect(sba):
    connector, gp = sba({"sba_list_key": "Items"})
    with pytest.raises(ConfigError) as caught:
        list(connector.changes("customers", None))
    assert "sba_list_key" in str(caught.value) and "Items" in str(caught.value)


def test_sba_wrong_password_exits_4_with_the_fix_and_no_secret(sba, monkeypatch):
    monkeypatch.setenv("MLCONNECTOR_GP_PASSWORD", "not-it-9Xq")
    connector, gp = sba()
    with pytest.raises(AuthError) as caught:
        list(connector.changes("customers", None))
    assert caught.value.exit_code == 4 and "mlconnector secrets set gp password" in str(caught.value)
    result = connector.ping()
    assert not result.ok and result.exit_code == 4 and "Windows authentication refused" in result.error
    for text in (str(caught.value), result.error, repr(result)):
        assert "not-it-9Xq" not in text and PASSWORD not in text


def test_sba_takes_basic_authentication(sba):
    connector, gp = sba(auth="basic")
    assert len(list(connector.changes("vendors", None))) == 2
    assert gp.auth.handshakes == 0  # no NTLM: the credentials went as Basic
    result = connector.ping()
    assert result.ok and not any("plain http" in w for w in result.warnings)  # sba_url is https


def test_sba_alone_reports_gl_and_sales_orders_unavailable(sba, caplog):
    connector, gp = sba()
    for entity in ("glAccounts", "glTransactions", "salesOrders"):
        reason = connector.unavailable(entity)
        assert reason and "base_url" in reason and "Service Based Architecture" in reason
    assert connector.unavailable("customers") is None
    assert list(connector.changes("glAccounts", None)) == []
    assert "GL accounts are not in the Service Based Architecture" in caplog.text
    with pytest.raises(ConfigError, match="base_url"):
        connector.write("salesOrders", [{"Id": "Z1", "customerId": "ADAMPARK0001", "lines": []}], "Id")


def test_sba_with_web_services_beside_it_reads_the_ledger_there(sba):
    connector, gp = sba(base_url=URL, company_id=-1)
    assert connector.unavailable("glAccounts") is None
    assert len(list(connector.changes("glAccounts", None))) == 6 and gp.counts["GetGLAccountList"] == 1
    assert len(list(connector.changes("customers", None))) == 3 and gp.counts["GetCustomerList"] == 0
    result = connector.ping()
    assert result.ok, result.error
    assert "SBA help page read" in result.details and "CreateSalesOrder policy available" in result.details


def test_sba_ping_explains_what_it_checked(sba):
    connector, gp = sba()
    result = connector.ping()
    assert result.ok, result.error
    assert "SBA help page read" in result.details
    assert "company 'Fabrikam, Inc.' readable (3 customers)" in result.details
    assert any("base_url" in w for w in result.warnings)


def test_sba_ping_explains_an_account_not_mapped_to_a_gp_user(sba):
    connector, gp = sba(user="CONTOSO\\newhire")
    result = connector.ping()
    assert not result.ok and result.exit_code == 4 and "User Setup" in result.error


def test_sba_ping_explains_a_wrong_company(sba):
    connector, gp = sba(sba_url="https://gp.sandbox/GPService/Tenants(DefaultTenant)/Companies(Contoso)/")
    result = connector.ping()
    assert not result.ok and result.exit_code == 2 and "sba_url" in result.error and "404" in result.error


def test_sba_ping_explains_a_closed_port(monkeypatch, tmp_path):
    monkeypatch.setenv("MLCONNECTOR_GP_PASSWORD", PASSWORD)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/GPService/Tenants(DefaultTenant)/Companies(Fabrikam%2C%20Inc.)/"
    connector = GPConnector(SystemConfig("gp", "gp", sba_settings(sba_url=url)),
                            ConnectorContext(secrets=SecretStore(), state_dir=tmp_path), sleep=lambda s: None)
    try:
        result = connector.ping()
    finally:
        connector.close()
    assert not result.ok and result.exit_code == 5 and f"port {port}" in result.error and "firewall" in result.error
    assert "GP Service" in result.error


@pytest.mark.parametrize("settings, expected", [
    ({"transport": "rest"}, "transport must be"),
    ({"sba_url": "https://gp.sandbox/GPService/Tenants(DefaultTenant)/"}, "Companies(Fabrikam%2C%20Inc.)"),
    ({"sba_fields": {"Name": 3}}, "sba_fields"),
])
def test_sba_bad_settings_are_one_line_config_errors(tmp_path, monkeypatch, settings, expected):
    monkeypatch.setenv("MLCONNECTOR_GP_PASSWORD", PASSWORD)
    with pytest.raises(ConfigError) as caught:
        GPConnector(SystemConfig("gp", "gp", sba_settings(**settings)),
                    ConnectorContext(secrets=SecretStore(), state_dir=tmp_path))
    assert expected in str(caught.value) and "\n" not in str(caught.value)


def _self_signed(tmp_path):
    """A certificate for 127.0.0.1 that no CA signed (this host does not trust it)."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gpweb.contoso.test")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp_path / "gp.crt", tmp_path / "gp.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


def test_sba_ping_explains_an_untrusted_certificate(monkeypatch, tmp_path):
    import ssl

    monkeypatch.setenv("MLCONNECTOR_GP_PASSWORD", PASSWORD)
    cert_file, key_file = _self_signed(tmp_path)
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert_file, key_file)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(10)
    port = listener.getsockname()[1]

    def serve() -> None:  # handshakes until the client gives up on the certificate
        for _ in range(4):
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            try:
                server_context.wrap_socket(conn, server_side=True).close()
            except (ssl.SSLError, OSError):
                conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    url = f"https://127.0.0.1:{port}/GPService/Tenants(DefaultTenant)/Companies(Fabrikam%2C%20Inc.)/"
    connector = GPConnector(SystemConfig("gp", "gp", sba_settings(sba_url=url)),
                            ConnectorContext(secrets=SecretStore(), state_dir=tmp_path), sleep=lambda s: None)
    try:
        result = connector.ping()
    finally:
        connector.close()
        listener.close()
    assert not result.ok and result.exit_code == 5
    assert "certificate problem" in result.error and "SSL_CERT_FILE" in result.error and "sba_url" in result.error
