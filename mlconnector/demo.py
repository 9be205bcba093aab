"""The client side of the sandbox: a ready connections.toml and encrypted secrets for running sandboxes, and the
guided demo's steps (first sync, edits on both sides, a second sync, a change delivered by webhook)."""

from __future__ import annotations

import json
import os


import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlconnector.api import Listener, Runtime, audit, sync
from mlconnector.sync import RunResult
from mlconnector.clock import utcnow
from mlconnector.errors import ConfigError, MLConnectorError
from mlconnector.sandbox import server as sandbox_server
from mlconnector.sandbox.server import Sandboxes
from mlconnector.secrets import KEY_FILE_NAME, MASTER_KEY_ENV, SecretStore, init_secret_file

MARKER = "# Written by `mlconnector sandbox serve`"
# pair -> the system its demo edits first: the ERP (nav, bc, fo, gp) or, for nav-zuora, NAV too
PAIRS = {"nav-zoho": "nav", "bc-zoho": "bc", "fo-zoho": "fo", "gp-zoho": "gp", "nav-zuora": "nav"}
CRM_ERPS = ("nav", "bc", "fo", "gp")   # the ERPs paired with Zoho, each with an org of its own


class DemoError(MLConnectorError):
    """A demo step did not do what it shows; exits with the failed run's code, else 1 (a bug)."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class SandboxConfig:
    """A connections.toml written for running sandboxes, with its state file and secrets directory."""

    config_path: Path
    state_path: Path
    secrets_dir: Path
    pairs: tuple[str, ...]

    def secret_store(self) -> SecretStore:
        """The encrypted-file store the config names, read without environment overrides."""
        return SecretStore(backend="file", directory=self.secrets_dir, environ={})

    def runtime(self) -> Runtime:
        return Runtime(config_path=self.config_path, state_path=self.state_path, secrets=self.secret_store())


def _toml(value: Any) -> str:
    """A TOML value: JSON's string escapes, numbers and booleans are valid TOML."""
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


def _table(name: str, values: dict[str, Any], comment: str = "") -> str:
    lines = [f"# {line}" for line in comment.splitlines()] + [f"[{name}]"]
    lines += [f"{key} = {_toml(value)}" for key, value in values.items() if value is not None]
    return "\n".join(lines) + "\n"


def crm_system_name(erp: str, erps: tuple[str, ...]) -> str:
    """``zoho`` when one ERP is served; with more, nav-zoho keeps ``zoho`` and the others get ``zoho-ERP``
    (``zoho-bc``, ``zoho-fo``, ``zoho-gp``)."""
    return "zoho" if erp == "nav" or len(erps) == 1 else f"zoho-{erp}"


def served_pairs(sandboxes: Sandboxes) -> tuple[str, ...]:
    """The pairs the running sandboxes can serve, in the README's order."""
    pairs = [f"{erp}-zoho" for erp in CRM_ERPS if sandboxes.zoho.get(erp)]
    if sandboxes.zuora is not None and sandboxes.nav is not None:
        pairs.append("nav-zuora")
    return tuple(pairs)


def write_sandbox_config(sandboxes: Sandboxes, config_path: Path, *,
                         notify_urls: dict[str, str] | None = None) -> SandboxConfig:
    """Write ``config_path`` for the running sandboxes and store their credentials in an encrypted secrets file
    next to it (``NAME.secrets/``), with ``NAME.state.db`` as its state file. Both are started afresh: the
    sandboxes hold new data and credentials on every start. A file not written by this function is never
    overwritten. ``notify_urls`` (system name -> URL) turns push notifications on for those systems."""
    config_path = Path(config_path).expanduser().absolute()
    if config_path.exists() and not config_path.read_text(encoding="utf-8", errors="replace").startswith(MARKER):
        raise ConfigError(f"{config_path} exists and was not written by `mlconnector sandbox serve`: not "
                          "overwriting it; choose another --config-out")
    stem = config_path.stem
    state_path = config_path.with_name(f"{stem}.state.db")
    secrets_dir = config_path.with_name(f"{stem}.secrets")
    erps = tuple(erp for erp in CRM_ERPS if sandboxes.zoho.get(erp))
    pairs = served_pairs(sandboxes)
    notify_urls = notify_urls or {}

    # Links and watermarks of an earlier start point at records that no longer exist: start clean.
    for path in [state_path, *state_path.parent.glob(f"{state_path.name}-*"),
                 *state_path.parent.glob(f"{state_path.name}.*.lock"), secrets_dir / "secrets.enc"]:
        path.unlink(missing_ok=True)
    config_path.parent.mkdir(parents=True, exist_ok=True)
    master_key = os.environ.get(MASTER_KEY_ENV)
    if not master_key and not (secrets_dir / KEY_FILE_NAME).exists():
        init_secret_file(secrets_dir)
    store = SecretStore(backend="file", directory=secrets_dir,
                        environ={MASTER_KEY_ENV: master_key} if master_key else {})

    stamp = utcnow().strftime("%Y-%m-%d %H:%M UTC")
    parts = [f"{MARKER} at {stamp}: every system below is an emulator on\n"
             "# this machine, with fresh data and credentials on every start (the credentials are in the\n"
             f"# encrypted file in {secrets_dir.name}/, never here). Try:\n"
             f"#   mlconnector --config {config_path.name} ping\n"
             + "".join(f"#   mlconnector --config {config_path.name} sync {pair}\n" for pair in pairs),
             _table("state", {"path": state_path.name}),
             _table("secrets", {"backend": "file", "dir": secrets_dir.name})]
    if sandboxes.nav is not None:
        nav = sandboxes.nav
        parts.append(_table("systems.nav", {
            "kind": "nav", "base_url": nav.base_url, "company": nav.company, "user": nav.user, "api": "odata",
            "notify_url": notify_urls.get("nav")},
            "Dynamics NAV on premises: page web services (ODataV4), Basic auth with the user's web service\n"
            "access key (secret: password)."
            + ("\nIts Customer card carries the fields Zuora_Invoice_Status and Zuora_Payment_Status (a table\n"
               "extension) for nav-zuora." if "nav-zuora" in pairs else "")))
        store.set("nav", "password", nav.access_key)
    if sandboxes.bc is not None:
        bc = sandboxes.bc
        parts.append(_table("systems.bc", {
            "kind": "bc", "base_url": bc.base_url, "auth": "entra", "tenant": bc.tenant,
            "environment": bc.environment, "client_id": bc.client_id, "token_url": bc.token_url,
            "company": bc.company, "notify_url": notify_urls.get("bc")},
            "Business Central online: API v2.0 with an Entra app's client credentials (secret: client_secret).\n"
            "For the real service leave base_url and token_url out: tenant and environment say where it is."))
        store.set("bc", "client_secret", bc.client_secret)
    if sandboxes.finops is not None:
        fo = sandboxes.finops
        parts.append(_table("systems.fo", {
            "kind": "finops", "environment": fo.environment, "base_url": fo.base_url, "tenant": fo.tenant,
            "client_id": fo.client_id, "token_url": fo.token_url, "legal_entity": fo.legal_entity,
            "modified_fields": sandbox_server.FO_MODIFIED_FIELDS},
            "Dynamics 365 Finance & Operations: OData data entities, Entra client credentials (secret:\n"
            "client_secret), read across companies for one legal entity. modified_fields names the modified-time\n"
            "field an extension adds to each entity read (F&O's standard entities have none). For the real\n"
            "service leave base_url and token_url out."))
        store.set("fo", "client_secret", fo.client_secret)
    if sandboxes.gp is not None:
        gp = sandboxes.gp
        parts.append(_table("systems.gp", {
            "kind": "gp", "base_url": gp.base_url, "company_id": gp.company_id, "user": gp.user,
            "delay_seconds": 0},
            "Dynamics GP Web Services (SOAP) with a Windows domain account over NTLM/Negotiate (secret:\n"
            "password). delay_seconds = 0 because nobody else uses this server; keep the default pause on a\n"
            "real one, which also serves its users."))
        store.set("gp", "password", gp.password)
    if sandboxes.zuora is not None:
        zuora = sandboxes.zuora
        parts.append(_table("systems.zuora", {
            "kind": "zuora", "base_url": zuora.base_url, "client_id": zuora.client_id,
            "notify_url": notify_urls.get("zuora"), "callout_auth": "basic", "callout_user": zuora.callout_user},
            "Zuora Billing: OAuth client credentials (secret: client_secret); Invoice Posted and Payment\n"
            "Processed callouts checked with Basic auth (secret: callout_password). For the real service set\n"
            "region and environment instead of base_url."))
        store.set("zuora", "client_secret", zuora.client_secret)
        store.set("zuora", "callout_password", zuora.callout_password)
    for erp in erps:
        zoho, name = sandboxes.zoho[erp], crm_system_name(erp, erps)
        parts.append(_table(f"systems.{name}", {
            "kind": "zoho", "data_centre": "us", "client_id": zoho.client_id, "accounts_url": zoho.url,
            "api_domain": zoho.url, "upload_url": zoho.url, "edition": "enterprise",
            "notify_url": notify_urls.get(name)},
            f"Zoho CRM org for the {erp.upper()} pair (secrets: client_secret, refresh_token). The sandbox serves\n"
            "the accounts server, the API and the upload host on one address."))
        store.set(name, "client_secret", zoho.client_secret)
        store.set(name, "refresh_token", zoho.refresh_token)
    for pair in pairs:
        if pair == "nav-zuora":
            # CRONUS International Ltd. keeps its books in GBP: accounts without a currency code and prices too.
            parts.append(_table("pairs.nav-zuora", {"systems": {"erp": "nav", "billing": "zuora"},
                                                    "overlap_seconds": 60}))
            parts.append(_table("pairs.nav-zuora.options", {"currency": "GBP", "local_currency": "GBP"}))
            continue
        erp = pair.split("-")[0]
        parts.append(_table(f"pairs.{pair}", {"systems": {"erp": erp, "crm": crm_system_name(erp, erps)},
                                              "overlap_seconds": 60}))
    config_path.write_text("\n".join(parts), encoding="utf-8")
    return SandboxConfig(config_path, state_path, secrets_dir, pairs)


# -- the guided demo -------------------------------------------------------------------------------------------

# pair -> the system that pushes changes to the receiver (by its name in the demo's config) and what it is
PUSH = {"nav-zoho": ("zoho", "Zoho's watch channel"), "bc-zoho": ("bc", "Business Central's webhook subscription"),
        "fo-zoho": ("zoho", "Zoho's watch channel"), "gp-zoho": ("zoho", "Zoho's watch channel"),
        "nav-zuora": ("zuora", "Zuora's Invoice Posted callout")}
SYSTEM_NAMES = {"nav": "NAV", "bc": "BC", "fo": "F&O", "gp": "GP", "zoho": "Zoho", "zuora": "Zuora"}


@dataclass(frozen=True)
class Edit:
    """One change made in a sandbox the way a user of that system would; ``flow`` is the flow that moves it."""

    system: str
    what: str          # "customer 10000 Aurora Trading LLC"
    field: str
    old: Any
    new: Any
    flow: str = ""

    def describe(self) -> str:
        if self.old is None and not self.field:
            return f"{self.what}: new, {self.new}"
        return f"{self.what}: {self.field} {self.old!r} -> {self.new!r}"


@dataclass(frozen=True)
class Arrival:
    """A change made on one side and seen on the other, with how long it took."""

    edit: Edit
    seconds: float
    where: str         # "NAV customer 30000"


class _Switch:
    """An ASGI app that forwards to another one, so the webhook receiver can be swapped while it is served."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


@dataclass
class Demo:
    """One pair against its sandboxes, step by step; ``with Demo(...) as demo:`` stops everything at the end."""

    pair: str
    directory: Path
    seed: str | int = "small"
    faults: str | None = None
    sandboxes: Sandboxes | None = None
    setup: SandboxConfig | None = None
    runtime: Runtime | None = None
    listener_url: str | None = None
    _listeners: list[Listener] = field(default_factory=list)
    _receiver: _Switch | None = None
    _server: Any = None
    _last_sync: float = 0.0

    def __post_init__(self) -> None:
        if self.pair not in PAIRS:
            raise ConfigError(f"no demo for pair {self.pair!r}: choose {', '.join(PAIRS)}")

    @property
    def erp(self) -> str:
        return PAIRS[self.pair]

    @property
    def company(self) -> str:
        assert self.sandboxes is not None
        return self.sandboxes.company(self.erp)

    @property
    def zoho(self) -> Any:
        assert self.sandboxes is not None
        return self.sandboxes.zoho_sandboxes[self.erp]

    @property
    def pusher(self) -> str:
        """Which system pushes changes to the receiver, in words."""
        return PUSH[self.pair][1]

    def start(self) -> None:
        """Start the sandboxes and the webhook receiver, write the config and secrets."""
        self.sandboxes = sandbox_server.start_pairs((self.pair,), seed=self.seed, faults=self.faults)
        receiver_socket = sandbox_server.bind("127.0.0.1", 0)
        self.listener_url = sandbox_server.url_of(receiver_socket)
        push_system = PUSH[self.pair][0]
        hook = f"{self.listener_url}/hooks/{push_system}"
        self.setup = write_sandbox_config(self.sandboxes, self.directory / "connections.toml",
                                          notify_urls={push_system: hook})
        if self.pair == "nav-zuora":
            # Callouts are defined in Zuora (Settings > Notifications), not through the API.
            sandbox_server.configure_zuora_callouts(self.sandboxes, hook)
        self.runtime = self.setup.runtime()
        # Until the push step, notifications wait in the inbox and the next sync takes them in.
        self._listeners.append(Listener(self.runtime))
        self._receiver = _Switch(self._listeners[0].app)
        self._server = sandbox_server.serve(self._receiver, receiver_socket, "receiver")

    def sync(self, progress: Callable[[str, int], None] | None = None) -> RunResult:
        assert self.runtime is not None
        try:
            return sync(self.runtime, self.pair, progress=progress)
        finally:
            self._last_sync = time.monotonic()

    def audit(self, run_id: str) -> list[dict[str, Any]]:
        assert self.runtime is not None
        return sorted(audit(self.runtime, run=run_id, limit=100_000), key=lambda row: row["id"])

    # -- edits, as a user of each system would make them --------------------------------------------------------
    def _erp_edit(self, entity: str, index: int, field_name: str, new: Any, label: str, flow: str) -> Edit:
        assert self.sandboxes is not None and self.sandboxes.dynamics is not None
        row = getattr(self.sandboxes.seeded[self.erp], entity)[index]
        old = self.sandboxes.dynamics.get(self.company, entity, row["number"])[field_name]
        self.sandboxes.dynamics.modify(self.company, entity, row["number"], **{field_name: new})
        return Edit(self.erp.upper(), f"{label} {row['number']} {row['displayName']}", field_name, old, new, flow)

    def _zoho_account(self, number: str) -> dict[str, Any]:
        found = [r for r in self.zoho.records("Accounts") if r.get("Account_Number") == number]
        if not found:
            raise DemoError(f"customer {number} is not in Zoho after the first sync")
        return found[0]

    def _zoho_edit(self, index: int, field_name: str, new: Any) -> Edit:
        assert self.sandboxes is not None
        number = self.sandboxes.seeded[self.erp].customers[index]["number"]
        account = self._zoho_account(number)
        self.zoho.edit("Accounts", account["id"], **{field_name: new})
        return Edit("Zoho", f"account {number} {account['Account_Name']}", field_name, account.get(field_name), new,
                    "accounts_to_customers")

    def _zoho_order(self, account_number: str, lines: list[tuple[str, float]], subject: str, flow: str,
                    notify: bool = False) -> tuple[str, Edit]:
        """A sales order a Zoho user enters for an account, with (product code, quantity) lines; ``notify``: saved
        once more, as a user's edit after entering it, which is what Zoho's watch channel reports."""
        products = {p.get("Product_Code"): p for p in self.zoho.records("Products")}
        missing = [code for code, _ in lines if code not in products]
        if missing:
            raise DemoError(f"product {missing[0]} is not in Zoho")
        account = self._zoho_account(account_number)
        [order_id] = self.zoho.seed("Sales_Orders", [{
            "Subject": subject, "Account_Name": {"id": account["id"]}, "Status": "Created",
            "Ordered_Items": [{"Product_Name": {"id": products[code]["id"]}, "Quantity": quantity,
                               "List_Price": products[code].get("Unit_Price")} for code, quantity in lines]}])
        if notify:
            self.zoho.edit("Sales_Orders", order_id, Subject=f"{subject} (confirmed)")
        items = ", ".join(f"{quantity:g} x {code}" for code, quantity in lines)
        return order_id, Edit("Zoho", f"sales order {subject!r} for account {account_number} "
                                      f"{account['Account_Name']}", "", None, items, flow)

    def _zuora_account(self, number: str) -> dict[str, Any]:
        assert self.sandboxes is not None
        found = [a for a in self.sandboxes.zuora_sandbox.records("accounts")
                 if a.get("NAVCustomerNumber__c") == number]
        if not found:
            raise DemoError(f"customer {number} is not in Zuora after the first sync")
        return found[0]

    def edit_both_sides(self) -> list[Edit]:
        """A few changes users would make on each side (in the ERP only for bc-zoho, whose flows all go to Zoho)."""
        assert self.sandboxes is not None
        # Zoho and Zuora stamp changes to the second: an edit in the same second as our write would read as its echo.
        time.sleep(max(0.0, self._last_sync + 1.1 - time.monotonic()))
        if self.pair == "fo-zoho":
            finops, company = self.sandboxes.finops_sandbox, sandbox_server.FO_LEGAL_ENTITY.lower()
            old = finops.get(company, "CustomersV3", "US-001")
            finops.modify(company, "CustomersV3", "US-001", PrimaryContactPhone="+1 619 555 0142")
            _, order = self._zoho_order("US-002", [("D0001", 2), ("T0001", 10)], "Speakers for the new store",
                                        "sales_orders")
            return [Edit("F&O", f"customer US-001 {old['OrganizationName']}", "PrimaryContactPhone",
                         old.get("PrimaryContactPhone"), "+1 619 555 0142", "customers"), order]
        if self.pair == "gp-zoho":
            gp = self.sandboxes.gp_sandbox
            customer = gp.company(self.sandboxes.gp.company_id).customers["ADAMPARK0001"]
            [primary] = [a for a in customer["Addresses"] if a["Key"]["Id"] == "PRIMARY"]
            old_city = primary["City"]
            gp.modify("customers", "ADAMPARK0001", company_id=self.sandboxes.gp.company_id, address="PRIMARY",
                      City="Evanston")
            _, order = self._zoho_order("AARONFIT0001", [("100XLG", 4)], "Phones for the new office",
                                        "sales_orders_to_gp")
            return [Edit("GP", f"customer ADAMPARK0001 {customer['Name']}", "City (PRIMARY address)", old_city,
                         "Evanston", "customers"), order]
        price = 149.0
        edits = [self._erp_edit("customers", 0, "phoneNumber", "+44 20 7946 0321" if self.erp == "nav"
                                else "+1 404 555 0199", "customer", "customers"),
                 self._erp_edit("items", 0, "unitPrice", price, "item", "items")]
        if self.pair == "nav-zoho":
            edits.append(self._zoho_edit(1, "Billing_City", "Cambridge"))
        elif self.pair == "nav-zuora":
            number = self.sandboxes.seeded["nav"].customers[1]["number"]
            account = self._zuora_account(number)
            old_name = account["name"]
            self.sandboxes.zuora_sandbox.edit("accounts", account["id"], name=f"{old_name} (Billing)")
            edits.append(Edit("Zuora", f"account {account['accountNumber']} of customer {number}", "name",
                              old_name, f"{old_name} (Billing)", "accounts_to_customers"))
        return edits

    def check_second_sync(self, edits: list[Edit], rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The audit rows of the second sync that moved something; every edit moved, and nothing else did."""
        moved = [r for r in rows if r["action"] != "skip"]
        flows = {edit.flow for edit in edits}
        for edit in edits:
            if not any(r["flow"] == edit.flow for r in moved):
                raise DemoError(f"the second sync did not move the edit of {edit.what} (flow {edit.flow})")
        others = sorted({r["flow"] for r in moved} - flows)
        if others:
            raise DemoError(f"the second sync moved records nobody edited (flows {', '.join(others)})")
        return moved

    # -- push ----------------------------------------------------------------------------------------------------
    def push_change(self, timeout: float = 15.0) -> Arrival:
        """Let the receiver process notifications at once, change a record on the pushing side and wait until
        it has arrived on the other side."""
        assert self.runtime is not None and self._receiver is not None and self.sandboxes is not None
        processing = Listener(self.runtime, process=True)
        self._listeners.append(processing)
        self._receiver.app = processing.app
        started = time.monotonic()
        sandboxes = self.sandboxes
        arrived: Callable[[], bool]
        if self.pair == "nav-zoho":
            edit = self._zoho_edit(2, "Phone", "+44 1223 555 010")
            number = sandboxes.seeded["nav"].customers[2]["number"]
            where = f"NAV customer {number}"

            def arrived() -> bool:
                return sandboxes.dynamics.get(self.company, "customers", number)["phoneNumber"] == edit.new
        elif self.pair == "bc-zoho":
            edit = self._erp_edit("customers", 2, "phoneNumber", "+1 312 555 0142", "customer", "customers")
            number = sandboxes.seeded["bc"].customers[2]["number"]
            where = f"Zoho account {number}"

            def arrived() -> bool:
                return self._zoho_account(number).get("Phone") == edit.new
        elif self.pair == "fo-zoho":
            order_id, edit = self._zoho_order("US-003", [("D0003", 3)], "Rush order", "sales_orders", notify=True)
            finops, company = sandboxes.finops_sandbox, sandbox_server.FO_LEGAL_ENTITY.lower()
            where = "an F&O sales order"

            def arrived() -> bool:
                return any(o.get("CustomersOrderReference") == order_id
                           for o in finops.records(company, "SalesOrderHeadersV2"))
        elif self.pair == "gp-zoho":
            order_id, edit = self._zoho_order("ALTONMAN0001", [("SERVICES", 8)], "Installation", "sales_orders_to_gp",
                                              notify=True)
            gp, company_id = sandboxes.gp_sandbox, sandboxes.gp.company_id  # type: ignore[union-attr]
            where = "a GP sales order"

            def arrived() -> bool:
                return any(o.get("CustomerKey", {}).get("Id") == "ALTONMAN0001" for o in gp.sales_orders(company_id))
        else:  # nav-zuora: a bill run posts an invoice; its callout brings the status to the NAV customer
            zuora = sandboxes.zuora_sandbox
            order = sandboxes.seeded["nav"].sales_orders[0]
            number = order["customerNumber"]
            account = self._zuora_account(number)
            [invoice] = zuora.bill_run(accounts=[account["id"]])
            edit = Edit("Zuora", f"bill run for account {account['accountNumber']} {account['name']}", "", None, f"{invoice['invoiceNumber']} posted, {invoice['amount']:.2f} {invoice['currency']}",
                        "invoice_status")
            where = f"NAV customer {number} (Zuora_Invoice_Status)"

            def arrived() -> bool:
                status = sandboxes.dynamics.get(self.company, "customers", number).get("zuoraInvoiceStatus") or ""
                return status.startswith(invoice["invoiceNumber"])
        while not arrived():
            if time.monotonic() - started > timeout:
                raise DemoError(f"{edit.system}'s change to {edit.what} did not reach {where} within {timeout:.0f} s "
                                "by notification")
            time.sleep(0.05)
        return Arrival(edit, time.monotonic() - started, where)

    def stop(self) -> None:
        if self._server is not None:
            server, thread = self._server
            server.should_exit = True
            thread.join(timeout=5)
            self._server = None
        for listener in self._listeners:
            listener.close()
        self._listeners.clear()
        if self.sandboxes is not None:
            self.sandboxes.stop()

    def __enter__(self) -> "Demo":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()
