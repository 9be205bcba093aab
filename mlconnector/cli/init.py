"""`mlconnector init`: write a starter connections.toml."""


from pathlib import Path
from typing import Annotated, Any, Optional

import tomli_w
import typer

from mlconnector.cli.common import out, runtime
from mlconnector.config import resolve_config_path
from mlconnector.errors import ConfigError

# Per kind, the non-secret settings a user must fill in, with placeholder values (as Python strings: tomli_w
# escapes them, so a Windows account is written DOMAIN\\name in the file and read back with one backslash).
STARTER_SYSTEMS: dict[str, dict[str, Any]] = {
    "zoho": {"kind": "zoho", "data_centre": "us", "client_id": "1000.XXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"},
    "nav": {"kind": "nav", "base_url": "https://nav-server:7048/DynamicsNAV110", "company": "CRONUS",
            "user": "DOMAIN\\svc-mlconnector"},
    "bc": {"kind": "bc", "tenant": "contoso.onmicrosoft.com", "environment": "production",
           "client_id": "00000000-0000-0000-0000-000000000000", "company": "CRONUS USA, Inc."},
    "finops": {"kind": "finops", "environment": "contoso.operations.dynamics.com",
               "tenant": "contoso.onmicrosoft.com", "client_id": "00000000-0000-0000-0000-000000000000",
               "legal_entity": "USMF"},
    "gp": {"kind": "gp", "base_url": "https://gpserver:48620/DynamicsGPWebServices/DynamicsGPService.asmx",
           "company_id": -1, "user": "DOMAIN\\svc-mlconnector"},
    "zuora": {"kind": "zuora", "region": "us2", "environment": "production",
              "client_id": "00000000-0000-0000-0000-000000000000"},
}
# pair -> its roles and the kind of system starting each (the names are the kinds).
STARTER_PAIRS: dict[str, dict[str, str]] = {
    "nav-zoho": {"erp": "nav", "crm": "zoho"},
    "bc-zoho": {"erp": "bc", "crm": "zoho"},
    "fo-zoho": {"erp": "finops", "crm": "zoho"},
    "gp-zoho": {"erp": "gp", "crm": "zoho"},
    "nav-zuora": {"erp": "nav", "billing": "zuora"},
}


def starter(pair: str) -> dict[str, Any]:
    roles = STARTER_PAIRS[pair]
    return {
        "systems": {kind: STARTER_SYSTEMS[kind] for kind in roles.values()},
        "pairs": {pair: {"systems": dict(roles), "overlap_seconds": 300, "batch_size": 100, "credit_budget": 0}},
    }


def init(
    ctx: typer.Context,
    pair: Annotated[str, typer.Option("--pair", help=f"Which pair to start with: {', '.join(STARTER_PAIRS)}.")] = "nav-zoho",
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
    path: Annotated[Optional[Path], typer.Option("--path", help="Where to write (default: --config, $MLCONNECTOR_CONFIG or ./connections.toml).")] = None,
) -> None:
    """Write a starter connections.toml (no secrets in it: those go to `mlconnector secrets set`)."""
    if pair not in STARTER_PAIRS:
        raise ConfigError(f"--pair {pair!r}: choose one of {', '.join(STARTER_PAIRS)}")
    target = path or resolve_config_path(runtime(ctx).config_path)
    if target.exists() and not force:
        raise ConfigError(f"{target} exists; pass --force to overwrite it")
    text = ("# ml-connector connections. Every key is documented in connections.example.toml.\n"
            "# Secrets never go here: use `mlconnector secrets set SYSTEM FIELD`.\n\n"
            + tomli_w.dumps(starter(pair)))
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    systems = " and ".join(STARTER_PAIRS[pair].values())
    out.print(f"wrote {target}: fill in the {systems} settings, then run `mlconnector secrets set` "
              f"for each system and `mlconnector ping`")
