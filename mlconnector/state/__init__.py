"""The SQLite state file: schema and migrations, and the queries the engine and the CLI need.

Timestamps are stored as ISO-8601 UTC text with microseconds, so text order is time order.
"""

from mlconnector.state.audit import AUDIT_COLUMNS
from mlconnector.state.common import (MAX_ROWS_PER_STATEMENT, STATE_ENV, StateFileReplaced, default_state_path, iso,
                                      parse_iso, utcnow)
from mlconnector.state.links import Link
from mlconnector.state.schema import migrations
from mlconnector.state.queues import Replay
from mlconnector.state.base import BatchRecord, StateStore
from mlconnector.state.store import CACHE_KIB, WAL_CHECKPOINT_PAGES, State, refuse_foreign_database

__all__ = ["AUDIT_COLUMNS", "BatchRecord", "CACHE_KIB", "Replay", "Link", "MAX_ROWS_PER_STATEMENT", "STATE_ENV", "State", "StateFileReplaced", "StateStore",
           "WAL_CHECKPOINT_PAGES", "default_state_path", "iso", "migrations", "parse_iso", "refuse_foreign_database",
           "utcnow"]
