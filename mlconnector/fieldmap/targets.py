"""What the configured mappings need in the pair's systems, as `mlconnector setup PAIR` prerequisites: each added
target field must exist there (setup creates it where the vendor's API allows: a Zoho custom field), a field a
mapping truncates must hold at least that many characters, and the source fields the mappings and filters read
must exist (checked where the source names the fields it reads, as a Zoho read does: one it lacks would fail the
read; never made). Checked from the systems' own metadata, so a misspelt field is one line before any record is
sent."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mlconnector.fieldmap.rules import FlowRules
from mlconnector.flows import PairSpec
from mlconnector.prerequisites import FIELD, MISSING, OK, UNCHECKED, Finding, Requirement, close_match

# A mapping that rounds numbers (decimals) writes a number: the field must take one.
NUMBER = "double"


def requirements(spec: PairSpec, rules: Mapping[str, FlowRules], options: Mapping[str, Any]) -> list[Requirement]:
    needed: list[Requirement] = []
    for flow_name, flow_rules in rules.items():
        flow = spec.flow(flow_name)
        added = dict(flow_rules.add)
        lengths = {name: steps.truncate for name, steps in flow_rules.transform.items() if steps.truncate}
        lengths |= {name: rule.steps.truncate for name, rule in (*added.items(), *flow_rules.override.items())
                    if rule.steps.truncate}
        for name in dict.fromkeys([*added, *lengths]):
            rule = added.get(name)
            number = rule is not None and rule.steps.decimals is not None
            needed.append(Requirement(
                flow.target, FIELD, flow.target_entity, name, NUMBER if number else "",
                max_length=lengths.get(name, 0), flows=(flow_name,),
                fix=f"pairs.{spec.name}.mappings.{flow_name} writes {name}{' (a number: decimals)' if number else ''}: "
                    + _write_fix(flow.target_entity, number)))
        for name in flow_rules.reads:
            needed.append(Requirement(
                flow.source, FIELD, flow.source_entity, name, "", read=True, flows=(flow_name,),
                fix=f"pairs.{spec.name}.mappings.{flow_name} reads {name}, which {flow.source_entity} does not have: "
                    + READ_FIX))
    return needed


READ_FIX = "correct the name (the API name, as the system's field list shows it)"


def _write_fix(entity: str, number: bool = False) -> str:
    return (f"add it to {entity} (in NAV or BC a table extension and a page extension, elsewhere a custom field"
            f"{' of a number type' if number else ''}), or change the mapping")


def missing_line(pair: str, system: str, requirement: Requirement, known: frozenset[str]) -> str:
    """One line for a field a flow's configured mapping needs and its system lacks: pair, flow, field, a close
    match where there is one, and the fix."""
    near = close_match(requirement.name, known)
    verb = "reads" if requirement.read else "writes"
    return (f"pairs.{pair}.mappings.{requirement.flows[0]} {verb} {requirement.name}, which {system}'s "
            f"{requirement.target} does not have{f' (did you mean {near}?)' if near else ''}: "
            + (READ_FIX if requirement.read else _write_fix(requirement.target, requirement.data_type == NUMBER)))


def field_finding(system: str, requirement: Requirement, known: frozenset[str] | None) -> Finding:
    """A field requirement checked against the fields the system's metadata lists (None: it lists none)."""
    if known is None:
        return Finding(system, requirement, UNCHECKED, fix=requirement.fix or "check it by hand")
    if requirement.name in known:
        return Finding(system, requirement, OK)
    near = close_match(requirement.name, known)
    detail = f"{requirement.target} has no field {requirement.name}" + (f"; did you mean {near}?" if near else "")
    return Finding(system, requirement, MISSING, detail, requirement.fix)
