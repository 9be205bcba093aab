"""`[pairs.NAME.mappings.FLOW]` read and checked as data: fields added, overridden and dropped, transforms on a
field's value, and a filter on source records. Nothing here runs code from the file: each transform is one of a
fixed set, with arguments of fixed types, so a mapping is as safe to load as any other setting.

This module knows no pair; `overlay.py` checks a flow's rules against the pair and applies them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from mlconnector.errors import ConfigError, RecordError

FLOW_KEYS = {
    "add": "target field -> source field (or a table: from / concat / constant, and transforms): a field the pair "
           "does not map",
    "override": "the same, for a field the pair maps: yours replaces it",
    "drop": "target fields the pair maps that are left out",
    "transform": "target field -> transforms applied to the value the pair (or your mapping) gives it",
    "filter": "source field -> the value it must equal, a list it must be in, or a table with one of equals, in, "
              "not_in, is_set: only records meeting every condition are synced",
}
# Where a mapped value comes from (exactly one per added or overridden field).
SOURCES = {
    "from": "a source field",
    "concat": "two or more source fields joined (with separator, default one space), empty ones left out",
    "constant": "a fixed value",
}
# The transforms, applied in this order.
TRANSFORMS = {
    "trim": "true: surrounding spaces removed",
    "case": "\"upper\" or \"lower\"",
    "lookup": "a table of values: a value found is replaced, any other is kept",
    "picklist": "a table of values: a value found is replaced, any other fails the record (naming the value), "
                "unless default is set",
    "date_format": "a strftime format (\"%d.%m.%Y\") for an ISO date or date-time",
    "decimals": "a number rounded to this many decimals (0 to 10)",
    "default": "the value when the field is empty",
    "truncate": "at most this many characters (the target field's length)",
}
CONDITIONS = ("equals", "in", "not_in", "is_set")
_SCALAR = (str, int, float, bool)


@dataclass(frozen=True)
class Steps:
    """The transforms of one field, applied in TRANSFORMS' order."""

    trim: bool = False
    case: str | None = None
    lookup: Mapping[str, Any] = field(default_factory=dict)
    picklist: Mapping[str, Any] = field(default_factory=dict)
    date_format: str | None = None
    decimals: int | None = None
    default: Any = None
    truncate: int | None = None

    def names(self) -> list[str]:
        """The transforms set, as `mappings` shows them."""
        shown = []
        for name in TRANSFORMS:
            value = getattr(self, name)
            if value is None or (name == "trim" and not value) or (isinstance(value, Mapping) and not value):
                continue
            shown.append(name if name == "trim" else f"{name}={_short(value)}")
        return shown

    def apply(self, value: Any, target: str) -> Any:
        if self.trim and isinstance(value, str):
            value = value.strip()
        if self.case and isinstance(value, str):
            value = value.upper() if self.case == "upper" else value.lower()
        if self.lookup and _is_key(value) and as_text(value) in self.lookup:
            value = self.lookup[as_text(value)]
        if self.picklist and not _empty(value):
            if as_text(value) in self.picklist:
                value = self.picklist[as_text(value)]
            elif self.default is None:
                raise RecordError(f"{target}: {value!r} is not in its picklist map ({', '.join(self.picklist)})",
                                  "mapping")
            else:
                value = None  # the default below
        if self.date_format and not _empty(value):
            value = _format_date(value, self.date_format, target)
        if self.decimals is not None and not _empty(value):
            value = _round(value, self.decimals, target)
        if _empty(value) and self.default is not None:
            value = self.default
        if self.truncate and isinstance(value, str):
            value = value[:self.truncate]
        return value


@dataclass(frozen=True)
class Rule:
    """Where one target field's value comes from, then its transforms."""

    source: str = ""                      # "from"
    concat: tuple[str, ...] = ()
    separator: str = " "
    constant: Any = None
    steps: Steps = Steps()

    @property
    def reads(self) -> tuple[str, ...]:
        return (self.source,) if self.source else self.concat

    def describe(self) -> str:
        if self.source:
            return self.source
        if self.concat:
            return " + ".join(self.concat) + (f" (separator {self.separator!r})" if self.separator != " " else "")
        return f"constant {self.constant!r}"

    def value(self, data: Mapping[str, Any], target: str) -> Any:
        if self.source:
            value = data.get(self.source)
        elif self.concat:
            parts = [str(v).strip() for name in self.concat if not _empty(v := data.get(name))]
            value = self.separator.join(p for p in parts if p) or None
        else:
            value = self.constant
        # Nothing (None, "" or blanks, as ERPs send empty fields) is None, as in the pairs' own mappings: the field
        # is then left out of the payload (the target keeps what it holds) unless a default is set.
        return self.steps.apply(None if _empty(value) else value, target)


@dataclass(frozen=True)
class Condition:
    field: str
    test: str            # one of CONDITIONS
    values: tuple[Any, ...] = ()

    def holds(self, data: Mapping[str, Any]) -> bool:
        """Whether a source record meets this condition (values compared as text, without surrounding spaces)."""
        value = data.get(self.field)
        text = None if _empty(value) else as_text(value)
        if self.test == "is_set":
            return (text is not None) == bool(self.values[0])
        held = text is not None and any(text == as_text(v) for v in self.values)
        return held if self.test in ("equals", "in") else not held

    def describe(self) -> str:
        if self.test == "is_set":
            return f"{self.field} {'is set' if self.values[0] else 'is not set'}"
        shown = _shown(self.values[0]) if self.test == "equals" else \
            "[" + ", ".join(_shown(v) for v in self.values) + "]"
        return f"{self.field} {self.test.replace('_', ' ')} {shown}"


@dataclass(frozen=True)
class FlowRules:
    """One flow's `[pairs.NAME.mappings.FLOW]` table, checked."""

    pair: str
    flow: str
    add: Mapping[str, Rule] = field(default_factory=dict)
    override: Mapping[str, Rule] = field(default_factory=dict)
    drop: tuple[str, ...] = ()
    transform: Mapping[str, Steps] = field(default_factory=dict)
    filter: tuple[Condition, ...] = ()
    digest: str = ""

    def where(self, part: str, name: str | None = None) -> str:
        return f"pairs.{self.pair}.mappings.{self.flow}.{part}" + (f".{name}" if name else "")

    @property
    def targets(self) -> list[str]:
        return [*self.add, *self.override, *self.drop, *self.transform]

    @property
    def reads(self) -> tuple[str, ...]:
        rules = [*self.add.values(), *self.override.values()]
        return tuple(dict.fromkeys([n for r in rules for n in r.reads] + [c.field for c in self.filter]))

    def rejects(self, data: Mapping[str, Any]) -> str | None:
        """The condition this source record does not meet (the skip reason, the same for every record it leaves
        out, so a run's summary counts them together), or None."""
        for condition in self.filter:
            if not condition.holds(data):
                return condition.describe()
        return None

    def apply(self, data: Mapping[str, Any], payload: dict[str, Any]) -> dict[str, Any]:
        """The pair's ``payload`` with this flow's rules applied (a field left without a value is left out, so
        the target keeps what it holds, as the pairs' own mappings do)."""
        out = dict(payload)
        for name in self.drop:
            out.pop(name, None)
        for name, rule in (*self.override.items(), *self.add.items()):
            out[name] = rule.value(data, name)
        for name, steps in self.transform.items():
            if name in out or steps.default is not None:
                out[name] = steps.apply(out.get(name), name)
        return {k: v for k, v in out.items() if v is not None or (k in payload and payload[k] is None)}


def parse_mappings(pair: str, raw: Any, where: str) -> dict[str, FlowRules]:
    """`pairs.PAIR.mappings`: flow -> its rules. Raises ConfigError naming the pair, flow and field."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: pairs.{pair}.mappings must be a table of [pairs.{pair}.mappings.FLOW] tables")
    return {flow: _flow_rules(pair, flow, table, where) for flow, table in raw.items()}


def _flow_rules(pair: str, flow: str, table: Any, where: str) -> FlowRules:
    base = f"{where}: pairs.{pair}.mappings.{flow}"
    if not isinstance(table, Mapping):
        raise ConfigError(f"{base} must be a table: write it as [pairs.{pair}.mappings.{flow}]")
    for key in table:
        if key not in FLOW_KEYS:
            raise ConfigError(f"{base}.{key} is not a known key (known: {', '.join(FLOW_KEYS)})")
    add = {name: _rule(f"{base}.add.{name}", value) for name, value in _table(base, table, "add").items()}
    override = {name: _rule(f"{base}.override.{name}", value)
                for name, value in _table(base, table, "override").items()}
    drop = table.get("drop", [])
    if not isinstance(drop, list) or not all(isinstance(n, str) and n for n in drop):
        raise ConfigError(f"{base}.drop must be a list of target field names, e.g. [\"Website\"]")
    transform = {name: _steps(f"{base}.transform.{name}", value, allow_sources=False)
                 for name, value in _table(base, table, "transform").items()}
    seen: dict[str, str] = {}
    for part, names in (("add", add), ("override", override), ("drop", drop)):
        for name in names:
            if name in seen:
                raise ConfigError(f"{base}.{part}.{name}: two mappings onto one target field ({name} is in "
                                  f"{seen[name]} too); keep one")
            seen[name] = part
    for name in transform:
        if seen.get(name) == "drop":
            raise ConfigError(f"{base}.transform.{name}: {name} is dropped; remove it from drop or the transform")
    conditions = tuple(_condition(f"{base}.filter.{name}", name, value)
                       for name, value in _table(base, table, "filter").items())
    digest = hashlib.sha256(json.dumps(table, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return FlowRules(pair, flow, add, override, tuple(drop), transform, conditions, digest)


def _table(base: str, table: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = table.get(key, {})
    if not isinstance(value, Mapping):
        raise ConfigError(f"{base}.{key} must be a table ({FLOW_KEYS[key]})")
    return value


def _rule(where: str, value: Any) -> Rule:
    if isinstance(value, str) and value:
        return Rule(source=value)
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where} must be a source field name or a table with one of {', '.join(SOURCES)}")
    sources = [k for k in SOURCES if k in value]
    if len(sources) != 1:
        raise ConfigError(f"{where}: give exactly one of {', '.join(SOURCES)} (where the value comes from)")
    separator = value.get("separator", " ")
    if not isinstance(separator, str):
        raise ConfigError(f"{where}.separator must be text")
    if "separator" in value and "concat" not in value:
        raise ConfigError(f"{where}.separator goes with concat")
    steps = _steps(where, {k: v for k, v in value.items() if k not in (*SOURCES, "separator")}, allow_sources=True)
    if "from" in value:
        if not isinstance(value["from"], str) or not value["from"]:
            raise ConfigError(f"{where}.from must be a source field name")
        return Rule(source=value["from"], steps=steps)
    if "concat" in value:
        names = value["concat"]
        if not isinstance(names, list) or len(names) < 2 or not all(isinstance(n, str) and n for n in names):
            raise ConfigError(f"{where}.concat must be a list of two or more source field names")
        return Rule(concat=tuple(names), separator=separator, steps=steps)
    if not isinstance(value["constant"], _SCALAR):
        raise ConfigError(f"{where}.constant must be text, a number or true/false")
    return Rule(constant=value["constant"], steps=steps)


def _steps(where: str, value: Any, *, allow_sources: bool) -> Steps:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where} must be a table of transforms ({', '.join(TRANSFORMS)})")
    for key in value:
        if key not in TRANSFORMS:
            more = f"; where the value comes from: {', '.join(SOURCES)}" if allow_sources else \
                " (to take another source field, use override)" if key in SOURCES else ""
            raise ConfigError(f"{where}: unknown transform {key!r} (transforms: {', '.join(TRANSFORMS)}{more})")
    args: dict[str, Any] = {}
    for key, given in value.items():
        args[key] = _argument(f"{where}.{key}", key, given)
    return Steps(**args)


def _argument(where: str, key: str, given: Any) -> Any:
    def bad(what: str) -> ConfigError:
        return ConfigError(f"{where} = {given!r}: {what}")

    if key == "trim":
        if not isinstance(given, bool):
            raise bad("true or false")
    elif key == "case":
        if given not in ("upper", "lower"):
            raise bad("\"upper\" or \"lower\"")
    elif key in ("lookup", "picklist"):
        if not isinstance(given, Mapping) or not given or not all(isinstance(v, _SCALAR) for v in given.values()):
            raise bad("a table of values, e.g. { A = \"Active\", B = \"Blocked\" }")
        return dict(given)
    elif key == "date_format":
        if not isinstance(given, str) or "%" not in given:
            raise bad("a strftime format such as \"%d.%m.%Y\"")
        try:
            date(2024, 1, 31).strftime(given)
        except ValueError:
            raise bad("a strftime format such as \"%d.%m.%Y\"") from None
    elif key == "decimals":
        if isinstance(given, bool) or not isinstance(given, int) or not 0 <= given <= 10:
            raise bad("a whole number from 0 to 10")
    elif key == "default":
        if not isinstance(given, _SCALAR):
            raise bad("text, a number or true/false")
    elif key == "truncate":
        if isinstance(given, bool) or not isinstance(given, int) or given < 1:
            raise bad("a whole number of characters, 1 or more")
    return given


def _condition(where: str, name: str, value: Any) -> Condition:
    if isinstance(value, _SCALAR):
        return Condition(name, "equals", (value,))
    if isinstance(value, list):
        value = {"in": value}
    if not isinstance(value, Mapping) or len(value) != 1 or next(iter(value)) not in CONDITIONS:
        raise ConfigError(f"{where}: a value, a list of values, or a table with one of {', '.join(CONDITIONS)} "
                          f"(e.g. {{ in = [\"A\", \"B\"] }})")
    test, given = next(iter(value.items()))
    if test == "is_set":
        if not isinstance(given, bool):
            raise ConfigError(f"{where}.is_set must be true or false")
        return Condition(name, test, (given,))
    if test == "equals":
        given = [given]
    if not isinstance(given, list) or not given or not all(isinstance(v, _SCALAR) for v in given):
        raise ConfigError(f"{where}.{test} must be {'a value' if test == 'equals' else 'a list of values'}")
    return Condition(name, test, tuple(given))


def as_text(value: Any) -> str:
    """A value as the file writes it, for comparing with the file's values and table keys: true/false as TOML spells
    them, a whole number without ".0", text without surrounding spaces."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _shown(value: Any) -> str:
    """A value of the file as `mappings` and skip reasons show it: true/false as TOML spells them, text quoted."""
    return as_text(value) if isinstance(value, bool) else repr(value)


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _is_key(value: Any) -> bool:
    return isinstance(value, _SCALAR) and not _empty(value)


def _format_date(value: Any, fmt: str, target: str) -> str:
    if isinstance(value, (date, datetime)):
        moment = value
    else:
        text = str(value).strip()
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00")) if "T" in text else date.fromisoformat(text)
        except ValueError:
            raise RecordError(f"{target}: {value!r} is not an ISO date (date_format)", "mapping") from None
    return moment.strftime(fmt)


def _round(value: Any, decimals: int, target: str) -> float | int:
    """Half up, as amounts are rounded (not Python's half to even)."""
    try:
        number = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise RecordError(f"{target}: {value!r} is not a number (decimals)", "mapping") from None
    if not number.is_finite():
        raise RecordError(f"{target}: {value!r} is not a number (decimals)", "mapping")
    rounded = number.quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_UP)
    return int(rounded) if decimals == 0 else float(rounded)


def _short(value: Any) -> str:
    text = json.dumps(value, default=str) if isinstance(value, Mapping) else \
        value if isinstance(value, str) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
