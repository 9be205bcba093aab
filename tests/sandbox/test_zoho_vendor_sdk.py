"""A client we did not write talks to the Zoho sandbox unmodified: Zoho's own Python SDK for API v8
(``zohocrmsdk8-0``), which reads the org's modules and field metadata before its record calls.

The SDK takes its hosts from a ``DataCenter.Environment`` (API URL, accounts URL, upload URL), so it is pointed at
the sandbox served on loopback; nothing else is changed. Its OAuth refresh, metadata reads, records, search, upsert
and field creation all go over real HTTP to the emulator.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mlconnector.sandbox.server import bind, serve, url_of
from mlconnector.sandbox.zoho import ZohoSandbox, create_app

from zohocrmsdk.src.com.zoho.api.authenticator.oauth_token import OAuthToken
from zohocrmsdk.src.com.zoho.api.authenticator.store import FileStore
from zohocrmsdk.src.com.zoho.crm.api import ParameterMap
from zohocrmsdk.src.com.zoho.crm.api import fields as sdk_fields
from zohocrmsdk.src.com.zoho.crm.api import record as sdk_record
from zohocrmsdk.src.com.zoho.crm.api.dc.data_center import DataCenter
from zohocrmsdk.src.com.zoho.crm.api.initializer import Initializer
from zohocrmsdk.src.com.zoho.crm.api.sdk_config import SDKConfig


@dataclass
class Org:
    zoho: ZohoSandbox
    url: str


@pytest.fixture(scope="module")
def org(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Org]:
    sock = bind("127.0.0.1", 0)
    url = url_of(sock)
    app = create_app(api_domain=url, bare=True)
    zoho: ZohoSandbox = app.state.zoho
    client = zoho.register_client()
    refresh = zoho.issue_refresh_token(client.client_id)
    server, thread = serve(app, sock, "zoho-sdk")
    home: Path = tmp_path_factory.mktemp("zoho-sdk")
    logging.getLogger("SDKLogger").setLevel(logging.WARNING)
    Initializer.initialize(environment=DataCenter.Environment(url, f"{url}/oauth/v2/token", url),
                           token=OAuthToken(client_id=client.client_id, client_secret=client.client_secret,
                                            refresh_token=refresh),
                           store=FileStore(str(home / "tokens.csv")),
                           sdk_config=SDKConfig(auto_refresh_fields=False, pick_list_validation=False),
                           resource_path=str(home))
    yield Org(zoho, url)
    server.should_exit = True
    thread.join(timeout=5)


def record(**values: Any) -> Any:
    made = sdk_record.Record()
    for name, value in values.items():
        made.add_key_value(name, value)
    return made


def body(*records: Any) -> Any:
    wrapper = sdk_record.BodyWrapper()
    wrapper.set_data(list(records))
    return wrapper


def test_the_sdk_reads_metadata_then_creates_reads_and_searches_records(org: Org) -> None:
    operations = sdk_record.RecordOperations("Accounts")
    created = operations.create_records(body(record(Account_Name="Acme", Account_Number="C1", Phone="555-1")))
    assert created.get_status_code() == 201
    [item] = created.get_object().get_data()
    assert isinstance(item, sdk_record.SuccessResponse), vars(item)
    assert [a["Account_Number"] for a in org.zoho.records("Accounts")] == ["C1"]
    assert org.zoho.calls["settings.fields"] >= 1  # the SDK asked for Accounts' fields before writing

    params = ParameterMap()
    params.add(sdk_record.GetRecordsParam.fields, "Account_Name,Account_Number")
    listed = operations.get_records(params)
    assert [(r.get_key_value("Account_Name"), r.get_key_value("Account_Number"))
            for r in listed.get_object().get_data()] == [("Acme", "C1")]

    search = ParameterMap()
    search.add(sdk_record.SearchRecordsParam.criteria, "(Account_Number:equals:C1)")
    found = operations.search_records(search)
    assert found.get_status_code() == 200
    assert [r.get_key_value("Account_Name") for r in found.get_object().get_data()] == ["Acme"]


def test_the_sdk_creates_a_custom_field_and_sees_it_in_the_metadata(org: Org) -> None:
    new = sdk_fields.Fields()
    new.set_field_label("ERP Number")
    new.set_data_type("text")
    new.set_length(40)
    unique = sdk_fields.Unique()
    unique.set_casesensitive("false")
    new.set_unique(unique)
    wrapper = sdk_fields.BodyWrapper()
    wrapper.set_fields([new])
    params = ParameterMap()
    params.add(sdk_fields.CreateFieldParam.module, "Sales_Orders")
    answer = sdk_fields.FieldsOperations().create_field(wrapper, params)
    assert answer.get_status_code() == 201, vars(answer.get_object())

    read = ParameterMap()
    read.add(sdk_fields.GetFieldsParam.module, "Sales_Orders")
    listed = sdk_fields.FieldsOperations().get_fields(read).get_object().get_fields()
    [erp] = [f for f in listed if f.get_api_name() == "ERP_Number"]
    assert erp.get_custom_field() is True and erp.get_length() == 40
    assert erp.get_unique().get_casesensitive() == "false"
    assert org.zoho.schema.field("Sales_Orders", "ERP_Number").unique


def test_the_sdk_upserts_on_a_unique_field(org: Org) -> None:
    org.zoho.mark_unique("Products", "Product_Code")
    operations = sdk_record.RecordOperations("Products")
    for price in (10.0, 12.5):
        wrapper = body(record(Product_Name="Widget", Product_Code="W-1", Unit_Price=price))
        wrapper.set_duplicate_check_fields(["Product_Code"])
        answer = operations.upsert_records(wrapper)
        assert answer.get_status_code() == 200
        assert isinstance(answer.get_object().get_data()[0], sdk_record.SuccessResponse)
    assert [(p["Product_Code"], p["Unit_Price"]) for p in org.zoho.records("Products")] == [("W-1", 12.5)]
