"""One record's path through the code, counted: a linked customer whose city changed in Business Central (API
v2.0), synced to its Zoho Account (`sync bc-zoho --flow customers`, both emulated
in-process). Every call the package's own code makes (not the emulators', not the libraries') while the engine
runs the sync (from `sync` entering the engine until it returns, config and connectors already built) is traced,
on every thread, and counted:

- functions: the package's functions it passes through;
- crossings: calls from a function of one module into a function of another (each call counted), and of them
  those between layers (engine, state, connectors, mappings, the contract's data types, shared pieces);
- into the engine / into the state file: calls entering the engine's modules, and the state file's, from outside
  them;
- what the changed record adds: the same counts less those of a sync just before it, where nothing changed (its
  batch's write, which it has alone, included);
- and what a second changed record adds: a sync of two changed records less one of a single changed record (one
  record's own path in a batch whose write the others share).

The tokens the first sync mints are kept in the secret store (an encrypted file), as a user's are: the counted
sync, like any within a token's hour, mints none.

    python -m benchmarks.record_path
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
from collections import Counter
from pathlib import Path
from types import FrameType
from typing import Any


PACKAGE = Path(__import__("mlconnector").__file__).parent
ENGINE = ("sync", "engine.py", "echo.py", "fingerprints.py")
# The layers of docs/architecture.md, by file (the contract's data types, Record and friends, are their own).
LAYERS = (("engine", ENGINE), ("state", ("state",)), ("contract", ("systems/base.py",)),
          ("connectors", ("systems",)), ("mappings", ("pairs", "flows.py")))


def layer(module: str) -> str:
    return next((name for name, prefixes in LAYERS if module.startswith(prefixes)), "shared")


def _module(frame: FrameType) -> str | None:
    """The package module a frame runs in (relative path), or None outside it and in the emulators."""
    path = frame.f_code.co_filename
    if not path.startswith(str(PACKAGE)):
        return None
    rel = os.path.relpath(path, PACKAGE)
    return None if rel.startswith("sandbox") else rel


class Tracer:
    """Counts the package's calls while ``active`` (set while the engine's ``sync`` runs, on any thread)."""

    def __init__(self) -> None:
        self.functions: set[tuple[str, str]] = set()
        self.crossings = 0
        self.into_engine = 0
        self.into_state = 0
        self.by_pair: Counter[tuple[str, str]] = Counter()
        self.active = False
        self._lock = threading.Lock()

    def __call__(self, frame: FrameType, event: str, arg: Any) -> None:
        if event not in ("call", "return"):
            return
        callee = _module(frame)
        if callee is None:
            return
        name = frame.f_code.co_qualname if hasattr(frame.f_code, "co_qualname") else frame.f_code.co_name
        if name == "Engine.sync" and callee.startswith(("sync", "engine.py")):
            self.active = event == "call"
            return
        if event != "call" or not self.active:
            return
        caller_frame = frame.f_back
        while caller_frame is not None and _module(caller_frame) is None:
            caller_frame = caller_frame.f_back  # through a library (a thread pool, httpx) to our own caller
        caller = _module(caller_frame) if caller_frame is not None else None
        with self._lock:
            self.functions.add((callee, name))
            if caller is not None and caller != callee:
                self.crossings += 1
                self.by_pair[(caller, callee)] += 1
                if callee.startswith(ENGINE) and not caller.startswith(ENGINE):
                    self.into_engine += 1
                if callee.startswith("state") and not caller.startswith("state"):
                    self.into_state += 1


def world(tmp: Path) -> tuple[Any, str, Path, Any]:
    from cryptography.fernet import Fernet

    from mlconnector.sandbox.common import HostRouter, InProcessTransport
    from mlconnector.sandbox.dynamics import create_app as create_dynamics
    from mlconnector.sandbox.zoho import create_app as create_zoho

    zoho_app = create_zoho(api_domain="http://zoho.sandbox")
    zoho = zoho_app.state.zoho
    client = zoho.register_client()
    refresh = zoho.issue_refresh_token(client.client_id)
    zoho.mark_unique("Accounts", "Account_Number")
    dynamics_app = create_dynamics()
    dynamics = dynamics_app.state.dynamics
    tenant, app_id, secret = "contoso.onmicrosoft.com", "6f1c2a3b-0000-4000-8000-0000000000bc", "bc~secret-for-the-count"
    dynamics.register_app(tenant, app_id, secret)
    company = dynamics.seed_demo("CRONUS USA, Inc.")
    router = HostRouter({"zoho.sandbox": InProcessTransport(zoho_app), "erp.sandbox": InProcessTransport(dynamics_app)})
    os.environ.update({"MLCONNECTOR_BC_CLIENT_SECRET": secret, "MLCONNECTOR_ZOHO_CLIENT_SECRET":
                       client.client_secret, "MLCONNECTOR_ZOHO_REFRESH_TOKEN": refresh,
                       "MLCONNECTOR_STATE": str(tmp / "state.db"), "MLCONNECTOR_SECRETS_DIR": str(tmp / "secrets"),
                       # A secret store the tokens are kept in, as a user's is (`secrets init-file`): the counted run
                       # reuses the tokens the first run minted, as every run within a token's hour does.
                       "MLCONNECTOR_MASTER_KEY": Fernet.generate_key().decode()})
    config = tmp / "connections.toml"
    config.write_text(f'''[systems.bc]
kind = "bc"
tenant = "{tenant}"
environment = "production"
client_id = "{app_id}"
company = "{company}"
base_url = "http://erp.sandbox/v2.0/{tenant}/production"
token_url = "http://erp.sandbox/{tenant}/oauth2/v2.0/token"

[systems.zoho]
kind = "zoho"
client_id = "{client.client_id}"
accounts_url = "http://zoho.sandbox"
api_domain = "http://zoho.sandbox"
upload_url = "http://zoho.sandbox"
''')
    return dynamics, company, config, router


def traced(run: Any) -> tuple[Tracer, Any]:
    tracer = Tracer()
    threading.setprofile(tracer)
    sys.setprofile(tracer)
    try:
        result = run()
    finally:
        sys.setprofile(None)
        threading.setprofile(None)  # type: ignore[arg-type]
    return tracer, result


def main() -> None:
    from mlconnector import api

    with tempfile.TemporaryDirectory() as directory:
        dynamics, company, config, router = world(Path(directory))
        runtime = api.Runtime(config_path=config, transport=router)
        assert api.sync(runtime, "bc-zoho", flows=["customers"]).exit_code == 0
        assert api.sync(runtime, "bc-zoho", flows=["customers"]).exit_code == 0  # reads the load back once
        quiet, _ = traced(lambda: api.sync(runtime, "bc-zoho", flows=["customers"]))
        dynamics.modify(company, "customers", "C00020", city="Evanston")
        tracer, result = traced(lambda: api.sync(runtime, "bc-zoho", flows=["customers"]))
        dynamics.modify(company, "customers", "C00020", city="Skokie")
        one, _ = traced(lambda: api.sync(runtime, "bc-zoho", flows=["customers"]))
        dynamics.modify(company, "customers", "C00020", city="Wilmette")
        dynamics.modify(company, "customers", "C00010", city="Glencoe")
        two, second = traced(lambda: api.sync(runtime, "bc-zoho", flows=["customers"]))
        router.close()
    stats = result.flows["customers"]
    assert stats.updated == 1, result.to_dict()
    assert second.flows["customers"].updated == 2, second.to_dict()
    layers: Counter[tuple[str, str]] = Counter()
    for (a, b), n in tracer.by_pair.items():
        if layer(a) != layer(b):
            layers[(layer(a), layer(b))] += n
    print(f"one changed, linked Business Central customer to its Zoho Account (read {stats.read}, "
          f"updated {stats.updated}), while the engine runs the sync:")
    print(f"  functions of the package passed: {len(tracer.functions)}")
    print(f"  calls crossing a module boundary: {tracer.crossings}; between layers: {sum(layers.values())} ("
          + ", ".join(f"{a} -> {b} {n}" for (a, b), n in layers.most_common()) + ")")
    print(f"  calls into the engine from outside it: {tracer.into_engine}")
    print(f"  calls into the state file: {tracer.into_state}")
    # The same sync with nothing changed: what is left is what the one record adds (its mapping, write, bookkeeping).
    print(f"  of them, what the changed record adds to a sync where nothing changed: functions "
          f"{len(tracer.functions - quiet.functions)}, module crossings {tracer.crossings - quiet.crossings}, "
          f"calls into the state file {tracer.into_state - quiet.into_state}")
    print(f"  what a second changed record adds to the sync of one: functions {len(two.functions - one.functions)}, "
          f"module crossings {two.crossings - one.crossings}, calls into the state file "
          f"{two.into_state - one.into_state}")


if __name__ == "__main__":
    main()
