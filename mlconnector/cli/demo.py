"""`mlconnector demo [PAIR]`: the product at work against emulated systems on this machine, in one command."""

import shutil
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from mlconnector.cli.common import out
from mlconnector.cli.report import audit_table
from mlconnector.cli.sync import progress_reporter, render_run
from mlconnector.errors import ConfigError
from mlconnector.sync import RunResult

# The emulators (uvicorn, Starlette apps) are imported only when the demo runs: other commands start faster.
PAIRS = ("nav-zoho", "bc-zoho", "fo-zoho", "gp-zoho", "nav-zuora")

TITLES = {"nav-zoho": "Dynamics NAV and Zoho CRM", "bc-zoho": "Business Central and Zoho CRM",
          "fo-zoho": "Finance & Operations and Zoho CRM", "gp-zoho": "Dynamics GP and Zoho CRM",
          "nav-zuora": "Dynamics NAV and Zuora Billing"}
# pair -> the system a pushed change lands in
PUSH_TARGETS = {"nav-zoho": "NAV", "bc-zoho": "Zoho", "fo-zoho": "F&O", "gp-zoho": "GP", "nav-zuora": "NAV"}


def _step(title: str) -> None:
    out.print()
    out.rule(title, align="left")


def _check(result: RunResult, what: str) -> None:
    from mlconnector.demo import DemoError

    if result.exit_code:
        raise DemoError(f"the {what} exited {result.exit_code}; see the table above and "
                        f"`mlconnector audit --run {result.run_id}` (run the demo with --keep to look)",
                        result.exit_code)


def _sample(rows: list[dict[str, Any]], per_flow: int) -> list[dict[str, Any]]:
    seen: dict[str, int] = {}
    picked = []
    for row in rows:
        if seen.get(row["flow"], 0) < per_flow and row["action"] != "skip":
            seen[row["flow"]] = seen.get(row["flow"], 0) + 1
            picked.append(row)
    return picked


def demo(
    pair: Annotated[str, typer.Argument(help=f"The pair to show: {', '.join(PAIRS)}.")] = "nav-zoho",
    seed: Annotated[str, typer.Option("--seed", help="How much NAV or Business Central data: small, medium or a "
                                                     "number of customers (F&O and GP load a fixed demo "
                                                     "company).")] = "small",
    keep: Annotated[bool, typer.Option("--keep", help="Keep the demo's config, state and audit afterwards.")] = False,
) -> None:
    """Run a pair against emulated systems on this machine: a first sync, edits on both sides, a second sync
    that moves only the changes, and a change delivered by webhook or callout. Needs no account anywhere.

    Exit 0 when every step did what it shows.
    """
    if pair not in PAIRS:
        raise typer.BadParameter(f"choose one of {', '.join(PAIRS)}", param_hint="PAIR")
    from mlconnector.demo import Demo
    from mlconnector.sandbox.seed import SeedSize

    try:
        SeedSize.parse(seed)  # before anything starts
    except ValueError as exc:
        raise ConfigError(f"--seed: {exc}") from None

    began = time.monotonic()
    directory = Path(tempfile.mkdtemp(prefix="mlconnector-demo-"))
    try:
        with Demo(pair, directory, seed=seed) as run:
            _play(run)
    finally:
        if not keep:
            shutil.rmtree(directory, ignore_errors=True)
    out.print()
    out.print(f"Done in {time.monotonic() - began:.1f} s; the emulators and the webhook receiver are stopped.",
              highlight=False)
    if keep:
        out.print(f"Kept: {directory}. Look around with `mlconnector --config {directory / 'connections.toml'} "
                  "audit` or `... status`.", highlight=False)
    out.print("Next: `mlconnector sandbox serve` runs the emulators until you stop them and writes a matching "
              "config, so you can try `ping`, `sync`, `audit` and `listen` yourself.", highlight=False)


def _label(name: str) -> str:
    """A system's name as the first column of a line: five wide, as NAV, BC and Zoho need."""
    return f"{name:<5}" if len(name) < 5 else f"{name} "


def _erp_line(run: Any) -> tuple[str, str, str]:
    """(name, URL, what it holds) of the system the pair's data starts in."""
    sandboxes = run.sandboxes
    if run.pair == "fo-zoho":
        fo = sandboxes.finops
        return "F&O", f"{fo.base_url}/data", f"legal entity {fo.legal_entity}: {sandboxes.summaries['fo']}"
    if run.pair == "gp-zoho":
        return "GP", sandboxes.gp.base_url, f"{sandboxes.summaries['gp']} (Windows auth as {sandboxes.gp.user})"
    url = sandboxes.nav.base_url + "/ODataV4" if run.erp == "nav" else sandboxes.bc.base_url + "/api/v2.0"
    return run.erp.upper(), url, f"company {run.company!r}: {sandboxes.seeded[run.erp].summary()}"


def _play(run: Any) -> None:
    from mlconnector.demo import DemoError

    out.print(f"mlconnector demo {run.pair}: {TITLES[run.pair]}, both emulated on this machine "
              "(nothing leaves it).", highlight=False)
    run.start()
    assert run.sandboxes is not None and run.setup is not None
    sandboxes = run.sandboxes
    name, url, detail = _erp_line(run)
    out.print(f"  {_label(name)}{url}  {detail}", highlight=False)
    if run.pair == "nav-zuora":
        out.print(f"  {_label('Zuora')}{sandboxes.zuora.base_url}  {sandboxes.summaries['zuora']}", highlight=False)
    else:
        org = sandboxes.summaries.get(f"zoho-{run.erp}", "an empty CRM org")
        out.print(f"  {_label('Zoho')}{sandboxes.zoho[run.erp].url}  {org}", highlight=False)
    out.print(f"  {_label('push')}{run.pusher} notifies the webhook receiver at {run.listener_url}", highlight=False)
    out.print(f"  config, state and encrypted secrets in {run.setup.config_path.parent}", highlight=False)

    _step("1. First sync: everything moves")
    with progress_reporter(True) as progress:
        first = run.sync(progress)
    render_run(first)
    _check(first, "first sync")
    rows = run.audit(first.run_id)
    out.print(audit_table(_sample(rows, 1), title=f"audit: a row per flow, of {len(rows)} "
                                                   "(`mlconnector audit` shows them all)"))

    _step("2. A few edits on both sides, then sync again: only the changes move" if run.pair != "bc-zoho"
          else "2. A few edits in Business Central, then sync again: only the changes move")
    edits = run.edit_both_sides()
    for edit in edits:
        out.print(f"  {_label(edit.system)}{edit.describe()}", highlight=False)
    with progress_reporter(True) as progress:
        second = run.sync(progress)
    render_run(second)
    _check(second, "second sync")
    rows = run.audit(second.run_id)
    moved = run.check_second_sync(edits, rows)
    echoes = [r for r in rows if (r["note"] or "").startswith("echo of our own write")]
    # Show first the echoes of this run's own updates (the edited customer read back from the other side).
    updated = {r["target_id"] for r in moved}
    echoes.sort(key=lambda r: r["source_id"] not in updated)
    out.print(audit_table(moved + echoes[:3], title="audit: what moved, and some echoes skipped"))
    out.print(f"{len(moved)} record(s) moved, one per edit; the other records were read and found unchanged.",
              highlight=False)
    if run.pair in ("nav-zoho", "nav-zuora"):
        if not echoes:
            raise DemoError("the second sync skipped no echo of its own writes")
        out.print(f"{len(echoes)} record(s) read back from the other side were our own writes and were skipped "
                  "(audit note \"echo of our own write\"): no ping-pong between the systems.", highlight=False)

    _step("3. Push: a change arrives by " + ("callout" if run.pair == "nav-zuora" else "webhook") + " within seconds")
    arrival = run.push_change()
    edit = arrival.edit
    out.print(f"  {_label(edit.system)}{edit.describe()}", highlight=False)
    out.print(f"  arrived in {arrival.where} after {arrival.seconds:.1f} s ({run.pusher} -> webhook receiver, as "
              f"`mlconnector listen --process` runs it -> {PUSH_TARGETS[run.pair]})", highlight=False)
