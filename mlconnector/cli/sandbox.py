"""`mlconnector sandbox serve`: the emulated systems on loopback, seeded, with a matching connections.toml."""

import signal
import time
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from mlconnector.cli.common import err, out
from mlconnector.errors import ConfigError

DEFAULT_PORT = 8400  # mlconnector.sandbox.server.DEFAULT_PORT; not imported here so other commands start fast

app = typer.Typer(help="Emulated NAV, Business Central, F&O, GP, Zoho CRM and Zuora systems on this machine, for "
                       "trying things out.",
                  no_args_is_help=True)


@app.command("serve")
def serve(
    host: Annotated[str, typer.Option("--host", help="Interface to listen on (keep it on loopback).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535 - 7, help="Port of the Dynamics emulator; the others take the next "
                                                     "seven (Zoho for NAV, Zoho for BC, F&O, Zoho for F&O, GP, Zoho "
                                                     "for GP, Zuora). 0 picks free ports.")] = DEFAULT_PORT,
    config_out: Annotated[Path, typer.Option("--config-out", help="Where to write the matching connections.toml "
                                                                  "(its state file and encrypted secrets go next "
                                                                  "to it).")] = Path("sandbox.toml"),
    seed: Annotated[str, typer.Option("--seed", help="How much data for NAV and Business Central: small, medium or "
                                                     "a number of customers (F&O and GP load a fixed demo "
                                                     "company).")] = "small",
    faults: Annotated[Optional[str], typer.Option("--faults", help="Inject faults, e.g. "
                                                  "\"429=0.2,5xx=0.05,latency=50ms,drop=0.1,token_ttl=60\".")] = None,
    tls: Annotated[bool, typer.Option("--tls", help="Serve https with a self-signed certificate written next to "
                                                    "the config (NAME.tls.pem): clients such as MSAL refuse an "
                                                    "authority that is not https.")] = False,
    bare: Annotated[bool, typer.Option("--bare", help="Start the Zoho orgs and NAV as a new customer's are: without "
                                                      "the custom fields, custom modules and unique fields the "
                                                      "pairs need (see `mlconnector setup PAIR --apply`).")] = False,
) -> None:
    """Start the emulators of Dynamics NAV (page web services, Basic auth), Business Central (API v2.0, Entra
    tokens), Finance & Operations (OData, Entra tokens), Dynamics GP (SOAP, NTLM/Negotiate), Zuora (OAuth) and
    four Zoho CRM orgs (one per pair), seeded with realistic data; write a connections.toml with fresh
    credentials in an encrypted secrets file next to it; run until Ctrl-C.
    """
    from mlconnector.demo import write_sandbox_config
    from mlconnector.sandbox import server as sandbox_server

    certificate = None
    if tls:
        from mlconnector.sandbox.tls import self_signed

        stem = config_out.expanduser().absolute()
        pem, key = stem.with_name(f"{stem.stem}.tls.pem"), stem.with_name(f"{stem.stem}.tls.key")
        for path in (pem, key):
            if path.exists() and b"-----BEGIN" not in path.read_bytes()[:64]:
                raise ConfigError(f"{path} exists and was not written by `mlconnector sandbox serve --tls`: not "
                                  "overwriting it; choose another --config-out")
        pem.parent.mkdir(parents=True, exist_ok=True)
        certificate = self_signed(pem, key, host)
    try:
        sandboxes = sandbox_server.start_pairs(host=host, port=port, seed=seed, faults=faults, tls=certificate,
                                               bare=bare)
    except (ValueError, sandbox_server.SandboxStartError) as exc:
        raise ConfigError(str(exc)) from None
    try:
        setup = write_sandbox_config(sandboxes, config_out)
        assert sandboxes.nav and sandboxes.bc and sandboxes.finops and sandboxes.gp and sandboxes.zuora
        nav, bc, fo, gp, zuora = sandboxes.nav, sandboxes.bc, sandboxes.finops, sandboxes.gp, sandboxes.zuora
        summaries = sandboxes.summaries
        out.print(f"Sandboxes running on {host} (Ctrl-C stops them):", highlight=False)
        rows = [
            ("Dynamics NAV", f"{nav.base_url}/ODataV4", f"company {nav.company!r}, user {nav.user}: "
                                                        f"{summaries['nav']}"),
            ("Business Central", f"{bc.base_url}/api/v2.0", f"company {bc.company!r}, tenant {bc.tenant}: "
                                                            f"{summaries['bc']}"),
            ("  Entra token", bc.token_url, f"client {bc.client_id}"),
            ("Finance & Operations", f"{fo.base_url}/data", f"legal entity {fo.legal_entity}: {summaries['fo']}"),
            ("  Entra token", fo.token_url, f"client {fo.client_id}"),
            ("Dynamics GP", gp.base_url, f"Windows account {gp.user}, {summaries['gp']}"),
            ("Zuora", zuora.base_url, f"client {zuora.client_id}: {summaries['zuora']}"),
            ("Zoho CRM (nav-zoho)", sandboxes.zoho["nav"].url, "system zoho, an empty org"),
            ("Zoho CRM (bc-zoho)", sandboxes.zoho["bc"].url, "system zoho-bc, an empty org"),
            ("Zoho CRM (fo-zoho)", sandboxes.zoho["fo"].url, "system zoho-fo, an empty org"),
            ("Zoho CRM (gp-zoho)", sandboxes.zoho["gp"].url, f"system zoho-gp, {summaries['zoho-gp']}"),
        ]
        for name, url, detail in rows:
            out.print(f"  {name:<22} {url}  {detail}", highlight=False)
        out.print(f"Config: {setup.config_path} (credentials in the encrypted file {setup.secrets_dir}/, state in "
                  f"{setup.state_path.name})", highlight=False)
        if certificate is not None:
            out.print(f"https with a self-signed certificate: {certificate.certificate} (clients trust it with "
                      f"SSL_CERT_FILE={certificate.certificate}; MSAL: verify=that file)", highlight=False)
        if bare:
            out.print("Bare: the Zoho orgs lack the pairs' custom fields and modules; `mlconnector --config "
                      f"{setup.config_path} setup PAIR` lists them, `--apply` creates them", highlight=False)
        out.print("Next, in another terminal:", highlight=False)
        config = setup.config_path
        trust = f"SSL_CERT_FILE={certificate.certificate} " if certificate is not None else ""
        for command in ("ping", *(f"sync {pair}" for pair in setup.pairs), "audit --limit 20", "status"):
            out.print(f"  {trust}mlconnector --config {config} {command}", highlight=False)
        if host not in ("127.0.0.1", "::1", "localhost"):
            err.print(f"[yellow]warning: {host} is not loopback; anyone who can reach it can use the sandboxes")
        _wait_for_interrupt()
    finally:
        sandboxes.stop()
    out.print("Stopped.")


def _wait_for_interrupt() -> None:
    """Block until Ctrl-C or SIGTERM (service managers, test runners): both stop the servers cleanly."""
    def terminate(*_: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        while True:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
