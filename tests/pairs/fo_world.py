"""The F&O and Zoho sandboxes in-process behind one transport, a connections.toml naming them and the secrets in
environment variables: fo-zoho runs as it would against the real systems."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from mlconnector import api
from mlconnector.sandbox.common import HostRouter, InProcessTransport
from mlconnector.sandbox.finops import FinOpsSandbox
from mlconnector.sandbox.finops import create_app as create_finops
from mlconnector.sandbox.zoho import ZohoSandbox
from mlconnector.sandbox.zoho import create_app as create_zoho
from mlconnector.state import StateStore
from tests.pairs.world import _Late

TENANT = "contoso.onmicrosoft.com"
FO_CLIENT_ID = "7a2b9c4d-0000-4000-8000-0000000000f0"
FO_SECRET = "fo~secret-8e7d6c5b4a39281706f5"
ENVIRONMENT = "contoso-test.sandbox.operations.dynamics.com"
LEGAL_ENTITY = "usmf"
ZOHO_UNIQUE = {"Accounts": "Account_Number", "Products": "Product_Code", "Vendors": "ERP_Number"}


@dataclass
class FoWorld:
    zoho: ZohoSandbox
    finops: FinOpsSandbox
    config_path: Path
    state_path: Path
    router: HostRouter
    listener_slot: _Late
    secrets: dict[str, str] = field(default_factory=dict, repr=False)

    def runtime(self) -> api.Runtime:
        return api.Runtime(config_path=self.config_path, transport=self.router)

    def sync(self, **kwargs: Any) -> api.RunResult:
        return api.sync(self.runtime(), "fo-zoho", **kwargs)

    def state(self) -> StateStore:
        """The state as the commands open it: the file, or PostgreSQL where MLCONNECTOR_STATE_URL names it."""
        return self.runtime().open_state()

    def fo(self, entity: str) -> list[dict[str, Any]]:
        return self.finops.records(LEGAL_ENTITY, entity)

    def crm(self, module: str) -> list[dict[str, Any]]:
        return self.zoho.records(module)

    def zoho_id(self, module: str, field_name: str, value: str) -> str:
        [found] = [r for r in self.crm(module) if r.get(field_name) == value]
        return str(found["id"])

    def zoho_order(self, account: str, items: list[tuple[str, float]], subject: str = "Order from Zoho",
                   module: str = "Sales_Orders", **extra: Any) -> str:
        """A Zoho document for the F&O customer ``account`` with lines (item number, quantity), as a user
        would enter it; returns its id."""
        lines = [{"Product_Name": {"id": self.zoho_id("Products", "Product_Code", item)}, "Quantity": qty}
                 for item, qty in items]
        field_name = "Ordered_Items" if module == "Sales_Orders" else "Invoiced_Items"
        [record_id] = self.zoho.seed(module, [{"Subject": subject, field_name: lines, **extra,
                                               "Account_Name": {"id": self.zoho_id("Accounts", "Account_Number",
                                                                                   account)}}])
        return record_id

    def close(self) -> None:
        self.router.close()


def make_fo_world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, fo_settings: str = "",
                  modified_fields: bool = True) -> FoWorld:
    listener_slot = _Late()
    zoho_app = create_zoho(api_domain="http://zoho.sandbox", notify_transport=httpx.ASGITransport(app=listener_slot))
    zoho: ZohoSandbox = zoho_app.state.zoho
    client = zoho.register_client()
    refresh = zoho.issue_refresh_token(client.client_id)
    for module, unique in ZOHO_UNIQUE.items():
        zoho.mark_unique(module, unique)
    finops_app = create_finops(resource=f"https://{ENVIRONMENT}")
    finops: FinOpsSandbox = finops_app.state.finops
    # The app's F&O user has DAT as its default company: reading without cross-company would see nothing of USMF.
    finops.register_app(TENANT, FO_CLIENT_ID, FO_SECRET, default_company="dat")
    finops.seed_demo(LEGAL_ENTITY)
    if modified_fields:
        for entity in ("CustomersV3", "ReleasedProductsV2", "VendorsV2"):
            finops.add_modified_field(entity)
    router = HostRouter({"zoho.sandbox": InProcessTransport(zoho_app), "fo.sandbox": InProcessTransport(finops_app)})
    secrets = {"MLCONNECTOR_FO_CLIENT_SECRET": FO_SECRET, "MLCONNECTOR_ZOHO_CLIENT_SECRET": client.client_secret,
               "MLCONNECTOR_ZOHO_REFRESH_TOKEN": refresh}
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    state_path = tmp_path / "state.db"
    monkeypatch.setenv("MLCONNECTOR_STATE", str(state_path))
    modified = ('modified_fields = { CustomersV3 = "ModifiedDateTime", ReleasedProductsV2 = "ModifiedDateTime", '
                'VendorsV2 = "ModifiedDateTime" }') if modified_fields else ""
    config_path = tmp_path / "connections.toml"
    config_path.write_text(f'''[systems.fo]
kind = "finops"
environment = "{ENVIRONMENT}"
base_url = "http://fo.sandbox"
tenant = "{TENANT}"
client_id = "{FO_CLIENT_ID}"
legal_entity = "USMF"
token_url = "http://fo.sandbox/{TENANT}/oauth2/v2.0/token"
{modified}
{fo_settings}

[systems.zoho]
kind = "zoho"
client_id = "{client.client_id}"
accounts_url = "http://zoho.sandbox"
api_domain = "http://zoho.sandbox"
upload_url = "http://zoho.sandbox"
notify_url = "http://listener.test/hooks/zoho"

[pairs.fo-zoho]
overlap_seconds = 5
''')
    return FoWorld(zoho, finops, config_path, state_path, router, listener_slot, secrets)
