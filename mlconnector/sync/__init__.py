"""The engine: runs a pair's flows between its connectors and records every step in the state file.

``run`` orchestrates a run (flow order, start, finish, exit code); ``pipeline`` holds the threads (read-ahead, write
pool, recording); ``decide`` turns a batch of source records into decisions (seen, echo, unchanged, failed,
conflict kept, write); ``bookkeeping`` records what a batch did; ``recovery`` settles creates a killed run left
open; ``push`` keeps channels and drains the inbox; ``window`` places a poll's read window. docs/architecture.md
draws the whole.
"""

from mlconnector.sync.outcomes import FlowStats, Planned, RunResult
from mlconnector.sync.run import Engine
from mlconnector.sync.session import Session, open_pair, pair_lock, pair_lock_file, resolve_roles

__all__ = ["Engine", "FlowStats", "Planned", "RunResult", "Session", "open_pair", "pair_lock", "pair_lock_file",
           "resolve_roles"]
