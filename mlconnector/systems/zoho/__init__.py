"""Zoho CRM (API v8): OAuth per data centre, COQL incremental reads, upserts and Bulk Write, watch channels.

Settings (``[systems.NAME]`` with ``kind = "zoho"``; connections.example.toml documents each one):
data_centre, accounts_url, api_domain, upload_url, client_id, auth, soid, scope, redirect_uri, edition,
concurrency, sub_concurrency, bulk_threshold, bulk_poll_seconds, bulk_timeout_seconds, coql_page_size, fields,
full_record_modules, required_modules, notify_url, notify_modules, channel_hours, channel_margin_minutes,
daily_credit_budget, mint_limit, mint_wait_seconds.

Secrets (``mlconnector secrets set NAME FIELD``): client_secret, refresh_token (written by
``mlconnector auth zoho``), notify_token (generated on first subscribe). The access token is cached in the

The package: ``oauth`` (data centres, tokens, `mlconnector auth zoho`), ``quota`` (the mint governor and credit
ledger shared by processes), ``client`` (the calls), ``reads`` (COQL and by id), ``writes`` (updates and
upserts), ``bulk`` (Bulk Write jobs), ``deletions`` (recycle bin, deletes, tags), ``channels`` (watch channels and
notifications); the connector here holds the settings and the contract.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timedelta
from typing import Any

from mlconnector.config import SystemConfig
from mlconnector.errors import AuthError, MLConnectorError, RemoteError, Unreachable
from mlconnector.http import json_body
from mlconnector.systems import ConnectorContext, register_kind
from mlconnector.systems.base import Capabilities, Channel, ConnectorBase, Notification, PingResult, Record, WriteResult
from mlconnector.systems.zoho.bulk import BulkWrite, _bulk_results, _cell  # noqa: F401
from mlconnector.systems.zoho.channels import NOTIFY_MODULES, Channels  # noqa: F401
from mlconnector.systems.zoho.client import (DEFAULT_CONCURRENCY, DEFAULT_SUB_CONCURRENCY,  # noqa: F401
                                             EDITION_CONCURRENCY, HEAVY_WRITE_RECORDS, INVALID_TOKEN_CODES,
                                             MAX_UPSERT, ZohoApi, _began, _is_invalid_token, _is_throttled,
                                             is_heavy)
from mlconnector.systems.zoho.deletions import MAX_PER_PAGE, Deletions  # noqa: F401
from mlconnector.systems.zoho.oauth import (ACCOUNTS_SERVERS, CLIENT_CREDENTIALS_SCOPES, DATA_CENTRES,  # noqa: F401
                                            KIND, SCOPES, TOKEN_ERRORS, Authorised, DataCentre, ZohoAuth, _digest,
                                            authorise, consent_url, data_centre_of, data_centres, parse_pasted_code,
                                            redirect_uri_of, token_from)
from mlconnector.systems.zoho.quota import (CREDIT_WINDOW, MINT_WINDOW, ZOHO_MINTS_PER_WINDOW,  # noqa: F401
                                            QuotaFile, SharedQuota, _over_budget, default_quota_path,
                                            quota_of, quota_path)
from mlconnector.systems.zoho.reads import (COQL_IN_MAX, COQL_KEYS_PER_QUERY, COQL_MAX_LIMIT,  # noqa: F401
                                            COQL_MAX_SELECT, DEFAULT_FIELDS, LINE_ITEM_MODULES, Reads,
                                            _coql_credits, parse_zoho_time, _quote, _zoho_time)
from mlconnector.systems.zoho.writes import BULK_MAX, Writes, _flat, check_fields  # noqa: F401


# Record fields that exist only once an org activates multi-currency.
CURRENCY_FIELDS = ("Currency", "Exchange_Rate")
# Modules an edition lacks (Invoices, Sales and Purchase Orders need Professional or above).
EDITION_MISSING = {"free": frozenset({"Sales_Orders", "Invoices", "Purchase_Orders", "Quotes"}),
                   "standard": frozenset({"Sales_Orders", "Invoices", "Purchase_Orders"})}
REQUIRED_MODULES = ("Products", "Sales_Orders", "Invoices")


def register() -> None:
    register_kind(KIND, ZohoConnector)


class ZohoConnector(ConnectorBase):
    """The Zoho CRM connector: see the module docstring for its settings."""

    # Zoho's duplicate check compares a unique field's values as text without case or surrounding spaces (the
    # upsert's duplicate_check_fields, https://www.zoho.com/crm/developer/docs/api/v8/upsert-records.html).
    capabilities = Capabilities(push=True, fetches_many=True, deletion_feed=True, deletes=True, flags=True,
                                keys_ignore_case=True)

    def __init__(self, system: SystemConfig, context: ConnectorContext, *,
                 sleep: Callable[[float], None] = time.sleep, quota: QuotaFile | SharedQuota | None = None) -> None:
        self.name = system.name
        self.system = system
        self.context = context
        self._sleep = sleep
        self.quota = quota or quota_of(context)
        self.api = ZohoApi(system, context, self.quota, sleep=sleep)
        self.zoho_auth, self.auth, self.http = self.api.zoho_auth, self.api.auth, self.api.http
        self.sub_concurrency = self.api.sub_concurrency
        self._call, self._fail = self.api.call, self.api.fail
        self.bulk_threshold = int(system.setting("bulk_threshold", 5000, type_=int))
        self.bulk_poll_seconds = float(system.setting("bulk_poll_seconds", 5, type_=(int, float)))
        self.bulk_timeout = float(system.setting("bulk_timeout_seconds", 1800, type_=(int, float)))
        self.page_size = min(int(system.setting("coql_page_size", COQL_MAX_LIMIT, type_=int)), COQL_MAX_LIMIT)
        self.notify_url: str | None = system.setting("notify_url", type_=str)
        self.channel_hours = float(system.setting("channel_hours", 24, type_=(int, float)))
        self.renew_margin = timedelta(minutes=float(system.setting("channel_margin_minutes", 120,
                                                                     type_=(int, float))))
        self.reads = Reads(self.api, system, self.page_size)
        self._field_names: dict[str, frozenset[str]] = {}
        self.bulk = BulkWrite(self.api, poll_seconds=self.bulk_poll_seconds, timeout=self.bulk_timeout, sleep=sleep)
        self.writes = Writes(self.api, self.reads.get, self.bulk.write, self.bulk_threshold)
        self.deletions = Deletions(self.api, system)
        self.channels = Channels(self.api, system, context, notify_url=self.notify_url,
                                 channel_hours=self.channel_hours, renew_margin=self.renew_margin)

    # -- plumbing --------------------------------------------------------------------------------------------------
    @property
    def api_domain(self) -> str:
        """api_domain setting, else a sandbox/developer DC's own host, else the token's, else the DC default."""
        return self.api.api_domain

    @property
    def upload_url(self) -> str:
        """File uploads go to Zoho's content host of the DC; with an api_domain of our own, to that."""
        return self.api.upload_url

    @property
    def credits_used(self) -> int:
        """API credits this connector's calls have used."""
        return self.api.credits_used

    def set_budget(self, credits: int) -> None:
        """A daily API-credit budget (rolling 24 hours, shared by runs on this host); 0 means none."""
        self.api.set_budget(credits)

    def write_concurrency(self, entity: str, batch_size: int) -> int:
        """How many write calls of ``batch_size`` records are worth keeping in flight: writes of more than 10
        records are resource-intensive, so at most ``sub_concurrency`` of them run at once."""
        if batch_size > HEAVY_WRITE_RECORDS:
            return min(self.http.max_concurrency, self.sub_concurrency)
        return self.http.max_concurrency

    def close(self) -> None:
        self.api.close()

    # -- reads -----------------------------------------------------------------------------------------------------
    def fields(self, entity: str) -> list[str]:
        """The fields a COQL read selects: [systems.NAME.fields] for the module, else the built-in list."""
        return self.reads.fields(entity)

    def also_read(self, entity: str, fields: list[str]) -> None:
        self.reads.also_read(entity, [f for f in fields if f not in CURRENCY_FIELDS or self._multi_currency()])

    # -- currencies ------------------------------------------------------------------------------------------------
    def _currency_refusals(self, payloads: list[dict[str, Any]], results: list[WriteResult]) -> list[WriteResult]:
        """A document in a currency the org does not take: the refusal names the fix."""
        out = []
        for payload, result in zip(payloads, results):
            if result.action == "fail" and "Currency" in str(result.error or "") and payload.get("Currency"):
                fix = ("activate multi-currency in Zoho (Setup > Company Details > Currencies)"
                       if not self._multi_currency() else "add it to Zoho's active currencies (Setup > Currencies)")
                result = dataclasses.replace(result, error=f"Zoho takes no {payload['Currency']} amounts: {fix}, "
                                                           f"then `mlconnector replay` ({result.error})")
            out.append(result)
        return out

    def home_currency(self, entity: str) -> str | None:
        """The org's home currency (``iso_code`` of GET /org, https://www.zoho.com/crm/developer/docs/api/v8/
        get-org-data.html): the currency of every amount without multi-currency, and of records naming none."""
        return str(self.org().get("iso_code") or "") or None

    def _multi_currency(self) -> bool:
        return bool(self.org().get("mc_status"))

    def _in_org_currency(self, payloads: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Records "have a Currency field only after multi-currency is activated"
        (https://www.zoho.com/crm/help/administration/implement-multiple-currencies.html): without it, a document in
        the home currency goes without the field (and its Exchange_Rate); one in another currency keeps it, and Zoho
        refuses it (INVALID_DATA on Currency) rather than keep a foreign amount as a home-currency one."""
        if not any("Currency" in p or "Exchange_Rate" in p for p in payloads) or self._multi_currency():
            return payloads
        home = (self.home_currency("") or "").upper()
        return [{k: v for k, v in p.items() if k != "Exchange_Rate" and (k != "Currency" or str(v or "").upper()
                                                                             not in ("", home))} for p in payloads]

    def field_names(self, entity: str) -> frozenset[str]:
        """The module's fields by API name, from Fields Metadata (``GET /crm/v8/settings/fields?module=``,
        https://www.zoho.com/crm/developer/docs/api/v8/field-meta.html), and the record's ``id``."""
        if entity not in self._field_names:
            response = self._call("GET", "/crm/v8/settings/fields", params={"module": entity}, idempotent=True)
            if response.status_code not in (200, 204):
                raise self._fail(response, f"reading the fields of {entity}")
            body = (json_body(response) or {}) if response.status_code == 200 else {}
            self._field_names[entity] = frozenset(
                ["id", *(f["api_name"] for f in body.get("fields", []) if f.get("api_name"))])
        return self._field_names[entity]

    def changes(self, entity: str, since: datetime | None, until: datetime | None = None) -> Iterator[Record]:
        """Records modified in [since, until), ascending by (Modified_Time, id), via COQL (see ``Reads``)."""
        return self.reads.changes(entity, since, until)

    def coarse_stamps(self, entity: str) -> bool:
        """Modified_Time carries whole seconds (https://www.zoho.com/crm/developer/docs/api/v8/get-records.html):
        two edits within one second share a stamp, so a record re-read with the stamp last synced may still be a
        newer version. The engine then tells versions apart by content."""
        return True

    def read_clock(self, entity: str) -> datetime | None:
        """Zoho's own clock (the Date of its answer) when the last ``changes`` read of ``entity`` began."""
        return self.reads.read_clock(entity)

    def get(self, entity: str, id: str) -> Record | None:
        """The full record, with subforms (line items come only this way); None when it is gone."""
        return self.reads.get(entity, id)

    def get_many(self, entity: str, ids: list[str]) -> dict[str, Record]:
        """Several records in one call (up to 100), for notifications naming many ids."""
        return self.reads.get_many(entity, ids)

    # -- deletions -------------------------------------------------------------------------------------------------
    def deleted_since(self, entity: str, since: datetime | None) -> list[str]:
        return self.deletions.deleted_since(entity, since)

    def delete(self, entity: str, ids: list[str]) -> dict[str, str | None]:
        return self.deletions.delete(entity, ids)

    def flag_deleted(self, entity: str, ids: list[str], source: str) -> dict[str, str | None]:
        return self.deletions.flag_deleted(entity, ids, source)

    def unflag_deleted(self, entity: str, ids: list[str], source: str) -> dict[str, str | None]:
        return self.deletions.unflag_deleted(entity, ids, source)

    # -- writes ----------------------------------------------------------------------------------------------------
    def write(self, entity: str, payloads: list[dict[str, Any]], key: str,
              ids: list[str | None] | None = None) -> list[WriteResult]:
        """Records already linked (``ids``) are updated by id; the rest are upserted by the duplicate-check
        field ``key`` in batches of 100, or through Bulk Write above bulk_threshold."""
        return self._currency_refusals(payloads, self.writes.write(entity, self._in_org_currency(payloads), key, ids))

    def write_calls(self, entity: str, payloads: list[dict[str, Any]], key: str,
                    ids: list[str | None] | None = None) -> int:
        return self.writes.write_calls(entity, self._in_org_currency(payloads), key, ids)

    def initial_load_batch(self, entity: str) -> int | None:
        return self.writes.initial_load_batch(entity)

    def bulk_write(self, entity: str, payloads: list[dict[str, Any]], key: str) -> list[WriteResult]:
        return self.bulk.write(entity, self._in_org_currency(payloads), key)

    def connect(self) -> None:
        """What every run asks first (a token, then the org, which tells the edition), asked now: the engine asks
        each system's at once, rather than one system after another."""
        self.org()

    def org(self) -> dict[str, Any]:
        return self.api.org()

    # -- push channels ---------------------------------------------------------------------------------------------
    def push_entities(self) -> tuple[str, ...]:
        return self.channels.push_entities()

    def subscribe(self, entity: str, notify_url: str | None = None) -> Channel:
        return self.channels.subscribe(entity, notify_url)

    def renew(self, channel: Channel) -> Channel:
        return self.channels.renew(channel)

    def needs_renewal(self, channel: Channel, now: datetime | None = None) -> bool:
        return self.channels.needs_renewal(channel, now)

    def renew_expiring_channels(self, channels: list[Channel], now: datetime | None = None) -> list[Channel]:
        """Renew the channels with less than channel_margin_minutes left; returns them all, renewed or not."""
        return self.channels.renew_expiring_channels(channels, now)

    def unsubscribe(self, channel: Channel | str) -> None:
        self.channels.unsubscribe(channel)

    def verify(self, body: bytes | str | Mapping[str, Any], headers: Mapping[str, str] | None = None,
               query: Mapping[str, str] | None = None) -> list[Notification]:
        return self.channels.verify(body, headers, query)

    def unavailable(self, entity: str) -> str | None:
        """Why records of ``entity`` cannot be written in this org (its edition lacks the module), or None.

        The engine asks before a flow runs, so such a flow is skipped with this reason instead of failing
        record by record."""
        licence = self.org().get("license_details") or {}
        edition = str(licence.get("paid_type") or "unknown")
        if not licence.get("paid") and licence.get("trial_type"):
            edition = str(licence["trial_type"])  # a trial has its trial edition's modules
        if entity in EDITION_MISSING.get(edition, frozenset()):
            return (f"the Zoho {edition} edition has no {entity} module: flow skipped (upgrade the edition, "
                    "or leave this flow out of pairs.*.flows)")
        return None

    # -- ping ------------------------------------------------------------------------------------------------------
    def ping(self) -> PingResult:
        """Token, api_domain, org and edition, current user; warns when needed modules lack in the edition."""
        base = ""
        try:
            self.auth.token()
            base = self.api_domain
            org = self.org()
            users = self._call("GET", "/crm/v8/users", params={"type": "CurrentUser"})
            user = ((json_body(users) or {}).get("users") or [{}])[0] if users.status_code == 200 else {}
        except AuthError as exc:
            return PingResult(self.name, False, base, error=str(exc), exit_code=exc.exit_code)
        except (Unreachable, RemoteError) as exc:
            return PingResult(self.name, False, base, error=str(exc), exit_code=exc.exit_code)
        except MLConnectorError as exc:
            return PingResult(self.name, False, base, error=str(exc), exit_code=exc.exit_code)
        licence = org.get("license_details") or {}
        edition = str(licence.get("paid_type") or "unknown")
        details = [f"org {org.get('company_name', '?')} ({org.get('type', 'production')}, edition {edition})"]
        if user:
            details.append(f"user {user.get('full_name', '?')} <{user.get('email', '?')}>")
        details.append(f"{self.credits_used} credits used")
        needed = self.system.setting("required_modules", list(REQUIRED_MODULES), type_=list)
        missing = [m for m in needed if m in EDITION_MISSING.get(edition, frozenset())]
        warnings = []
        if missing:
            warnings.append(f"the {edition} edition has no {', '.join(missing)}: flows that need them will fail")
        if licence.get("trial_type") and not licence.get("paid"):
            warnings.append(f"trial of {licence['trial_type']} until {licence.get('trial_expiry')}")
        return PingResult(self.name, True, base, tuple(details), tuple(warnings))


__all__ = ["ZohoConnector", "register", "authorise", "consent_url", "parse_pasted_code", "QuotaFile",
           "DATA_CENTRES", "token_from"]
