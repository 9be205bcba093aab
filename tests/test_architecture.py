"""docs/architecture.md's import rules, held against the code: each layer imports only the layers below it."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[1] / "mlconnector"


def imports_of(path: Path) -> set[str]:
    """The mlconnector modules a file imports (``from mlconnector.x import y`` counts as mlconnector.x and, where y
    is a module of the package, mlconnector.x.y)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("mlconnector"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mlconnector"):
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names
                         if (PACKAGE.parent / f"{node.module}.{alias.name}".replace(".", "/")).with_suffix(".py")
                         .exists() or (PACKAGE.parent / f"{node.module}.{alias.name}".replace(".", "/")).is_dir())
        elif isinstance(node, ast.ImportFrom) and node.level:  # relative: only inside the sandbox
            found.add("." * node.level + (node.module or ""))
    return found


def files(part: str) -> list[Path]:
    place = PACKAGE / part
    return sorted(place.rglob("*.py")) if place.is_dir() else [place.with_suffix(".py")]


def offending(part: str, forbidden: tuple[str, ...], allowed: tuple[str, ...] = ()) -> list[str]:
    return sorted(f"{path.relative_to(PACKAGE.parent)} imports {name}" for path in files(part)
                  for name in imports_of(path)
                  if name.startswith(forbidden) and not name.startswith(allowed))


@pytest.mark.parametrize("part, forbidden, allowed", [
    ("sandbox", ("mlconnector",), ("mlconnector.sandbox",)),  # the other party: nothing of the client side
    ("clock", ("mlconnector",), ()),  # below every layer
    ("systems", ("mlconnector.sync", "mlconnector.pairs", "mlconnector.api", "mlconnector.cli",
                 "mlconnector.webhooks", "mlconnector.demo", "mlconnector.sandbox"), ()),
    ("pairs", ("mlconnector.sync", "mlconnector.api", "mlconnector.cli", "mlconnector.state", "mlconnector.http",
               "mlconnector.sandbox", "mlconnector.systems"), ("mlconnector.systems.base",)),
    ("sync", ("mlconnector.api", "mlconnector.cli", "mlconnector.webhooks", "mlconnector.demo",
              "mlconnector.sandbox", "mlconnector.systems"), ("mlconnector.systems.base", "mlconnector.systems")),
    ("state", ("mlconnector.sync", "mlconnector.systems", "mlconnector.pairs", "mlconnector.api", "mlconnector.cli"),
     ()),
    ("flows", ("mlconnector.sync", "mlconnector.pairs", "mlconnector.api", "mlconnector.cli"), ()),
    ("metrics", ("mlconnector.sync", "mlconnector.systems", "mlconnector.pairs", "mlconnector.api", "mlconnector.cli",
                 "mlconnector.webhooks", "mlconnector.http", "mlconnector.auth"), ()),
    ("health", ("mlconnector.sync", "mlconnector.systems", "mlconnector.pairs", "mlconnector.api", "mlconnector.cli",
                "mlconnector.webhooks", "mlconnector.http", "mlconnector.auth"), ()),
    # what status and audit show comes from the state alone: no connector, no engine
    ("reports", ("mlconnector.sync", "mlconnector.systems", "mlconnector.pairs", "mlconnector.cli",
                 "mlconnector.webhooks", "mlconnector.http", "mlconnector.auth"), ()),
    # the tenant is asked for by config, secrets and state: it can import none of them
    ("tenants", ("mlconnector",), ("mlconnector.errors",)),
    ("fieldmap", ("mlconnector.sync", "mlconnector.pairs", "mlconnector.api", "mlconnector.cli", "mlconnector.state",
                  "mlconnector.http", "mlconnector.sandbox", "mlconnector.systems"), ("mlconnector.systems.base",)),
])
def test_each_layer_imports_only_what_the_map_allows(part, forbidden, allowed):
    assert offending(part, forbidden, allowed) == []


def test_the_engine_imports_no_connector_module_and_the_cli_no_engine_internals():
    connectors = ("mlconnector.systems.dynamics", "mlconnector.systems.zoho", "mlconnector.systems.zuora",
                  "mlconnector.systems.gp", "mlconnector.systems.finops")
    assert offending("sync", connectors) == []
    internals = tuple(f"mlconnector.sync.{m}" for m in ("decide", "pipeline", "bookkeeping", "writer", "targets"))
    assert offending("cli", internals) == []


def test_the_checker_sees_an_import_it_must_refuse(tmp_path, monkeypatch):
    fake = tmp_path / "mlconnector" / "sandbox"
    fake.mkdir(parents=True)
    (fake / "leak.py").write_text("from mlconnector.sync.decide import Decider\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", tmp_path / "mlconnector")
    assert offending("sandbox", ("mlconnector",), ("mlconnector.sandbox",)) == [
        "mlconnector/sandbox/leak.py imports mlconnector.sync.decide"]
