"""What a pair needs on a NAV page web service, checked by asking for it: fields a partner adds to a card (a table
and page extension) are there when ``$select`` takes them. Page mode only; no API can add them, so the fix is
always a manual step (README "nav-zuora")."""

from __future__ import annotations

from typing import Any

from mlconnector.prerequisites import FIELD, MISSING, OK, UNCHECKED, Finding, Requirement


class NavSetup:
    def __init__(self, connector: Any) -> None:
        self.connector = connector

    def check(self, requirement: Requirement) -> Finding:
        system = self.connector.name
        if requirement.kind != FIELD or self.connector.endpoint.mode == "api":
            return Finding(system, requirement, UNCHECKED, fix=requirement.fix or "check it by hand")
        service = self.connector.services.get(requirement.target, requirement.target)
        # ODataV4 refuses $select of a property the page does not have (400); $top=0 reads no record.
        response = self.connector._call("GET", f"{self.connector.company_url()}/{service}",
                                        params={"$select": requirement.name, "$top": "0"})
        if response.status_code == 200:
            return Finding(system, requirement, OK)
        if response.status_code in (400, 404):
            return Finding(system, requirement, MISSING, f"the {service} page has no field {requirement.name}",
                           requirement.fix)
        raise self.connector._fail(response, f"checking {service}.{requirement.name}")

    def apply(self, finding: Finding) -> Finding:
        return finding  # nothing here can be made through an API
