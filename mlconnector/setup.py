"""`mlconnector setup PAIR [--apply]`: read each system's metadata with the user's credentials and say, for every
prerequisite of the pair's flows, ok / missing / wrong and the exact fix; with apply, create what the vendor's API
allows (idempotently: what exists is left as it is, and no field's type is ever changed).

Systems are checked by kind: Zoho CRM from its metadata APIs (systems/zoho_setup.py); fields elsewhere against the
field lists the connectors read from each system's metadata (``field_names``: Dynamics' and F&O's ``$metadata``,
Zuora's Describe; GP's records' fixed fields). Steps no API can do or show (a NAV table extension, an Entra app's
registration in F&O, GP's security roles, Zuora's custom fields) are listed as "manual" with what to do; a field a
mapping needs that such a step would make is "missing" with that fix. A ``notify_url`` is checked for reachability.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import httpx

from mlconnector.config import Config
from mlconnector.fieldmap.overlay import check_rules
from mlconnector.fieldmap.targets import field_finding
from mlconnector.fieldmap.targets import requirements as mapping_requirements
from mlconnector.sync import resolve_roles
from mlconnector.pairs import get_pair
from mlconnector.prerequisites import (FIELD, MANUAL, MISSING, NOTIFY_URL, OK, UNCHECKED, Finding, Requirement,
                                       SetupReport)
from mlconnector.state import State
from mlconnector.systems import ConnectorContext, make_connector


def requirements_of(config: Config, pair: str) -> list[Requirement]:
    """The pair's own prerequisites, then the target fields its configured mappings write."""
    spec = get_pair(pair)
    pair_config = config.pair(pair)
    options = spec.option_values(pair_config.options)
    check_rules(spec, pair_config.mappings, options)
    own = list(spec.prerequisites(options)) if spec.prerequisites is not None else []
    return own + mapping_requirements(spec, pair_config.mappings, options)


def check_pair(config: Config, pair: str, context: ConnectorContext, state: State, *, apply: bool = False,
               plan: Callable[[SetupReport], None] | None = None) -> SetupReport:
    spec = get_pair(pair)
    roles = resolve_roles(config, spec)
    report = SetupReport(pair)
    requirements = requirements_of(config, pair)
    connectors: dict[str, Any] = {}
    checkers: dict[str, Any] = {}
    try:
        for requirement in requirements:
            system = roles[requirement.role]
            if system not in connectors:
                connectors[system] = make_connector(config.system(system), context)
            report.findings.append(_check(connectors[system], checkers, requirement))
        report.findings += _notify_urls(config, roles.values())
        if apply:
            if plan is not None:
                plan(report)
            _apply(report, connectors, checkers, roles)
    finally:
        for connector in connectors.values():
            connector.close()
    state.save_setup_missing(pair, report.missing_by_flow([f.name for f in spec.flows]))
    return report


def _checker(connector: Any, checkers: dict[str, Any]) -> Any:
    if connector.name not in checkers:
        kind = connector.system.kind
        if kind == "zoho":
            from mlconnector.systems.zoho_setup import ZohoSetup

            checkers[connector.name] = ZohoSetup(connector)
        else:
            checkers[connector.name] = FieldListSetup(connector)
    return checkers[connector.name]


class FieldListSetup:
    """Fields checked against the connector's field list (its system's metadata); nothing made through an API."""

    def __init__(self, connector: Any) -> None:
        self.connector = connector

    def check(self, requirement: Requirement) -> Finding:
        if requirement.kind != FIELD:
            return Finding(self.connector.name, requirement, UNCHECKED, fix=requirement.fix or "check it by hand")
        found = field_finding(self.connector.name, requirement, self.connector.field_names(requirement.target))
        # where no extension can put the field (BC's API v2.0 entities), adding one is no fix
        fixed = None if requirement.read or found.status == OK else self.connector.fixed_fields(requirement.target)
        if fixed:
            off = f'set {requirement.option} = "" in the pair\'s options' if requirement.option else "change the mapping"
            return replace(found, fix=f"{fixed}; or {off}")
        return found

    def apply(self, finding: Finding) -> Finding:
        return finding


def _check(connector: Any, checkers: dict[str, Any], requirement: Requirement) -> Finding:
    checker = _checker(connector, checkers)
    if requirement.kind == MANUAL:
        fix = requirement.fix or f"set up {requirement.what} in {connector.name} by hand"
        return Finding(connector.name, requirement, UNCHECKED, fix=fix)
    return checker.check(requirement)


def _apply(report: SetupReport, connectors: dict[str, Any], checkers: dict[str, Any],
           roles: dict[str, str]) -> None:
    """In the declared order (a custom module before its fields), each finding checked again first, so a second
    --apply, or a field whose module was just made, does the right thing."""
    for index, finding in enumerate(report.findings):
        checker = checkers.get(finding.system)
        if checker is None or finding.status in (OK, UNCHECKED) or finding.requirement.kind == MANUAL:
            continue
        current = checker.check(finding.requirement)
        if current.status == OK:
            report.findings[index] = current
            continue
        if not current.can_apply:
            report.findings[index] = current
            continue
        done = checker.apply(current)
        report.findings[index] = done
        if done.applied:
            report.applied.append(done)


def _notify_urls(config: Config, systems: Any) -> list[Finding]:
    """A notify_url must reach the listener: any HTTP answer will do (the receiver refuses a bare GET)."""
    findings = []
    for name in dict.fromkeys(systems):
        url = config.system(name).setting("notify_url", None)
        if not url:
            continue
        requirement = Requirement("", NOTIFY_URL, f"notify_url {url}")
        try:
            httpx.get(str(url), timeout=5.0, follow_redirects=False)
        except httpx.HTTPError as exc:
            findings.append(Finding(name, requirement, MISSING, f"not reachable: {type(exc).__name__}",
                                    "start `mlconnector listen` behind that address (README \"Running it\"), or "
                                    "remove notify_url to poll only"))
            continue
        findings.append(Finding(name, requirement, OK))
    return findings

