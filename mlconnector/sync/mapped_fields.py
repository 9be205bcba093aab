"""A run's check that the fields its configured mappings name are there: the target fields they write and the
source fields they and the filters read, against each system's field list (``Connector.field_names``: its own
metadata). A field missing is one line and exit 2 before anything is read or written, rather than a failure of
every record.

Cheap, for a run every few minutes: only flows with configured mappings are checked, each system's entity is asked
once a run at most (the connector keeps what it read), and a flow found in order is not checked again until its
mappings (or the systems it joins) change or ``RECHECK`` has passed (the state's ``field_checks``)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime, timedelta

from mlconnector.config import PairConfig
from mlconnector.errors import ConfigError
from mlconnector.fieldmap.targets import missing_line, requirements
from mlconnector.flows import Flow, PairSpec
from mlconnector.state import StateStore
from mlconnector.systems.base import Connector

RECHECK = timedelta(hours=24)


def check(pair: PairSpec, config: PairConfig, connectors: Mapping[str, Connector], state: StateStore,
          flows: list[Flow], now: datetime) -> None:
    """Raise ConfigError (one line) for the first field a chosen flow's configured mapping needs and its system
    lacks; record the flows found in order."""
    due: dict[str, str] = {}
    for flow in flows:
        if flow.name not in config.mappings:
            continue
        digest = _digest(flow, connectors)
        checked = state.field_check(pair.name, flow.name)
        if checked is None or checked[0] != digest or now - checked[1] >= RECHECK:
            due[flow.name] = digest
    if not due:
        return
    for requirement in requirements(pair, {name: config.mappings[name] for name in due}, config.options):
        connector = connectors[requirement.role]
        known = connector.field_names(requirement.target)
        if known is not None and requirement.name not in known:
            raise ConfigError(missing_line(pair.name, connector.name, requirement, known))
    for name, digest in due.items():
        state.set_field_check(pair.name, name, digest, now)


def _digest(flow: Flow, connectors: Mapping[str, Connector]) -> str:
    """The flow's configured mappings and the systems they join: another system is another field list."""
    text = "\n".join((flow.mapping_digest, connectors[flow.source].name, connectors[flow.target].name))
    return hashlib.sha256(text.encode()).hexdigest()[:32]
