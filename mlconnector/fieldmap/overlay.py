"""A pair's flows with the configured mappings and filters laid over them: each flow's own mapping runs first, then
the flow's rules change its payload; a record the filter leaves out is skipped (with the reason) before it is
mapped. Every caller of ``flow.map`` (a run, replay, reconcile, the echo check) then sees the same mapping, so no
pair module changes for it.

Also the effective mapping table `mlconnector mappings` prints: the pair's own lines (its field tables) and the
configured ones, each saying where it comes from.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from mlconnector.errors import ConfigError
from mlconnector.fieldmap.rules import FlowRules
from mlconnector.flows import Flow, MapContext, PairSpec, SkipRecord
from mlconnector.systems.base import Record

BUILT_IN, CONFIG = "pair", "config"


def check_rules(spec: PairSpec, rules: Mapping[str, FlowRules], options: Mapping[str, Any]) -> None:
    """Each flow's rules against the pair: a flow it has, no mapping onto the flow's key field, an added field the
    pair does not map already, an overridden or dropped one it does. One ConfigError naming pair, flow and field."""
    names = [f.name for f in spec.flows]
    for flow_name, flow_rules in rules.items():
        if flow_name not in names:
            raise ConfigError(f"pairs.{spec.name}.mappings.{flow_name}: {spec.name} has no flow {flow_name!r} "
                              f"(flows: {', '.join(names)})")
        flow = spec.flow(flow_name)
        keys = {k.strip() for k in flow.key_field(options).split(",")}
        own = set(flow.fields)
        for part, targets in (("add", flow_rules.add), ("override", flow_rules.override), ("drop", flow_rules.drop),
                              ("transform", flow_rules.transform)):
            for target in targets:
                where = flow_rules.where(part, target)
                if target in keys:
                    raise ConfigError(f"{where}: {target} is the key field of flow {flow_name} (records are matched "
                                      "on it); it cannot be mapped, dropped or transformed here (the pair's options "
                                      "choose the key field)")
                if not own:
                    continue  # a flow without a field table: nothing to check against
                if part == "add" and target in own:
                    raise ConfigError(f"{where}: two mappings onto one target field ({spec.name} maps {target} "
                                      f"from {flow.fields[target]}); use override to replace it")
                if part in ("override", "drop") and target not in own:
                    raise ConfigError(f"{where}: {spec.name} does not map {target} in flow {flow_name} (it maps "
                                      f"{', '.join(flow.fields)}); use add for a field of your own")
                if part == "transform" and target not in own and target not in flow_rules.add:
                    raise ConfigError(f"{where}: nothing maps {target} in flow {flow_name}; add it first")


def overlaid(spec: PairSpec, rules: Mapping[str, FlowRules], options: Mapping[str, Any]) -> PairSpec:
    """The pair with each configured flow's mapping wrapped by its rules (checked first)."""
    check_rules(spec, rules, options)
    if not rules:
        return spec
    flows = tuple(_flow_with(flow, rules[flow.name]) if flow.name in rules else flow for flow in spec.flows)
    return replace(spec, flows=flows)


def _flow_with(flow: Flow, rules: FlowRules) -> Flow:
    base = flow.map

    def mapped(record: Record, ctx: MapContext) -> dict[str, Any]:
        reason = rules.rejects(record.data)
        if reason:
            raise SkipRecord(f"left out by the filter: {reason}")
        return rules.apply(record.data, base(record, ctx))

    return replace(flow, map=mapped, reads=rules.reads, filter_fields=tuple(c.field for c in rules.filter),
                   mapping_digest=rules.digest)


@dataclass(frozen=True)
class Line:
    """One line of the effective mapping table."""

    flow: str
    target: str
    source: str
    transforms: tuple[str, ...] = ()
    origin: str = BUILT_IN      # "pair" or "config"
    change: str = ""            # "", "add", "override", "drop", "transform", "key", "filter"

    def to_dict(self) -> dict[str, Any]:
        return {"flow": self.flow, "target": self.target, "source": self.source,
                "transforms": list(self.transforms), "from": self.origin, "change": self.change or None}


def effective_table(spec: PairSpec, rules: Mapping[str, FlowRules], options: Mapping[str, Any],
                    flow: str | None = None) -> list[Line]:
    """What each flow writes, field by field: the pair's own lines changed by the configured ones."""
    check_rules(spec, rules, options)
    lines: list[Line] = []
    for spec_flow in spec.flows:
        if flow is not None and spec_flow.name != flow:
            continue
        flow_rules = rules.get(spec_flow.name)
        lines += _flow_lines(spec_flow, flow_rules, options)
    return lines


def _flow_lines(flow: Flow, rules: FlowRules | None, options: Mapping[str, Any]) -> list[Line]:
    name = flow.name
    key = flow.key_field(options)
    lines = [] if key in flow.fields else [Line(name, key, "the record's key (the pair's options)", (), BUILT_IN,
                                                "key")]
    if not flow.fields:  # a pair that keeps no field table for this flow: say so rather than show nothing
        lines.append(Line(name, "(its other fields)", "as the pair's mapping sets them"))
    if rules is None:
        return lines + [Line(name, target, source) for target, source in flow.fields.items()]
    for target, source in flow.fields.items():
        if target in rules.drop:
            lines.append(Line(name, target, f"(dropped; the pair maps {source})", (), CONFIG, "drop"))
        elif target in rules.override:
            rule = rules.override[target]
            lines.append(Line(name, target, rule.describe(), tuple(rule.steps.names()), CONFIG, "override"))
        elif target in rules.transform:
            lines.append(Line(name, target, source, tuple(rules.transform[target].names()), CONFIG, "transform"))
        else:
            lines.append(Line(name, target, source))
    own = set(flow.fields)
    for target, rule in rules.add.items():
        steps = [*rule.steps.names(), *(rules.transform[target].names() if target in rules.transform else [])]
        lines.append(Line(name, target, rule.describe(), tuple(steps), CONFIG, "add"))
    for target in rules.override:
        if target not in own:  # a flow without a field table
            rule = rules.override[target]
            lines.append(Line(name, target, rule.describe(), tuple(rule.steps.names()), CONFIG, "override"))
    for target in rules.drop:
        if target not in own:
            lines.append(Line(name, target, "(dropped)", (), CONFIG, "drop"))
    for target, steps in rules.transform.items():
        if target not in own and target not in rules.add:
            lines.append(Line(name, target, "(as the pair maps it)", tuple(steps.names()), CONFIG, "transform"))
    for condition in rules.filter:
        lines.append(Line(name, "(filter)", condition.describe(), (), CONFIG, "filter"))
    return lines
