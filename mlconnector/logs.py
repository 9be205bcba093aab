"""Log lines that say which run they belong to: text, or JSON (one object a line) for journald and log shippers.

The run is process-wide, not per thread: a run's reading, writing and recording threads all log for it, and a
process runs one run at a time (`listen` drains and polls pairs one after another)."""

from __future__ import annotations

import json
import logging
import os
import threading
from datetime import datetime, timezone
from typing import IO

from mlconnector.tenants import TENANT_ENV

LOG_FORMAT_ENV = "MLCONNECTOR_LOG_FORMAT"
FORMATS = ("text", "json")
chosen = "text"  # the format the command line chose (--log-format, $MLCONNECTOR_LOG_FORMAT)

_lock = threading.Lock()
_current: dict[str, str | None] = {"run_id": None, "pair": None, "flow": None}
# The receiver's own lines (a notification refused) belong to no run, whatever run a drain has under way.
_OUTSIDE_RUNS = ("mlconnector.listen",)


def begin(run_id: str, pair: str) -> None:
    """Every log line from now until ``end`` carries the run's id and pair."""
    with _lock:
        _current.update(run_id=run_id, pair=pair, flow=None)


def end() -> None:
    with _lock:
        _current.update(run_id=None, pair=None, flow=None)


def set_flow(flow: str | None) -> None:
    """The flow the run works on now (flows run one after another)."""
    _current["flow"] = flow


class RunFields(logging.Filter):
    """Puts run_id, pair and flow on every record (None outside a run)."""

    def filter(self, record: logging.LogRecord) -> bool:
        inside = not record.name.startswith(_OUTSIDE_RUNS)
        for name, value in _current.items():
            if not hasattr(record, name):
                setattr(record, name, value if inside else None)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time (UTC, ISO 8601), level, logger, message, run_id, pair, flow (and the traceback
    as ``exception``, where there is one; ``tenant`` where one is chosen: read as set, a formatter never raises)."""

    def format(self, record: logging.LogRecord) -> str:
        line = {"time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
                "level": record.levelname.lower(), "logger": record.name, "message": record.getMessage(),
                "run_id": getattr(record, "run_id", None), "pair": getattr(record, "pair", None),
                "flow": getattr(record, "flow", None)}
        tenant = os.environ.get(TENANT_ENV)
        if tenant:  # a log shipper collecting every tenant's pods tells them apart by it
            line["tenant"] = tenant
        for name in ("status", "exit_code", "duration_seconds", "records", "failed"):
            if hasattr(record, name):  # a run's last line carries its outcome as fields
                line[name] = getattr(record, name)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``time LEVEL logger [run pair/flow]: message``; the brackets only inside a run."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s%(where)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        run_id = getattr(record, "run_id", None)
        flow = getattr(record, "flow", None)
        record.where = (f" [{run_id} {getattr(record, 'pair', '')}{'/' + flow if flow else ''}]" if run_id else "")
        return super().format(record)


def handler(fmt: str, stream: IO[str]) -> logging.Handler:
    """A handler writing ``fmt`` lines (text or json) with the run's fields to ``stream``."""
    made = logging.StreamHandler(stream)
    made.addFilter(RunFields())
    made.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    return made
