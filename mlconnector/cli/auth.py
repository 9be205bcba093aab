"""`mlconnector auth`: the OAuth authorization-code flow that gives a system its refresh token."""

from typing import Annotated, Optional

import typer

from mlconnector.cli.common import err, out, runtime
from mlconnector.errors import ConfigError

app = typer.Typer(help="Authorise mlconnector with a system (OAuth consent, refresh token to the keyring).",
                  no_args_is_help=True, rich_markup_mode=None)


@app.command("zoho")
def zoho(
    ctx: typer.Context,
    system: Annotated[str, typer.Argument(help="The [systems.NAME] of the Zoho org (default: zoho).")] = "zoho",
    code: Annotated[Optional[str], typer.Option("--code", help="The grant code or redirect address, instead of a prompt.")] = None,
) -> None:
    """Open Zoho's consent page, paste back the code (or the whole redirect address), store the refresh token.

    The refresh token goes to the secret store (OS keyring) and is never printed.
    """
    from mlconnector.systems import zoho as zoho_system

    rt = runtime(ctx)
    config = rt.config.system(system)
    if config.kind != "zoho":
        raise ConfigError(f"systems.{system} is a {config.kind} system, not zoho")
    rt.secret_store().require(system, "client_secret")  # fail before the user goes through consent
    if code is None:
        err.print("Open this address, sign in and accept:", highlight=False)
        out.print(zoho_system.consent_url(config), markup=False, highlight=False, soft_wrap=True)
        err.print("Zoho then sends the browser to the redirect URI with ?code=...; paste the code or the whole "
                  "address here (the code works once, for about 3 minutes).", highlight=False)
        code = typer.prompt("Code or address")
    done = zoho_system.authorise(config, rt.context(), code)
    out.print(f"{done.system}: authorised; refresh token stored in {done.stored_in}", markup=False, highlight=False)
    out.print(f"   accounts server {done.accounts_server}; api_domain {done.api_domain or 'unknown'}",
              markup=False, highlight=False)
    configured = zoho_system.data_centre_of(config)
    if not config.setting("accounts_url") and done.accounts_server != configured.accounts_url:
        err.print(f"note: this account lives at {done.accounts_server}, not {configured.accounts_url} "
                  f"(data_centre = \"{configured.name}\"); it is used from now on, but fix data_centre in "
                  f"[systems.{system}] to match", markup=False, highlight=False)
