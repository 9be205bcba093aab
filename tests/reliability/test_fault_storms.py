"""Scenario 2: the sandboxes misbehave the way production systems do while the real CLI syncs: throttling with
Retry-After, 5xx, latency spikes, tokens revoked mid-run, a refresh token revoked, a system down for part of a
run. Whatever the exit code, nothing is doubled or lost once the operator's next runs (and `replay`) finish."""

from __future__ import annotations


from tests.reliability.harness import (Rig, bring_up, check_pair, count, exit_code_ok, sync_through_latency_spikes,
                                      take_down, wait_until)

PAIRS = ("nav-zoho", "bc-zoho")


def _finish_cleanly(rig: Rig, pairs: tuple[str, ...] = PAIRS) -> None:
    """What an operator's next cron runs do: sync, replay what is queued, sync again; then all must be right."""
    rig.quiet()
    for pair in pairs:
        first = rig.cli("sync", pair)
        exit_code_ok(first.returncode, (0, 3), first.stderr)
    with rig.state() as state:
        queued = state.replay_items()
    if queued:
        replay = rig.cli("replay", "--all")
        exit_code_ok(replay.returncode, (0, 3), replay.stderr)
    for pair in pairs:
        again = rig.cli("sync", pair)
        exit_code_ok(again.returncode, (0,), again.stdout + again.stderr)
    with rig.state() as state:
        assert state.replay_items() == [], "records left in the replay queue"
    for pair in pairs:
        check_pair(rig, pair).assert_clean()


def _injected(rig: Rig) -> int:
    zoho = sum(org.calls["throttled"] + org.calls["server_error"] for org in rig.sandboxes.zoho_sandboxes.values())
    dynamics = sum(1 for call in rig.sandboxes.dynamics.calls if call.status in (429, 500, 502, 503))
    return zoho + dynamics


def test_a_storm_of_429s_5xx_and_latency_spikes_loses_and_doubles_nothing(make_rig):
    # 30% 429 with Retry-After 0 (Dynamics announces at least 1 s), 5% 500/503, latency spikes.
    rig = make_rig(faults="429=0.3,5xx=0.05,retry_after=0,seed=11",
                   system_settings={"zoho": {"retry_attempts": 8}, "zoho-bc": {"retry_attempts": 8}})
    sync_through_latency_spikes(rig, PAIRS, spike=0.2, timeout=150)
    injected = _injected(rig)
    assert injected >= 10, f"only {injected} faults were injected"
    count("faults_injected", injected)
    _finish_cleanly(rig)


def test_access_tokens_revoked_mid_run_are_replaced_and_the_run_completes(make_rig):
    rig = make_rig()
    # Every call slow until both runs are writing, so that the revocation lands mid-run in both (a quick run of
    # the smaller pair used to end before the other pair's first write); then faster, for the rest of the runs.
    rig.set_faults(latency=0.5)
    procs = {pair: rig.popen("sync", pair) for pair in PAIRS}
    writing = wait_until(lambda: all(org.calls["records.upsert"] >= 1 for org in rig.sandboxes.zoho_sandboxes.values())
                         or any(proc.poll() is not None for proc in procs.values()), timeout=60)
    early = {pair: rig.finish(proc) for pair, proc in procs.items() if proc.poll() is not None}
    assert writing and not early, f"a run ended before writing: {early}"
    revoked = sum(len(org.accounts.access_tokens) for org in rig.sandboxes.zoho_sandboxes.values())
    revoked += len(rig.sandboxes.dynamics.identity.tokens)
    for org in rig.sandboxes.zoho_sandboxes.values():
        org.accounts.access_tokens.clear()
    rig.sandboxes.dynamics.identity.tokens.clear()
    rig.set_faults(latency=0.02)
    for pair, proc in procs.items():
        code, out, err = rig.finish(proc)
        exit_code_ok(code, (0,), err)
    assert revoked >= 2
    count("faults_injected", revoked)
    for pair in PAIRS:
        check_pair(rig, pair).assert_clean()


def _orphans(rig: Rig, pair: str) -> list[str]:
    """Zoho records written without a link and an audit row in the state file: half-written work."""
    with rig.state() as state:
        linked = {r[0] for r in state.db.execute(
            "SELECT target_id FROM links WHERE pair = ? AND target_id IS NOT NULL", [pair]).fetchall()}
        audited = {r[0] for r in state.db.execute(
            "SELECT target_id FROM audit WHERE pair = ? AND action IN ('create', 'update')", [pair]).fetchall()}
    org = rig.zoho(pair)
    return [f"{module} {r['id']}" for module in ("Accounts", "Products", "Contacts", "Sales_Orders", "Invoices")
            for r in org.records(module) if r["id"] not in linked or r["id"] not in audited]


def test_a_revoked_refresh_token_exits_4_naming_the_fix_with_nothing_half_written(make_rig):
    rig = make_rig(erps=("nav",))
    org = rig.zoho("nav-zoho")
    proc = rig.popen("sync", "nav-zoho")
    assert wait_until(lambda: org.calls["records.upsert"] >= 1, timeout=30)
    for token in list(org.accounts.refresh_tokens):
        org.revoke_refresh_token(token)
    code, out, err = rig.finish(proc)
    if code == 0:  # the run had already written everything: the next run meets the revoked token
        result = rig.cli("sync", "nav-zoho")
        code, err = result.returncode, result.stderr
    exit_code_ok(code, (4,), err)
    assert "refresh token revoked or expired; run `mlconnector auth zoho zoho`" in err
    assert len([line for line in err.splitlines() if line.strip()]) == 1, err
    assert _orphans(rig, "nav-zoho") == []
    count("faults_injected")

    # The operator re-authorises (what `mlconnector auth zoho` stores), and the next run completes.
    client = next(iter(org.accounts.clients))
    rig.setup.secret_store().set("zoho", "refresh_token", org.issue_refresh_token(client))
    rig.setup.secret_store().delete("zoho", "access_token_cache")
    _finish_cleanly(rig, ("nav-zoho",))


def test_a_rotated_bc_client_secret_exits_4_naming_the_fix(make_rig):
    rig = make_rig(erps=("bc",))
    bc = rig.sandboxes.bc
    rig.sandboxes.dynamics.register_app(bc.tenant, bc.client_id, "rotated-" + bc.client_secret)
    rig.sandboxes.dynamics.identity.tokens.clear()
    rig.setup.secret_store().delete("bc", "access_token_cache")
    result = rig.cli("sync", "bc-zoho")
    exit_code_ok(result.returncode, (4,), result.stderr)
    assert "`mlconnector secrets set bc client_secret`" in result.stderr
    assert rig.zoho("bc-zoho").records("Accounts") == []
    rig.setup.secret_store().set("bc", "client_secret", "rotated-" + bc.client_secret)
    _finish_cleanly(rig, ("bc-zoho",))
    from tests.reliability import leaks

    leaks.register(["rotated-" + bc.client_secret])


def test_zoho_down_for_part_of_a_run_queues_records_and_replay_completes_them(make_rig):
    rig = make_rig(erps=("nav",))
    org = rig.zoho("nav-zoho")
    # Slow calls keep the run writing while Zoho goes away: a stopping server first finishes what it has in
    # hand, and on loopback a whole run could land in that time.
    rig.set_faults(latency=0.2)
    proc = rig.popen("sync", "nav-zoho")
    assert wait_until(lambda: org.calls["records.upsert"] >= 1, timeout=30, step=0.005)
    app, port = take_down(rig, "zoho-nav")
    code, out, err = rig.finish(proc)
    rig.set_faults(latency=0.0)
    exit_code_ok(code, (3, 5), err)
    assert "zoho" in err and ("unreachable" in err.lower() or "ConnectError" in err or "tries" in err), err
    with rig.state() as state:
        queued = state.replay_items(pair="nav-zoho")
    assert queued, "the batch in flight when Zoho went away was not queued"
    count("faults_injected")

    # While Zoho is still down, the next cron run also exits 5 and loses nothing.
    down = rig.cli("sync", "nav-zoho")
    exit_code_ok(down.returncode, (5,), down.stderr)

    bring_up(rig, "zoho-nav", app, port)
    replay = rig.cli("replay", "--all")
    exit_code_ok(replay.returncode, (0, 3), replay.stderr)
    with rig.state() as state:
        left = {(r["flow"], r["source_id"]) for r in state.replay_items(pair="nav-zoho")}
    replayed = {(r["flow"], r["source_id"]) for r in queued} - left
    assert replayed, "replay completed none of the queued records"
    count("records_replayed", len(replayed))
    _finish_cleanly(rig, ("nav-zoho",))
