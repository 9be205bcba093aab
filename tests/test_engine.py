"""The engine's promises, each proven against two small test systems (tests/fakes.py)."""

from __future__ import annotations

import hashlib
import json
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from mlconnector.config import load_config
from mlconnector.sync import Engine, open_pair
from mlconnector.fingerprints import canonical_json, payload_hash, source_fingerprint
from mlconnector.errors import AuthError, EXIT_OK, EXIT_RECORDS_FAILED, EXIT_UNREACHABLE
from mlconnector.state import State
from mlconnector.systems import ConnectorContext
from tests.fakes import Store


def make_engine(config_file: Path, tmp_path: Path, **overrides) -> Engine:
    config = load_config(config_file)
    session = open_pair(config, "erp-crm", ConnectorContext(secrets=None))
    pair_config = session.config
    if overrides:
        from dataclasses import replace
        pair_config = replace(pair_config, **overrides)
    state = State(tmp_path / "state.db")
    return Engine(session.pair, pair_config, session.connectors, state, counter=session.counter)


def seed_customers(erp: Store, n: int, start: int = 1) -> list[dict]:
    return [erp.put("customer", {"number": f"C{i:05d}", "name": f"Customer {i}", "city": "Oslo"})
            for i in range(start, start + n)]


def test_first_run_creates_one_target_record_per_source_record_and_audits_each(config_file, tmp_path, erp, crm):
    seed_customers(erp, 25)
    engine = make_engine(config_file, tmp_path)

    result = engine.sync(["customers"])

    assert result.exit_code == EXIT_OK
    accounts = crm.all("account")
    assert sorted(a["number"] for a in accounts) == [f"C{i:05d}" for i in range(1, 26)]
    assert result.flows["customers"].created == 25
    rows = engine.state.audit_rows(run=result.run_id, limit=None)
    assert len(rows) == 25 and {r["action"] for r in rows} == {"create"}
    assert all(r["target_id"] and r["source_system"] == "erp" and r["target_system"] == "crm" for r in rows)
    assert all(r["time"].endswith("+00:00") for r in rows)
    # batch_size 10 in the config: 25 records cost three write calls (sent concurrently, in any order)
    assert sorted(engine.connectors["crm"].writes) == [5, 10, 10]


def test_second_run_with_no_changes_writes_nothing(config_file, tmp_path, erp, crm):
    seed_customers(erp, 12)
    engine = make_engine(config_file, tmp_path)
    engine.sync(["customers"])
    writes_before = list(engine.connectors["crm"].writes)

    result = engine.sync(["customers"])

    assert engine.connectors["crm"].writes == writes_before
    assert result.flows["customers"].created == result.flows["customers"].updated == 0
    assert len(crm.all("account")) == 12


def test_reads_start_at_watermark_minus_overlap_and_stop_at_run_start(config_file, tmp_path, erp, monkeypatch):
    seed_customers(erp, 3)
    engine = make_engine(config_file, tmp_path)
    engine.sync(["customers"])
    mark = engine.state.watermark("erp-crm", "customers")
    assert mark == datetime.fromisoformat(erp.all("customer")[-1]["modified"])

    seen = []
    original = engine.connectors["erp"].changes
    monkeypatch.setattr(engine.connectors["erp"], "changes",
                        lambda entity, since, until=None: seen.append((since, until)) or original(entity, since, until))
    before = datetime.now(timezone.utc)
    engine.sync(["customers"])

    since, until = seen[0]
    assert since == mark - timedelta(seconds=60)  # overlap_seconds = 60 in the test config
    assert since.tzinfo is not None and until.tzinfo is not None
    assert before <= until <= datetime.now(timezone.utc)


def test_a_change_with_the_same_timestamp_as_the_watermark_is_not_lost(config_file, tmp_path, erp, crm):
    first = seed_customers(erp, 1)[0]
    engine = make_engine(config_file, tmp_path)
    engine.sync(["customers"])
    # Another record committed later in the source with exactly the watermark's timestamp.
    erp.put("customer", {"number": "C00099", "name": "Tie", "city": "Bergen"},
            modified=datetime.fromisoformat(first["modified"]))

    engine.sync(["customers"])

    assert {a["number"] for a in crm.all("account")} == {"C00001", "C00099"}


def test_only_changed_records_move_and_unchanged_payloads_are_not_written(config_file, tmp_path, erp, crm):
    rows = seed_customers(erp, 5)
    engine = make_engine(config_file, tmp_path)
    engine.sync(["customers"])
    writes = len(engine.connectors["crm"].writes)
    erp.update("customer", rows[0]["id"], city="Trondheim")      # a real change
    erp.update("customer", rows[1]["id"], internal_note="x")     # touched, but maps to the same payload

    result = engine.sync(["customers"])

    stats = result.flows["customers"]
    # One change written; one touched but mapping to what Zoho holds; three re-read through the overlap as synced.
    assert (stats.read, stats.updated, stats.unchanged) == (5, 1, 4)
    assert len(engine.connectors["crm"].writes) == writes + 1 and engine.connectors["crm"].writes[-1] == 1
    assert crm.find("account", "number", "C00001")[0]["city"] == "Trondheim"
    skip = [r for r in engine.state.audit_rows(run=result.run_id) if r["action"] == "skip"]
    assert [r["note"] for r in skip] == ["unchanged"]


def test_our_own_writes_coming_back_are_skipped_as_echoes(config_file, tmp_path, erp, crm):
    rows = seed_customers(erp, 2)
    engine = make_engine(config_file, tmp_path)
    engine.sync(["customers"])

    back = engine.sync(["accounts"])  # reads the accounts we just wrote

    assert back.flows["accounts"].skipped == 2 and back.flows["accounts"].updated == 0
    notes = {r["note"] for r in engine.state.audit_rows(run=back.run_id)}
    assert notes == {"echo of our own write by customers"}

    # A real edit on the CRM side goes back to the ERP, and that write is not echoed forward again.
    account = crm.find("account", "number", "C00001")[0]
    crm.update("account", account["id"], city="Stavanger")
    assert engine.sync(["accounts"]).flows["accounts"].updated == 1
    assert erp.get("customer", rows[0]["id"])["city"] == "Stavanger"
    forward = engine.sync(["customers"])
    assert forward.flows["customers"].updated == 0
    assert len(erp.all("customer")) == 2 and len(crm.all("account")) == 2


def test_unresolved_reference_fails_with_the_reason_then_replay_completes(config_file, tmp_path, erp, crm):
    customer = seed_customers(erp, 1)[0]
    item = erp.put("item", {"number": "I1", "name": "Widget", "price": 9.5})
    erp.put("invoice", {"number": "INV1", "customer_id": customer["id"], "lines": [{"item_id": item["id"], "qty": 2}]})
    engine = make_engine(config_file, tmp_path)

    result = engine.sync(["customers", "invoices"])  # items not synced yet

    assert result.exit_code == EXIT_RECORDS_FAILED
    assert crm.all("invoice") == []
    failed = engine.state.audit_rows(status="failed")
    assert len(failed) == 1 and failed[0]["error_class"] == "unresolved_reference"
    assert f"item {item['id']} is not yet in crm" in failed[0]["error"]
    assert [q["source_id"] for q in engine.state.replay_items()] == [failed[0]["source_id"]]

    engine.sync(["items"])
    replayed = engine.replay()

    assert replayed.exit_code == EXIT_OK
    invoice = crm.all("invoice")
    assert len(invoice) == 1
    assert invoice[0]["lines"] == [{"product_id": crm.all("product")[0]["id"], "qty": 2}]
    assert engine.state.replay_items() == []


def test_flows_run_after_the_flows_they_depend_on(config_file, tmp_path, erp, crm):
    customer = seed_customers(erp, 1)[0]
    item = erp.put("item", {"number": "I1", "name": "Widget"})
    erp.put("invoice", {"number": "INV1", "customer_id": customer["id"], "lines": [{"item_id": item["id"], "qty": 1}]})
    engine = make_engine(config_file, tmp_path)

    result = engine.sync(["invoices", "items", "customers"])

    assert list(result.flows) == ["customers", "items", "invoices"]
    assert result.exit_code == EXIT_OK and len(crm.all("invoice")) == 1


def test_rejected_records_are_queued_and_the_rest_still_land(config_file, tmp_path, erp, crm):
    seed_customers(erp, 4)
    crm.set_fault("reject", ["C00002"])
    engine = make_engine(config_file, tmp_path)

    result = engine.sync(["customers"])

    assert result.exit_code == EXIT_RECORDS_FAILED
    assert sorted(a["number"] for a in crm.all("account")) == ["C00001", "C00003", "C00004"]
    queue = engine.state.replay_items()
    assert len(queue) == 1 and queue[0]["error_class"] == "INVALID_DATA"
    # the watermark passes the queued record: replay, not the poll, owns it now
    assert engine.state.watermark("erp-crm", "customers") == datetime.fromisoformat(erp.all("customer")[-1]["modified"])

    crm.set_fault("reject", [])
    assert engine.replay().exit_code == EXIT_OK
    assert len(crm.all("account")) == 4 and engine.state.replay_items() == []
    rows = engine.state.audit_rows(record=queue[0]["source_id"])
    assert [r["action"] for r in rows] == ["fail", "create"]


def test_mapping_errors_and_skips_are_recorded_per_record(config_file, tmp_path, erp, crm):
    erp.put("customer", {"number": "C1", "name": "", "city": "x"})
    erp.put("customer", {"number": "C2", "name": "Blocked", "blocked": True})
    erp.put("customer", {"number": "C3"})  # no name key at all: a KeyError in the mapping
    engine = make_engine(config_file, tmp_path)

    result = engine.sync(["customers"])

    rows = {r["source_id"]: r for r in engine.state.audit_rows()}
    assert [r["action"] for r in rows.values()] == ["fail", "skip", "fail"]
    assert result.flows["customers"].failed == 2 and result.exit_code == EXIT_RECORDS_FAILED
    assert crm.all("account") == []


def test_system_down_during_writes_queues_the_batch_and_exits_5(config_file, tmp_path, erp, crm):
    seed_customers(erp, 3)
    crm.set_fault("down", True)
    engine = make_engine(config_file, tmp_path)

    result = engine.sync(["customers"])

    assert result.exit_code == EXIT_UNREACHABLE and "connection refused" in result.stopped
    assert len(engine.state.replay_items()) == 3
    crm.set_fault("down", False)
    assert engine.replay().exit_code == EXIT_OK
    assert len(crm.all("account")) == 3


def test_auth_failure_stops_the_run_and_keeps_the_watermark(config_file, tmp_path, erp, crm):
    seed_customers(erp, 3)
    crm.set_fault("auth", True)
    engine = make_engine(config_file, tmp_path)

    with pytest.raises(AuthError):
        engine.sync(["customers"])

    assert engine.state.watermark("erp-crm", "customers") is None
    assert engine.state.replay_items() == []
    crm.set_fault("auth", False)
    assert engine.sync(["customers"]).exit_code == EXIT_OK and len(crm.all("account")) == 3


def test_dry_run_writes_nothing_and_says_what_it_would_do(config_file, tmp_path, erp, crm):
    rows = seed_customers(erp, 15)
    engine = make_engine(config_file, tmp_path)
    engine.sync(["customers"], since=datetime.fromisoformat(rows[10]["modified"]))  # 5 already there

    result = engine.sync(["customers"], full=True, dry_run=True)

    assert len(crm.all("account")) == 5
    actions = sorted(p.action for p in result.planned)
    assert actions.count("create") == 10
    assert result.estimated_calls == {"crm": 1, "erp": 1}  # the read it made; ten creates fit one write call of 10
    assert engine.state.watermark("erp-crm", "customers") == datetime.fromisoformat(rows[-1]["modified"])
    assert all(r["run_id"] != result.run_id for r in engine.state.audit_rows(limit=None))


def test_audit_rows_hold_no_payload_unless_asked(config_file, tmp_path, erp):
    seed_customers(erp, 1)
    engine = make_engine(config_file, tmp_path)
    engine.sync(["customers"])
    assert engine.state.audit_rows()[0]["payload"] is None

    erp.update("customer", erp.all("customer")[0]["id"], city="Molde")
    with_payload = make_engine(config_file, tmp_path, audit_payloads=True)
    with_payload.sync(["customers"])
    assert '"city": "Molde"' in with_payload.state.audit_rows()[-1]["payload"]


def test_when_both_sides_changed_the_later_change_wins_and_the_audit_says_so(config_file, tmp_path, erp, crm):
    rows = seed_customers(erp, 2)
    engine = make_engine(config_file, tmp_path)
    engine.sync(["customers"])
    first, second = (crm.find("account", "number", n)[0] for n in ("C00001", "C00002"))

    # Record 1: the CRM changed, then the ERP changed later -> the ERP's version is kept.
    crm.update("account", first["id"], city="Crm City")
    erp.update("customer", rows[0]["id"], city="Erp City")
    # Record 2: the ERP changed, then the CRM changed later -> the CRM's change is applied.
    erp.update("customer", rows[1]["id"], city="Erp Early")
    crm.update("account", second["id"], city="Crm Late")

    result = engine.sync(["accounts"])

    assert erp.get("customer", rows[0]["id"])["city"] == "Erp City"
    assert erp.get("customer", rows[1]["id"])["city"] == "Crm Late"
    notes = {r["source_id"]: r["note"] for r in engine.state.audit_rows(run=result.run_id)}
    assert notes[first["id"]] == "conflict: both sides changed; rule later-wins: kept erp's version"
    assert notes[second["id"]] == "conflict: both sides changed; rule later-wins: applied crm's change"
    # The kept ERP version then goes forward, so both sides agree again.
    engine.sync(["customers"])
    assert crm.get("account", first["id"])["city"] == "Erp City"


def test_write_calls_carry_full_batches_even_when_most_records_are_unchanged(config_file, tmp_path, erp, crm):
    rows = seed_customers(erp, 40)
    engine = make_engine(config_file, tmp_path)
    engine.sync(["customers"])
    engine.connectors["crm"].writes.clear()
    for row in rows[::4]:  # 10 changes spread over the 40 records
        erp.update("customer", row["id"], city="Changed")

    result = engine.sync(["customers"], full=True)

    assert result.flows["customers"].updated == 10
    assert engine.connectors["crm"].writes == [10]  # one call, not one per read page


def test_a_run_that_would_cross_the_credit_budget_stops_cleanly_and_the_next_resumes(config_file, tmp_path, erp, crm):
    seed_customers(erp, 30)
    crm.set_fault("credits", 0)
    engine = make_engine(config_file, tmp_path, credit_budget=2)  # two write calls of ten today

    result = engine.sync(["customers"])

    assert "budget" in result.stopped and result.exit_code == EXIT_RECORDS_FAILED
    assert len(crm.all("account")) == 20 and engine.state.replay_items() == []
    # Two of the three concurrent write calls won the budget; the watermark never passes the one that did not.
    mark = engine.state.watermark("erp-crm", "customers")
    landed = {a["number"] for a in crm.all("account")}
    rows = erp.all("customer")
    assert all(r["number"] in landed for r in rows if datetime.fromisoformat(r["modified"]) <= mark)

    crm.set_fault("credits", 0)  # a new day
    assert make_engine(config_file, tmp_path, credit_budget=2).sync(["customers"]).exit_code == EXIT_OK
    assert len(crm.all("account")) == 30


def test_a_record_created_on_the_crm_side_gets_its_erp_number_back_once_and_never_doubles(config_file, tmp_path, erp, crm):
    new = crm.put("account", {"account_name": "Born in CRM", "city": "Tromsø"})  # no number yet
    engine = make_engine(config_file, tmp_path)

    assert engine.sync(["accounts"]).flows["accounts"].created == 1
    customer = erp.all("customer")[0]
    assert customer["name"] == "Born in CRM" and customer["number"] == "C-0001"

    forward = engine.sync(["customers"])  # the ERP's number goes back to the same account
    assert forward.flows["customers"].updated == 1 and forward.flows["customers"].created == 0
    assert crm.get("account", new["id"])["number"] == "C-0001"

    for _ in range(2):  # and then the two sides are at rest
        assert engine.sync(["accounts"]).flows["accounts"].updated == 0
        result = engine.sync(["customers"])
        assert result.flows["customers"].updated == result.flows["customers"].created == 0
    assert len(crm.all("account")) == 1 and len(erp.all("customer")) == 1


def test_a_run_killed_between_the_erp_numbering_a_crm_born_record_and_the_link_never_doubles_it(
        config_file, tmp_path, erp, crm, monkeypatch):
    new = crm.put("account", {"account_name": "Born in CRM", "city": "Tromsø"})  # no number yet
    crm.put("account", {"account_name": "Also born in CRM", "city": "Bergen"})
    engine = make_engine(config_file, tmp_path)

    class Killed(BaseException):
        pass

    erp_side = engine.connectors["erp"]
    create = erp_side.write

    def create_then_die(*args, **kwargs):
        create(*args, **kwargs)
        raise Killed  # the process dies after the ERP created the customers, before the state file learns it
    monkeypatch.setattr(erp_side, "write", create_then_die)
    with pytest.raises(Killed):
        engine.sync(["accounts"])
    monkeypatch.undo()
    assert len(erp.all("customer")) == 2 and engine.state.count_links("erp-crm", "accounts") == 0

    # The next run, all flows in their order: the customers flow (first) must not see two strangers.
    rerun = make_engine(config_file, tmp_path)
    result = rerun.sync()

    assert result.exit_code == EXIT_OK
    assert sorted(c["name"] for c in erp.all("customer")) == ["Also born in CRM", "Born in CRM"]
    assert len(crm.all("account")) == 2
    numbered = crm.get("account", new["id"])
    assert numbered["number"] == erp.find("customer", "name", "Born in CRM")[0]["number"]
    links = [r for r in rerun.state.audit_rows(run=result.run_id, limit=None) if r["action"] == "link"]
    assert len(links) == 2 and all("interrupted run" in r["note"] for r in links)
    assert rerun.state.open_intents("erp-crm") == []
    for _ in range(2):  # and then the two sides are at rest
        again = rerun.sync()
        assert sum(s.created + s.updated for s in again.flows.values()) == 0


def test_an_interrupted_create_that_never_landed_is_created_on_the_next_run(config_file, tmp_path, erp, crm,
                                                                            monkeypatch):
    crm.put("account", {"account_name": "Born in CRM", "city": "Tromsø"})
    engine = make_engine(config_file, tmp_path)

    class Killed(BaseException):
        pass

    def die(*args, **kwargs):
        raise Killed  # the process dies after noting the create, before sending it
    monkeypatch.setattr(engine.connectors["erp"], "write", die)
    with pytest.raises(Killed):
        engine.sync(["accounts"])
    monkeypatch.undo()
    assert erp.all("customer") == [] and len(engine.state.open_intents("erp-crm")) == 1

    result = make_engine(config_file, tmp_path).sync(["accounts"])

    assert result.flows["accounts"].created == 1 and [c["name"] for c in erp.all("customer")] == ["Born in CRM"]


def test_a_first_load_hands_the_target_bulk_sized_writes_and_increments_go_back_to_batches(config_file, tmp_path, erp, crm, monkeypatch):
    from tests.fakes import StoreConnector
    rows = seed_customers(erp, 45)
    monkeypatch.setattr(StoreConnector, "initial_load_batch", lambda self, entity: 20, raising=False)
    engine = make_engine(config_file, tmp_path)

    engine.sync(["customers"])
    assert engine.connectors["crm"].writes == [20, 20, 5]  # one at a time, bulk-sized

    for row in rows[:12]:
        erp.update("customer", row["id"], city="Next day")
    engine.sync(["customers"])
    assert sorted(engine.connectors["crm"].writes[3:]) == [2, 10]  # the configured batch size again


def test_a_dry_run_of_a_first_load_resolves_references_to_records_it_would_create(config_file, tmp_path, erp, crm):
    customer = seed_customers(erp, 1)[0]
    item = erp.put("item", {"number": "I1", "name": "Widget"})
    erp.put("invoice", {"number": "INV1", "customer_id": customer["id"], "lines": [{"item_id": item["id"], "qty": 1}]})
    engine = make_engine(config_file, tmp_path)

    result = engine.sync(["customers", "items", "invoices"], dry_run=True)

    assert result.exit_code == EXIT_OK and result.failed == 0
    assert sorted(p.flow for p in result.planned) == ["customers", "invoices", "items"]
    assert crm.all("invoice") == [] and engine.state.replay_items() == []


def test_conflict_checks_read_the_targets_changes_once_not_each_linked_record(config_file, tmp_path, erp, crm):
    rows = seed_customers(erp, 250)
    engine = make_engine(config_file, tmp_path, overlap_seconds=0)
    engine.sync(["customers", "accounts"])
    engine.sync(["customers", "accounts"])  # accounts reads the first run's writes back: it has a watermark
    account = crm.find("account", "number", "C00007")[0]
    crm.update("account", account["id"], city="Crm City")  # one change the accounts flow has not read yet
    for row in rows:
        erp.update("customer", row["id"], city="Erp City")
    before = engine.counter.snapshot()

    result = engine.sync(["customers"])

    assert result.flows["customers"].updated == 250
    # 25 write calls of 10 and one read of the accounts changed since the accounts flow read (it holds one);
    # fetching each linked account would have cost 250 reads.
    assert engine.counter.since(before)["crm"] == 25 + 1
    assert crm.get("account", account["id"])["city"] == "Erp City"  # the later change won
    notes = {r["source_id"]: r["note"] for r in engine.state.audit_rows(run=result.run_id, limit=None)}
    assert notes[rows[6]["id"]] == "conflict: both sides changed; rule later-wins: applied erp's change"
    assert sum(1 for n in notes.values() if n and n.startswith("conflict")) == 1


def test_read_ahead_keeps_order_passes_the_sources_error_on_and_closes_the_source():
    import threading

    from mlconnector.sync.pipeline import ReadAhead as _ReadAhead
    from mlconnector.errors import Unreachable
    from mlconnector.systems.base import Record

    closed = threading.Event()

    def source(n: int, fail: bool):
        try:
            for i in range(n):
                yield Record("erp", "customer", str(i), None, {})
            if fail:
                raise Unreachable("erp", "connection reset while reading page 3")
        finally:
            closed.set()

    assert [r.id for r in _ReadAhead(source(250, False), 100, 10)] == [str(i) for i in range(250)]
    assert closed.wait(5)

    closed.clear()
    ahead = _ReadAhead(source(25, True), 100, 10)
    seen = []
    with pytest.raises(Unreachable, match="page 3"):
        for record in ahead:
            seen.append(record.id)
    assert len(seen) == 25 and closed.wait(5)

    # Abandoned early (the run stops): the thread ends and the source is closed, not left blocked.
    closed.clear()
    ahead = _ReadAhead(source(10_000, False), 100, 10)
    next(iter(ahead))
    ahead.close()
    assert closed.wait(5) and not ahead._thread.is_alive()


def test_fingerprints_keep_their_text_so_stored_hashes_still_match() -> None:
    """Links store sha256 of json.dumps(sort_keys, compact, default=str): the faster encoder gives the same text."""
    values = [
        {"b": 1, "a": [1.5, 1e-05, 1e16, -0.0, 10**30, True, None], "c": {"z": "Zoë \u2603 \U0001F600", "y": "\x7f\n\t\"q\""}},
        {"when": datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc), "day": date(2026, 1, 2), "amount": Decimal("1.10")},
        [], {}, "text", 3, {"Lines": [{"Product": {"id": "5", "name": "Desk"}, "qty": 2.0}]},
    ]
    for value in values:
        expected = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
        assert canonical_json(value) == expected
        if isinstance(value, dict):
            assert source_fingerprint(value) == hashlib.sha256(expected.encode()).hexdigest()
    # A lookup counts by its id alone.
    assert payload_hash({"Account": {"id": "7", "name": "Old"}}) == hashlib.sha256(b'{"Account":{"id":"7"}}').hexdigest()
