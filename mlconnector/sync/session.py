"""A pair ready to run: its roles resolved to configured systems, its connectors built; one run per pair at a
time."""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from pathlib import Path

from mlconnector.config import Config, PairConfig
from mlconnector.errors import ConfigError
from mlconnector.fieldmap.overlay import overlaid
from mlconnector.flows import PairSpec
from mlconnector.http import CallCounter
from mlconnector.pairs import get_pair
from mlconnector.state import StateLocation, pair_lock_file  # noqa: F401 -- pair_lock_file: the lock's file, for callers
from mlconnector.systems import ConnectorContext, make_connector
from mlconnector.systems.base import Connector


def pair_lock(state: StateLocation | Path, pair: str) -> AbstractContextManager[object]:
    """One run per pair at a time, wherever the state is (``StateLocation.pair_lock``: a lock file beside a SQLite
    state file, a PostgreSQL advisory lock); a second run raises LockHeld (exit 75) at once."""
    location = state if isinstance(state, StateLocation) else StateLocation(path=Path(state))
    return location.pair_lock(pair)


@dataclass
class Session:
    """A pair ready to run: its spec, configuration, connectors and the shared call counter."""

    pair: PairSpec
    config: PairConfig
    connectors: dict[str, Connector]
    counter: CallCounter

    def close(self) -> None:
        for connector in self.connectors.values():
            connector.close()


def open_pair(config: Config, pair_name: str, context: ConnectorContext) -> Session:
    """Resolve the pair's roles to configured systems and build their connectors."""
    spec = get_pair(pair_name)
    made: dict[str, Connector] = {}
    connectors: dict[str, Connector] = {}
    for role, name in resolve_roles(config, spec).items():
        if name not in made:
            made[name] = make_connector(config.system(name), context)
        connectors[role] = made[name]
    pair_config = config.pair(pair_name)
    # The pair's options checked against what it declares, every one of them set (defaults filled in).
    pair_config = replace(pair_config, options=spec.option_values(pair_config.options))
    # The configured mappings and filters laid over the pair's flows (checked against them first); the source
    # fields they read are read by every read of those records (a Zoho read names its fields).
    spec = overlaid(spec, pair_config.mappings, pair_config.options)
    for flow in spec.flows:
        if flow.reads:
            connectors[flow.source].also_read(flow.source_entity, list(flow.reads))
    return Session(spec, pair_config, connectors, context.counter)


def resolve_roles(config: Config, spec: PairSpec) -> dict[str, str]:
    """Role -> configured system name: as pairs.NAME.systems says, else the only system of a fitting kind."""
    pair_config = config.pair(spec.name)
    roles = {}
    for role, kinds in spec.roles.items():
        name = pair_config.systems.get(role) or _only_system_of(config, kinds, spec.name, role)
        system = config.system(name)
        if system.kind not in kinds:
            raise ConfigError(f"pairs.{spec.name}.systems.{role} = {name!r} is a {system.kind} system; "
                              f"the {role} of {spec.name} must be {' or '.join(kinds)}")
        roles[role] = name
    return roles


def _only_system_of(config: Config, kinds: tuple[str, ...], pair: str, role: str) -> str:
    matches = [s.name for s in config.systems.values() if s.kind in kinds]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise ConfigError(f"pair {pair} needs a {' or '.join(kinds)} system for its {role}: add a "
                          f"[systems.NAME] table with kind = \"{kinds[0]}\"")
    raise ConfigError(f"pair {pair}: several systems could be its {role} ({', '.join(matches)}); "
                      f"choose one with pairs.{pair}.systems.{role} = \"NAME\"")
