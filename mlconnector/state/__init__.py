"""The state: a SQLite file (the default) or a PostgreSQL database; schema and migrations, and the queries the
engine and the CLI need.

Timestamps are stored as ISO-8601 UTC text with microseconds, so text order is time order.
"""

from mlconnector.clock import utcnow
from mlconnector.state.audit import AUDIT_COLUMNS
from mlconnector.state.common import (MAX_ROWS_PER_STATEMENT, STATE_ENV, StateFileReplaced, default_state_path, iso,
                                      parse_iso)
from mlconnector.state.links import Link
from mlconnector.state.location import StateLocation, database_errors
from mlconnector.state.location import resolve as resolve_state
from mlconnector.state.locks import pair_lock_file
from mlconnector.state.schema import migrations
from mlconnector.state.queues import Replay
from mlconnector.state.base import BatchRecord, DeletionMarks, FlowMarks, StateStore
from mlconnector.state.store import CACHE_KIB, WAL_CHECKPOINT_PAGES, State, refuse_foreign_database

__all__ = ["AUDIT_COLUMNS", "BatchRecord", "CACHE_KIB", "DeletionMarks", "FlowMarks", "Replay", "Link", "MAX_ROWS_PER_STATEMENT", "STATE_ENV", "State", "StateFileReplaced", "StateLocation", "StateStore",
           "WAL_CHECKPOINT_PAGES", "database_errors", "default_state_path", "iso", "migrations", "pair_lock_file", "parse_iso", "refuse_foreign_database", "resolve_state",
           "utcnow"]
