"""Every test gets its own state file, config path, secrets directory and an in-memory keyring:
nothing touches the user's real keyring, state dir or the network beyond loopback."""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import keyring
import pytest

from tests import fakes
# Imported now: it reads MLCONNECTOR_TEST_POSTGRES_URL before each test's environment is cleared (isolated).
from tests.postgres import schema_of_its_own
from tests.helpers import MemoryKeyring
from tests.reliability import leaks

# Environment variables whose values are secrets (MLCONNECTOR_ZOHO_CLIENT_SECRET, ..._PASSWORD, the master key).
_SECRET_ENV_ENDINGS = ("_SECRET", "_PASSWORD", "_TOKEN", "_KEY", "_CLIENT_STATE")


def _secret_like(value: str) -> bool:
    """Not the addresses and indexes kept next to secrets (Zoho's accounts server, the keyring's field list)."""
    return not value.startswith(("http://", "https://", "/", "[")) and value not in ("true", "false")


# Shared by the controller and the workers of a run (pytest-xdist): the registries of secrets and outputs each
# worker leaves behind for the scan at the end, and the subprocesses' compiled modules.
_RUN_DIR = "MLC_TEST_RUN_DIR"


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def pytest_configure(config: pytest.Config) -> None:
    if not _is_worker(config):  # workers are started after this and inherit the environment
        run_dir = tempfile.mkdtemp(prefix="mlconnector-tests-")
        os.environ[_RUN_DIR] = run_dir
        # The suite starts the real CLI in a subprocess a few hundred times. Where PYTHONDONTWRITEBYTECODE is set
        # (container images often set it), each would compile the whole package again (about 0.3 s of CPU
        # apiece): they keep their compiled modules in the run's throwaway folder, never next to the sources.
        os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
        os.environ["PYTHONPYCACHEPREFIX"] = os.path.join(run_dir, "pycache")
    # Tables printed to a pipe are as wide as COLUMNS says; workers would otherwise get 80.
    os.environ["COLUMNS"] = "160"


# The files that take longest (a minute and more of CPU for the first two), longest first.
SLOWEST_FILES = ("tests/reliability/test_crash_consistency_more_pairs.py", "tests/reliability/test_crash_consistency.py",
                 "tests/test_crash.py", "tests/pairs/test_two_way_edits.py", "tests/test_benchmark_other_pairs.py",
                 "tests/reliability/test_fault_storms.py", "tests/pairs/test_gp_zoho.py", "tests/pairs/test_bc_zoho.py",
                 "tests/test_benchmark_harness.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The longest files first, then the rest of the reliability suite, then everything else: two workers finish
    sooner when the longest files do not start last. xdist keeps this order (`--no-loadscope-reorder` in
    pyproject.toml; by default it would hand out the files with the most tests first, and these have few). The order
    within each file, and among the rest, stays as collected."""
    def rank(item: pytest.Item) -> tuple[int, int]:
        path = item.nodeid.split("::", 1)[0]
        if path in SLOWEST_FILES:
            return 0, SLOWEST_FILES.index(path)
        return (1 if path.startswith("tests/reliability/") else 2), 0

    items.sort(key=rank)


def pytest_unconfigure(config: pytest.Config) -> None:
    if not _is_worker(config):
        shutil.rmtree(os.environ.pop(_RUN_DIR), ignore_errors=True)


@pytest.fixture(autouse=True)
def root_logging_restored() -> Any:
    """`mlconnector -v` configures the root logger for the process; under CliRunner its handler writes to that
    invocation's captured stream, closed once it returns: later tests in the worker must not inherit it."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> MemoryKeyring:
    """Point every default location at the test's own folder and use a throwaway keyring."""
    for name in list(os.environ):
        if name.startswith("MLCONNECTOR_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("MLCONNECTOR_STATE", str(tmp_path / "state" / "state.db"))
    monkeypatch.setenv("MLCONNECTOR_CONFIG", str(tmp_path / "connections.toml"))
    monkeypatch.setenv("MLCONNECTOR_SECRETS_DIR", str(tmp_path / "secrets"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg-state"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    ring = MemoryKeyring()
    previous = keyring.get_keyring()
    keyring.set_keyring(ring)
    yield ring
    keyring.set_keyring(previous)
    # Every secret a test used joins the session's registry; its state files and logs are scanned at the end.
    environ = os.environ
    leaks.register(v for v in [*ring.passwords.values(),
                               *(v for k, v in environ.items() if k.startswith("MLCONNECTOR_")
                                 and k.endswith(_SECRET_ENV_ENDINGS))] if _secret_like(v))
    leaks.FILES.extend(p for pattern in ("*.db", "*.db-wal", "*.log") for p in tmp_path.rglob(pattern))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """What every test printed or logged, and its traceback: scanned for secrets when the session ends."""
    for _, text in report.sections:
        leaks.OUTPUTS.append(text)
    if report.failed and report.longrepr is not None:
        leaks.OUTPUTS.append(str(report.longrepr))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """After the whole suite, every worker's registry merged: no secret value in any output, traceback, state
    file, log or cassette."""
    run_dir = Path(os.environ[_RUN_DIR])
    if _is_worker(session.config):
        leaks.save(run_dir / f"leaks-{session.config.workerinput['workerid']}.json")
        return
    for path in sorted(run_dir.glob("leaks-*.json")):
        leaks.load(path)
    found = leaks.find_leaks([Path(__file__).parent / "cassettes"])
    if found:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"SECRET LEAK: {len(found)} place(s): " + "; ".join(found[:10]), red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """What the reliability suite did (tests/reliability), summed over the workers, for README."""
    if not leaks.FIGURES:
        return
    figures = dict(sorted(leaks.FIGURES.items()))
    terminalreporter.write_line("reliability figures: " + ", ".join(f"{k}={v}" for k, v in figures.items()))
    target = os.environ.get("MLCONNECTOR_RELIABILITY_FIGURES")
    if target:
        Path(target).write_text(json.dumps(figures, indent=2) + "\n")


@pytest.fixture(params=["sqlite", "postgres"])
def state_store(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Runs the test once with the default SQLite state file and once with the state in PostgreSQL (a schema of
    the test's own, chosen as a user would: MLCONNECTOR_STATE_URL). Yields "sqlite" or the database's URL."""
    if request.param == "sqlite":
        yield "sqlite"
        return
    with schema_of_its_own() as url:
        monkeypatch.setenv("MLCONNECTOR_STATE_URL", url)
        yield url


@pytest.fixture
def erp(tmp_path: Path) -> fakes.Store:
    return fakes.Store(tmp_path / "erp.db")


@pytest.fixture
def crm(tmp_path: Path) -> fakes.Store:
    return fakes.Store(tmp_path / "crm.db")


@pytest.fixture
def config_file(tmp_path: Path, erp: fakes.Store, crm: fakes.Store) -> Path:
    """A connections.toml naming the two test systems and the test pair."""
    path = tmp_path / "connections.toml"
    path.write_text(f'''
[systems.erp]
kind = "testerp"
path = "{erp.path}"

[systems.crm]
kind = "testcrm"
path = "{crm.path}"

[pairs.erp-crm]
overlap_seconds = 60
batch_size = 10
''')
    return path
