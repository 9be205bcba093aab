"""What a pair needs set up in its systems before a flow can run: declared by each pair, checked and (where the
vendor's API allows) created by `mlconnector setup PAIR`.

A ``Requirement`` is data: which system role, what (a module, a custom module, a field with its type and
uniqueness, something only a person can do), and which flows need it. A ``Finding`` is one checked line: ``ok``,
``missing`` or ``wrong`` (with what is wrong), the exact fix, and whether ``setup --apply`` can make it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field

# Requirement kinds
MODULE = "module"                # a module the edition must have (Zoho Sales_Orders ...)
CUSTOM_MODULE = "custom_module"  # a custom module (Zoho GL_Accounts ...)
FIELD = "field"                  # a field with a data type, maybe unique
MANUAL = "manual"                # a step no API can do or show (a NAV table extension ...)
NOTIFY_URL = "notify_url"        # push reaches the listener (polling works without: it blocks no flow)

OK, MISSING, WRONG, UNCHECKED = "ok", "missing", "wrong", "manual"


@dataclass(frozen=True)
class Requirement:
    role: str                          # the pair's role whose system must have it ("crm", "erp", "billing")
    kind: str
    target: str                        # module / entity / page
    name: str = ""                     # the field, for FIELD
    data_type: str = "text"            # "": any type will do (a configured mapping's own field)
    unique: bool = False
    length: int = 0
    max_length: int = 0                # a mapping truncates to this many characters: the field must hold them
    read: bool = False                 # a field a configured mapping reads from its source: checked, never made
    label: str = ""                    # display label (custom modules: plural label)
    singular: str = ""                 # custom modules
    flows: tuple[str, ...] = ()        # the flows that need it; empty: every flow of the pair
    fix: str = ""                      # for MANUAL: what a person does
    option: str = ""                   # the pair option naming the field ("" turns its flows off), where one does

    @property
    def what(self) -> str:
        if self.kind == FIELD:
            return f"{self.target}.{self.name}"
        return self.target


@dataclass
class Finding:
    """One line of `setup`: a requirement on a system, as found."""

    system: str
    requirement: Requirement
    status: str
    detail: str = ""                   # what was found ("exists but is not unique")
    fix: str = ""                      # the exact fix
    can_apply: bool = False            # `setup --apply` can make it through the vendor's API
    applied: bool = False

    @property
    def flows(self) -> tuple[str, ...]:
        return self.requirement.flows

    def line(self) -> str:
        text = f"{self.status:<7} {self.system}: {self.requirement.what}"
        if self.detail:
            text += f" ({self.detail})"
        if self.status != OK and self.fix:
            text += f": {self.fix}"
        return text


@dataclass
class SetupReport:
    pair: str
    findings: list[Finding] = field(default_factory=list)
    applied: list[Finding] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)      # systems that could not be checked

    @property
    def missing(self) -> list[Finding]:
        return [f for f in self.findings if f.status in (MISSING, WRONG)]

    def missing_by_flow(self, flows: list[str]) -> dict[str, list[str]]:
        """For each flow, the lines of what it lacks (a requirement naming no flows concerns them all)."""
        out: dict[str, list[str]] = {}
        for finding in self.missing:
            if finding.requirement.kind == NOTIFY_URL:
                continue
            for flow in finding.flows or tuple(flows):
                out.setdefault(flow, []).append(finding.line())
        return out


def close_match(name: str, known: Iterable[str]) -> str | None:
    """The known field a misspelt name most likely means: the same but for case, else the closest spelling."""
    names = sorted(known)
    same = [k for k in names if k.lower() == name.lower()]
    return (same or difflib.get_close_matches(name, names, n=1, cutoff=0.7) or [None])[0]
