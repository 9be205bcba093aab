"""What the people on each side do, through each vendor's own API (not the sandboxes' back doors): a Zoho CRM
user edits and reads records with the CRM REST API, a NAV user edits and reads cards through NAV's page web
services. Tests arrange edits and check outcomes through these, as a user would see them."""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import quote

import httpx

NAV_SERVICES = {"customers": "Customer", "vendors": "Vendor", "contacts": "Contact", "items": "Item"}


class ZohoUser:
    """A Zoho CRM user of the org at ``api_domain``, signed in with a refresh token of its own client."""

    def __init__(self, transport: httpx.BaseTransport, api_domain: str, client_id: str, client_secret: str,
                 refresh_token: str) -> None:
        self.http = httpx.Client(transport=transport, base_url=api_domain)
        form = {"grant_type": "refresh_token", "client_id": client_id, "client_secret": client_secret,
                "refresh_token": refresh_token}
        answer = self.http.post("/oauth/v2/token", data=form)
        answer.raise_for_status()
        self.http.headers["Authorization"] = f"Zoho-oauthtoken {answer.json()['access_token']}"

    def record(self, module: str, record_id: str) -> dict[str, Any]:
        """GET /crm/v8/{module}/{id}"""
        answer = self.http.get(f"/crm/v8/{module}/{record_id}")
        answer.raise_for_status()
        return answer.json()["data"][0]

    def edit(self, module: str, record_id: str, **fields: Any) -> None:
        """PUT /crm/v8/{module}/{id}, as the CRM's edit form saves a record."""
        answer = self.http.put(f"/crm/v8/{module}/{record_id}", json={"data": [fields]})
        answer.raise_for_status()
        assert answer.json()["data"][0]["status"] == "success", answer.text

    def create(self, module: str, **fields: Any) -> str:
        """POST /crm/v8/{module}, as the CRM's create form saves a record; returns its id."""
        answer = self.http.post(f"/crm/v8/{module}", json={"data": [fields]})
        answer.raise_for_status()
        [result] = answer.json()["data"]
        assert result["status"] == "success", answer.text
        return str(result["details"]["id"])

    def delete(self, module: str, record_id: str) -> None:
        """DELETE /crm/v8/{module}/{id} (to the recycle bin)."""
        answer = self.http.delete(f"/crm/v8/{module}/{record_id}")
        answer.raise_for_status()
        assert answer.json()["data"][0]["status"] == "success", answer.text

    def close(self) -> None:
        self.http.close()


class ZuoraUser:
    """A Zuora user of the tenant at ``base_url`` with an OAuth client of their own (client credentials)."""

    def __init__(self, transport: httpx.BaseTransport, base_url: str, client_id: str, client_secret: str) -> None:
        self.http = httpx.Client(transport=transport, base_url=base_url)
        answer = self.http.post("/oauth/token", data={"grant_type": "client_credentials", "client_id": client_id,
                                                      "client_secret": client_secret})
        answer.raise_for_status()
        self.http.headers["Authorization"] = f"Bearer {answer.json()['access_token']}"

    def account(self, account_id: str) -> dict[str, Any]:
        """GET /v1/accounts/{id}: basicInfo, billToContact ..."""
        return self._ok(self.http.get(f"/v1/accounts/{account_id}"))

    def edit_account(self, account_id: str, **fields: Any) -> None:
        """PUT /v1/accounts/{id}"""
        self._ok(self.http.put(f"/v1/accounts/{account_id}", json=fields))

    def product(self, product_id: str) -> dict[str, Any]:
        """GET /v1/object/product/{id} (CRUD: Name, SKU, Description)"""
        return self._ok(self.http.get(f"/v1/object/product/{product_id}"))

    def edit_product(self, product_id: str, **fields: Any) -> None:
        """PUT /v1/object/product/{id}"""
        self._ok(self.http.put(f"/v1/object/product/{product_id}", json=fields))

    @staticmethod
    def _ok(answer: httpx.Response) -> dict[str, Any]:
        answer.raise_for_status()
        body = answer.json()
        assert body.get("success", True) is not False, answer.text
        return body

    def close(self) -> None:
        self.http.close()


class NavUser:
    """A NAV user working on cards through the company's page web services (Basic auth with a web service key)."""

    def __init__(self, transport: httpx.BaseTransport, base_url: str, company: str, user: str, key: str) -> None:
        token = base64.b64encode(f"{user}:{key}".encode()).decode()
        self.http = httpx.Client(transport=transport, headers={"Authorization": f"Basic {token}"})
        self.root = f"{base_url}/ODataV4/Company('{quote(company)}')"

    def card(self, entity: str, number: str) -> dict[str, Any]:
        answer = self.http.get(self._url(entity, number))
        answer.raise_for_status()
        return answer.json()

    def cards(self, entity: str) -> list[dict[str, Any]]:
        answer = self.http.get(f"{self.root}/{NAV_SERVICES[entity]}")
        answer.raise_for_status()
        return answer.json()["value"]

    def edit(self, entity: str, number: str, **fields: Any) -> None:
        """PATCH the card with the ETag just read, as the card page saves a change (page field names: City)."""
        etag = self.card(entity, number)["@odata.etag"]
        answer = self.http.patch(self._url(entity, number), json=fields, headers={"If-Match": etag})
        answer.raise_for_status()

    def rows(self, service: str, filter_: str | None = None) -> list[dict[str, Any]]:
        """A published page's rows (a journal, Customer Ledger Entries), as NAV shows them."""
        answer = self.http.get(f"{self.root}/{service}", params={"$filter": filter_} if filter_ else None)
        answer.raise_for_status()
        return answer.json()["value"]

    def _url(self, entity: str, number: str) -> str:
        return f"{self.root}/{NAV_SERVICES[entity]}('{quote(number)}')"

    def close(self) -> None:
        self.http.close()


class BcUser:
    """A Business Central user working through API v2.0 (Basic auth with a web service key), in one company (its
    id)."""

    def __init__(self, transport: httpx.BaseTransport, base_url: str, company_id: str, user: str, key: str) -> None:
        token = base64.b64encode(f"{user}:{key}".encode()).decode()
        self.http = httpx.Client(transport=transport, headers={"Authorization": f"Basic {token}"})
        self.root = f"{base_url}/api/v2.0/companies({company_id})"

    def rows(self, path: str, filter_: str | None = None) -> list[dict[str, Any]]:
        """GET a collection (``customerPaymentJournals(id)/customerPayments``), optionally filtered."""
        answer = self.http.get(f"{self.root}/{path}", params={"$filter": filter_} if filter_ else None)
        answer.raise_for_status()
        return answer.json()["value"]

    def row(self, path: str) -> dict[str, Any]:
        answer = self.http.get(f"{self.root}/{path}")
        answer.raise_for_status()
        return answer.json()

    def act(self, path: str) -> None:
        """POST a bound action (``salesInvoices(id)/Microsoft.NAV.post``), as the page's action button does."""
        self.http.post(f"{self.root}/{path}").raise_for_status()

    def close(self) -> None:
        self.http.close()
