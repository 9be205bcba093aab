"""The GP and Zoho sandboxes served in-process behind one transport, a connections.toml naming them, and the
secrets in environment variables: gp-zoho runs exactly as it would against the real systems."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from mlconnector import api
from mlconnector.sandbox.common import HostRouter, InProcessTransport
from mlconnector.sandbox.gp import GPSandbox
from mlconnector.sandbox.gp import create_app as create_gp
from mlconnector.sandbox.zoho import ZohoSandbox
from mlconnector.sandbox.zoho import create_app as create_zoho
from mlconnector.state import StateStore
from tests.pairs.world import _Late

GP_ACCOUNT = "CONTOSO\\svc-mlconnector"
GP_PASSWORD = "Gp-Sandbox-Pass-7Q2w9E"
GP_URL = "http://gp.sandbox:48620/DynamicsGPWebServices/DynamicsGPService.asmx"
GP_SBA_URL = "https://gp.sandbox/GPService/Tenants(DefaultTenant)/Companies(Fabrikam%2C%20Inc.)/"
ZOHO_UNIQUE = {"Accounts": "Account_Number", "Contacts": "GP_Contact_Id", "Vendors": "GP_Vendor_Id",
               "GL_Accounts": "GL_Account_Number", "GL_Journal_Entries": "GL_Journal_Id"}


@dataclass
class GPWorld:
    gp: GPSandbox
    zoho: ZohoSandbox
    config_path: Path
    state_path: Path
    router: HostRouter
    secrets: dict[str, str] = field(default_factory=dict)
    listener_slot: _Late | None = None   # where Zoho's notifications go (``listen=True``)

    def runtime(self) -> api.Runtime:
        return api.Runtime(config_path=self.config_path, transport=self.router)

    def sync(self, **kwargs: Any) -> api.RunResult:
        return api.sync(self.runtime(), "gp-zoho", **kwargs)

    def state(self) -> StateStore:
        """The state as the commands open it: the file, or PostgreSQL where MLCONNECTOR_STATE_URL names it."""
        return self.runtime().open_state()

    def crm(self, module: str) -> list[dict[str, Any]]:
        return self.zoho.records(module)

    def account(self, number: str) -> dict[str, Any]:
        [found] = [a for a in self.crm("Accounts") if a.get("Account_Number") == number]
        return found

    def close(self) -> None:
        self.router.close()
        self.gp.auth.close()


def make_gp_world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, gp_settings: str = "", pair_settings: str = "",
                  gp_options: dict[str, Any] | None = None, seed: bool = True, sba: bool = False,
                  listen: bool = False) -> GPWorld:
    """``sba=True``: GP through the Service Based Architecture only (``transport = "sba"``, no base_url).
    ``listen=True``: Zoho notifies the receiver in ``listener_slot`` (notify_url set)."""
    listener_slot = _Late() if listen else None
    zoho_app = create_zoho(api_domain="http://zoho.sandbox",
                           notify_transport=httpx.ASGITransport(app=listener_slot) if listener_slot else None)
    zoho: ZohoSandbox = zoho_app.state.zoho
    client = zoho.register_client()
    refresh = zoho.issue_refresh_token(client.client_id)
    for module, unique in ZOHO_UNIQUE.items():
        zoho.mark_unique(module, unique)
    gp_app = create_gp(**(gp_options or {}))
    gp: GPSandbox = gp_app.state.gp
    gp.add_user(GP_ACCOUNT, GP_PASSWORD)
    if seed:
        gp.seed_demo()
    else:
        gp.add_company()
    router = HostRouter({"zoho.sandbox": InProcessTransport(zoho_app), "gp.sandbox": InProcessTransport(gp_app)})
    secrets = {"MLCONNECTOR_GP_PASSWORD": GP_PASSWORD, "MLCONNECTOR_ZOHO_CLIENT_SECRET": client.client_secret,
               "MLCONNECTOR_ZOHO_REFRESH_TOKEN": refresh}
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    state_path = tmp_path / "state.db"
    monkeypatch.setenv("MLCONNECTOR_STATE", str(state_path))
    config_path = tmp_path / "connections.toml"
    route = f'transport = "sba"\nsba_url = "{GP_SBA_URL}"' if sba else f'base_url = "{GP_URL}"\ncompany_id = -1'
    config_path.write_text(f'''[systems.gp]
kind = "gp"
{route}
user = "{GP_ACCOUNT.replace(chr(92), chr(92) * 2)}"
delay_seconds = 0
{gp_settings}
[systems.zoho]
kind = "zoho"
client_id = "{client.client_id}"
accounts_url = "http://zoho.sandbox"
api_domain = "http://zoho.sandbox"
upload_url = "http://zoho.sandbox"
{'notify_url = "http://listener.test/hooks/zoho"' if listen else ""}

[pairs.gp-zoho]
overlap_seconds = 5
{pair_settings}
''')
    return GPWorld(gp, zoho, config_path, state_path, router, secrets, listener_slot)
