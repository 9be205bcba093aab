"""A client we did not write talks to the Zoho sandbox unmodified: Zoho's own Python SDK for API v8
(``zohocrmsdk8-0``), which reads the org's modules and field metadata before its record calls.

The SDK takes its hosts from a ``DataCenter.Environment`` (API URL, accounts URL, upload URL), so it is pointed at
the sandbox served on loopback; nothing else is changed. Its OAuth refresh, metadata reads, records, search, upsert,
field creation, tags (added and removed) and the recycle bin (deleted records since a time) all go over real HTTP to the
emulator.
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


def test_the_sdk_tags_and_untags_records_and_reads_the_recycle_bin_since_a_time(org: Org) -> None:
    from datetime import datetime, timedelta, timezone

    from zohocrmsdk.src.com.zoho.crm.api import HeaderMap
    from zohocrmsdk.src.com.zoho.crm.api import tags as sdk_tags

    operations = sdk_record.RecordOperations("Contacts")
    created = operations.create_records(body(record(Last_Name="Keep"), record(Last_Name="Drop")))
    keep, drop = (item.get_details()["id"] for item in created.get_object().get_data())

    label = sdk_tags.Tag()
    label.set_name("Deleted in nav")
    request = sdk_tags.NewTagRequestWrapper()
    request.set_tags([label])
    request.set_ids([int(keep)])
    tagged = sdk_tags.TagsOperations().add_tags_to_multiple_records("Contacts", request)
    assert tagged.get_status_code() == 200, vars(tagged.get_object())
    [done] = tagged.get_object().get_data()
    assert done.get_status().get_value() == "success", vars(done)
    assert [t["name"] for t in org.zoho.store.records["Contacts"][keep]["Tag"]] == ["Deleted in nav"]
    existing = sdk_tags.ExistingTag()
    existing.set_name("Deleted in nav")
    untag = sdk_tags.ExistingTagRequestWrapper()
    untag.set_tags([existing])
    untag.set_ids([int(keep)])
    removed = sdk_tags.TagsOperations().remove_tags_from_multiple_records("Contacts", untag)
    assert removed.get_status_code() == 200, vars(removed.get_object())
    assert org.zoho.store.records["Contacts"][keep]["Tag"] == []
    assert sdk_tags.TagsOperations().add_tags_to_multiple_records("Contacts", request).get_status_code() == 200

    before = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=1)
    assert operations.delete_record(int(drop)).get_status_code() == 200
    headers = HeaderMap()
    headers.add(sdk_record.GetDeletedRecordsHeader.if_modified_since, before)
    params = ParameterMap()
    params.add(sdk_record.GetDeletedRecordsParam.type, "recycle")
    listed = operations.get_deleted_records(params, headers)
    assert listed.get_status_code() == 200, vars(listed.get_object())
    assert [(str(d.get_id()), d.get_type()) for d in listed.get_object().get_data()] == [(drop, "recycle")]

    later = HeaderMap()
    later.add(sdk_record.GetDeletedRecordsHeader.if_modified_since, before + timedelta(days=1))
    assert operations.get_deleted_records(params, later).get_status_code() == 204  # nothing deleted since
