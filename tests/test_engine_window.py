"""Where a poll's watermark goes once the read window is done: to the end of the window where the source tells its
clock (so the overlap re-reads seconds, not an old cluster of equal stamps), never ahead of what the source had."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from mlconnector.errors import EXIT_OK, AuthError
from tests.fakes import Store
from tests.systems.zoho_env import make_env
from tests.test_engine import make_engine, seed_customers

OVERLAP = timedelta(seconds=60)  # overlap_seconds in the test config


def _with_source_clock(engine, clock: datetime | None) -> None:
    engine.connectors["erp"].read_clock = lambda entity: clock


def test_after_a_complete_poll_the_watermark_is_the_window_end_and_the_next_run_reads_nothing_old(
        config_file, tmp_path, erp: Store, crm: Store):
    old = datetime.now(timezone.utc) - timedelta(hours=2)
    for i in range(30):  # a cluster sharing one stamp, as a bulk job leaves them
        erp.put("customer", {"number": f"C{i:05d}", "name": f"Customer {i}", "city": "Oslo"}, modified=old)
    engine = make_engine(config_file, tmp_path)
    run_start = datetime.now(timezone.utc)
    engine.now = lambda: run_start
    source_clock = run_start - timedelta(seconds=5)
    _with_source_clock(engine, source_clock)

    assert engine.sync(["customers"]).flows["customers"].created == 30
    assert engine.state.watermark("erp-crm", "customers") == source_clock

    second = engine.sync(["customers"])
    assert second.flows["customers"].read == 0  # the cluster is not read again through the overlap


def test_a_record_landing_late_with_an_older_stamp_inside_the_overlap_is_still_read(
        config_file, tmp_path, erp: Store, crm: Store):
    seed_customers(erp, 5)
    engine = make_engine(config_file, tmp_path)
    run_start = datetime.now(timezone.utc)
    engine.now = lambda: run_start
    _with_source_clock(engine, run_start)
    engine.sync(["customers"])

    # Committed after the read, stamped before its end (a long transaction): within the overlap.
    late = erp.put("customer", {"number": "C09999", "name": "Late", "city": "Oslo"},
                   modified=run_start - OVERLAP + timedelta(seconds=1))
    engine.now = lambda: run_start + timedelta(minutes=15)
    result = engine.sync(["customers"])

    assert result.flows["customers"].created == 1
    assert [a["number"] for a in crm.all("account") if a["number"] == "C09999"] == ["C09999"]
    assert engine.state.link("erp-crm", "customers", late["id"]) is not None


def test_with_the_source_clock_behind_ours_the_window_ends_at_the_source_clock(
        config_file, tmp_path, erp: Store, crm: Store):
    """Skew: the source is 10 minutes behind this host. Ending the window at our run start would skip a record
    the source stamps, after our read, with a time before our run start; its own clock keeps it in."""
    ours = datetime.now(timezone.utc)
    theirs = ours - timedelta(minutes=10)
    seed_customers(erp, 3)
    for row in erp.all("customer"):
        erp.put("customer", {k: v for k, v in row.items() if k not in ("id", "modified")}, id=row["id"],
                modified=theirs - timedelta(minutes=1))
    engine = make_engine(config_file, tmp_path)
    engine.now = lambda: ours
    _with_source_clock(engine, theirs)
    engine.sync(["customers"])
    assert engine.state.watermark("erp-crm", "customers") == theirs

    written_after_our_read = erp.put("customer", {"number": "C07777", "name": "After", "city": "Bergen"},
                                     modified=theirs + timedelta(seconds=30))
    engine.now = lambda: ours + timedelta(minutes=5)
    _with_source_clock(engine, theirs + timedelta(minutes=5))
    result = engine.sync(["customers"])

    assert result.flows["customers"].created == 1
    assert engine.state.link("erp-crm", "customers", written_after_our_read["id"]) is not None


def test_with_the_source_clock_ahead_the_window_ends_at_our_run_start(config_file, tmp_path, erp: Store, crm: Store):
    seed_customers(erp, 3)
    engine = make_engine(config_file, tmp_path)
    ours = datetime.now(timezone.utc)
    engine.now = lambda: ours
    _with_source_clock(engine, ours + timedelta(minutes=10))
    engine.sync(["customers"])
    assert engine.state.watermark("erp-crm", "customers") == ours


def test_a_source_that_does_not_tell_its_clock_keeps_the_watermark_at_the_newest_record(
        config_file, tmp_path, erp: Store, crm: Store):
    rows = seed_customers(erp, 4)
    engine = make_engine(config_file, tmp_path)
    _with_source_clock(engine, None)
    engine.sync(["customers"])
    assert engine.state.watermark("erp-crm", "customers") == datetime.fromisoformat(rows[-1]["modified"])


def test_a_poll_that_stops_does_not_move_the_watermark_to_the_window_end(config_file, tmp_path, erp: Store,
                                                                         crm: Store):
    rows = seed_customers(erp, 4)
    engine = make_engine(config_file, tmp_path)
    clock = datetime.now(timezone.utc) + timedelta(minutes=1)
    _with_source_clock(engine, clock)
    crm.set_fault("down", True)

    result = engine.sync(["customers"])

    assert result.exit_code != EXIT_OK
    # The failed batch is queued for replay and the watermark passes it, but not on to the window's end.
    assert engine.state.watermark("erp-crm", "customers") == datetime.fromisoformat(rows[-1]["modified"])
    assert len(engine.state.replay_items()) == 4


def test_an_auth_failure_leaves_the_watermark_unset(config_file, tmp_path, erp: Store, crm: Store):
    seed_customers(erp, 4)
    engine = make_engine(config_file, tmp_path)
    _with_source_clock(engine, datetime.now(timezone.utc))
    crm.set_fault("auth", True)
    with pytest.raises(AuthError):
        engine.sync(["customers"])
    assert engine.state.watermark("erp-crm", "customers") is None


def test_a_dry_run_leaves_the_watermark_alone(config_file, tmp_path, erp: Store, crm: Store):
    seed_customers(erp, 4)
    engine = make_engine(config_file, tmp_path)
    _with_source_clock(engine, datetime.now(timezone.utc))
    engine.sync(["customers"], dry_run=True)
    assert engine.state.watermark("erp-crm", "customers") is None


def test_zoho_reports_its_clock_at_the_start_of_a_read() -> None:
    env = make_env()
    try:
        env.zoho.seed("Accounts", [{"Account_Name": f"A {i}"} for i in range(3)])
        connector = env.connector(coql_page_size=2)
        assert connector.read_clock("Accounts") is None
        moment = env.clock.now()
        rows = list(connector.changes("Accounts", None, moment + timedelta(seconds=1)))
        assert len(rows) == 3
        clock = connector.read_clock("Accounts")
        # Zoho's Date header: whole seconds, never after the org's clock when the read began.
        assert clock is not None and clock <= moment and moment - clock < timedelta(seconds=2)
    finally:
        env.inner.close()


def test_nav_contacts_ask_for_business_relations_only_when_a_contact_changed(tmp_path: Path) -> None:
    from tests.systems.dynamics_env import make_env as make_dynamics_env

    env = make_dynamics_env("nav", tmp_path)
    try:
        connector = env.connector()
        later = datetime.now(timezone.utc) + timedelta(days=3)
        before = len(env.transport.requests)
        assert list(connector.changes("contacts", later)) == []
        assert len(env.transport.requests) - before == 1  # the contacts page; no relations page

        contacts = {c["displayName"]: c for c in connector.changes("contacts", None)}
        assert contacts["Robert Townes"]["relations"] and contacts["Robert Townes"]["relations"][0]["type"] == "Customer"
    finally:
        env.close()


def _without_modification_times(engine) -> None:
    """The source stamps nothing (NAV's posted documents): every run reads every record, modified None."""
    from mlconnector.systems.base import Record

    source = engine.connectors["erp"]
    original = source.changes

    def changes(entity, since, until=None):
        for record in original(entity, None, None):
            yield Record(record.system, record.entity, record.id, None, dict(record.data))
    source.changes = changes


def test_records_without_modification_time_are_not_mapped_or_written_again_while_their_content_is_the_same(
        config_file, tmp_path, erp: Store, crm: Store):
    rows = seed_customers(erp, 12)
    engine = make_engine(config_file, tmp_path)
    _without_modification_times(engine)
    assert engine.sync(["customers"]).flows["customers"].created == 12
    writes = list(engine.connectors["crm"].writes)

    quiet = engine.sync(["customers"])
    assert quiet.flows["customers"].read == 12
    assert (quiet.flows["customers"].created, quiet.flows["customers"].updated) == (0, 0)
    assert engine.connectors["crm"].writes == writes
    assert engine.state.audit_rows(run=quiet.run_id, limit=None) == []  # seen, as a re-read through the overlap

    erp.update("customer", rows[4]["id"], city="Bergen")
    changed = engine.sync(["customers"])
    assert changed.flows["customers"].updated == 1
    assert {a["city"] for a in crm.all("account") if a["number"] == rows[4]["number"]} == {"Bergen"}
    assert engine.sync(["customers"]).flows["customers"].updated == 0


def test_a_record_without_modification_time_whose_write_failed_is_tried_again(config_file, tmp_path, erp: Store,
                                                                               crm: Store):
    seed_customers(erp, 3)
    engine = make_engine(config_file, tmp_path)
    _without_modification_times(engine)
    crm.set_fault("down", True)
    engine.sync(["customers"])
    crm.set_fault("down", False)
    assert engine.sync(["customers"]).flows["customers"].created == 3


def test_dynamics_sandbox_skips_rows_by_modification_time_only_where_the_filter_requires_it() -> None:
    from mlconnector.sandbox.dynamics.odata import parse_query

    types = {"lastModifiedDateTime": "datetime", "number": "string"}
    stamp = "2026-01-02T03:04:05.678Z"
    bound = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=timezone.utc)
    q = parse_query({"$filter": f"lastModifiedDateTime ge {stamp} and lastModifiedDateTime lt 2027-01-01T00:00:00Z"},
                    types, "customer")
    assert q.lower_bounds == {"lastModifiedDateTime": bound}
    for alternative in (f"lastModifiedDateTime ge {stamp} or lastModifiedDateTime eq 2020-01-01T00:00:00Z",
                        f"not (lastModifiedDateTime lt {stamp})", f"lastModifiedDateTime le {stamp}"):
        assert parse_query({"$filter": alternative}, types, "customer").lower_bounds == {}


@pytest.mark.parametrize("text", [
    '{"@odata.context":"x","value":[{"a":1,"b":[1,2,{"c":"]"}]},{"d":"é\\"}"}],"@odata.nextLink":"http://n?$skiptoken=1"}',
    ' { "value" : [ ] , "x" : 1 } ', '{"value":[]}', '{}', '{"x":{"value":[1]},"value":[ 1 , 2 ,3 ]}', '[1,2]',
    '{"a":"b"}', '{\n "value": [\n  {"k": null},\n  {"k": true}\n ]\n}',
])
def test_a_page_parsed_row_by_row_gives_what_parsing_it_whole_gives(text: str) -> None:
    import json

    from mlconnector.http import stream_array

    rest: dict = {}
    rows = list(stream_array(text, "value", rest))
    whole = json.loads(text)
    assert rows == ((whole.get("value") or []) if isinstance(whole, dict) else [])
    assert rest == ({k: v for k, v in whole.items() if k != "value"} if isinstance(whole, dict) else {})


def test_a_broken_page_is_an_error_not_a_short_read() -> None:
    from mlconnector.http import stream_array

    with pytest.raises(ValueError):
        list(stream_array('{"value":[{"a":1},{"b":', "value", {}))


def test_bc_first_read_of_documents_with_lines_asks_for_smaller_pages(tmp_path: Path) -> None:
    from tests.systems.dynamics_env import make_env as make_dynamics_env

    env = make_dynamics_env("bc-cloud", tmp_path)
    try:
        connector = env.connector(page_size=10000, document_page_size=1)

        def prefers() -> list[str]:
            return [r.headers.get("prefer", "") for r in env.transport.requests if r.method == "GET"
                    and r.url.path.endswith(("salesInvoices", "customers"))]

        invoices = list(connector.changes("postedSalesInvoices", None))
        assert invoices and prefers()[-1] == "odata.maxpagesize=1"
        customers = list(connector.changes("customers", None))  # no lines: the configured size, ramped up to
        assert customers and prefers()[-1] == "odata.maxpagesize=1000"
        list(connector.changes("postedSalesInvoices", datetime.now(timezone.utc) - timedelta(days=1)))
        assert prefers()[-1] == "odata.maxpagesize=10000"  # an incremental read: few rows, one call
    finally:
        env.close()


@pytest.mark.parametrize("config", ["bc-cloud", "nav"])
def test_a_whole_read_starts_with_smaller_pages_and_reads_every_row_once(tmp_path: Path, config: str) -> None:
    """A tenth of the page size first, then twice as many each time, up to the page size: the first rows come at
    once, and each page is asked for while the one before it is taken, in less time than that takes."""
    from tests.systems.dynamics_env import COMPANY, make_env as make_dynamics_env

    env = make_dynamics_env(config, tmp_path)
    try:
        env.sandbox.seed(COMPANY, "customers", [{"displayName": f"Customer {i}"} for i in range(3200)])
        connector = env.connector(page_size=5000)
        records = list(connector.changes("customers", None))
        asked = [r.headers.get("prefer") for r in env.transport.requests
                 if r.method == "GET" and r.url.path.endswith(("customers", "Customer"))]
        assert asked == ["odata.maxpagesize=500", "odata.maxpagesize=1000", "odata.maxpagesize=2000"]
        assert len(records) == len({r.id for r in records}) == len(env.sandbox.db.company(COMPANY).table("customers"))
        later = list(connector.changes("customers", datetime.now(timezone.utc) - timedelta(days=1)))
        assert len(later) == len(records)  # every row changed today, read in one page of the configured size
        assert env.transport.requests[-1].headers.get("prefer") == "odata.maxpagesize=5000"
    finally:
        env.close()
