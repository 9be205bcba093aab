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
    # the secret store keeps secrets for every kind: what a connector needs is the connectors' to say
    ("secrets", ("mlconnector.systems", "mlconnector.sync", "mlconnector.pairs", "mlconnector.state",
                 "mlconnector.api", "mlconnector.cli"), ()),
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


def module_level_imports(path: Path) -> set[str]:
    """The package's modules a file imports when it is loaded (not inside functions, not for type checkers only)."""
    body = ast.parse(path.read_text()).body
    statements: list[ast.stmt] = []
    while body:
        node, body = body[0], body[1:]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        if isinstance(node, (ast.If, ast.Try)):
            body = [*node.body, *getattr(node, "orelse", []), *getattr(node, "finalbody", []),
                    *[s for h in getattr(node, "handlers", []) for s in h.body], *body]
            continue
        statements.append(node)
    module = ast.Module(body=statements, type_ignores=[])
    found: set[str] = set()
    for node in module.body:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("mlconnector"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mlconnector"):
            for alias in node.names:
                name = f"{node.module}.{alias.name}"
                found.add(name if (PACKAGE.parent / name.replace(".", "/")).with_suffix(".py").exists() else node.module)
    return found


def import_cycle(part: str) -> list[str]:
    """One cycle of module-level imports among the modules of ``part`` (a package's __init__ left out: it only
    gathers names), or []."""
    name_of = {path: ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts) for path in files(part)
               if path.name != "__init__.py"}
    graph = {name: {i for i in module_level_imports(path) if i in name_of.values()} for path, name in name_of.items()}
    done: set[str] = set()

    def visit(name: str, trail: list[str]) -> list[str]:
        if name in trail:
            return trail[trail.index(name):] + [name]
        if name in done:
            return []
        for other in sorted(graph[name]):
            if cycle := visit(other, trail + [name]):
                return cycle
        done.add(name)
        return []

    for name in sorted(graph):
        if cycle := visit(name, []):
            return cycle
    return []


@pytest.mark.parametrize("part", ["sync", "state", "systems", "pairs", "fieldmap", "secrets"])
def test_a_layers_modules_import_one_another_without_a_cycle(part):
    assert import_cycle(part) == []


def test_the_cycle_checker_sees_a_cycle(tmp_path, monkeypatch):
    fake = tmp_path / "mlconnector" / "sync"
    fake.mkdir(parents=True)
    (fake / "a.py").write_text("from mlconnector.sync.b import B\n")
    (fake / "b.py").write_text("import json\n\nfrom mlconnector.sync.a import A\n")
    (fake / "c.py").write_text("def late():\n    from mlconnector.sync.a import A\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", tmp_path / "mlconnector")
    assert import_cycle("sync") == ["mlconnector.sync.a", "mlconnector.sync.b", "mlconnector.sync.a"]
