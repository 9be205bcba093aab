"""The vocabulary pairs use to declare what moves where: flows, pairs and the mapping context."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from mlconnector.errors import ConfigError
from mlconnector.systems.base import Record


def text(value: Any) -> str | None:
    """A field's text, or None where a system sends "" or a lone space (ERP option fields) for nothing."""
    if value is None:
        return None
    stripped = str(value).strip()
    return stripped or None


def joined(data: Mapping[str, Any], names: tuple[str, ...]) -> str | None:
    """The ``text`` of each of the fields ``names`` that holds one, joined by ", " (a street's lines); None if none
    does."""
    return ", ".join(part for name in names if (part := text(data.get(name)))) or None


def texts(data: Mapping[str, Any], fields: Mapping[str, str | tuple[str, ...]]) -> dict[str, str]:
    """Target field -> the ``text`` of the source field it comes from (``fields``, a mapping's table of plain
    fields; a tuple of source fields: their texts joined by ", ", as a street's lines), for the fields that hold
    one: the others are left out, so they are left alone, not cleared."""
    out: dict[str, str] = {}
    for target, source in fields.items():
        value = joined(data, source) if isinstance(source, tuple) else text(data.get(source))
        if value is not None:
            out[target] = value
    return out


def key_value(record: Mapping[str, Any], key: str) -> Any:
    """A record's natural key under an upsert key: a key may name several fields, tried in order
    ("Account_Number,Account_Name", as Zoho's duplicate_check_fields): the first that holds a value."""
    for name in key.split(","):
        value = record.get(name.strip())
        if value not in (None, ""):
            return value
    return None


def without_none(payload: dict[str, Any]) -> dict[str, Any]:
    """The payload without the fields that have no value (so they are left alone, not cleared)."""
    return {k: v for k, v in payload.items() if v is not None}


class SkipRecord(Exception):
    """Raised by a mapping for a record that is deliberately not synced (the reason goes to the audit)."""


class MapContext(Protocol):
    """What a mapping function may ask while it maps one record."""

    options: Mapping[str, Any]

    def target_id(self, flow: str, source_id: str, *, what: str = "record") -> str:
        """The target id that ``flow`` linked ``source_id`` to; raises UnresolvedReference when none."""

    def source_id(self, flow: str, target_id: str) -> str | None:
        """The source id that ``flow`` linked to ``target_id``, if any (for the reverse direction)."""


Mapping_ = Callable[[Record, MapContext], dict[str, Any]]


@dataclass(frozen=True)
class Totals:
    """Where a document's date, amount and currency are on each side, for `reconcile`'s totals per month and
    currency (the amount before tax where the target computes its own tax).

    A record whose currency field is blank (or a side without one) is in its system's home currency
    (``Connector.home_currency``: the ERP company's local currency, the Zoho org's home currency); where the system
    does not tell it, the pair option ``local_currency_option`` names it (NAV's page web services)."""

    source_date: str
    source_amount: str
    target_date: str
    target_amount: str
    source_currency: str | None = None
    target_currency: str | None = None
    local_currency_option: str | None = None

    @property
    def by_currency(self) -> bool:
        return bool(self.source_currency or self.target_currency)


@dataclass(frozen=True)
class Flow:
    """One direction of one kind of record: read ``source_entity`` changes, map, upsert by ``key``.

    ``depends_on`` names flows whose links this flow's mapping needs (invoices need customers).
    ``echo_of`` names the flow that writes the opposite way in a two-way sync: a record that flow
    wrote, read back unchanged since, is our own echo and is skipped. When both sides changed since
    the last sync, ``conflict_rule`` decides: ``later-wins`` (the later change is applied or kept),
    ``source-wins`` (the pair's first system, in both directions) or ``target-wins`` (its second). Fields one side owns (financial fields owned by the ERP) are
    simply left out of the other side's mapping. ``send_back_created`` is for a flow whose source
    assigns keys (NAV numbers) to records the opposite flow creates there: each such record is sent
    back once, so the other side learns its key.

    ``find_by`` is for a flow whose target numbers new records itself (the mapping leaves the key empty):
    target fields that identify such a record (a customer's name). Each such create is recorded before
    it is sent; if the run dies before the link lands, the next run asks the target for an unlinked
    record with these values (the connector's ``find``) and links it instead of creating a second one.
    """

    name: str
    source: str
    source_entity: str
    target: str
    target_entity: str
    key: str | Callable[[Mapping[str, Any]], str]  # the target's natural-key field, or options -> field
    map: Mapping_
    depends_on: tuple[str, ...] = ()
    echo_of: str | None = None
    conflict_rule: str = "later-wins"
    send_back_created: bool = False
    find_by: tuple[str, ...] = ()
    description: str = ""
    totals: Totals | None = None  # documents: what `reconcile` sums per month on each side
    # For a target that also holds records of other origin (NAV's Customer Ledger Entries): whether a target record is
    # one this flow writes; `reconcile` neither sums nor names as orphans the others.
    owns: Callable[[Record], bool] | None = field(default=None, compare=False)
    # A mapped record the target rightly does not hold (a journal document undone before anyone posted it): for
    # `reconcile` no difference, and not summed.
    may_be_absent: Callable[[Mapping[str, Any]], bool] | None = field(default=None, compare=False)
    # An optional flow runs only where the pair's `flows` (or --flow) names it; by default a pair runs the others.
    optional: bool = False
    # Several source records write one target record (a summary field: the last invoice's status on a customer):
    # their shared key is the point, not a clash; they are written in read order, so the one read last (the latest
    # stamp) wins.
    many_to_one: bool = False
    # What a record deleted in the source does to its target by default (the pair's on_delete table overrides it):
    # None is "flag" where the target can mark records, else "unlink"; a flow into the ERP never deletes there.
    on_delete: str | None = None
    # The pair's own field table (target field -> where its value comes from), as `mlconnector mappings` shows it.
    fields: Mapping[str, str] = field(default_factory=dict, compare=False)
    # Set by the configured mappings and filter ([pairs.NAME.mappings.FLOW], mlconnector.fieldmap), never by a pair:
    # source fields they read beyond the connector's defaults (a Zoho read names its fields), the filter's fields
    # (an echo check keeps them), and a digest of the configuration (a change re-maps the flow's records once).
    reads: tuple[str, ...] = ()
    filter_fields: tuple[str, ...] = ()
    mapping_digest: str = ""

    def key_field(self, options: Mapping[str, Any]) -> str:
        return self.key(options) if callable(self.key) else self.key

    def __post_init__(self) -> None:
        if self.conflict_rule not in CONFLICT_RULES:
            raise ValueError(f"flow {self.name}: conflict_rule must be one of {', '.join(CONFLICT_RULES)}")


CONFLICT_RULES = ("later-wins", "source-wins", "target-wins")


@dataclass(frozen=True)
class Option:
    """One key of `[pairs.NAME.options]` a pair reads: its default (a value must have the default's type), the
    values it may take where they are few, and what it does (README and `config show` say it)."""

    name: str
    default: Any
    doc: str = ""
    choices: tuple[Any, ...] = ()

    def value(self, pair: str, given: Any) -> Any:
        """``given`` checked against this option; raises ConfigError naming the key and what it takes."""
        where = f"pairs.{pair}.options.{self.name} = {given!r}"
        kind = type(self.default)
        if kind is float and isinstance(given, int) and not isinstance(given, bool):
            given = float(given)
        if not isinstance(given, kind) or (kind is int and isinstance(given, bool)):
            raise ConfigError(f"{where}: a {_KINDS.get(kind, kind.__name__)} (like the default, "
                              f"{self.default!r})")
        if isinstance(given, list) and self.default and not all(isinstance(v, type(self.default[0])) for v in given):
            raise ConfigError(f"{where}: a list of {_KINDS.get(type(self.default[0]), 'values')}")
        if self.choices and given not in self.choices:
            raise ConfigError(f"{where}: one of {', '.join(map(str, self.choices))}")
        return given


_KINDS = {str: "text", int: "whole number", float: "number", bool: "true or false", list: "list", dict: "table"}
CONFLICT_RULE = Option("conflict_rule", "later-wins", "who wins when both sides changed a record since the last "
                       "sync: the later change, the pair's first system (source-wins) or its second (target-wins)",
                       CONFLICT_RULES)


@dataclass(frozen=True)
class PairSpec:
    """A pair: its roles (role -> the system kinds that may fill it) and its flows, in run order."""

    name: str
    roles: Mapping[str, tuple[str, ...]]
    flows: tuple[Flow, ...]
    description: str = ""
    options: tuple[Option, ...] = ()  # the keys `[pairs.NAME.options]` may set
    # What the pair needs set up in its systems (custom fields, modules ...), for the options in force:
    # `mlconnector setup PAIR` checks it (mlconnector.prerequisites.Requirement).
    prerequisites: Callable[[Mapping[str, Any]], tuple[Any, ...]] | None = None

    def option_values(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """Every option of the pair: ``given`` (the config's `[pairs.NAME.options]`) checked, the rest at their
        defaults. An unknown key or a value of the wrong kind is a ConfigError naming it and the fix."""
        known = {option.name: option for option in self.options}
        for name in given:
            if name not in known:
                names = ", ".join(sorted(known)) or "none"
                raise ConfigError(f"pairs.{self.name}.options.{name}: {self.name} has no such option "
                                  f"(its options: {names})")
        return {name: option.value(self.name, given[name]) if name in given else option.default
                for name, option in known.items()}

    def flow(self, name: str) -> Flow:
        for flow in self.flows:
            if flow.name == name:
                return flow
        raise KeyError(name)

    def ordered(self, names: list[str] | tuple[str, ...] | None = None) -> list[Flow]:
        """The chosen flows (all but the optional ones when none are named), each after the flows it depends on."""
        chosen = set(names) if names else {f.name for f in self.flows if not f.optional}
        done: list[Flow] = []
        visiting: set[str] = set()

        def visit(flow: Flow) -> None:
            if flow in done:
                return
            if flow.name in visiting:
                raise ValueError(f"pair {self.name}: flows depend on each other in a circle at {flow.name}")
            visiting.add(flow.name)
            for dep in flow.depends_on:
                dep_flow = self.flow(dep)
                if dep_flow.name in chosen:
                    visit(dep_flow)
            visiting.discard(flow.name)
            done.append(flow)

        for flow in self.flows:
            if flow.name in chosen:
                visit(flow)
        return done
