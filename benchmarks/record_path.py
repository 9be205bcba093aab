"""One record's path through the code, counted: a linked NAV customer whose city changed, synced to its Zoho
Account (`sync nav-zoho --flow customers`, NAV and Zoho emulated in-process). Every call made by the package's own
code (not the emulators', not the libraries') is traced, on every thread, in a run where nothing changed and in
one where that one customer did; the record's path is what the second adds to the first:

- functions: the package's functions it passes through that the quiet run did not;
- crossings: calls from a function of one module into a function of another (each call counted);
- into the engine / into the state file: calls entering the engine's modules, and state.py, from outside them.

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
    def __init__(self) -> None:
        self.functions: set[tuple[str, str]] = set()
        self.crossings = 0
        self.into_engine = 0
        self.into_state = 0
        self.by_pair: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()

    def __call__(self, frame: FrameType, event: str, arg: Any) -> None:
        if event != "call":
            return
        callee = _module(frame)
        if callee is None:
            return
        caller_frame = frame.f_back
        while caller_frame is not None and _module(caller_frame) is None:
            caller_frame = caller_frame.f_back  # through a library (a thread pool, httpx) to our own caller
        caller = _module(caller_frame) if caller_frame is not None else None
        with self._lock:
            self.functions.add((callee, frame.f_code.co_qualname if hasattr(frame.f_code, "co_qualname")
                                else frame.f_code.co_name))
            if caller is not None and caller != callee:
                self.crossings += 1
                self.by_pair[(caller, callee)] += 1
                if callee.startswith(ENGINE) and not caller.startswith(ENGINE):
                    self.into_engine += 1
                if callee.startswith("state"):
                    self.into_state += 1


def world(tmp: Path) -> tuple[Any, Any, str, Path, Any]:
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
    dynamics.set_web_service_user("SVC", "nav-key-for-the-count")
    company = dynamics.seed_demo("CRONUS USA, Inc.")
    router = HostRouter({"zoho.sandbox": InProcessTransport(zoho_app), "erp.sandbox": InProcessTransport(dynamics_app)})
    os.environ.update({"MLCONNECTOR_NAV_PASSWORD": "nav-key-for-the-count", "MLCONNECTOR_ZOHO_CLIENT_SECRET":
                       client.client_secret, "MLCONNECTOR_ZOHO_REFRESH_TOKEN": refresh,
                       "MLCONNECTOR_STATE": str(tmp / "state.db"), "MLCONNECTOR_SECRETS_DIR": str(tmp / "secrets")})
    config = tmp / "connections.toml"
    config.write_text(f'''[systems.nav]
kind = "nav"
base_url = "http://erp.sandbox:7048/DynamicsNAV110"
company = "{company}"
user = "SVC"

[systems.zoho]
kind = "zoho"
client_id = "{client.client_id}"
accounts_url = "http://zoho.sandbox"
api_domain = "http://zoho.sandbox"
upload_url = "http://zoho.sandbox"
''')
    return dynamics, zoho, company, config, router


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
        dynamics, zoho, company, config, router = world(Path(directory))
        runtime = api.Runtime(config_path=config, transport=router)
        assert api.sync(runtime, "nav-zoho", flows=["customers"]).exit_code == 0
        assert api.sync(runtime, "nav-zoho", flows=["customers"]).exit_code == 0  # reads the load back once
        quiet, _ = traced(lambda: api.sync(runtime, "nav-zoho", flows=["customers"]))
        dynamics.modify(company, "customers", "C00020", city="Evanston")
        busy, result = traced(lambda: api.sync(runtime, "nav-zoho", flows=["customers"]))
        router.close()
    stats = result.flows["customers"]
    assert stats.updated == 1, result.to_dict()
    print("one changed, linked NAV customer to its Zoho Account: what it adds to a run where nothing changed")
    print(f"  functions of the package passed: {len(busy.functions - quiet.functions)} "
          f"(the whole run {len(busy.functions)}, the quiet one {len(quiet.functions)})")
    print(f"  calls crossing a module boundary: {busy.crossings - quiet.crossings} "
          f"({busy.crossings} - {quiet.crossings})")
    print(f"  calls into the engine from outside it: {busy.into_engine - quiet.into_engine}")
    print(f"  calls into the state file's module: {busy.into_state - quiet.into_state}")
    added = busy.by_pair - quiet.by_pair
    layers: Counter[tuple[str, str]] = Counter()
    for (a, b), n in added.items():
        if layer(a) != layer(b):
            layers[(layer(a), layer(b))] += n
    print(f"  of them between layers: {sum(layers.values())} ("
          + ", ".join(f"{a} -> {b} {n}" for (a, b), n in layers.most_common()) + ")")
    print("  its crossings: " + ", ".join(f"{a} -> {b} {n}" for (a, b), n in added.most_common()))


if __name__ == "__main__":
    main()
