"""Push with a safety net: channels subscribed and renewed before they expire, and the notifications waiting in the
inbox turned into the ids each flow must fetch."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from mlconnector.errors import MLConnectorError, RecordError, RemoteError
from mlconnector.flows import Flow
from mlconnector.state import State
from mlconnector.sync.outcomes import RunResult
from mlconnector.systems.base import Channel, Connector


def renew_expiring_channels(run: RunResult, state: State, connectors: Mapping[str, Connector], flows: list[Flow],
                            now: Callable[[], datetime]) -> None:
    """Subscribe where a channel is missing and renew those expiring within the system's margin. A failure is
    reported and that entity falls back to the poll, which runs in any case."""
    for (system, entity), source in _wanted(connectors, flows).items():
        channels = _Channels(run, state, source, now)
        stored = [c for c in state.channels(system) if c["entity"] == entity]
        try:
            if not stored:
                channels.save(source.subscribe(entity, source.notify_url or ""), "subscribed")
            for row in stored:
                channel = Channel(system, entity, row["channel_id"], row["expires"], row["notify_url"], row["extra"])
                if row["notify_url"] != source.notify_url:
                    # notify_url changed in the configuration: move the channel to the new address.
                    channels.move(channel)
                elif row["expires"] - now() <= source.renew_margin:
                    channels.renew(channel)
        except MLConnectorError as exc:
            run.channel_problems.append(f"{system} {entity}: {exc}; polling only until this is fixed")
            run.exit_code = max(run.exit_code, exc.exit_code)
            # Kept until an attempt succeeds: `status --check` and /health name it meanwhile.
            state.note_channel_failure(system, entity, str(exc))
        else:
            state.clear_channel_failure(system, entity)


def due(state: State, connectors: Mapping[str, Connector], flows: list[Flow], now: datetime) -> bool:
    """Whether ``renew_expiring_channels`` has anything to do: a channel missing, near expiry, at an old
    notify_url, or failing. Read without the pair's lock, so that `listen` takes it only then (a cron sync starting
    meanwhile would find it held and do nothing)."""
    failing = {(f["system"], f["entity"]) for f in state.channel_failures()}
    for (system, entity), source in _wanted(connectors, flows).items():
        stored = [c for c in state.channels(system) if c["entity"] == entity]
        if (system, entity) in failing or not stored or any(
                c["notify_url"] != source.notify_url or c["expires"] - now <= source.renew_margin for c in stored):
            return True
    return False


def _wanted(connectors: Mapping[str, Connector], flows: list[Flow]) -> dict[tuple[str, str], Connector]:
    """(system, entity) -> its connector, for each entity a flow reads from a system that pushes to us."""
    wanted: dict[tuple[str, str], Connector] = {}
    for flow in flows:
        source = connectors[flow.source]
        if source.capabilities.push and source.notify_url and flow.source_entity in source.push_entities():
            wanted[(source.name, flow.source_entity)] = source
    return wanted


@dataclass
class _Channels:
    run: RunResult
    state: State
    source: Connector
    now: Callable[[], datetime]

    def renew(self, channel: Channel) -> None:
        if channel.expires > self.now():
            try:
                self.save(self.source.renew(channel), "renewed")
                return
            except (RemoteError, RecordError):
                pass  # gone or refused on the system's side: a new one replaces it below
        self.state.delete_channel(channel.system, channel.channel_id)
        self.save(self.source.subscribe(channel.entity, channel.notify_url), "re-subscribed")

    def move(self, channel: Channel) -> None:
        try:
            self.source.unsubscribe(channel)
        except (RemoteError, RecordError):
            pass  # already gone on the system's side
        self.state.delete_channel(channel.system, channel.channel_id)
        self.save(self.source.subscribe(channel.entity, self.source.notify_url or ""), "moved to the new notify_url")

    def save(self, channel: Channel, what: str) -> None:
        self.state.save_channel(system=channel.system, entity=channel.entity, channel_id=channel.channel_id,
                                expires=channel.expires, notify_url=channel.notify_url, extra=dict(channel.extra))
        self.run.channels.append(f"{channel.system} {channel.entity}: {what} until "
                                 f"{channel.expires:%Y-%m-%d %H:%M} UTC")


@dataclass(frozen=True)
class Waiting:
    """What the inbox holds for a pair's flows: the ids each flow must fetch, and the notifications that covers."""

    ids: dict[str, list[str]]  # flow name -> record ids, in the order they were notified, each once
    inbox_ids: list[int]


def waiting(state: State, pair: str, flows: list[Flow], system_of: Callable[[str], str]) -> Waiting:
    """The notifications waiting for ``pair``, as ids per flow (``system_of``: a role's system name). Those for
    flows not run this time (--flow) wait for a run that includes them."""
    rows = state.pending_inbox(pair)
    if not rows:
        return Waiting({}, [])
    ids: dict[str, list[str]] = {}
    covered: set[int] = set()
    for flow in flows:
        source = system_of(flow.source)
        mine = [row for row in rows if row["system"] == source and row["entity"] == flow.source_entity]
        found = list(dict.fromkeys(i for row in mine for i in row["ids"]))
        if found:
            ids[flow.name] = found
        covered.update(row["id"] for row in mine)
    return Waiting(ids, sorted(covered))
