"""The state: private, migrated once, watermarks that never move back, transactions all or nothing. The tests that
take ``store`` run against both stores, the SQLite file and PostgreSQL."""

from __future__ import annotations

import os
import stat
from datetime import datetime, timedelta, timezone

import pytest

from mlconnector.api import Runtime
from mlconnector.state import (CACHE_KIB, WAL_CHECKPOINT_PAGES, BatchRecord, DeletionMarks, FlowMarks, Link, Replay,
                               State, default_state_path, iso, migrations, utcnow)


@pytest.fixture
def state(state_store):
    """A state opened as every command opens it (from the environment: the state file, or MLCONNECTOR_STATE_URL)."""
    with Runtime().open_state() as opened:
        yield opened


def test_state_file_is_created_private_and_migrated_once(tmp_path):
    path = tmp_path / "deep" / "state.db"
    State(path).close()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    with State(path) as state:
        applied = [m.name for m in migrations.applied(state.db)]
    assert applied == ["m001_initial", "m002_inbox_per_pair", "m003_link_fields", "m004_create_intents",
                       "m005_link_source_hash", "m006_link_target_content", "m007_target_keys", "m008_inbox_digest",
                       "m009_setup_findings", "m010_health", "m011_field_changes", "m012_deletion_checks",
                       "m013_kept_after_delete", "m014_run_kind", "m015_channel_failures", "m016_reconcile_results",
                       "m017_alert_incidents",
                       "m018_mapping_digests", "m019_shared_ledger", "m020_field_checks"]


def test_default_state_path_honours_env(monkeypatch, tmp_path):
    monkeypatch.setenv("MLCONNECTOR_STATE", str(tmp_path / "x.db"))
    assert default_state_path() == tmp_path / "x.db"
    monkeypatch.delenv("MLCONNECTOR_STATE")
    assert default_state_path().name == "state.db" and "mlconnector" in str(default_state_path())


def test_watermark_never_moves_back_and_is_utc(state):
    later = datetime(2026, 5, 1, 12, tzinfo=timezone(timedelta(hours=2)))
    state.set_watermark("p", "f", later)
    state.set_watermark("p", "f", later - timedelta(days=1))
    assert state.watermark("p", "f") == later
    assert state.watermark("p", "f").utcoffset() == timedelta(0)


def test_naive_timestamps_are_refused(state):
    with pytest.raises(ValueError, match="naive"):
        state.set_watermark("p", "f", datetime(2026, 1, 1))


def test_a_failed_transaction_leaves_nothing_behind(state):
    with pytest.raises(RuntimeError):
        with state.transaction():
            state.add_audit({"run_id": "r", "pair": "p", "action": "create"})
            raise RuntimeError("crash")
    assert state.audit_rows() == []


def test_a_transaction_inside_another_is_undone_alone_and_lands_with_the_outer(state):
    with state.transaction():
        state.add_audit({"run_id": "r", "pair": "p", "action": "create", "source_id": "kept"})
        with pytest.raises(RuntimeError):
            with state.transaction():
                state.add_audit({"run_id": "r", "pair": "p", "action": "create", "source_id": "undone"})
                raise RuntimeError("crash")
        with state.transaction():
            state.add_audit({"run_id": "r", "pair": "p", "action": "create", "source_id": "also kept"})
    assert sorted(r["source_id"] for r in state.audit_rows()) == ["also kept", "kept"]
    with pytest.raises(RuntimeError):
        with state.transaction():
            with state.transaction():
                state.add_audit({"run_id": "r", "pair": "p", "action": "create", "source_id": "outer fails"})
            raise RuntimeError("crash")
    assert sorted(r["source_id"] for r in state.audit_rows()) == ["also kept", "kept"]


def test_commits_are_synced_lazily_except_the_intent_before_a_keyless_create(tmp_path):
    state = State(tmp_path / "state.db")
    assert state.db.conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    statements: list[str] = []
    state.db.conn.set_trace_callback(statements.append)
    state.add_intents("nav-zoho", "accounts_to_customers", ["z1"], "run-1")
    state.db.conn.set_trace_callback(None)
    full, insert, commit = (next(i for i, s in enumerate(statements) if s.startswith(prefix))
                            for prefix in ("PRAGMA synchronous=FULL", "INSERT INTO intents", "COMMIT"))
    assert full < insert < commit and statements[-1] == "PRAGMA synchronous=NORMAL"
    assert [i["source_id"] for i in state.open_intents("nav-zoho")] == ["z1"]


def test_the_writing_connection_holds_a_group_of_batches_pages_and_checkpoints_seldom(tmp_path):
    # A group of batches' links and audit rows touch a page of each index per record: with SQLite's 2,000 KiB
    # cache they were written to the log before the commit and again at it (see CACHE_KIB).
    state = State(tmp_path / "state.db")
    assert state.db.conn.execute("PRAGMA cache_size").fetchone()[0] == -CACHE_KIB
    assert CACHE_KIB > 2_000
    assert state.db.conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == WAL_CHECKPOINT_PAGES


def test_a_state_file_deleted_or_replaced_after_it_was_opened_refuses_to_commit(tmp_path):
    from mlconnector.state import StateFileReplaced

    path = tmp_path / "state.db"
    state = State(path)
    with state.transaction():
        state.set_watermark("p", "f", datetime(2026, 1, 1, tzinfo=timezone.utc))
    other = tmp_path / "other.db"
    State(other).close()
    other.replace(path)  # a restore from backup, or a copy over it
    with pytest.raises(StateFileReplaced, match=str(path)):
        with state.transaction():
            state.set_watermark("p", "f", datetime(2026, 1, 2, tzinfo=timezone.utc))
    path.unlink()
    with pytest.raises(StateFileReplaced, match="deleted or replaced"):
        state.check_same_file()
    state.close()
    with State(tmp_path / "fresh.db") as fresh:
        fresh.check_same_file()  # the file it opened: no complaint


def test_a_batch_lands_whole_and_is_read_back_as_committed(state):
    when = datetime(2026, 3, 1, tzinfo=timezone.utc)
    link = Link("p", "customers", "C1", "Z1", when, "h1", None, ("City", "Name"), target_key="c1")
    failed = Replay("C2", "nav", "customer", "duplicate_key", "shares its key with C3", "run-1", target_key="dup")
    state.record_batch("p", "customers", BatchRecord(
        links=[link], queued=[failed], watermark=when,
        audits=[{"run_id": "run-1", "pair": "p", "flow": "customers", "action": "create", "source_id": "C1",
                 "note": "push", "time": iso(utcnow())}]))
    state.queue_replays("p", "customers", [failed])  # a second attempt

    assert state.committed_links("p", "customers", ["C1", "C9"]) == {"C1": link}
    assert state.committed_links("p", "customers", ["Z1"], by_target=True)["Z1"].source_id == "C1"
    assert state.holders_of_keys("p", "customers", ["c1", "dup"]) == {"c1": {"C1"}, "dup": {"C2"}}
    [waiting] = state.replay_items(pair="p")
    assert waiting["attempts"] == 2 and waiting["error_class"] == "duplicate_key"
    assert state.watermark("p", "customers") == when
    assert state.arrivals(when) == [{"pair": "p", "flow": "customers", "by_push": 1, "by_poll_only": 0}]


def test_a_notification_waiting_is_stored_once_and_setup_findings_replace_the_last(state):
    assert state.add_to_inbox(pair="p", system="zoho", entity="Accounts", ids=["1", "2"], operation="update")
    assert not state.add_to_inbox(pair="p", system="zoho", entity="Accounts", ids=["2", "1"], operation="update")
    [waiting] = state.pending_inbox("p")
    state.mark_processed([waiting["id"]])
    assert state.inbox_depth() == 0
    assert state.add_to_inbox(pair="p", system="zoho", entity="Accounts", ids=["1", "2"], operation="update")

    state.save_setup_missing("p", {"customers": ["missing Account_Number", "missing Account_Number"]})
    state.save_setup_missing("p", {"items": ["missing Product_Code"]})
    assert state.setup_missing("p") == {"items": ["missing Product_Code"]}


def test_records_kept_after_a_deletion_are_noted_replaced_and_forgotten(state):
    when = datetime(2026, 3, 1, tzinfo=timezone.utc)
    with state.transaction():
        state.note_kept_after_delete("p", "customers", ["Z1", "Z2"], "nav", "flag", when)
        state.note_kept_after_delete("p", "customers", ["Z2"], "nav", "unlink", when)  # noted again: replaced
    state.note_kept_after_delete("p", "vendors", ["Z1"], "gp", "flag", when)
    assert state.kept_after_delete("p", "customers") == {"Z1": "nav", "Z2": "nav"}
    assert state.kept_policies("p", "customers") == {"Z1": "flag", "Z2": "unlink"}
    state.forget_kept_after_delete("p", "customers", ["Z1", "Z9"])
    assert state.kept_after_delete("p", "customers") == {"Z2": "nav"}
    assert state.kept_after_delete("p", "vendors") == {"Z1": "gp"}


def test_runs_say_their_kind_and_checks_read_the_last_syncs(state):
    state.start_run("20260301T000000Z-a", "p")
    state.finish_run("20260301T000000Z-a", "ok", 0, {})
    state.start_run("20260301T000001Z-b", "p", kind="drain")
    state.finish_run("20260301T000001Z-b", "failed", 3, {})
    state.start_run("20260301T000002Z-c", "p")
    state.finish_run("20260301T000002Z-c", "failed", 5, {})
    state.start_run("20260301T000003Z-d", "q", kind="replay")
    assert state.run_pairs() == ["p", "q"]
    assert [r["id"] for r in state.last_syncs("p")] == ["20260301T000002Z-c", "20260301T000000Z-a"]
    assert state.last_success("p")["id"] == "20260301T000000Z-a" and state.last_success("q") is None
    assert state.last_runs("q")[0]["kind"] == "replay"


def test_channel_failures_reconcile_results_and_incidents(state):
    assert state.note_channel_failure("zoho", "Accounts", "refused") is True
    assert state.note_channel_failure("zoho", "Accounts", "refused again") is False
    [failure] = state.channel_failures()
    assert failure["error"] == "refused again" and failure["since"] <= failure["last"]
    assert state.clear_channel_failure("zoho", "Accounts") and not state.clear_channel_failure("zoho", "Accounts")
    assert state.channel_failures() == []

    state.save_reconcile("p", False, 3)
    state.save_reconcile("p", True, 0)
    [result] = state.reconcile_results()
    assert (result["pair"], result["agrees"], result["differences"]) == ("p", True, 0)

    now = utcnow()
    state.save_incident("run:p", "failed", "p failed", now)
    state.save_incident("run:p", "failed", "p failed again", now + timedelta(hours=1))
    state.save_incident("channel:zoho/Accounts", "channel_failed", "cannot renew", now)
    incident = state.incident("run:p")
    assert incident["opened"] == now and incident["last_sent"] == now + timedelta(hours=1)
    assert incident["text"] == "p failed again"
    assert state.open_incidents("run:") == ["run:p"] and len(state.open_incidents()) == 2
    assert state.close_incident("run:p") and not state.close_incident("run:p") and state.incident("run:p") is None


def test_retention_prunes_old_rows_keeps_waiting_notifications_and_each_pairs_last_sync(state):
    old = iso(utcnow() - timedelta(days=100))
    state.add_audits([{"run_id": "r", "pair": "p", "action": "update", "time": old} for _ in range(5)])
    state.add_audit({"run_id": "r", "pair": "p", "action": "update", "time": iso(utcnow())})
    for i in range(3):
        state.start_run(f"2026030{i}T000000Z-x", "p")
        state.finish_run(f"2026030{i}T000000Z-x", "ok", 0, {})
    assert state.add_to_inbox(pair="p", system="zoho", entity="Accounts", ids=["1"], operation="update")
    assert state.add_to_inbox(pair="p", system="zoho", entity="Accounts", ids=["2"], operation="update")
    state.mark_processed([state.pending_inbox("p")[0]["id"]])
    waiting, oldest = state.inbox_backlog()
    assert waiting == 1 and oldest is not None

    assert state.prune(utcnow() - timedelta(days=90)) == {"audit": 5, "inbox": 0, "runs": 0}
    assert state.prune(utcnow() + timedelta(days=1)) == {"audit": 1, "inbox": 1, "runs": 2}
    assert [r["id"] for r in state.last_runs("p")] == ["20260302T000000Z-x"]
    assert state.inbox_depth() == 1
    state.vacuum()
    size = state.size()
    assert size["bytes"] > 0 and size["free_bytes"] in (0, None)


def test_replay_ages_per_flow(state):
    state.queue_replays("p", "customers", [Replay("C1", "nav", "customer", "http", "500", "r"),
                                            Replay("C2", "nav", "customer", "http", "500", "r")])
    [row] = state.replay_waiting_since()
    assert (row["pair"], row["flow"], row["count"]) == ("p", "customers", 2) and row["oldest"] is not None


def test_a_flows_mapping_digest_is_none_until_recorded_then_replaced(state):
    assert state.mapping_digest("p", "customers") is None
    state.set_mapping_digest("p", "customers", "")
    assert state.mapping_digest("p", "customers") == ""
    state.set_mapping_digest("p", "customers", "abc")
    assert state.mapping_digest("p", "customers") == "abc" and state.mapping_digest("p", "items") is None


def test_a_flows_marks_are_read_in_one_call(state):
    from datetime import datetime, timezone

    assert state.flow_marks("p", "customers") == FlowMarks(None, None, False)
    mark = datetime(2026, 3, 2, 9, 30, 0, 123456, tzinfo=timezone.utc)
    state.set_watermark("p", "customers", mark)
    state.set_mapping_digest("p", "customers", "abc")
    state.queue_replays("p", "customers", [Replay("C1", "nav", "customer", "http", "500", "r")])
    assert state.flow_marks("p", "customers") == FlowMarks(mark, "abc", True)
    assert state.flow_marks("p", "items") == FlowMarks(None, None, False)


def test_a_deletion_look_reads_what_was_kept_and_how_far_the_checks_got_in_one_call(state):
    when = datetime(2026, 3, 1, tzinfo=timezone.utc)
    assert state.deletion_marks("p", "customers") == DeletionMarks({}, None, None)
    state.note_kept_after_delete("p", "customers", ["Z1"], "nav", "flag", when)
    state.note_deletion_check("p", "customers", feed_since=when)
    assert state.deletion_marks("p", "customers") == DeletionMarks({"Z1": "flag"}, when, None)
    state.note_deletion_check("p", "customers", scanned=when)  # the feed's mark stays
    assert state.deletion_marks("p", "customers") == DeletionMarks({"Z1": "flag"}, when, when)



def test_a_statement_the_database_refuses_inside_a_nested_transaction_is_undone_alone(state):
    with state.transaction():
        with state.transaction():
            pass  # nothing sent inside: nothing to release
        state.add_audit({"run_id": "r", "pair": "p", "action": "create", "source_id": "kept"})
        with pytest.raises(Exception):  # refused by the database itself: VACUUM inside a transaction
            with state.transaction():
                state.add_audit({"run_id": "r", "pair": "p", "action": "create", "source_id": "undone"})
                state.vacuum()
        state.add_audit({"run_id": "r", "pair": "p", "action": "create", "source_id": "after"})
    with state.transaction():
        pass  # a transaction in which nothing was sent
    assert sorted(r["source_id"] for r in state.audit_rows()) == ["after", "kept"]
    state.set_watermark("p", "f", datetime(2026, 5, 1, tzinfo=timezone.utc))  # the connection is usable again
    assert state.watermark("p", "f") == datetime(2026, 5, 1, tzinfo=timezone.utc)
