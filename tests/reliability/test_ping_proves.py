"""`mlconnector ping` proves the stored credentials, as an operator needs after rotating a secret: a fresh token
from each system, not the one cached by the last sync, and every missing secret named in one go."""

from __future__ import annotations

from tests.reliability.harness import count, exit_code_ok


def test_ping_finds_a_rotated_secret_while_a_token_is_still_cached(make_rig):
    rig = make_rig()
    for pair in ("nav-zoho", "bc-zoho"):  # leaves a valid access token cached for Zoho and BC
        result = rig.cli("sync", pair)
        exit_code_ok(result.returncode, (0,), result.stderr)
    store = rig.setup.secret_store()
    assert store.get("zoho", "access_token_cache") and store.get("bc", "access_token_cache")
    right = {"zoho": store.get("zoho", "client_secret"), "bc": store.get("bc", "client_secret")}
    for system in right:  # rotated on the vendor's side: what is stored no longer works
        store.set(system, "client_secret", f"rotated-away-{system}-0000")

    result = rig.cli("ping")
    assert result.returncode == 4, result.stdout + result.stderr
    marks = {line.split()[1]: line.split()[0] for line in result.stdout.splitlines() if line[:1] in "oF"}
    assert marks == {"zoho": "FAILED", "bc": "FAILED", "nav": "ok", "zoho-bc": "ok"}, result.stdout
    count("credentials_checked", 3)

    for system, value in right.items():
        store.set(system, "client_secret", value)
    again = rig.cli("ping")
    assert again.returncode == 0, again.stdout + again.stderr
    from tests.reliability import leaks

    leaks.register([f"rotated-away-{system}-0000" for system in right])


def test_ping_names_every_missing_secret_at_once(make_rig):
    rig = make_rig(erps=("nav",))
    store = rig.setup.secret_store()
    for system, field in (("zoho", "client_secret"), ("zoho", "refresh_token"), ("nav", "password")):
        store.delete(system, field)

    result = rig.cli("ping")
    assert result.returncode == 2, result.stdout + result.stderr
    for system, field in (("zoho", "client_secret"), ("zoho", "refresh_token"), ("nav", "password")):
        assert f"`mlconnector secrets set {system} {field}`" in result.stdout, result.stdout
