"""The sandboxes as `mlconnector sandbox serve` serves them, over loopback: every answer carries exactly one
`Date` header, as a real server's does, and an emulator with a clock of its own (Zoho, Zuora) dates it by
that clock."""

from __future__ import annotations

import email.utils
from datetime import datetime, timedelta, timezone

import httpx

from mlconnector.sandbox import server as sandbox_server


def _dates(url: str) -> list[str]:
    answer = httpx.get(url, timeout=10)
    return answer.headers.get_list("date")


def test_every_served_system_answers_with_one_date_header_from_its_own_clock():
    with sandbox_server.start(("nav", "bc", "fo", "gp"), zuora=True, seed=3) as running:
        for sandbox in running.zoho_sandboxes.values():
            sandbox.clock.advance(days=3)  # a Zoho org three days ahead: its Date says so
        running.zuora_sandbox.clock.advance(days=5)
        urls = {"dynamics": f"{running.dynamics_url}/", "finops": f"{running.finops.base_url}/data/",
                "gp": running.gp.base_url, "zuora": f"{running.zuora.base_url}/v1/accounts/nobody",
                **{f"zoho-{erp}": f"{access.url}/crm/v8/Accounts" for erp, access in running.zoho.items()}}
        now = datetime.now(timezone.utc)
        for name, url in urls.items():
            dates = _dates(url)
            assert len(dates) == 1, f"{name}: {dates}"
            when = email.utils.parsedate_to_datetime(dates[0])
            ahead = {"zuora": timedelta(days=5)}.get(name, timedelta(days=3) if name.startswith("zoho") else
                                                      timedelta(0))
            assert abs(when - (now + ahead)) < timedelta(seconds=30), f"{name}: {dates[0]}"
