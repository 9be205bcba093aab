"""Many tenants from one PostgreSQL: four worker processes, as if two on each of two hosts, run twenty tenant-pairs
(ten tenants, each with nav-zoho and bc-zoho against a NAV company, a Business Central company and two Zoho orgs of
its own) while each tenant's two `listen` replicas, behind a round-robin balancer, take the Zoho notifications of
edits made in the middle of it. Afterwards every target holds each record once and nothing is missing, every edit
arrived, no two runs of one tenant-pair overlapped, and no refresh token minted more access tokens than Zoho
allows (10 in 10 minutes). See docs/operations.md, *Tenants*."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from mlconnector import api
from mlconnector.sandbox.common import ServerDate
from mlconnector.sandbox.dynamics import create_app as create_dynamics
from mlconnector.sandbox.server import ZOHO_UNIQUE_FIELDS, bind, url_of
from mlconnector.sandbox.zoho import create_app as create_zoho
from tests.helpers import RoundRobin
from tests.postgres import SERVER_URL, drop_schemas

ROOT = Path(__file__).parents[1]
TENANTS = 10
PAIRS = ("nav-zoho", "bc-zoho")
ENTRA_TENANT = "contoso.onmicrosoft.com"
# nav-zoho's two-way customer flows (Zoho's notifications feed the way back); bc-zoho carries customers one way.
FLOWS = {"nav-zoho": '["customers", "accounts_to_customers"]', "bc-zoho": '["customers"]'}

# A worker: one process running the CLI for each tenant-pair in its order (as a scheduler's worker runs its tasks);
# then, once the test says go (every tenant's edits made), for its quarter of them once more, so each tenant-pair
# has a run after its notifications.
WORKER = """
import json, sys, time
from pathlib import Path
from mlconnector.cli.main import build_app
app = build_app()
orders, done, go = json.loads(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
for round, order in enumerate(orders, 1):
    for tenant, pair in order:
        started = time.time()
        code = app(["--tenant", tenant, "sync", pair], prog_name="mlconnector", standalone_mode=False)
        print(json.dumps([tenant, pair, code or 0, started, time.time()]), flush=True)
    done.touch()
    while round == 1 and not go.exists():
        time.sleep(0.02)
"""


class Served:
    """Apps served over loopback HTTP by one uvicorn server in a thread of this process, a port each."""

    def __init__(self) -> None:
        self.apps: dict[int, Any] = {}
        self.sockets: list[Any] = []

    def add(self, make: Any) -> Any:
        sock = bind("127.0.0.1", 0)
        app = make(url_of(sock))
        self.sockets.append(sock)
        self.apps[sock.getsockname()[1]] = ServerDate(app, now=lambda: datetime.now(timezone.utc), keep=True)
        return app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.apps[scope["server"][1]](scope, receive, send)

    def __enter__(self) -> "Served":
        self.server = uvicorn.Server(uvicorn.Config(self, log_level="warning", lifespan="off", access_log=False,
                                                    date_header=False))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": self.sockets}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "the sandboxes did not start"
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


class Tenant:
    """One company: a NAV company and a BC company in the shared Dynamics emulator, a Zoho org for each pair, its
    config in tenants/NAME/connections.toml and its secrets in MLCONNECTOR_NAME_... variables (with the token Zoho's
    notifications carry, as a container must: docs/operations.md, *Containers and schedulers*)."""

    def __init__(self, name: str, served: Served, dynamics: Any, dynamics_url: str) -> None:
        self.name, self.balancer = name, RoundRobin([])
        self.company = {"nav-zoho": dynamics.seed_demo(f"{name} NAV"), "bc-zoho": dynamics.seed_demo(f"{name} BC")}
        for company in self.company.values():  # a customer no other tenant has
            dynamics.seed(company, "customers", [{"displayName": f"{name} Own Customer", "city": "Leeds"}])
        self.orgs: dict[str, Any] = {}
        self.env: dict[str, str] = {}
        user, key = f"SVC-{name.upper()}", uuid.uuid4().hex
        dynamics.set_web_service_user(user, key)
        bc_client, bc_secret = str(uuid.uuid4()), uuid.uuid4().hex
        dynamics.register_app(ENTRA_TENANT, bc_client, bc_secret)
        prefix = f"MLCONNECTOR_{name.upper()}_"
        self.env |= {f"{prefix}NAV_PASSWORD": key, f"{prefix}BC_CLIENT_SECRET": bc_secret}
        config = [f'''[systems.nav]
kind = "nav"
base_url = "{dynamics_url}/DynamicsNAV110"
company = "{name} NAV"
user = "{user}"

[systems.bc]
kind = "bc"
tenant = "{ENTRA_TENANT}"
environment = "production"
client_id = "{bc_client}"
company = "{name} BC"
base_url = "{dynamics_url}/v2.0/{ENTRA_TENANT}/production"
token_url = "{dynamics_url}/{ENTRA_TENANT}/oauth2/v2.0/token"
''']
        for pair in PAIRS:
            erp, crm = pair.split("-")[0], f"crm_{pair.split('-')[0]}"
            org = served.add(lambda url: create_zoho(api_domain=url,
                                                     notify_transport=httpx.ASGITransport(app=self.balancer)))
            zoho = org.state.zoho
            for module, unique in ZOHO_UNIQUE_FIELDS:
                zoho.mark_unique(module, unique)
            client = zoho.register_client()
            self.orgs[pair] = zoho
            self.env |= {f"{prefix}CRM_{erp.upper()}_CLIENT_SECRET": client.client_secret,
                         f"{prefix}CRM_{erp.upper()}_REFRESH_TOKEN": zoho.issue_refresh_token(client.client_id),
                         f"{prefix}CRM_{erp.upper()}_NOTIFY_TOKEN": uuid.uuid4().hex}
            config.append(f'''[systems.{crm}]
kind = "zoho"
client_id = "{client.client_id}"
accounts_url = "{zoho.api_domain}"
api_domain = "{zoho.api_domain}"
upload_url = "{zoho.api_domain}"
notify_url = "http://listener.test/hooks/{crm}"

[pairs.{pair}]
systems = {{ erp = "{erp}", crm = "{crm}" }}
flows = {FLOWS[pair]}
overlap_seconds = 5
''')
        self.config = "\n".join(config)

    def customers(self, dynamics: Any, pair: str) -> list[dict[str, Any]]:
        return dynamics.records(self.company[pair], "customers")


def test_four_workers_on_two_hosts_run_twenty_tenant_pairs_with_two_listen_replicas_each(
        tmp_path, monkeypatch, request):
    run = uuid.uuid4().hex[:6]
    names = [f"m{run}_{i:02d}" for i in range(TENANTS)]
    served = Served()
    dynamics_app = served.add(lambda url: create_dynamics(debounce=0.05))
    dynamics = dynamics_app.state.dynamics
    dynamics_url = url_of(served.sockets[0])
    tenants = [Tenant(name, served, dynamics, dynamics_url) for name in names]
    hosts = {host: tmp_path / host for host in ("host_a", "host_b")}
    for folder in hosts.values():  # each host has its own copy of every tenant's config
        for tenant in tenants:
            (folder / "tenants" / tenant.name).mkdir(parents=True)
            (folder / "tenants" / tenant.name / "connections.toml").write_text(tenant.config)
    secrets = {k: v for t in tenants for k, v in t.env.items()}
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("MLCONNECTOR_CONFIG")
    monkeypatch.setenv("MLCONNECTOR_STATE_URL", SERVER_URL)

    schemas = drop_schemas(*(f"mlconnector_{name}" for name in names))
    schemas.__enter__()
    request.addfinalizer(lambda: schemas.__exit__(None, None, None))  # after the replicas' close, added later
    with served:
        # Two `listen` replicas per tenant (its receiver address), the balancer sending each delivery to the next.
        monkeypatch.chdir(hosts["host_a"])
        replicas: list[api.Listener] = []
        for tenant in tenants:
            monkeypatch.setenv("MLCONNECTOR_TENANT", tenant.name)
            pair = [api.Listener(api.Runtime(), process=False) for _ in range(2)]
            tenant.balancer.apps[:] = [r.app for r in pair]
            replicas += pair
        monkeypatch.delenv("MLCONNECTOR_TENANT")
        request.addfinalizer(lambda: [r.close() for r in replicas])

        work = [(t.name, pair) for t in tenants for pair in PAIRS]
        # Host A's workers take every tenant-pair, in order and backwards; host B's take half each, the first half
        # in order (as A's first worker, so the two meet at each) and the second backwards (as A's second); then
        # each worker takes a quarter once more.
        half = len(work) // 2
        firsts = [("host_a", work), ("host_a", work[::-1]), ("host_b", work[:half]), ("host_b", work[half:][::-1])]
        go = tmp_path / "go"
        env = {k: v for k, v in os.environ.items() if k != "MLCONNECTOR_TENANT"}
        env |= {"PYTHONPATH": str(ROOT), "NO_COLOR": "1"}
        workers, dones = [], []
        began = time.monotonic()
        for k, (host, first) in enumerate(firsts):
            done = tmp_path / f"worker-{k}.done"
            dones.append(done)
            workers.append(subprocess.Popen(
                [sys.executable, "-c", WORKER, json.dumps([first, work[k::4]]), str(done), str(go)], cwd=hosts[host],
                env={**env, "XDG_STATE_HOME": str(hosts[host] / "state"),
                     "MLCONNECTOR_SECRETS_DIR": str(hosts[host] / "secrets")},
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))

        # Mid-way, each tenant's own customer moves: in Zoho (nav-zoho's way back, announced by a notification)
        # once the pair's first run has subscribed to Zoho's changes, and in BC once bc-zoho first carried it over.
        edited: dict[tuple[str, str], str] = {}
        deadline = time.monotonic() + 60
        while len(edited) < len(work) and time.monotonic() < deadline:
            for tenant in tenants:
                for pair, zoho in tenant.orgs.items():
                    own = [a for a in zoho.records("Accounts") if a["Account_Name"].endswith("Own Customer")]
                    if (tenant.name, pair) in edited or not own or (pair == "nav-zoho" and not zoho.channels):
                        continue
                    city = f"{tenant.name} {pair} city"
                    if pair == "nav-zoho":
                        zoho.edit("Accounts", own[0]["id"], Billing_City=city)
                    else:
                        dynamics.modify(tenant.company[pair], "customers", own[0]["Account_Number"], city=city)
                    edited[(tenant.name, pair)] = own[0]["Account_Number"]
            time.sleep(0.02)
        while not all(d.exists() for d in dones) and time.monotonic() < deadline:
            time.sleep(0.02)
        go.touch()
        ended = [w.communicate(timeout=120) for w in workers]
        took = time.monotonic() - began

    assert len(edited) == len(work), [err[-1000:] for _, err in ended]  # each pair's first run came and subscribed
    attempts = [json.loads(line) for out, _ in ended for line in out.splitlines() if line.startswith("[\"")]
    codes = Counter(code for _, _, code, _, _ in attempts)
    assert len(attempts) == 4 * len(work) and set(codes) <= {0, 75}, (codes, [e for _, e in ended])
    assert codes[75] >= 1 and codes[0] >= 2 * len(work), codes  # some found their pair running
    ran = sorted((start, end) for _, _, code, start, end in attempts if code == 0)
    assert any(later[0] < earlier[1] for earlier, later in zip(ran, ran[1:])), "runs of other pairs went on at once"

    import psycopg

    delivered = 0
    for tenant in tenants:
        schema = f"mlconnector_{tenant.name}"
        with psycopg.connect(SERVER_URL, autocommit=True) as conn:
            conn.execute(f"SET search_path = {schema}")
            runs = conn.execute("SELECT pair, started, finished, exit_code, summary FROM runs "
                                "ORDER BY pair, started").fetchall()
            pending = conn.execute("SELECT count(*) FROM inbox WHERE processed IS NULL").fetchone()[0]
        for pair in PAIRS:
            mine = [r for r in runs if r[0] == pair]
            ran = [a for a in attempts if a[0] == tenant.name and a[1] == pair and a[2] == 0]
            assert len(mine) == len(ran) >= 2 and all(r[3] == 0 for r in mine), (tenant.name, pair, mine)
            for before, after in zip(mine, mine[1:]):
                assert before[2] <= after[1], f"{tenant.name} {pair}: two runs at once {before[1:3]} {after[1:3]}"
            zoho = tenant.orgs[pair]
            # The CRM holds each of the company's customers once, and only the company's.
            customers = tenant.customers(dynamics, pair)
            accounts = zoho.records("Accounts")
            numbers = [a["Account_Number"] for a in accounts]
            assert len(numbers) == len(set(numbers)), (tenant.name, pair, Counter(numbers).most_common(2))
            assert sorted(numbers) == sorted(c["number"] for c in customers) and len(customers) == 4  # none came back
            assert {a["Account_Name"] for a in accounts} == {c["displayName"] for c in customers}
            # Zoho's limit: 10 access tokens per refresh token in 10 minutes, none refused.
            for refresh in zoho.accounts.refresh_tokens.values():
                assert len(refresh.mints) <= 10 and refresh.refused == 0, (tenant.name, pair, refresh.mints)
            # The edit arrived in the other system; nav-zoho's way back was announced by Zoho to a replica.
            city = f"{tenant.name} {pair} city"
            if pair == "bc-zoho":
                [own] = [a for a in accounts if a["Account_Number"] == edited[(tenant.name, pair)]]
                assert own["Billing_City"] == city
                continue
            [own] = [c for c in customers if c["number"] == edited[(tenant.name, pair)]]
            assert own["city"] == city
            sent = [d for d in zoho.deliveries if d.payload.get("module") == "Accounts"]
            assert sent and all(d.status == 202 for d in sent), [(d.status, d.error) for d in sent]
            assert sum(json.loads(r[4] or "{}").get("notifications", 0) for r in mine) >= len(sent)
            delivered += len(sent)
        assert pending == 0
        # Both replicas took some: the balancer sent every delivery of the tenant's orgs, in turn.
        assert tenant.balancer.sent == sum(len(z.deliveries) for z in tenant.orgs.values()) >= 2
    print(f"\n{len(work)} tenant-pairs, 4 workers, {len(attempts)} runs started ({codes[0]} ran, {codes[75]} exit 75), "
          f"{delivered} notifications to {len(replicas)} replicas, {took:.1f} s")
