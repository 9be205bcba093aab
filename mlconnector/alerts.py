"""Alerts: a run that failed or was interrupted, a push channel that cannot be renewed, and their recovery, sent to
`[alerts]` (a command and/or a webhook). Each problem is an incident, alerted when it opens (again after
`repeat_hours`, if set) and when it recovers: a cron job failing every 15 minutes alerts once, not 96 times a day.

The body is generic JSON that Slack and Teams incoming webhooks accept (`text`), with the details as fields. It is
made of run summaries and error lines, which never hold a secret; the webhook's own address (whose path is a
secret for Slack and Teams) is never printed or logged, only its host."""

from __future__ import annotations

import json
import logging
import socket
import subprocess
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx

from mlconnector import tenants
from mlconnector.clock import utcnow
from mlconnector.config import AlertsConfig
from mlconnector.state import State

log = logging.getLogger("mlconnector.alerts")


@dataclass(frozen=True)
class Alert:
    event: str  # failed, stopped, interrupted, recovered, channel_failed, channel_recovered, test
    text: str  # one line a person reads
    pair: str | None = None
    run_id: str | None = None
    exit_code: int | None = None

    def body(self) -> dict[str, Any]:
        host = socket.gethostname()
        tenant = tenants.current()  # one alert hook often serves every tenant: say whose pair this is
        whose = f" for {tenant}" if tenant else ""
        return {"text": f"mlconnector on {host}{whose}: {self.text}", "event": self.event, "pair": self.pair,
                "run_id": self.run_id, "exit_code": self.exit_code, "host": host, "tenant": tenant,
                "time": utcnow().isoformat(timespec="seconds")}


def send(config: AlertsConfig, alert: Alert) -> list[str]:
    """Deliver to every configured place; returns what went wrong (one line each, logged as warnings too). A
    failed delivery never fails the run that raised the alert."""
    problems = []
    data = json.dumps(alert.body())
    if config.command:
        try:
            done = subprocess.run(list(config.command), input=data, text=True, capture_output=True,
                                  timeout=config.timeout_seconds, check=False)
            if done.returncode:
                problems.append(f"alert command {config.command[0]} exited {done.returncode}")
        except (OSError, subprocess.SubprocessError) as exc:
            problems.append(f"alert command {config.command[0]} could not be run ({type(exc).__name__}: {exc})")
    if config.webhook_url:
        where = _host(config.webhook_url)
        try:
            answer = httpx.post(config.webhook_url, content=data, headers={"Content-Type": "application/json"},
                                timeout=config.timeout_seconds)
            if answer.status_code >= 300:
                problems.append(f"alert webhook at {where} answered HTTP {answer.status_code}")
        except httpx.HTTPError as exc:
            problems.append(f"alert webhook at {where} could not be reached ({type(exc).__name__})")
    for problem in problems:
        log.warning("%s", problem)
    return problems


def _host(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def raise_incident(state: State, config: AlertsConfig, key: str, alert: Alert, now: datetime) -> bool:
    """Alert unless the incident is open already (and not due to repeat). True when sent."""
    if not config.enabled:
        return False
    open_ = state.incident(key)
    repeat = timedelta(hours=config.repeat_hours)
    if open_ is not None and not (config.repeat_hours and now - open_["last_sent"] >= repeat):
        return False
    state.save_incident(key, alert.event, alert.text, now)
    send(config, alert if open_ is None else Alert(alert.event, f"still: {alert.text}", alert.pair, alert.run_id,
                                                   alert.exit_code))
    return True


def settle_incident(state: State, config: AlertsConfig, key: str, alert: Alert) -> bool:
    """Alert the recovery of an open incident. True when sent."""
    if not config.enabled or not state.close_incident(key):
        return False
    send(config, alert)
    return True


def after_run(state: State, config: AlertsConfig, result: Any, now: datetime) -> None:
    """A sync run ended (``result``: its RunResult): a problem opens the pair's incident, an ok run settles it."""
    key = f"run:{result.pair}"
    if result.status == "ok":
        settle_incident(state, config, key, Alert("recovered", f"{result.pair}: runs are ok again (run "
                                                  f"{result.run_id})", result.pair, result.run_id, 0))
        return
    raise_incident(state, config, key, Alert(result.status, f"{result.pair}: {_what(result)}", result.pair,
                                             result.run_id, result.exit_code), now)


def run_error(state: State, config: AlertsConfig, pair: str, error: Exception, exit_code: int, now: datetime) -> None:
    """A sync that ended with an error before its run could say how it went (credentials refused, a system down)."""
    raise_incident(state, config, f"run:{pair}", Alert("failed", f"{pair}: sync failed (exit {exit_code}): {error}",
                                                       pair, None, exit_code), now)


def _what(result: Any) -> str:
    parts = [f"run {result.run_id} {result.status} (exit {result.exit_code})"]
    if result.stopped:
        parts.append(result.stopped)
    if result.guarded:
        parts.append(f"the mass-delete guard stopped {result.guarded} deletion(s): nothing was deleted; check the "
                     f"source, and if they are real run `mlconnector sync {result.pair} --allow-deletes`")
    if result.failed:
        parts.append(f"{result.failed} record(s) failed and wait in the replay queue")
    parts.extend(result.channel_problems)
    return "; ".join(parts)


def channels(state: State, config: AlertsConfig, now: datetime) -> None:
    """Push channels that fail to subscribe or renew open an incident each (their entity is only polled
    meanwhile); one that works again settles it."""
    failing = {f"channel:{f['system']}:{f['entity']}": f for f in state.channel_failures()}
    for key, failure in failing.items():
        raise_incident(state, config, key, Alert("channel_failed", f"push channel {failure['system']} "
                                                 f"{failure['entity']} cannot be renewed ({failure['error']}); "
                                                 "polling only until it can", None), now)
    for key in state.open_incidents("channel:"):
        if key not in failing:
            _, system, entity = key.split(":", 2)
            settle_incident(state, config, key, Alert("channel_recovered", f"push channel {system} {entity} "
                                                      "renewed: notifications arrive again"))
