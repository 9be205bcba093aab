"""Accounts written to Zuora: upserted by the flow's key (a custom field), else matched by the configured rule
(same company name, or the bill-to contact's e-mail domain), and read back for their version."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from mlconnector.auth import utcnow
from mlconnector.systems.base import WriteResult
from mlconnector.systems.zuora.client import ZuoraClient
from mlconnector.systems.zuora.errors import _not_found, failure_of
from mlconnector.systems.zuora.object_query import ObjectQuery


class Accounts:
    """Account writes through the v1 API (creates keyed, so a resent create makes nothing twice)."""

    def __init__(self, client: ZuoraClient, reads: ObjectQuery, account_match: str) -> None:
        self.name = client.name
        self.account_match = account_match
        self._domains: dict[str, list[dict[str, Any]]] | None = None
        self._call, self._ok, self._create, self._key = client.call, client.ok, client.create, client.key
        self._query, self.get = reads.query, reads.get

    def _find_account(self, key: str, value: Any, payload: Mapping[str, Any]) -> dict | None:
        """An account not linked yet (or no longer there): the one holding the key, else the matching rule's."""
        if value not in (None, ""):
            rows = list(self._query("accounts", [f"{key}.EQ:{value}"], expand=("billto",)))
            if rows:
                return rows[0]
        return self._match_account(key, payload)

    def _match_account(self, key: str, payload: Mapping[str, Any]) -> dict | None:
        """The configured rule for accounts not yet tied to an ERP customer: same company name, or the same
        e-mail domain on the bill-to contact. An account already tied to another customer never matches."""
        if self.account_match == "company_name" and payload.get("name"):
            rows = self._query("accounts", [f"name.EQ:{payload['name']}"], expand=("billto",))
            return next((r for r in rows if not r.get(key)), None)
        email = str((payload.get("billToContact") or {}).get("workEmail") or "")
        if self.account_match == "email_domain" and "@" in email:
            if self._domains is None:  # every account once per run; Object Query cannot filter on a suffix
                self._domains = {}
                for row in self._query("accounts", [], expand=("billto",)):
                    mail = str((row.get("billTo") or {}).get("workEmail") or "")
                    if "@" in mail:
                        self._domains.setdefault(mail.rsplit("@", 1)[1].lower(), []).append(row)
            candidates = self._domains.get(email.rsplit("@", 1)[1].lower(), [])
            return next((r for r in candidates if not r.get(key)), None)
        return None

    def write(self, payload: dict[str, Any], key: str, known_id: str | None) -> WriteResult:
        changes = {k: v for k, v in payload.items() if k not in ("currency", "billCycleDay")}
        if known_id:
            # A linked account is updated in place, and looked for again (by key, then by the matching rule) only
            # when Zuora no longer has it: reading it before every update cost a call per changed account.
            response = self._call("PUT", f"/v1/accounts/{known_id}", json=changes)
            failure = failure_of(self.name, response)
            if failure is None:
                return self._written_account(known_id, "update")
            if not _not_found(failure):
                self._ok(response, f"update account {known_id}")  # raises, naming the account
        found = self._find_account(key, payload.get(key), payload)
        if found is None:
            answer = self._create("/v1/accounts", payload, self._key("account", payload.get(key), payload),
                                  f"create account {payload.get(key) or payload.get('name')}")
            return self._written_account(str(answer["accountId"]), "create")
        account_id = str(found["id"])
        self._ok(self._call("PUT", f"/v1/accounts/{account_id}", json=changes), f"update account {account_id}")
        return self._written_account(account_id, "update")

    def _written_account(self, account_id: str, action: Literal["create", "update"]) -> WriteResult:
        """The account as written, read back for its version (a v1 write answers without one)."""
        written = self.get("accounts", account_id)
        return WriteResult(action, account_id, written.modified if written else utcnow(), stored=written)
