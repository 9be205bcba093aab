"""The state file deleted while a run writes: the run notices that the file it commits to is no longer the one it
opened, stops writing, says so in one line and exits 2; the next run, on a new empty state file, creates nothing
twice on either side (the NAV number written back into Zoho, and every natural key, link the records again)."""

from __future__ import annotations

from collections import Counter

from tests.reliability.harness import count, exit_code_ok, wait_until

BORN_IN_ZOHO = 40


def test_a_state_file_deleted_mid_run_stops_the_run_and_the_next_run_duplicates_nothing(make_rig):
    rig = make_rig(erps=("nav",), pair_settings={"batch_size": 2})  # many small batches: one can be stopped
    org, company = rig.zoho("nav-zoho"), rig.company("nav-zoho")
    dynamics = rig.sandboxes.dynamics
    org.seed("Accounts", [{"Account_Name": f"Born in Zoho {i:02d}", "Account_Type": "Customer",
                           "Billing_City": "Denver"} for i in range(BORN_IN_ZOHO)])
    customers_before = len(dynamics.records(company, "customers"))
    rig.set_faults(latency=0.05)  # each NAV create a call of its own: the accounts born in Zoho take a while
    run = rig.popen("sync", "nav-zoho")
    state = rig.setup.state_path
    # Once NAV has numbered a few of the accounts born in Zoho, the state file goes (as an operator's cleanup or a
    # restore from backup would take it).
    assert wait_until(lambda: len(dynamics.records(company, "customers")) >= customers_before + 3, timeout=60)
    for path in (state, state.with_name(state.name + "-wal"), state.with_name(state.name + "-shm")):
        path.unlink(missing_ok=True)

    code, _, err = rig.finish(run)

    assert code == 2, err[-3000:]
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and str(state) in err and "no longer" in err, err[-3000:]
    created = len(dynamics.records(company, "customers")) - customers_before
    assert 3 <= created < BORN_IN_ZOHO, "the run stopped writing once it noticed"
    count("state_files_lost")

    rig.quiet()
    again = rig.cli("sync", "nav-zoho")
    exit_code_ok(again.returncode, (0,), again.stderr)
    again = rig.cli("sync", "nav-zoho")  # numbers go back to Zoho, nothing else moves
    exit_code_ok(again.returncode, (0,), again.stderr)

    names = Counter(c["displayName"] for c in dynamics.records(company, "customers"))
    assert [n for n, k in names.items() if k > 1] == [], "a NAV customer created twice"
    assert sum(1 for n in names if n.startswith("Born in Zoho")) == BORN_IN_ZOHO
    accounts = org.records("Accounts")
    numbers = Counter(a.get("Account_Number") for a in accounts)
    assert [n for n, k in numbers.items() if k > 1] == [], "a Zoho account created twice"
    by_name = Counter(a["Account_Name"] for a in accounts)
    assert [n for n, k in by_name.items() if k > 1] == [], "a Zoho account created twice"
    nav_numbers = {c["displayName"]: c["number"] for c in dynamics.records(company, "customers")}
    for account in accounts:
        if account["Account_Name"].startswith("Born in Zoho"):
            assert account.get("Account_Number") == nav_numbers[account["Account_Name"]]
