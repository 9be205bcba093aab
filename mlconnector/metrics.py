"""`status --prometheus`: the state file as Prometheus metrics in the text exposition format, for node_exporter's
textfile collector. Gauges only: every figure is read from the state file as it stands (a run's counts are its
last run's), so nothing resets or double counts when the file is pruned or a run is replayed."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from datetime import datetime

from mlconnector.health import Limits, check
from mlconnector.state import State

_ACTIONS = ("read", "created", "updated", "unchanged", "skipped", "failed")


class _Metrics:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, help_: str, samples: Iterable[tuple[dict[str, str], float]]) -> None:
        """One metric: its HELP and TYPE, then a line per sample (a family without samples is left out)."""
        samples = list(samples)
        if not samples:
            return
        self.lines += [f"# HELP mlconnector_{name} {help_}", f"# TYPE mlconnector_{name} gauge"]
        for labels, value in samples:
            shown = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
            self.lines.append(f"mlconnector_{name}{{{shown}}} {_number(value)}" if shown
                              else f"mlconnector_{name} {_number(value)}")


def _escape(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _stamp(value: str | datetime | None) -> float | None:
    if value is None:
        return None
    return (datetime.fromisoformat(value) if isinstance(value, str) else value).timestamp()


def render(state: State, pairs: Iterable[str], limits: Limits, now: datetime,
           run_alive: Callable[[str], bool]) -> str:
    metrics = _Metrics()
    names = sorted(set(pairs) | set(state.run_pairs()))
    last = {pair: runs[0] for pair in names if (runs := state.last_syncs(pair, 1))}
    summaries = {pair: json.loads(run["summary"]) if run["summary"] else {} for pair, run in last.items()}

    metrics.family("last_run_start_timestamp_seconds", "When the pair's last sync started (Unix time).",
                   [({"pair": p}, _stamp(r["started"])) for p, r in last.items()])
    metrics.family("last_run_duration_seconds", "How long the pair's last finished sync took.",
                   [({"pair": p}, _stamp(r["finished"]) - _stamp(r["started"])) for p, r in last.items()
                    if r["finished"]])
    metrics.family("last_run_exit_code", "The exit code of the pair's last finished sync.",
                   [({"pair": p}, r["exit_code"]) for p, r in last.items() if r["exit_code"] is not None])
    metrics.family("last_run_ok", "1 when the pair's last sync ended ok, else 0.",
                   [({"pair": p}, int(r["status"] == "ok")) for p, r in last.items() if r["status"] != "running"])
    successes = {p: state.last_success(p) for p in names}
    metrics.family("last_success_timestamp_seconds", "When the pair's last good sync ended (Unix time).",
                   [({"pair": p}, _stamp(r["finished"])) for p, r in successes.items() if r and r["finished"]])
    metrics.family("last_run_records", "Records of the pair's last sync, by flow and what became of them.",
                   [({"pair": p, "flow": flow, "action": action}, stats.get(action, 0))
                    for p, summary in summaries.items() for flow, stats in sorted(summary.get("flows", {}).items())
                    for action in _ACTIONS])
    metrics.family("last_run_api_calls", "API calls the pair's last sync made, per system.",
                   [({"pair": p, "system": system}, n) for p, summary in summaries.items()
                    for system, n in sorted(_calls(summary).items())])
    metrics.family("last_run_api_credits", "API credits the pair's last sync spent, per system (Zoho).",
                   [({"pair": p, "system": system}, n) for p, summary in summaries.items()
                    for system, n in sorted(summary.get("credits", {}).items())])
    waiting = state.replay_waiting_since()
    metrics.family("replay_queue_records", "Records waiting in the replay queue.",
                   [({"pair": w["pair"], "flow": w["flow"]}, w["count"]) for w in waiting])
    metrics.family("replay_oldest_age_seconds", "How long the longest-waiting record of the queue has waited.",
                   [({"pair": w["pair"], "flow": w["flow"]}, round((now - w["oldest"]).total_seconds()))
                    for w in waiting if w["oldest"]])
    inbox, oldest = state.inbox_backlog()
    metrics.family("inbox_waiting_notifications", "Push notifications received and not yet processed.",
                   [({}, inbox)])
    metrics.family("inbox_oldest_age_seconds", "How long the oldest waiting notification has waited.",
                   [({}, round((now - oldest).total_seconds()))] if oldest else [])
    metrics.family("channel_expiry_timestamp_seconds", "When each push channel expires unless renewed (Unix time).",
                   [({"system": c["system"], "entity": c["entity"]}, c["expires"].timestamp())
                    for c in state.channels() if c["expires"]])
    metrics.family("channel_failing", "1 while a push channel cannot be subscribed or renewed (polled only).",
                   [({"system": f["system"], "entity": f["entity"]}, 1) for f in state.channel_failures()])
    problems = check(state, names, limits, now, run_alive)
    metrics.family("check_problems", "Problems `status --check` finds, by its exit code (10-14).",
                   [({"code": str(code)}, sum(p.code == code for p in problems)) for code in range(10, 15)])
    return "\n".join(metrics.lines) + "\n"


def _calls(summary: dict) -> dict[str, int]:
    total: dict[str, int] = {}
    for stats in summary.get("flows", {}).values():
        for system, n in stats.get("calls", {}).items():
            total[system] = total.get(system, 0) + n
    return total
