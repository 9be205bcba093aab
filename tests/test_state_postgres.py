"""The state in PostgreSQL as an operator meets it: chosen by [state] url or MLCONNECTOR_STATE_URL, migrated once
however many hosts start at once, one run of a pair at a time across hosts (a killed holder frees it), and every
mistake one line with its fix, never a password."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mlconnector.cli.main import build_app
from mlconnector.state import State, migrations
from tests.helpers import RoundRobin
from tests.postgres import schema_of_its_own

runner = CliRunner()
PASSWORD = "pg-Pa55word-never-shown-7f3a"  # the server trusts loopback, so any password connects


def cli(*args: str):
    return runner.invoke(build_app(), list(args))


@pytest.fixture
def database():
    with schema_of_its_own() as url:
        yield url


def with_password(url: str) -> str:
    """``url`` naming its user and a password (the server's own user: it trusts loopback, so any password does)."""
    import psycopg

    with psycopg.connect(url) as conn:
        user = conn.info.user
    return url.replace("postgresql://", f"postgresql://{user}:{PASSWORD}@", 1)


def test_status_names_the_database_without_its_password(database, config_file, monkeypatch, erp):
    erp.put("customer", {"number": "C1", "name": "Customer 1"})
    monkeypatch.setenv("MLCONNECTOR_STATE_URL", with_password(database))
    assert cli("sync", "erp-crm").exit_code == 0

    shown = cli("status", "--json")

    assert shown.exit_code == 0, shown.output
    status = json.loads(shown.stdout)
    assert status["state_file"] == with_password(database).replace(f":{PASSWORD}@", "@")
    assert [run["pair"] for run in status["last_runs"]] == ["erp-crm"]
    assert status["watermarks"][0]["pair"] == "erp-crm"
    assert PASSWORD not in shown.output and PASSWORD not in cli("status").output
    config = cli("config", "show")
    assert config.exit_code == 0 and "$MLCONNECTOR_STATE_URL" in config.output and PASSWORD not in config.output


def test_a_url_in_the_config_is_used_and_a_password_in_it_is_refused(database, config_file, monkeypatch):
    text = Path(config_file).read_text()
    Path(config_file).write_text(text + f'\n[state]\nurl = "{database}"\n')
    monkeypatch.delenv("MLCONNECTOR_STATE")
    assert cli("sync", "erp-crm").exit_code == 0
    assert json.loads(cli("status", "--json").stdout)["state_file"].startswith("postgresql://127.0.0.1:5432/test")

    Path(config_file).write_text(text + f'\n[state]\nurl = "{with_password(database)}"\n')
    refused = cli("status")

    assert refused.exit_code == 2 and "Traceback" not in refused.output, refused.output
    assert "MLCONNECTOR_STATE_PASSWORD" in refused.stderr and PASSWORD not in refused.output
    assert len(refused.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("url, says", [
    ("mysql://127.0.0.1/test", "is not a PostgreSQL URL"),
    ("postgresql://127.0.0.1:99999/test", "has no valid port"),
    ("postgresql://127.0.0.1:5432", "names no host or no database"),
])
def test_a_bad_url_is_one_line_naming_the_fix_exit_2(config_file, monkeypatch, url, says):
    monkeypatch.setenv("MLCONNECTOR_STATE_URL", url)
    result = cli("status")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert says in result.stderr and "postgresql://[user@]host[:port]/database" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_an_unreachable_server_exits_5_with_one_line_and_no_password(config_file, monkeypatch):
    monkeypatch.setenv("MLCONNECTOR_STATE_URL", f"postgresql://mlc:{PASSWORD}@127.0.0.1:1/test")
    result = cli("sync", "erp-crm")
    assert result.exit_code == 5 and "Traceback" not in result.output
    assert "cannot be reached" in result.stderr and "postgresql://mlc@127.0.0.1:1/test" in result.stderr
    assert PASSWORD not in result.output and len(result.stderr.strip().splitlines()) == 1


def test_an_unknown_user_exits_4(database, config_file, monkeypatch):
    monkeypatch.setenv("MLCONNECTOR_STATE_URL", database.replace("postgresql://", "postgresql://nobody_here_x@"))
    result = cli("status")
    assert result.exit_code == 4 and "nobody_here_x" in result.stderr and "Traceback" not in result.output


def test_a_schema_holding_another_programs_tables_is_left_untouched(database, config_file, monkeypatch):
    import psycopg

    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute("CREATE TABLE runs (id int, what text)")
    monkeypatch.setenv("MLCONNECTOR_STATE_URL", database)
    result = cli("status")
    assert result.exit_code == 2 and "not mlconnector's" in result.stderr and "search_path" in result.stderr
    with psycopg.connect(database, autocommit=True) as conn:
        assert [r[0] for r in conn.execute("SELECT column_name FROM information_schema.columns WHERE "
                                           "table_schema = current_schema() ORDER BY column_name")] == ["id", "what"]


OPEN = "import sys; from mlconnector.state import StateLocation; StateLocation(url=sys.argv[1]).open().close()"


def test_hosts_starting_at_once_migrate_once(database, tmp_path):
    starts = [subprocess.Popen([sys.executable, "-c", OPEN, database], stderr=subprocess.PIPE, text=True)
              for _ in range(4)]
    assert [p.wait(timeout=60) for p in starts] == [0, 0, 0, 0], [p.stderr.read() for p in starts]

    import psycopg

    with psycopg.connect(database, autocommit=True) as conn:
        applied = [r[0] for r in conn.execute("SELECT name FROM mlconnector_migrations ORDER BY name")]
    # The same numbered migrations as the SQLite file's, each applied once.
    with State(tmp_path / "state.db") as file:
        assert applied == [m.name for m in migrations.applied(file.db)]


HOLD = """
import sys, time
from mlconnector.state import StateLocation
with StateLocation(url=sys.argv[1]).pair_lock("erp-crm"):
    print("held", flush=True)
    time.sleep(120)
"""


def test_one_run_of_a_pair_across_hosts_and_a_killed_holder_frees_it(database, config_file, monkeypatch, erp):
    erp.put("customer", {"number": "C1", "name": "Customer 1"})
    monkeypatch.setenv("MLCONNECTOR_STATE_URL", database)
    other_host = subprocess.Popen([sys.executable, "-c", HOLD, database], stdout=subprocess.PIPE, text=True)
    try:
        assert other_host.stdout.readline().strip() == "held"
        refused = cli("sync", "erp-crm")
        assert refused.exit_code == 75 and "another run of erp-crm" in refused.stderr
    finally:
        other_host.send_signal(signal.SIGKILL)
        other_host.wait(timeout=10)
    deadline = time.monotonic() + 10
    while (result := cli("sync", "erp-crm")).exit_code == 75 and time.monotonic() < deadline:
        time.sleep(0.1)  # the server ends the killed session's backend as soon as it sees the socket closed
    assert result.exit_code == 0, result.output


def test_two_stores_in_one_database_do_not_meet(config_file, monkeypatch, erp):
    erp.put("customer", {"number": "C1", "name": "Customer 1"})
    with schema_of_its_own() as first, schema_of_its_own() as second:
        monkeypatch.setenv("MLCONNECTOR_STATE_URL", first)
        assert cli("sync", "erp-crm").exit_code == 0
        monkeypatch.setenv("MLCONNECTOR_STATE_URL", second)
        assert json.loads(cli("status", "--json").stdout)["watermarks"] == []


def test_the_database_lost_mid_run_stops_it_with_one_line_and_the_next_run_doubles_nothing(
        database, config_file, monkeypatch, erp, crm):
    import threading

    import psycopg

    for i in range(1, 201):
        erp.put("customer", {"number": f"C{i:04d}", "name": f"Customer {i}"})
    crm.set_fault("slow", 0.01)  # a batch in flight a while
    named = f"{database}&application_name=lost_{database.rsplit('%3D', 1)[1]}"
    monkeypatch.setenv("MLCONNECTOR_STATE_URL", named)

    def cut_when_writing() -> None:  # as if the server restarted, or the network between went down
        deadline = time.monotonic() + 20
        while crm.landed() < 30 and time.monotonic() < deadline:
            time.sleep(0.01)
        with psycopg.connect(database, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
                          [named.rsplit("application_name=", 1)[1]])

    cutter = threading.Thread(target=cut_when_writing)
    cutter.start()
    cut = cli("sync", "erp-crm", "--flow", "customers")
    cutter.join()

    assert cut.exit_code in (2, 5) and "Traceback" not in cut.output, cut.output
    assert f"state database {database.split('?')[0]}" in cut.stderr, cut.stderr
    assert len(cut.stderr.strip().splitlines()) == 1, cut.stderr
    crm.set_fault("slow", 0)
    again = cli("sync", "erp-crm", "--flow", "customers")
    assert again.exit_code == 0, again.output
    numbers = [a["number"] for a in crm.all("account")]
    assert len(numbers) == len(set(numbers)) == 200


def test_a_run_whose_lock_is_lost_sends_nothing_more_and_the_next_run_doubles_nothing(
        database, config_file, monkeypatch, erp, crm):
    import threading

    import psycopg

    for i in range(1, 201):
        erp.put("customer", {"number": f"C{i:04d}", "name": f"Customer {i}"})
    crm.set_fault("slow", 0.01)
    monkeypatch.setenv("MLCONNECTOR_STATE_URL", database)
    landed_at_cut: list[int] = []

    def cut_the_lock() -> None:  # only the lock's session ends (a network cut between that socket and the server)
        deadline = time.monotonic() + 20
        while crm.landed() < 30 and time.monotonic() < deadline:
            time.sleep(0.01)
        with psycopg.connect(database, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted AND "
                "((classid::bigint << 32) | objid::bigint) = hashtextextended("
                "'mlconnector pair erp-crm in ' || current_schema(), 0)")
        landed_at_cut.append(crm.landed())

    cutter = threading.Thread(target=cut_the_lock)
    cutter.start()
    cut = cli("sync", "erp-crm", "--flow", "customers")
    cutter.join()

    assert cut.exit_code == 2 and "the connection holding the lock of erp-crm was lost" in cut.stderr, cut.output
    assert crm.landed() - landed_at_cut[0] < 100  # the batches already out landed; nothing more was sent
    crm.set_fault("slow", 0)
    assert cli("sync", "erp-crm", "--flow", "customers").exit_code == 0
    numbers = [a["number"] for a in crm.all("account")]
    assert len(numbers) == len(set(numbers)) == 200


def test_the_password_kept_with_secrets_set_is_the_databases(config_file, monkeypatch):
    from mlconnector.api import Runtime

    stored = runner.invoke(build_app(), ["secrets", "set", "state", "password", "--value-stdin"], input=PASSWORD + "\n")
    assert stored.exit_code == 0 and "stored password for state" in stored.stdout and PASSWORD not in stored.output
    monkeypatch.setenv("MLCONNECTOR_STATE_URL", "postgresql://mlc@db.example.com/integration")
    location = Runtime().state_location()
    assert location.password == PASSWORD and PASSWORD not in location.shown and PASSWORD not in repr(location)


@pytest.mark.parametrize("table, says", [
    ('path = "state.db"\nurl = "postgresql://db.example.com/integration"', "sets both path and url"),
    ('uri = "postgresql://db.example.com/integration"', "state.uri is not a known key"),
])
def test_a_state_table_that_cannot_be_meant_is_one_line_exit_2(config_file, table, says):
    Path(config_file).write_text(Path(config_file).read_text() + f"\n[state]\n{table}\n")
    result = cli("status")
    assert result.exit_code == 2 and says in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_the_receivers_health_is_the_databases(database, tmp_path, monkeypatch):
    import httpx
    import psycopg

    from mlconnector import api
    from mlconnector.sandbox.common import InProcessTransport
    from tests.pairs.world import make_world

    world = make_world(tmp_path, monkeypatch, "bc")
    monkeypatch.setenv("MLCONNECTOR_STATE_URL", database)
    listener = api.Listener(world.runtime())
    client = httpx.Client(transport=InProcessTransport(listener.app), base_url="http://listener.test")
    try:
        assert client.get("/health").status_code == 200
        with psycopg.connect(database, autocommit=True) as admin:  # the database's tables gone under the receiver
            admin.execute("DROP TABLE health")
        time.sleep(1.1)  # /health proves the state writable at most once a second
        gone = client.get("/health")
        assert gone.status_code == 503 and gone.json()["ok"] is False
        assert f"state database {database.split('?')[0]}" in gone.json()["error"], gone.text
    finally:
        client.close()
        listener.close()
        world.close()


RESERVE = """
import sys
from mlconnector.state import StateLocation
from mlconnector.systems.zoho import SharedQuota
quota = SharedQuota(StateLocation(url=sys.argv[1]).ledger())
print(sum(1 for _ in range(10) if quota.reserve_mint("one-refresh-token", 9) == 0))
"""


def test_hosts_sharing_the_state_share_zohos_mint_limit(database):
    # Four workers, as if on two hosts, all minting with one refresh token at once: nine mints in ten minutes in
    # all (Zoho allows ten), however they interleave.
    workers = [subprocess.Popen([sys.executable, "-c", RESERVE, database], stdout=subprocess.PIPE, text=True)
               for _ in range(4)]
    minted = [int(w.communicate(timeout=60)[0]) for w in workers]
    assert sum(minted) == 9, minted


RESERVE_AS_TENANT = """
import sys
from mlconnector.state.location import resolve
from mlconnector.systems.zoho import SharedQuota
quota = SharedQuota(resolve(cli_path=None, config_url=None, config_path=None).ledger())
print(sum(1 for _ in range(10) if quota.reserve_mint(sys.argv[1], 9) == 0))
"""


def test_tenants_sharing_a_refresh_token_share_zohos_mint_limit():
    # Two companies' tenants keeping one Zoho CRM (acme_eu and acme_us) mint with one refresh token: Zoho counts
    # the token's mints, not the tenant's, so their schemas' own ledgers must not each allow nine.
    import os
    import uuid

    from tests.postgres import SERVER_URL, drop_schemas

    names = [f"mint_{uuid.uuid4().hex[:8]}_{part}" for part in ("eu", "us")]
    key = f"one-refresh-token-{uuid.uuid4().hex}"
    with drop_schemas(*(f"mlconnector_{name}" for name in names)):
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLCONNECTOR_")}
        workers = [subprocess.Popen([sys.executable, "-c", RESERVE_AS_TENANT, key], stdout=subprocess.PIPE, text=True,
                                    env={**env, "MLCONNECTOR_STATE_URL": SERVER_URL, "MLCONNECTOR_TENANT": name})
                   for name in names]
        minted = [int(w.communicate(timeout=60)[0]) for w in workers]
    assert sum(minted) == 9, minted


def test_a_run_counts_its_zoho_mints_and_credits_in_the_database_not_a_file(database, tmp_path, monkeypatch):
    from mlconnector.systems.zoho import SharedQuota
    from tests.pairs.world import make_world

    world = make_world(tmp_path, monkeypatch, "bc")
    monkeypatch.setenv("MLCONNECTOR_STATE_URL", database)
    try:
        assert world.sync("bc-zoho", flows=["customers"]).exit_code == 0
    finally:
        world.close()
    import psycopg

    assert not list(tmp_path.rglob("zoho-quota.json"))
    with psycopg.connect(database, autocommit=True) as conn:  # the access token the run minted, counted there
        assert conn.execute("SELECT count(*) FROM ledger_events WHERE key LIKE 'zoho mint %'").fetchone()[0] == 1
    ledger = SharedQuota(world.runtime().state_location().ledger())
    assert ledger.charge("zoho", 5, 8) == 5
    with pytest.raises(Exception, match="crossing the daily budget of 8 \\(5 spent"):
        ledger.charge("zoho", 5, 8)


def test_runs_of_one_pair_started_at_once_on_several_hosts_run_one_at_a_time(database, config_file, erp, crm):
    # Four cron jobs, as if on two hosts, start the same pair at the same moment: each either runs or exits 75
    # at once, and the target holds each record once.
    import os

    for i in range(1, 61):
        erp.put("customer", {"number": f"C{i:03d}", "name": f"Customer {i}"})
    crm.set_fault("slow", 0.02)  # a run writes for over a second, so the others find it running
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1]), "MLCONNECTOR_PLUGINS": "tests.fakes",
           "MLCONNECTOR_CONFIG": str(config_file), "MLCONNECTOR_STATE_URL": database}
    runs = [subprocess.Popen([sys.executable, "-m", "mlconnector", "sync", "erp-crm", "--flow", "customers"],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    ended = [(run.wait(timeout=120), run.stderr.read()) for run in runs]

    codes = sorted(code for code, _ in ended)
    assert codes[0] == 0 and 75 in codes and set(codes) <= {0, 75}, ended  # one ran; the others found it running
    assert all("another run of erp-crm" in err for code, err in ended if code == 75)
    numbers = [a["number"] for a in crm.all("account")]
    assert len(numbers) == len(set(numbers)) == 60


def test_listen_replicas_behind_a_load_balancer_store_each_change_once(database, tmp_path, monkeypatch, request):
    import threading

    import httpx

    from mlconnector import api
    from mlconnector.sandbox.common import InProcessTransport
    from tests.pairs.world import make_world, wait_for

    world = make_world(tmp_path, monkeypatch, "nav")
    request.addfinalizer(world.close)
    monkeypatch.setenv("MLCONNECTOR_STATE_URL", database)
    cities = {"C00010": "Evanston", "C00020": "Skokie", "C00030": "Oak Park"}
    replicas = [api.Listener(world.runtime(), process=False) for _ in range(2)]
    try:
        assert world.sync("nav-zoho").exit_code == 0  # subscribes the Zoho channels, saved in the database
        world.listener_slot.app = RoundRobin([r.app for r in replicas])
        for number, city in cities.items():
            world.zoho.edit("Accounts", world.account(number)["id"], Billing_City=city)

        def waiting() -> list[dict]:
            with world.state() as state:
                return state.pending_inbox("nav-zoho")

        assert wait_for(lambda: len(waiting()) >= len(cities))
        # The balancer timed out on every delivery and the sender retried: each one reaches both replicas again,
        # at the same moment.
        delivered = [d.payload for d in world.zoho.deliveries if d.payload.get("module") == "Accounts"]
        answers: list[int] = []

        def post(app, body) -> None:
            with httpx.Client(transport=InProcessTransport(app), base_url="http://listener.test") as client:
                answers.append(client.post("/hooks/zoho", json=body).status_code)

        senders = [threading.Thread(target=post, args=(r.app, body)) for body in delivered for r in replicas]
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join()
        assert answers == [202] * len(senders)
        assert len(waiting()) == len(delivered)
        for replica in replicas:
            with httpx.Client(transport=InProcessTransport(replica.app), base_url="http://listener.test") as client:
                assert client.get("/health").status_code == 200
    finally:
        for replica in replicas:
            replica.close()

    run = world.sync("nav-zoho")
    assert run.exit_code == 0 and run.notifications == len(delivered), run.to_dict()
    assert {c["number"]: c["city"] for c in world.erp("customers") if c["number"] in cities} == cities
    with world.state() as state:
        updates = [r["target_id"] for r in state.audit_rows(limit=None)
                   if r["flow"] == "accounts_to_customers" and r["action"] == "update"]
        assert not state.pending_inbox("nav-zoho")
    assert sorted(updates) == sorted(cities)


def test_bcs_company_id_is_remembered_in_the_database_for_every_host(database, tmp_path, monkeypatch):
    import psycopg

    from tests.pairs.world import make_world

    world = make_world(tmp_path, monkeypatch, "bc")
    try:
        monkeypatch.setenv("MLCONNECTOR_STATE_URL", database)
        assert world.sync("bc-zoho").exit_code == 0
    finally:
        world.close()
    with psycopg.connect(database) as conn:
        [(body,)] = conn.execute("SELECT body FROM ledger_documents WHERE name = 'dynamics bc company'").fetchall()
    assert list(json.loads(body).values()) == [world.company]  # the id BC gave the company
    assert not list(tmp_path.rglob("dynamics-*-company.json")), "nothing of the state beside a file any more"


def test_hosts_sharing_the_state_share_access_tokens_sealed_from_the_database(database, tmp_path, monkeypatch):
    import keyring
    import psycopg

    from mlconnector import api
    from tests.helpers import MemoryKeyring
    from tests.pairs.world import make_world

    world = make_world(tmp_path, monkeypatch, "bc")
    monkeypatch.setenv("MLCONNECTOR_STATE_URL", database)
    try:
        assert world.sync("bc-zoho", flows=["customers"]).exit_code == 0
        # The next run is on another host: a secret store of its own holding no token (credentials from the
        # environment, as in a container).
        keyring.set_keyring(MemoryKeyring())
        monkeypatch.setenv("MLCONNECTOR_SECRETS_DIR", str(tmp_path / "other-host-secrets"))
        assert world.sync("bc-zoho", flows=["customers"]).exit_code == 0
        issued = list(world.zoho.accounts.access_tokens)
        assert len(issued) == 1, "the second host used the token the first one minted"
        assert [p.ok for p in api.ping(world.runtime(), "zoho")] == [True]
        assert len(world.zoho.accounts.access_tokens) == 2, "ping proves the credentials with a token of its own"
        issued = list(world.zoho.accounts.access_tokens)
    finally:
        world.close()
    with psycopg.connect(database, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM ledger_events WHERE key LIKE 'zoho mint %'").fetchone()[0] == 2
        documents = dict(conn.execute("SELECT name, body FROM ledger_documents").fetchall())
    assert "access token zoho" in documents and "access token bc" in documents
    assert not any(token in body for token in issued for body in documents.values()), "sealed, never in clear"


def test_a_process_working_for_many_tenants_in_turn_keeps_few_connections():
    # A scheduler's worker (or code embedding the api) runs one tenant after another: each tenant's schema is a
    # pool of its own, and a pool per tenant ever served would hold the server's connections until it refused more.
    import uuid
    from contextlib import ExitStack
    from datetime import datetime, timezone

    import psycopg

    from mlconnector.state import StateLocation
    from mlconnector.state.pg_connection import MAX_POOLS

    marker = f"many_{uuid.uuid4().hex[:12]}"
    mark = datetime(2026, 12, 7, 10, tzinfo=timezone.utc)
    with ExitStack() as stack:
        urls = [stack.enter_context(schema_of_its_own()) for _ in range(MAX_POOLS + 2)]
        for url in urls:
            with StateLocation(url=f"{url}&application_name={marker}").open() as state:
                state.set_watermark("erp-crm", "customers", mark)
        with psycopg.connect(urls[0], autocommit=True) as admin:
            held = admin.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                                 [marker]).fetchone()[0]
        assert 1 <= held <= 2 * MAX_POOLS < 2 * len(urls), held  # pools kept, each with a run's writer and reader
        again = StateLocation(url=f"{urls[0]}&application_name={marker}").open()  # a pool closed is made again
        try:
            assert again.watermark("erp-crm", "customers") == mark
        finally:
            again.close()


def end_sessions(database: str, named: str) -> int:
    """The server ends every session of the application name ``named`` (a state URL) gave its connections."""
    import psycopg

    with psycopg.connect(database, autocommit=True) as admin:
        return admin.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE "
                             "application_name = %s", [named.rsplit("application_name=", 1)[1]]).fetchone()[0]


def test_a_connection_the_server_ended_while_it_sat_idle_is_not_handed_to_the_next_run(
        database, config_file, monkeypatch, erp):
    from mlconnector.state import pg_connection

    erp.put("customer", {"number": "C1", "name": "Customer 1"})
    named = f"{database}&application_name=idle_{database.rsplit('%3D', 1)[1]}"
    monkeypatch.setenv("MLCONNECTOR_STATE_URL", named)
    assert cli("sync", "erp-crm").exit_code == 0  # the process's pool keeps its connections for the next run
    assert end_sessions(database, named) >= 1  # a server restart, an idle timeout elsewhere
    monkeypatch.setattr(pg_connection, "CHECK_AFTER_IDLE", 0.0)  # as if they had sat idle past the limit

    erp.put("customer", {"number": "C2", "name": "Customer 2"})
    again = cli("sync", "erp-crm")

    assert again.exit_code == 0, again.output
    assert "C2" in cli("audit", "--json").stdout


def test_once_one_connection_is_found_lost_the_next_run_gets_none_of_the_others_the_server_ended(
        database, config_file, monkeypatch, erp, crm):
    for i in range(1, 301):
        erp.put("customer", {"number": f"C{i:04d}", "name": f"Customer {i}"})
    named = f"{database}&application_name=ended_{database.rsplit('%3D', 1)[1]}"
    monkeypatch.setenv("MLCONNECTOR_STATE_URL", named)
    assert cli("sync", "erp-crm").exit_code == 0  # the process's pool keeps its connections for the next run
    assert end_sessions(database, named) >= 2  # a server restart, moments after that run

    erp.put("customer", {"number": "C9999", "name": "Customer 9999"})
    first = cli("sync", "erp-crm")  # it may meet one of them: one line, exit 5
    assert first.exit_code in (0, 5) and "Traceback" not in first.output, first.output
    again = cli("sync", "erp-crm")

    assert again.exit_code == 0, again.output
    numbers = [a["number"] for a in crm.all("account")]
    assert "C9999" in numbers and len(numbers) == len(set(numbers)) == 301
