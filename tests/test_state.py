"""The state file: private, migrated once, watermarks that never move back."""

from __future__ import annotations

import os
import stat
from datetime import datetime, timedelta, timezone

import pytest

from mlconnector.state import CACHE_KIB, WAL_CHECKPOINT_PAGES, State, default_state_path, migrations


def test_state_file_is_created_private_and_migrated_once(tmp_path):
    path = tmp_path / "deep" / "state.db"
    State(path).close()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    with State(path) as state:
        applied = [m.name for m in migrations.applied(state.db)]
    assert applied == ["m001_initial", "m002_inbox_per_pair", "m003_link_fields", "m004_create_intents",
                       "m005_link_source_hash", "m006_link_target_content", "m007_target_keys", "m008_inbox_digest",
                       "m009_setup_findings", "m010_health", "m011_field_changes", "m012_deletion_checks"]


def test_default_state_path_honours_env(monkeypatch, tmp_path):
    monkeypatch.setenv("MLCONNECTOR_STATE", str(tmp_path / "x.db"))
    assert default_state_path() == tmp_path / "x.db"
    monkeypatch.delenv("MLCONNECTOR_STATE")
    assert default_state_path().name == "state.db" and "mlconnector" in str(default_state_path())


def test_watermark_never_moves_back_and_is_utc(tmp_path):
    with State(tmp_path / "s.db") as state:
        later = datetime(2026, 5, 1, 12, tzinfo=timezone(timedelta(hours=2)))
        state.set_watermark("p", "f", later)
        state.set_watermark("p", "f", later - timedelta(days=1))
        assert state.watermark("p", "f") == later
        assert state.watermark("p", "f").utcoffset() == timedelta(0)


def test_naive_timestamps_are_refused(tmp_path):
    with State(tmp_path / "s.db") as state, pytest.raises(ValueError, match="naive"):
        state.set_watermark("p", "f", datetime(2026, 1, 1))


def test_a_failed_transaction_leaves_nothing_behind(tmp_path):
    with State(tmp_path / "s.db") as state:
        with pytest.raises(RuntimeError):
            with state.transaction():
                state.add_audit({"run_id": "r", "pair": "p", "action": "create"})
                raise RuntimeError("crash")
        assert state.audit_rows() == []


def test_a_transaction_inside_another_is_undone_alone_and_lands_with_the_outer(tmp_path):
    with State(tmp_path / "s.db") as state:
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
