"""The registry of pairs. Each pair module declares its PairSpec and registers it; the CLI builds a
`sync` subcommand for every registered pair, so adding a pair needs no CLI code."""

from __future__ import annotations

import importlib

from mlconnector.flows import PairSpec

# Pair modules shipped with the tool, imported when the registry is first read.
BUILTIN_MODULES: tuple[str, ...] = ("mlconnector.pairs.nav_zoho", "mlconnector.pairs.bc_zoho",
                                  "mlconnector.pairs.nav_zuora", "mlconnector.pairs.fo_zoho",
                                  "mlconnector.pairs.gp_zoho")

_PAIRS: dict[str, PairSpec] = {}
_loaded = False


def register(spec: PairSpec) -> PairSpec:
    _PAIRS[spec.name] = spec
    return spec


def unregister(name: str) -> None:
    _PAIRS.pop(name, None)


def all_pairs() -> dict[str, PairSpec]:
    global _loaded
    if not _loaded:
        _loaded = True
        for module in BUILTIN_MODULES:
            importlib.import_module(module)
    return dict(_PAIRS)


def get_pair(name: str) -> PairSpec:
    pairs = all_pairs()
    try:
        return pairs[name]
    except KeyError:
        from mlconnector.errors import ConfigError

        raise ConfigError(f"no pair named {name!r}; known pairs: {', '.join(sorted(pairs)) or 'none'}") from None
