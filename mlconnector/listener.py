"""The webhook receiver `mlconnector listen` serves, with its connectors and inbox, the worker that processes what
arrives (`--process`) and the keeper that renews push channels before they expire."""

from __future__ import annotations

import logging
import queue
import threading
from collections import defaultdict
from typing import Any

from mlconnector.api import Runtime, drain, keep_channels, sync
from mlconnector.errors import ConfigError, LockHeld, MLConnectorError
from mlconnector.health import Limits
from mlconnector.pairs import all_pairs
from mlconnector.sync import resolve_roles
from mlconnector.systems import make_connector

log = logging.getLogger("mlconnector")


class Listener:
    """The webhook receiver with its connectors, inbox and, with ``process``, a worker that drains the
    inbox of each notified pair at once."""

    def __init__(self, runtime: Runtime, *, process: bool = False, body_timeout: float | None = None,
                 limits: Limits | None = None) -> None:
        from mlconnector.webhooks import BODY_TIMEOUT, Inbox, create_receiver

        config = runtime.config
        context = runtime.context()
        self.connectors: dict[str, Any] = {}
        consumers: dict[tuple[str, str], list[str]] = defaultdict(list)
        for spec in all_pairs().values():
            try:
                roles = resolve_roles(config, spec)
            except ConfigError:
                continue  # a pair this site does not run
            for flow in spec.flows:
                system = roles[flow.source]
                if system not in self.connectors:
                    self.connectors[system] = make_connector(config.system(system), context)
                if self.connectors[system].capabilities.push:
                    consumers[(system, flow.source_entity)].append(spec.name)
        push = {name: c for name, c in self.connectors.items() if c.capabilities.push}
        if not push:
            raise ConfigError(f"{config.path}: no configured pair reads from a system that can push "
                              "notifications; `mlconnector sync` polls instead")
        self.inbox = Inbox(runtime.state_location(config), consumers)
        self._runtime = runtime
        self._queue: "queue.Queue[str | None]" = queue.Queue()
        # One run at a time in this process (the worker's drains, the keeper's polls): log lines name the run
        # under way, which is process-wide (mlconnector.logs).
        self._one_run = threading.Lock()
        self._worker = threading.Thread(target=self._work, daemon=True) if process else None
        if self._worker:
            self._worker.start()
        location = runtime.state_location(config)
        self.app = create_receiver(push, self.inbox, self._queue_pairs if process else None,
                                   body_timeout=body_timeout or BODY_TIMEOUT,
                                   checks=lambda: self.inbox.health(config.pairs, limits or Limits(),
                                                                    location.run_alive))
        self.systems = sorted(push)
        self.pairs = sorted({pair for pairs in consumers.values() for pair in pairs})
        self._process = process
        self._stop = threading.Event()
        self._keeper: threading.Thread | None = None

    def keep_channels_alive(self, every: float) -> None:
        """From now on, renew the channels here every ``every`` seconds, not only when a sync happens to run
        (`listen` starts it once its address is bound)."""
        if self._keeper is None:
            self._keeper = threading.Thread(target=self._keep, args=(every,), daemon=True, name="keep-channels")
            self._keeper.start()

    def _queue_pairs(self, pairs: set[str]) -> None:
        for pair in pairs:
            self._queue.put(pair)

    def _work(self) -> None:
        while (pair := self._queue.get()) is not None:
            waiting = {pair}
            while not self._queue.empty():  # many notifications, one drain per pair
                more = self._queue.get()
                if more is None:
                    return
                waiting.add(more)
            for name in sorted(waiting):
                try:
                    with self._one_run:
                        drain(self._runtime, name)
                except LockHeld:
                    # A cron run holds the pair; it drains the inbox itself, but try again shortly.
                    threading.Timer(2.0, self._queue.put, (name,)).start()
                except MLConnectorError as exc:
                    log.error("%s: processing notifications failed: %s", name, exc)

    def _keep(self, every: float) -> None:
        """Renew each pair's channels at once, then every ``every`` seconds. Where one cannot be renewed, that
        pair is polled instead (with --process: a sync each time round) until it can; an alert says so."""
        polling: set[str] = set()
        while not self._stop.is_set():
            for pair in self.pairs:
                if self._stop.is_set():
                    return
                try:
                    with self._one_run:
                        kept = keep_channels(self._runtime, pair)
                    for line in kept.channels:  # routine (about daily): for -v; failures are warnings
                        log.debug("%s: push channel %s", pair, line)
                    for problem in kept.channel_problems:
                        log.warning("%s: push channel %s", pair, problem)
                    # Polled while its channel fails, and once more when it works again: that poll covers what
                    # changed between the last one and the new channel.
                    if self._process and (kept.channel_problems or pair in polling):
                        with self._one_run:
                            result = sync(self._runtime, pair)
                        log.info("%s: polled instead of push (run %s, exit %d)", pair, result.run_id, result.exit_code)
                    if kept.channel_problems:
                        polling.add(pair)
                    else:
                        polling.discard(pair)
                except LockHeld:
                    log.debug("%s: a run holds the pair; it renews the channels itself", pair)
                except MLConnectorError as exc:
                    log.error("%s: keeping push channels alive failed: %s", pair, exc)
                except Exception:  # noqa: BLE001 - the receiver must go on; the next round tries again
                    log.exception("%s: keeping push channels alive failed", pair)
            self._stop.wait(every)

    def close(self) -> None:
        self._stop.set()
        if self._keeper:
            self._keeper.join(timeout=30)
        if self._worker:
            self._queue.put(None)
            self._worker.join(timeout=30)
        self.inbox.close()
        for connector in self.connectors.values():
            connector.close()
