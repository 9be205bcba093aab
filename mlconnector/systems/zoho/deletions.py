"""Deletions in Zoho CRM: the recycle bin read since a moment, records deleted (to the recycle bin) or tagged
"Deleted in SOURCE" and untagged, a hundred ids a call."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx

from mlconnector.config import SystemConfig
from mlconnector.http import json_body
from mlconnector.systems.zoho.client import MAX_UPSERT, ZohoApi
from mlconnector.systems.zoho.reads import _zoho_time

MAX_PER_PAGE = 200          # records per page of a list call (deleted records)


class Deletions:
    """The deletion calls of one org."""

    def __init__(self, api: ZohoApi, system: SystemConfig) -> None:
        self.name = system.name
        self.system = system
        self._call, self._fail = api.call, api.fail

    def deleted_since(self, entity: str, since: datetime | None) -> list[str]:
        """Ids in the module's recycle bin (or purged) deleted at or after ``since``: GET /{module}/deleted with
        If-Modified-Since (https://www.zoho.com/crm/developer/docs/api/v8/get-deleted-records.html)."""
        headers = {"If-Modified-Since": _zoho_time(since)} if since else {}
        ids: list[str] = []
        page = 1
        while True:
            response = self._call("GET", f"/crm/v8/{entity}/deleted", idempotent=True, headers=headers,
                                  params={"type": "all", "page": page, "per_page": MAX_PER_PAGE})
            if response.status_code == 204:
                return ids
            if response.status_code != 200:
                raise self._fail(response, f"deleted {entity}")
            body = response.json()
            ids.extend(str(row["id"]) for row in body.get("data") or [])
            if not (body.get("info") or {}).get("more_records"):
                return ids
            page += 1

    def delete(self, entity: str, ids: list[str]) -> dict[str, str | None]:
        """DELETE /{module}?ids= (up to 100; https://www.zoho.com/crm/developer/docs/api/v8/delete-records.html):
        the records go to the recycle bin. One already gone answers INVALID_DATA: that is done too."""
        done: dict[str, str | None] = {}
        for start in range(0, len(ids), MAX_UPSERT):
            chunk = ids[start:start + MAX_UPSERT]
            response = self._call("DELETE", f"/crm/v8/{entity}", idempotent=True, params={"ids": ",".join(chunk)})
            done.update(self._per_record(response, chunk, f"delete {entity}", gone_is_done=True))
        return done

    def flag_deleted(self, entity: str, ids: list[str], source: str) -> dict[str, str | None]:
        """Tag the records "Deleted in SOURCE" (the ``deleted_tag`` setting; POST /{module}/actions/add_tags,
        https://www.zoho.com/crm/developer/docs/api/v8/add-tags.html): sales sees them, reports can filter them,
        and nothing is lost."""
        return self._tagging("add_tags", entity, ids, source, {"over_write": False})

    def unflag_deleted(self, entity: str, ids: list[str], source: str) -> dict[str, str | None]:
        """Take the tag off again (POST /{module}/actions/remove_tags, the same body,
        https://www.zoho.com/crm/developer/docs/api/v8/remove-tags.html)."""
        return self._tagging("remove_tags", entity, ids, source, {})

    def _tagging(self, action: str, entity: str, ids: list[str], source: str,
                 extra: dict[str, Any]) -> dict[str, str | None]:
        tag = self.system.setting("deleted_tag", "Deleted in {source}", type_=str).replace("{source}", source)
        done: dict[str, str | None] = {}
        for start in range(0, len(ids), MAX_UPSERT):
            chunk = ids[start:start + MAX_UPSERT]
            response = self._call("POST", f"/crm/v8/{entity}/actions/{action}", idempotent=True,
                                  json={"tags": [{"name": tag}], "ids": chunk, **extra})
            done.update(self._per_record(response, chunk, f"{action.replace('_', ' ')} {entity}",
                                         gone_is_done=False))
        return done

    def _per_record(self, response: httpx.Response, ids: list[str], what: str, *,
                    gone_is_done: bool) -> dict[str, str | None]:
        """A per-record answer (``data[]``, status 200/207/400) as id -> None (done) or why not."""
        body = json_body(response)
        items = body.get("data") if isinstance(body, dict) else None
        if response.status_code not in (200, 207, 400) or not isinstance(items, list):
            raise self._fail(response, what)
        answers: dict[str, str | None] = {}
        for record_id, item in zip(ids, items):
            details = item.get("details") or {}
            record_id = str(details.get("id") or record_id)
            if item.get("status") == "success" or (gone_is_done and item.get("code") == "INVALID_DATA"):
                answers[record_id] = None
            else:
                answers[record_id] = f"{item.get('code')}: {item.get('message')}"
        return answers
