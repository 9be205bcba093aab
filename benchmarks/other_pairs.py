"""Benchmarks for fo-zoho, gp-zoho and nav-zuora (issues #9, #10, #11):
``python -m benchmarks.other_pairs [--quick] [--pairs PAIR[,PAIR]] [--no-save]``.

Same method as ``python -m benchmarks`` (benchmarks/README.md): the sandboxes of one pair run in a process of
their own on loopback (started as ``mlconnector sandbox serve`` starts them, ``server.start_pairs``, then seeded
at the sizes below straight through the emulators' helpers), every ``sync`` runs in a process of its own
(``benchmarks.harness.run_tool``: its wall time, CPU and peak RSS), and API calls, credits and token mints are
counted by the sandboxes. The config is what ``mlconnector sandbox serve`` writes, with an overlap of 3 s; every
other setting is the tool's default.

Scenarios per pair: ``initial`` (first sync of everything), ``no_changes`` (the next sync, nothing changed; the
run right after the load is reported apart, as it may read back what the load wrote), ``one_percent`` (1% of
the ERP's two main entities changed; the calls the changes add, against a run without changes just before).

Sizes. F&O and NAV are sized like a mid-sized company. GP is sized down on purpose: GP Web Services is SOAP
over NTLM, its list operations return summaries only, so every changed card costs one GetXByKey call, at the
tool's default of 2 concurrent calls (GP serves interactive users too).

Results: ``benchmarks/results/<time>-other-pairs-<mode>.json`` (kept, so a regression shows) and
``benchmarks/results/latest-other-pairs.md``.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from benchmarks.harness import (_flows, _ok, _tool_figures, compile_package, machine, minimum_write_calls,
                                run_tool, save_report)
from benchmarks.sandboxes import OVERLAP_SECONDS, WorldProcess, serve_world

RESULTS = Path(__file__).resolve().parent / "results"
PAIRS = ("fo-zoho", "gp-zoho", "nav-zuora")
SCENARIOS = ("initial", "no_changes", "one_percent")
ERP = {"fo-zoho": "F&O", "gp-zoho": "GP", "nav-zuora": "NAV"}
TARGET = {"fo-zoho": "Zoho", "gp-zoho": "Zoho", "nav-zuora": "Zuora"}
# The two entities changed in one_percent, per pair (the ERP side's names in the seeded world).
CHANGED = {"fo-zoho": ("customers", "products"), "gp-zoho": ("customers", "vendors"),
           "nav-zuora": ("customers", "items")}
ZOHO_WRITES = ("records.upsert", "records.update", "records.insert", "bulk_write.create")


@dataclass(frozen=True)
class Plan:
    mode: str
    # pair -> entity -> how many (fo: customers, products, vendors; gp: customers, vendors (each with a
    # contact person), gl_accounts, journal_entries; nav-zuora: customers (seed_company drives the rest: items
    # min(200, n/2), sales orders n/3 with lines)).
    sizes: dict[str, dict[str, int]] = field(default_factory=dict)
    changed_share: float = 0.01
    overlap_seconds: int = OVERLAP_SECONDS   # the pair's read overlap; runs after the load wait it out (+1 s)


FULL = Plan("full", {
    "fo-zoho": {"customers": 50_000, "products": 4_000, "vendors": 2_000},
    "gp-zoho": {"customers": 1_000, "vendors": 200, "gl_accounts": 100, "journal_entries": 200},
    "nav-zuora": {"customers": 2_000},
})
QUICK = Plan("quick", {
    "fo-zoho": {"customers": 2_000, "products": 200, "vendors": 200},
    "gp-zoho": {"customers": 200, "vendors": 40, "gl_accounts": 20, "journal_entries": 40},
    "nav-zuora": {"customers": 300},
})


def tiny() -> Plan:
    return Plan("tiny", {
        "fo-zoho": {"customers": 30, "products": 6, "vendors": 6},
        "gp-zoho": {"customers": 12, "vendors": 4, "gl_accounts": 4, "journal_entries": 4},
        "nav-zuora": {"customers": 12},
    }, changed_share=0.1, overlap_seconds=1)


# -- the sandbox process ------------------------------------------------------------------------------------------

class _World:
    """The running sandboxes of one pair, seeded; counters and edits for the benchmark."""

    def __init__(self, pair: str, directory: Path, sizes: dict[str, int], overlap: int) -> None:
        from mlconnector.demo import write_sandbox_config
        from mlconnector.sandbox import server

        self.pair = pair
        self.rng = random.Random(7)
        self.modified = 0
        self.auth_challenges = 0
        started = time.perf_counter()
        if pair == "nav-zuora":
            self.sandboxes = server.start_pairs((pair,), seed=sizes["customers"])
        else:
            self.sandboxes = server.start_pairs((pair,))
        self.ids: dict[str, list[Any]] = {}
        getattr(self, f"_seed_{pair.split('-')[0]}")(sizes)
        self.seed_seconds = time.perf_counter() - started
        setup = write_sandbox_config(self.sandboxes, directory / "connections.toml")
        text = setup.config_path.read_text(encoding="utf-8")
        # As in benchmarks/sandboxes.py: a short overlap, so an incremental run a few seconds after the load
        # reads what a cron run 15 minutes later would.
        text = text.replace("overlap_seconds = 60", f"overlap_seconds = {overlap}")
        setup.config_path.write_text(text, encoding="utf-8")
        self.config = setup.config_path

    # seeding ----------------------------------------------------------------------------------------------------
    def _seed_fo(self, sizes: dict[str, int]) -> None:
        fo = self.sandboxes.finops_sandbox
        company = self.sandboxes.finops.legal_entity.lower()
        cities = [("San Diego", "CA", "92101"), ("Seattle", "WA", "98101"), ("Chicago", "IL", "60601"),
                  ("Austin", "TX", "73301"), ("Boston", "MA", "02110")]
        org = {"PartyType": "Organization", "CustomerGroupId": "30", "SalesCurrencyCode": "USD"}
        customers = []
        for i in range(sizes["customers"]):
            city, state, code = cities[i % len(cities)]
            customers.append({**org, "CustomerAccount": f"BM-{i + 1:06d}", "OrganizationName": f"Customer {i + 1} "
                              f"{city} Retail", "AddressStreet": f"{i % 400 + 1} Harbor Drive", "AddressCity": city,
                              "AddressState": state, "AddressZipCode": code, "AddressCountryRegionId": "USA",
                              "PrimaryContactPhone": f"+1 619 555 {i % 10000:04d}",
                              "PrimaryContactEmail": f"office{i + 1}@customer{i + 1}.example", "CreditLimit": 5000})
        fo.seed(company, "CustomersV3", customers)
        products = []
        for i in range(sizes["products"]):
            price = round(20 + (i * 37) % 1500 + 0.9, 2)
            products.append({"ItemNumber": f"BM{i + 1:06d}", "ProductNumber": f"BM{i + 1:06d}",
                             "ProductSearchName": f"Speaker{i + 1}", "SearchName": f"Speaker{i + 1}",
                             "SalesPrice": price, "UnitCost": round(price * 0.6, 2), "SalesUnitSymbol": "ea",
                             "InventoryUnitSymbol": "ea", "ProductGroupId": "Audio"})
        fo.seed(company, "ReleasedProductsV2", products)
        vendors = [{"VendorAccountNumber": f"BV-{i + 1:05d}", "VendorOrganizationName": f"Supplier {i + 1}",
                    "VendorGroupId": "10", "CurrencyCode": "USD", "AddressCity": "Chicago", "AddressStateId": "IL",
                    "AddressCountryRegionId": "USA", "PrimaryEmailAddress": f"sales@supplier{i + 1}.example"}
                   for i in range(sizes["vendors"])]
        fo.seed(company, "VendorsV2", vendors)
        # The seed stamps every row with the moment it ran: spread the stamps over the past year, oldest first (as
        # benchmarks/sandboxes.py does for NAV and BC), else every row is inside the read overlap of the next run.
        start = datetime.now(timezone.utc) - timedelta(days=400)
        for entity in ("CustomersV3", "ReleasedProductsV2", "VendorsV2"):
            rows = list(fo.tables[entity].values())
            for i, row in enumerate(rows):
                row.modified = start + timedelta(seconds=370 * 86400 * i / max(1, len(rows)))
        self.fo_company = company
        self.ids = {"customers": [c["CustomerAccount"] for c in customers],
                    "products": [p["ItemNumber"] for p in products]}

    def _seed_gp(self, sizes: dict[str, int]) -> None:
        gp, company_id = self.sandboxes.gp_sandbox, self.sandboxes.gp.company_id
        # Cards last changed over the past year (GP keeps a date): the load's watermark is yesterday or older.
        now = datetime.now(timezone.utc)

        def stamp(i: int, n: int) -> datetime:
            return now - timedelta(days=2 + 365 * (n - i) / max(1, n))

        customers = []
        for i in range(sizes["customers"]):
            key = f"BMCUST{i + 1:06d}"
            gp.add_customer(key, f"Customer {i + 1} Supplies", company_id=company_id, credit_limit=5000,
                            balance=float(i % 900), modified=stamp(i, sizes["customers"]), addresses={
                                "PRIMARY": {"line1": f"{i % 400 + 1} Main Street", "city": "Fargo", "state": "ND",
                                            "postal_code": "58103", "country": "USA",
                                            "phone": f"7015550{i % 10000:04d}0000"}})
            customers.append(key)
        vendors = []
        for i in range(sizes["vendors"]):
            key = f"BMVEND{i + 1:06d}"
            gp.add_vendor(key, f"Vendor {i + 1} Services", company_id=company_id,
                          modified=stamp(i, sizes["vendors"]), addresses={
                              "PRIMARY": {"contact": f"Pat Buyer{i + 1}", "line1": f"{i + 1} Commerce Way",
                                          "city": "Boston", "state": "MA", "postal_code": "02110", "country": "USA"}})
            vendors.append(key)
        accounts = []
        for i in range(sizes["gl_accounts"]):
            number = f"100-{1000 + i:04d}-00"
            gp.add_gl_account(number, f"Account {i + 1}", company_id=company_id,
                              modified=stamp(i, sizes["gl_accounts"]))
            accounts.append(number)
        for i in range(sizes["journal_entries"]):
            a, b = accounts[i % len(accounts)], accounts[(i + 1) % len(accounts)]
            day = stamp(i, sizes["journal_entries"])
            gp.add_gl_transaction(10_000 + i, f"Journal {i + 1}", [(a, 100.0 + i, 0, "Debit"), (b, 0, 100.0 + i,
                                                                                             "Credit")],
                                  company_id=company_id, transaction_date=day.date(), modified=day)
        # The demo cards seed_demo made carry today's date: date them back a year, so that a no-change run is one
        # on a day nothing changed (GP keeps a date only, and cards changed today are read on every run that day).
        company = gp.company(company_id)
        for table in (company.customers, company.vendors, company.gl_accounts, company.gl_transactions):
            for record in table.values():
                if record["ModifiedDate"] >= now - timedelta(days=1):
                    record["ModifiedDate"] = gp.stamp(now - timedelta(days=400))
        self.ids = {"customers": customers, "vendors": vendors}
        # NTLM: count the 401 legs that carry a server challenge, i.e. the handshakes (the "token mints" of GP).
        check = gp.auth.check

        def counted(authorization: str, client: Any, allow_basic: bool | None = None) -> Any:
            verdict = check(authorization, client, allow_basic)
            if verdict.principal is None and any(" " in value for _, value in verdict.challenge or []):
                self.auth_challenges += 1
            return verdict
        gp.auth.check = counted

    def _seed_nav(self, sizes: dict[str, int]) -> None:
        seeded = self.sandboxes.seeded["nav"]
        self.ids = {"customers": [c["id"] for c in seeded.customers], "items": [i["id"] for i in seeded.items]}
        self.seeded_counts = seeded.counts()

    # counters ---------------------------------------------------------------------------------------------------
    def counters(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        s = self.sandboxes
        if self.pair == "fo-zoho":
            calls = list(s.finops_sandbox.calls)
            data = [c for c in calls if c.form != "token"]
            out["erp"] = {"calls": len(data), "reads": sum(1 for c in data if c.method == "GET"),
                          "writes": sum(1 for c in data if c.method != "GET"),
                          "batch_operations": sum(len(c.operations) for c in data),
                          "token_mints": s.finops_sandbox.tokens_issued}
        elif self.pair == "gp-zoho":
            counts = dict(s.gp_sandbox.counts)
            writes = sum(n for op, n in counts.items() if not op.startswith("Get") and not op.startswith("GET"))
            out["erp"] = {"calls": sum(counts.values()), "reads": sum(counts.values()) - writes, "writes": writes,
                          "by_operation": counts, "token_mints": self.auth_challenges}
        else:
            calls = list(s.dynamics.calls)
            out["erp"] = {"calls": sum(1 for c in calls if c.form != "token"),
                          "reads": sum(1 for c in calls if c.form != "token" and c.method == "GET"),
                          "writes": sum(1 for c in calls if c.form != "token" and c.method != "GET"),
                          "token_mints": sum(1 for c in calls if c.form == "token")}
        if self.pair == "nav-zuora":
            zuora = s.zuora_sandbox
            ops = {k: v for k, v in zuora.calls.items() if k not in ("throttled", "server_error", "idempotent_replay")}
            writes = sum(n for op, n in ops.items() if op.endswith((".create", ".update")))
            out["target"] = {"calls": sum(ops.values()), "reads": sum(ops.values()) - writes, "writes": writes,
                             "by_operation": dict(zuora.calls), "credits": None, "token_mints": zuora.minted}
        else:
            org = s.zoho_sandboxes[self.pair.split("-")[0]]
            ops = dict(org.calls)
            writes = sum(ops.get(k, 0) for k in ZOHO_WRITES)
            out["target"] = {"calls": sum(ops.values()), "reads": sum(ops.values()) - writes, "writes": writes,
                             "by_operation": ops, "credits": org.credits, "token_mints": org.accounts.minted}
        return out

    # edits ------------------------------------------------------------------------------------------------------
    def modify(self, entity: str, count: int) -> int:
        """Change ``count`` records spread over the table, as ERP users would (a field the pair maps)."""
        pool = self.ids[entity]
        step = max(1, len(pool) // max(1, count))
        changed = 0
        for ref in pool[::step][:count]:
            self.modified += 1
            n = self.modified
            if self.pair == "fo-zoho":
                fields = ({"PrimaryContactPhone": f"+1 212 555 {n % 10000:04d}"} if entity == "customers"
                          else {"SalesPrice": 100 + n % 900 + 0.5})
                self.sandboxes.finops_sandbox.modify(self.fo_company, {"customers": "CustomersV3",
                                                                       "products": "ReleasedProductsV2"}[entity],
                                                     ref, **fields)
            elif self.pair == "gp-zoho":
                gp = self.sandboxes.gp_sandbox
                name = f"{'Customer' if entity == 'customers' else 'Vendor'} {ref[-6:]} renamed {n}"
                gp.modify(entity, ref, company_id=self.sandboxes.gp.company_id, Name=name)
            else:
                from mlconnector.sandbox.server import NAV_COMPANY
                fields = ({"phoneNumber": f"+44 20 7946 {n % 10000:04d}"} if entity == "customers"
                          else {"unitPrice": 100 + n % 900 + 0.5})
                self.sandboxes.dynamics.modify(NAV_COMPANY, entity, ref, **fields)
            changed += 1
        return changed

    def records(self) -> dict[str, int]:
        """How many records each side holds (to check a load moved everything)."""
        s = self.sandboxes
        if self.pair == "nav-zuora":
            return {t: len(s.zuora_sandbox.records(t)) for t in ("accounts", "products")} | {
                "subscriptions": len(s.zuora_sandbox.subscriptions())}
        org = s.zoho_sandboxes[self.pair.split("-")[0]]
        return {m: len(org.store.records.get(m, {})) for m in sorted(org.store.records)}


def _serve(conn: Any, pair: str, directory: str, sizes: dict[str, int], overlap: int) -> None:
    serve_world(conn, lambda: _World(pair, Path(directory), sizes, overlap),
                lambda world: {"config": str(world.config), "seed_seconds": round(world.seed_seconds, 2),
                               "seeded": getattr(world, "seeded_counts", None)})


class PairSandboxes(WorldProcess):
    """The sandboxes of fo-zoho, gp-zoho or nav-zuora in a process of their own (as benchmarks.sandboxes'
    SandboxProcess does for the Dynamics pairs)."""

    def __init__(self, pair: str, directory: Path, sizes: dict[str, int], overlap: int = OVERLAP_SECONDS) -> None:
        super().__init__(pair, _serve, (pair, str(directory), sizes, overlap))
        self.seeded = self.answer["seeded"]


# -- scenarios ----------------------------------------------------------------------------------------------------

def delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for side in ("erp", "target"):
        b, a = before[side], after[side]
        for k in ("calls", "reads", "writes", "token_mints", "batch_operations", "credits"):
            if a.get(k) is not None:
                out[f"{side}_{k}"] = a[k] - b.get(k, 0)
        if "by_operation" in a:
            old = b.get("by_operation", {})
            out[f"{side}_by_operation"] = {k: v - old.get(k, 0) for k, v in a["by_operation"].items()
                                           if v - old.get(k, 0)}
    return out


def _per_flow(run: dict[str, Any]) -> dict[str, int]:
    return {name: sum(f["calls"].values()) for name, f in _flows(run).items()}


def _reads_per_flow(per_flow: dict[str, int], handshakes: int) -> dict[str, int]:
    """Calls per flow less the NTLM handshakes' two 401 legs each (GP's token mints, counted apart as such),
    taken off the flows that made more than one call: the run's first GP call carries the handshake."""
    legs = 2 * handshakes
    reads = dict(per_flow)
    for name, n in per_flow.items():
        taken = min(legs, max(0, n - 1))
        reads[name] = n - taken
        legs -= taken
    return reads


def scenario_initial(sp: PairSandboxes, pair: str, plan: Plan, work: Path) -> dict[str, Any]:
    before = sp.call("counters")
    run = run_tool(sp.config, pair, [], work)
    calls = delta(before, sp.call("counters"))
    flows = _flows(run)
    written = {name: f["created"] + f["updated"] for name, f in flows.items()}
    records = sum(written.values())
    figures = {**_tool_figures(run, records), **calls, "written_per_flow": written, "flows": flows,
               "records_in_target": sp.call("records")}
    targets = {"no record failed": run["result"]["failed"] == 0 and run["result"]["exit_code"] == 0,
               "tool_peak_rss_mb < 200": figures["tool_peak_rss_mb"] < 200}
    if TARGET[pair] == "Zoho":
        # Zoho: Bulk Write files of 25,000 above the threshold for a first load, upserts of 100 otherwise (flows
        # into Zoho; what goes the other way writes to the ERP).
        into_zoho = {n: w for n, w in written.items() if flows[n]["calls"] and _to_zoho(pair, n)}
        minimum = sum(minimum_write_calls(w, True, True) for w in into_zoho.values())
        figures["target_write_calls_minimum"] = minimum
        figures["target_write_calls_ratio"] = round(figures["target_writes"] / minimum, 3) if minimum else None
        targets["Zoho write calls <= 1.05 x minimum"] = (figures["target_write_calls_ratio"] or 0) <= 1.05
    else:
        # Zuora: one call a record (no batch create), a product also carries its rate plan and charge.
        figures["target_writes_per_record"] = round(figures["target_writes"] / records, 2) if records else None
    figures["targets"] = targets
    return figures


def _to_zoho(pair: str, flow: str) -> bool:
    return flow not in ("sales_orders", "invoices", "sales_orders_to_gp", "deals_to_gp")


def scenario_no_changes(sp: PairSandboxes, pair: str, plan: Plan, work: Path) -> dict[str, Any]:
    time.sleep(plan.overlap_seconds + 1)  # past the read overlap, as the next cron run would be
    before = sp.call("counters")
    first = run_tool(sp.config, pair, [], work)
    after_load = {**_tool_figures(first, 0), **delta(before, sp.call("counters")), "calls_per_flow": _per_flow(first)}
    time.sleep(plan.overlap_seconds + 1)
    before = sp.call("counters")
    run = run_tool(sp.config, pair, [], work)
    calls = delta(before, sp.call("counters"))
    per_flow = _per_flow(run)
    # GP: a run's NTLM handshake (Windows authentication holds for a connection, not across runs) is its
    # token mint; its 401 legs are not reads.
    reads = _reads_per_flow(per_flow, calls["erp_token_mints"]) if pair == "gp-zoho" else per_flow
    writes = calls["erp_writes"] + calls["target_writes"]
    mints = calls["target_token_mints"] + (calls["erp_token_mints"] if pair != "gp-zoho" else 0)
    figures = {**_tool_figures(run, 0), **calls, "calls_per_flow": per_flow, "reads_per_flow": reads,
               "writes": writes, "token_mints": mints, "flows": _flows(run), "first_run_after_load": after_load}
    figures["targets"] = {
        # Besides Zoho's list of deleted records: one call per module a flow reads from Zoho (deletions).
        "<= 1 read call per flow (+ deleted records)": max(reads.values(), default=0) <= 2 and sum(
            reads.values()) - calls.get("target_by_operation", {}).get("records.deleted.list", 0) <= len(reads),
        "0 writes": writes == 0,
        "0 token mints": mints == 0,
        "sync < 2 s": run["wall_seconds"] < 2.0,
    }
    return figures


def scenario_one_percent(sp: PairSandboxes, pair: str, plan: Plan, work: Path) -> dict[str, Any]:
    """1% of the ERP's two main entities changed; calls judged against a run without changes just before."""
    time.sleep(plan.overlap_seconds + 1)
    before = sp.call("counters")
    quiet_run = run_tool(sp.config, pair, [], work)
    quiet = delta(before, sp.call("counters"))
    sizes = plan.sizes[pair]
    pools = {"nav-zuora": sp.seeded or {}}.get(pair, sizes)
    changed = {}
    for entity in CHANGED[pair]:
        n = pools.get(entity, sizes.get(entity, 0))
        changed[entity] = sp.call("modify", entity, max(1, round(n * plan.changed_share)))
    before = sp.call("counters")
    run = run_tool(sp.config, pair, [], work)
    calls = delta(before, sp.call("counters"))
    flows = _flows(run)
    written = sum(f["updated"] + f["created"] for f in flows.values())
    total = sum(changed.values())
    quiet_calls = quiet["erp_calls"] + quiet["target_calls"]
    added = calls["erp_calls"] + calls["target_calls"] - quiet_calls
    figures = {**_tool_figures(run, total), **calls, "changed": changed, "written": written,
               "calls_without_changes": quiet_calls, "calls_per_flow_without_changes": _per_flow(quiet_run),
               "calls_per_flow": _per_flow(run), "calls_added_by_changes": added,
               "calls_added_per_changed_record": round(added / total, 3) if total else None, "flows": flows}
    targets = {"every change written": written >= total and run["result"]["failed"] == 0}
    if TARGET[pair] == "Zoho":
        minimum = sum(minimum_write_calls(n, True, False) for n in changed.values())
        allowed = math.ceil(1.05 * minimum) + len(changed)
        figures["target_write_calls_minimum"] = minimum
        figures["calls_added_allowed"] = allowed
        targets["calls added <= Zoho writes needed + 1 read per changed flow"] = added <= allowed
    else:
        # Zuora updates one account or product a call: the changes need one write each, plus a read per flow.
        allowed = math.ceil(1.05 * total) + len(changed)
        figures["calls_added_allowed"] = allowed
        targets["calls added <= 1 write per change + 1 read per changed flow"] = added <= allowed
    figures["targets"] = targets
    return figures


STEPS = (("initial", scenario_initial), ("no_changes", scenario_no_changes), ("one_percent", scenario_one_percent))


def run_pair(pair: str, plan: Plan, only: set[str], work: Path, say: Any) -> dict[str, Any]:
    directory = work / pair
    directory.mkdir(parents=True)
    sizes = plan.sizes[pair]
    say(f"{pair}: seeding {sizes}")
    sp = PairSandboxes(pair, directory, sizes, plan.overlap_seconds)
    out: dict[str, Any] = {"size": sizes, "seeded": sp.seeded, "seed_seconds": sp.seed_seconds}
    try:
        for name, step in STEPS:
            if name == "initial" or name in only:
                say(f"{pair}: {name}")
                figures = step(sp, pair, plan, work)
                if name in only:
                    out[name] = figures
    finally:
        sp.stop()
    return out


def run(plan: Plan, *, pairs: tuple[str, ...] = PAIRS, only: set[str] | None = None, save: bool = True,
        say: Any = print, results_dir: Path = RESULTS) -> dict[str, Any]:
    only = set(only or SCENARIOS)
    unknown = (only - set(SCENARIOS)) | (set(pairs) - set(PAIRS))
    if unknown:
        raise ValueError(f"unknown scenario or pair {sorted(unknown)[0]!r}")
    report: dict[str, Any] = {"timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                              "mode": plan.mode, "sizes": {p: plan.sizes[p] for p in pairs}, **machine(),
                              "pairs": {}}
    compile_package()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mlconnector-bench-other-") as tmp:
        for pair in pairs:
            report["pairs"][pair] = run_pair(pair, plan, only, Path(tmp) / f"work-{pair}", say)
    report["total_seconds"] = round(time.perf_counter() - started, 1)
    report["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    if save:
        save_report(report, render(report), results_dir, f"other-pairs-{plan.mode}", "latest-other-pairs.md")
    return report


# -- the table ----------------------------------------------------------------------------------------------------

def rows(report: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    out = []
    for pair, s in report["pairs"].items():
        erp, target = ERP[pair], TARGET[pair]
        i = s.get("initial")
        if i:
            credits = f" ({i['target_credits']} credits)" if i.get("target_credits") is not None else ""
            out += [
                (pair, "1 initial load", f"{i['records']} records in {i['wall_seconds']} s = "
                 f"{i['records_per_second']}/s", "-", "-"),
                (pair, "1 initial load", f"API calls: {erp} {i['erp_calls']}, {target} {i['target_calls']}{credits}; "
                 f"token mints {erp} {i['erp_token_mints']}{' (NTLM handshakes)' if pair == 'gp-zoho' else ''}, "
                 f"{target} {i['target_token_mints']}", "-", "-"),
            ]
            if "target_write_calls_minimum" in i:
                out.append((pair, "1 initial load", f"Zoho write calls {i['target_writes']} (minimum "
                            f"{i['target_write_calls_minimum']})", "<= 1.05 x minimum",
                            _ok(i["targets"]["Zoho write calls <= 1.05 x minimum"])))
            else:
                out.append((pair, "1 initial load", f"{target} write calls {i['target_writes']} = "
                            f"{i['target_writes_per_record']} per record; {erp} writes {i['erp_writes']}", "-", "-"))
            out += [
                (pair, "1 initial load", f"tool peak RSS {i['tool_peak_rss_mb']} MB", "< 200 MB",
                 _ok(i["targets"]["tool_peak_rss_mb < 200"])),
                (pair, "1 initial load", f"tool CPU {i['tool_cpu_seconds']} s = {i['tool_cpu_us_per_record']} "
                 f"us/record; failed {i['failed']}", "0 failed", _ok(i["targets"]["no record failed"])),
            ]
        n = s.get("no_changes")
        if n:
            handshakes = (f" (NTLM handshakes {n['erp_token_mints']}: 2 legs each, in the calls per flow and "
                          f"not in the reads {n['reads_per_flow']})") if pair == "gp-zoho" else ""
            out.append((pair, "2 no changes", f"{n['wall_seconds']} s; calls per flow {n['calls_per_flow']}; "
                        f"writes {n['writes']}; mints {n['token_mints']}{handshakes}",
                        "<= 1 read/flow, 0 writes, 0 mints, < 2 s", _ok(all(n["targets"].values()))))
            a = n["first_run_after_load"]
            out.append((pair, "2 (first run after the load)", f"{a['wall_seconds']} s; {a['erp_calls']} {erp} + "
                        f"{a['target_calls']} {target} calls; writes {a['erp_writes'] + a['target_writes']}",
                        "(may read the load back once)", "-"))
        p = s.get("one_percent")
        if p:
            out.append((pair, "3 1% changed", f"{sum(p['changed'].values())} changed {p['changed']}: {erp} "
                        f"{p['erp_calls']} + {target} {p['target_calls']} calls ({p['target_writes']} {target} "
                        f"writes; {p['calls_added_by_changes']} more than with no change = "
                        f"{p['calls_added_per_changed_record']} per changed record) in {p['wall_seconds']} s",
                        f"added calls <= {p['calls_added_allowed']}", _ok(all(p["targets"].values()))))
    return out


def render(report: dict[str, Any]) -> str:
    sizes = "; ".join(f"{p}: " + ", ".join(f"{n} {e}" for e, n in s.items()) for p, s in report["sizes"].items())
    head = (f"Benchmarks of the other pairs ({report['mode']}: {sizes}) at {report['timestamp']}, commit "
            f"{report['commit'][:10]}{' (dirty)' if report['dirty'] else ''}, {report['cores']} cores, load "
            f"{report['load_average_at_start']} -> {report.get('load_average_at_end')} (shared machine), "
            f"{report.get('total_seconds')} s in all\n\n")
    lines = ["| pair | scenario | figure | target | |", "|---|---|---|---|---|"]
    lines += [f"| {' | '.join(str(c) for c in r)} |" for r in rows(report)]
    return head + "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.other_pairs", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run with a tenth of the data")
    parser.add_argument("--only", default="", help=f"scenarios, comma-separated: {', '.join(SCENARIOS)}")
    parser.add_argument("--pairs", default=",".join(PAIRS), help="pairs, comma-separated")
    parser.add_argument("--no-save", action="store_true", help="print the table, keep no result file")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    only = {s.strip() for s in args.only.split(",") if s.strip()} or None
    pairs = tuple(p.strip() for p in args.pairs.split(",") if p.strip())
    report = run(plan, pairs=pairs, only=only, save=not args.no_save,
                 say=lambda text: print(text, file=sys.stderr, flush=True))
    print(render(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
