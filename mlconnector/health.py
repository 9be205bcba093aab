"""Is it still working? The checks `status --check` exits on and the receiver's /health reports, read from the state
file alone (no system is called): each problem one line, with the exit code that names its kind."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from mlconnector.errors import (EXIT_CHECK_CHANNEL, EXIT_CHECK_DISAGREE, EXIT_CHECK_REPLAY, EXIT_CHECK_RUN,
                                EXIT_CHECK_STALE, ConfigError)
from mlconnector.state import State

REPLAY_AGE = timedelta(hours=24)  # a nightly `replay --all` drains the queue well within a day
CHANNEL_MARGIN = timedelta(hours=1)  # a channel this close to expiry should have been renewed already

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: str, option: str) -> timedelta:
    """``90s``, ``30m``, ``2h``, ``1d``, ``1w`` or sums of them (``1h30m``); a bare number is minutes."""
    text = value.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return timedelta(minutes=float(text))
    parts = _DURATION.findall(text)
    if not text or not parts or _DURATION.sub("", text).strip():
        raise ConfigError(f"{option} {value!r} is not a duration: use e.g. 30m, 2h, 1d or 1h30m")
    return timedelta(seconds=sum(float(n) * _UNIT[unit] for n, unit in parts))


@dataclass(frozen=True)
class Limits:
    """What counts as a problem. ``max_age`` None: a pair's last run may be of any age."""

    max_age: timedelta | None = None
    replay_age: timedelta = REPLAY_AGE
    channel_margin: timedelta = CHANNEL_MARGIN


@dataclass(frozen=True)
class Problem:
    code: int  # the exit code of its kind (mlconnector.errors.EXIT_CHECK_*)
    line: str
    pair: str | None = None

    def to_dict(self) -> dict[str, object]:
        return {"code": self.code, "pair": self.pair, "problem": self.line}


def check(state: State, pairs: Iterable[str], limits: Limits, now: datetime,
          run_alive: Callable[[str], bool]) -> list[Problem]:
    """Every problem found, pair by pair, then the channels. ``pairs``: the configured ones (each must have run
    within ``max_age``); pairs with runs recorded are checked too. ``run_alive(pair)``: whether a run of the pair
    holds its lock now (a run marked running without one was killed)."""
    found: list[Problem] = []
    for pair in sorted(set(pairs) | set(state.run_pairs())):
        found += _last_run(state, pair, limits, now, run_alive)
    for row in state.replay_waiting_since():
        if row["oldest"] and now - row["oldest"] > limits.replay_age:
            found.append(Problem(EXIT_CHECK_REPLAY, f"{row['pair']}/{row['flow']}: {row['count']} record(s) in the "
                                 f"replay queue, the oldest failed {_ago(now - row['oldest'])} ago; see `mlconnector "
                                 f"audit --pair {row['pair']} --status failed`, then `mlconnector replay --all`",
                                 row["pair"]))
    failed = {(f["system"], f["entity"]) for f in state.channel_failures()}
    for failure in state.channel_failures():
        found.append(Problem(EXIT_CHECK_CHANNEL, f"push channel {failure['system']} {failure['entity']}: failing "
                             f"since {failure['since']:%Y-%m-%d %H:%M} UTC ({failure['error']}); polled only "
                             "until it can be renewed"))
    for channel in state.channels():
        if (channel["system"], channel["entity"]) in failed or channel["expires"] is None:
            continue
        left = channel["expires"] - now
        if left <= limits.channel_margin:
            when = "expired" if left <= timedelta(0) else f"expires in {_ago(left)}"
            found.append(Problem(EXIT_CHECK_CHANNEL, f"push channel {channel['system']} {channel['entity']}: {when} "
                                 f"({channel['expires']:%Y-%m-%d %H:%M} UTC) and was not renewed; a `sync` or "
                                 "`listen` renews it"))
    for result in state.reconcile_results():
        if not result["agrees"]:
            found.append(Problem(EXIT_CHECK_DISAGREE, f"{result['pair']}: the last reconcile "
                                 f"({result['checked']:%Y-%m-%d %H:%M} UTC) found {result['differences']} "
                                 f"difference(s); see `mlconnector reconcile {result['pair']}`", result["pair"]))
    return found


def _last_run(state: State, pair: str, limits: Limits, now: datetime,
              run_alive: Callable[[str], bool]) -> list[Problem]:
    runs = state.last_syncs(pair)
    if runs and runs[0]["status"] == "running" and run_alive(pair):
        runs = runs[1:]  # under way: the one before it says how things stand
    if not runs:
        if limits.max_age is None:
            return []
        return [Problem(EXIT_CHECK_STALE, f"{pair}: has never run; run `mlconnector sync {pair}` (from cron)", pair)]
    last = runs[0]
    found = []
    status = "interrupted" if last["status"] == "running" else last["status"]
    if status != "ok":
        code = "" if last["exit_code"] is None else f", exit {last['exit_code']}"
        found.append(Problem(EXIT_CHECK_RUN, f"{pair}: the last run {last['id']} {status}{code}; see `mlconnector "
                             f"audit --run {last['id']}`", pair))
    started = datetime.fromisoformat(last["started"])
    if limits.max_age is not None and now - started > limits.max_age:
        found.append(Problem(EXIT_CHECK_STALE, f"{pair}: the last run started {_ago(now - started)} ago "
                             f"({started:%Y-%m-%d %H:%M} UTC), longer than --max-age {_ago(limits.max_age)}; "
                             "is its cron job or timer running?", pair))
    return found


def exit_code(problems: list[Problem]) -> int:
    """0 when all is well, else the lowest code among the problems."""
    return min((p.code for p in problems), default=0)


def _ago(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h".replace(".0 h", " h")
    return f"{seconds / 86400:.1f} days".replace(".0 days", " days")
