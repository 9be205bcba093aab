"""Scenario 6: what operators get wrong. Broken configs, bad flags, unknown pairs, bad dates, unreadable or corrupt
state files and wrong credentials, each through the real CLI: one clear line that names the fix, the documented
exit code, and never a traceback. A corrupt state file is left exactly as it was."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from typer.testing import CliRunner

from mlconnector.cli.main import build_app

from mlconnector.secrets import SecretStore
from tests.reliability.harness import count, start_rig


@dataclass(frozen=True)
class Case:
    name: str
    args: tuple[str, ...]
    code: int
    says: str                                     # what the one line must contain: the fix
    arrange: Callable[[Path], dict[str, str] | None] | None = None   # edits the case's copy; may return env


# These go through a real process each; the rest run in-process through the same Typer app, which is faster.
OWN_PROCESS = ("config file missing", "unknown option", "state", "wrong", "missing", "BC app", "misspelt",
               "master key", "port closed", "COLUMNS", "faults")


def _edit(old: str, new: str) -> Callable[[Path], None]:
    def arrange(case: Path) -> None:
        config = case / "connections.toml"
        text = config.read_text()
        assert old in text, old
        config.write_text(text.replace(old, new, 1))
    return arrange


def _append(extra: str) -> Callable[[Path], None]:
    def arrange(case: Path) -> None:
        config = case / "connections.toml"
        config.write_text(config.read_text() + "\n" + extra + "\n")
    return arrange


def _write(text: str) -> Callable[[Path], None]:
    return lambda case: (case / "connections.toml").write_text(text) and None


def _secret(system: str, field: str, value: str | None) -> Callable[[Path], None]:
    def arrange(case: Path) -> None:
        store = SecretStore(backend="file", directory=case / "connections.secrets", environ={})
        store.delete(system, "access_token_cache")
        if value is None:
            store.delete(system, field)
        else:
            store.set(system, field, value)
    return arrange


def _state(content: bytes | None = None, *, truncate: int | None = None) -> Callable[[Path], None]:
    def arrange(case: Path) -> None:
        path = case / "connections.state.db"
        if truncate is not None:
            with sqlite3.connect(path) as db:
                db.execute("CREATE TABLE IF NOT EXISTS filler (x)")
                db.executemany("INSERT INTO filler VALUES (?)", [("x" * 500,)] * 50)
            path.write_bytes(path.read_bytes()[:truncate])
        else:
            path.write_bytes(content or b"")
    return arrange


def _master_key(case: Path) -> dict[str, str]:
    return {"MLCONNECTOR_MASTER_KEY": Fernet.generate_key().decode()}


def _env(**values: str) -> Callable[[Path], dict[str, str]]:
    return lambda case: dict(values)


def _foreign_state(case: Path) -> None:
    """The state path names another program's SQLite file (a typo in --state, a shared directory)."""
    path = case / "connections.state.db"
    for leftover in case.glob("connections.state.db*"):
        leftover.unlink()
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
        db.execute("INSERT INTO invoices (total) VALUES (12.5)")
    db.close()


_NAV_URL = 'base_url = "http://127.0.0.1:'


CASES = [
    # configuration
    Case("config file missing", ("--config", "/nonexistent/connections.toml", "sync", "nav-zoho"), 2, "mlconnector init"),
    Case("config not TOML", ("sync", "nav-zoho"), 2, "line", _write("[systems.nav\nkind = 'nav'\n")),
    Case("config empty", ("sync", "nav-zoho"), 2, "[systems.NAME]", _write("")),
    Case("system without kind", ("sync", "nav-zoho"), 2, "kind", _edit('kind = "nav"\n', "")),
    Case("unknown kind", ("sync", "nav-zoho"), 2, "must be nav", _edit('kind = "nav"', 'kind = "navision"')),
    Case("secret in the config", ("sync", "nav-zoho"), 2, "secrets set", _edit('user = "MLCONNECTOR"', 'user = "MLCONNECTOR"\npassword = "hunter2hunter2"')),
    Case("pair names an unknown system", ("sync", "nav-zoho"), 2, "systems", _edit('systems = { erp = "nav"', 'systems = { erp = "navv"')),
    Case("pair role of the wrong kind", ("sync", "nav-zoho"), 2, "must be", _edit('systems = { erp = "nav"', 'systems = { erp = "zoho"')),
    Case("nav without base_url", ("sync", "nav-zoho"), 2, "base_url", _edit('base_url = "http://127.0.0.1', 'xbase_url = "http://127.0.0.1')),
    Case("bc auth unknown", ("sync", "bc-zoho"), 2, "auth must be", _edit('auth = "entra"', 'auth = "kerberos"')),
    Case("zoho auth unknown", ("sync", "nav-zoho"), 2, "auth must be", _edit('edition = "enterprise"', 'edition = "enterprise"\nauth = "password"')),
    Case("overlap of the wrong type", ("sync", "nav-zoho"), 2, "overlap_seconds", _edit("overlap_seconds = 60", 'overlap_seconds = "soon"')),
    Case("conflict rule unknown", ("sync", "nav-zoho"), 2, "conflict_rule", _append('[pairs.nav-zoho.options]\nconflict_rule = "coin-flip"')),
    Case("page size of the wrong type", ("sync", "nav-zoho"), 2, "page_size", _edit('api = "odata"', 'api = "odata"\npage_size = "big"')),
    Case("nav api mode unknown", ("sync", "nav-zoho"), 2, "api must be", _edit('api = "odata"', 'api = "soap"')),
    Case("pair flows name an unknown flow", ("sync", "nav-zoho"), 2, "has no flow", _edit("overlap_seconds = 60", 'overlap_seconds = 60\nflows = ["customerz"]')),
    Case("secrets backend unknown", ("sync", "nav-zoho"), 2, "backend", _edit('backend = "file"', 'backend = "vault"')),
    Case("retry setting of the wrong type", ("sync", "nav-zoho"), 2, "retry_attempts", _edit("retry_attempts = 4", 'retry_attempts = "many"')),
    # numbers out of range, values not in their set (issue 22: accepted, or a bug's exit 1, before)
    Case("overlap beyond any clock", ("sync", "nav-zoho"), 2, "overlap_seconds = 9223372036854775807: use a whole number from 0", _edit("overlap_seconds = 60", "overlap_seconds = 9223372036854775807")),
    Case("page size 0", ("sync", "nav-zoho"), 2, "page_size = 0: use a whole number from 1", _edit('api = "odata"', 'api = "odata"\npage_size = 0')),
    Case("page size negative", ("sync", "nav-zoho"), 2, "page_size = -5: use a whole number from 1", _edit('api = "odata"', 'api = "odata"\npage_size = -5')),
    Case("retry attempts 0", ("sync", "nav-zoho"), 2, "retry_attempts = 0: use a whole number from 1", _edit("retry_attempts = 4", "retry_attempts = 0")),
    Case("zoho concurrency 0", ("sync", "nav-zoho"), 2, "concurrency = 0: use a whole number from 1", _edit('edition = "enterprise"', 'edition = "enterprise"\nconcurrency = 0')),
    Case("batch size 0", ("sync", "nav-zoho"), 2, "batch_size = 0: use a whole number from 1", _edit("overlap_seconds = 60", "overlap_seconds = 60\nbatch_size = 0")),
    Case("zoho edition unknown", ("sync", "nav-zoho"), 2, "edition = 'platinum': use one of free, standard", _edit('edition = "enterprise"', 'edition = "platinum"')),
    Case("state path empty", ("sync", "nav-zoho"), 2, "state.path must be the path", _edit('path = "connections.state.db"', 'path = ""')),
    Case("base_url not http", ("sync", "nav-zoho"), 2, "systems.nav.base_url = 'ftp://", _edit(_NAV_URL, 'base_url = "ftp://127.0.0.1:')),
    Case("base_url without a scheme", ("sync", "nav-zoho"), 2, "is not an http(s) address", _edit(_NAV_URL, 'base_url = "127.0.0.1:')),
    Case("base_url port above 65535", ("ping", "nav"), 2, "port must be a number from 1 to 65535", _edit(_NAV_URL, 'base_url = "http://127.0.0.1:70000/x" #')),
    # secrets where they do not belong (issue 22)
    Case("credentials in base_url", ("sync", "nav-zoho"), 2, "secrets set nav", _edit(_NAV_URL, 'base_url = "http://MLCONNECTOR:hunter2hunter2@127.0.0.1:')),
    Case("secret in a URL's query", ("sync", "nav-zoho"), 2, "secret in its query", _edit('api_domain = "http://127.0.0.1:', 'api_domain = "http://127.0.0.1:1/?access_token=abc&x=')),
    Case("accesskey", ("sync", "nav-zoho"), 2, "secrets set nav password", _edit('api = "odata"', 'api = "odata"\naccesskey = "k3yk3yk3y"')),
    Case("webServiceAccessKey", ("sync", "nav-zoho"), 2, "secrets set nav password", _edit('api = "odata"', 'api = "odata"\nwebServiceAccessKey = "k3yk3yk3y"')),
    Case("private_key_pem", ("sync", "nav-zoho"), 2, "looks like a secret", _edit('api = "odata"', 'api = "odata"\nprivate_key_pem = "-----BEGIN"')),
    Case("token_value", ("sync", "nav-zoho"), 2, "secrets set zoho refresh_token", _edit('edition = "enterprise"', 'edition = "enterprise"\ntoken_value = "1000.abc"')),
    Case("password in an array of tables", ("sync", "nav-zoho"), 2, "looks like a secret", _append('[[pairs.nav-zoho.options.users]]\nname = "a"\npassword = "hunter2hunter2"')),
    # flags, pairs, dates
    Case("unknown pair", ("sync", "gp-zoho-x"), 2, "No such command"),
    Case("unknown flow", ("sync", "nav-zoho", "--flow", "customerz"), 2, "has no flow"),
    Case("unknown option", ("sync", "nav-zoho", "--fulll"), 2, "No such option"),
    Case("since not a date", ("sync", "nav-zoho", "--since", "yesterday"), 2, "ISO date"),
    Case("since impossible date", ("sync", "nav-zoho", "--since", "2026-13-45"), 2, "ISO date"),
    Case("audit since not a date", ("audit", "--since", "last week"), 2, "ISO date"),
    Case("replay without a filter", ("replay",), 2, "--all"),
    Case("listen port not a number", ("listen", "--port", "eighty"), 2, "valid integer"),
    Case("since before any record", ("sync", "nav-zoho", "--since", "0001-01-01"), 2, "--since '0001-01-01': give a time from 1900-01-01"),
    Case("audit limit beyond any number", ("audit", "--limit", "99999999999999999999"), 2, "--limit"),
    Case("listen port above 65535", ("listen", "--port", "70000"), 2, "--port"),
    Case("listen port negative", ("listen", "--port", "-1"), 2, "--port"),
    Case("sandbox port above 65535", ("sandbox", "serve", "--port", "70000"), 2, "--port"),
    Case("COLUMNS not a number", ("status",), 2, "COLUMNS='abc' is not a width", _env(COLUMNS="abc")),
    Case("demo seed unknown", ("demo", "--seed", "huge"), 2, "--seed"),
    Case("sandbox faults share above 1", ("sandbox", "serve", "--port", "0", "--faults", "429=2", "--config-out", "/nonexistent/s.toml"), 2, "429 must be a share from 0 to 1"),
    Case("json errors are json", ("sync", "nav-zoho", "--json", "--since", "yesterday"), 2, '"exit_code": 2'),
    Case("ping an unknown system", ("ping", "navision"), 2, "navision"),
    # state files
    Case("state path is a directory", ("--state", "/tmp", "sync", "nav-zoho"), 2, "--state"),
    Case("state file is not a database", ("sync", "nav-zoho"), 2, "--state", _state(b"these are not the droids\n" * 100)),
    Case("state file is random bytes", ("status",), 2, "--state", _state(bytes(range(256)) * 64)),
    Case("state file truncated", ("audit",), 2, "--state", _state(truncate=3000)),
    Case("state dir cannot be created", ("--state", "/proc/self/nope/state.db", "status"), 2, "--state"),
    Case("state dir cannot be written", ("--state", "/proc/self/state.db", "sync", "nav-zoho"), 2, "--state"),
    Case("state file of another program", ("sync", "nav-zoho"), 2, "another program's SQLite database", _foreign_state),
    # secrets set
    Case("secret from empty standard input", ("secrets", "set", "nav", "password"), 2, "no value for password of nav on standard input"),
    Case("secret for a system not configured", ("secrets", "set", "navv", "password"), 2, "no [systems.navv]"),
    Case("secret field with a typo", ("secrets", "set", "nav", "pasword"), 2, "uses password"),
    # credentials
    Case("wrong NAV web service key", ("sync", "nav-zoho"), 4, "secrets set nav password", _secret("nav", "password", "wrong-key-wrong-key")),
    Case("NAV key missing", ("sync", "nav-zoho"), 2, "secrets set nav password", _secret("nav", "password", None)),
    Case("wrong Zoho client secret", ("sync", "nav-zoho"), 4, "secrets set zoho client_secret", _secret("zoho", "client_secret", "0" * 42)),
    Case("wrong Zoho refresh token", ("sync", "nav-zoho"), 4, "mlconnector auth zoho", _secret("zoho", "refresh_token", "1000." + "ab" * 32)),
    Case("wrong BC client secret", ("sync", "bc-zoho"), 4, "secrets set bc client_secret", _secret("bc", "client_secret", "not-the-secret-at-all")),
    Case("BC app unknown", ("sync", "bc-zoho"), 4, "check client_id and tenant", _edit('client_id = "', 'client_id = "0')),
    Case("NAV company misspelt", ("sync", "nav-zoho"), 2, "case-sensitive", _edit('company = "CRONUS International Ltd."', 'company = "cronus international ltd."')),
    Case("master key of another file", ("sync", "nav-zoho"), 2, "cannot decrypt", _master_key),
]


def _close_nav_port(case: Path) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = case / "connections.toml"
    text = config.read_text()
    start = text.index('base_url = "http://127.0.0.1:')
    end = text.index("/DynamicsNAV110", start)
    config.write_text(text[:start] + f'base_url = "http://127.0.0.1:{port}' + text[end:])


CASES.append(Case("NAV port closed", ("ping", "nav"), 5, "service tier", _close_nav_port))


def _digest(directory: Path) -> str:
    state = directory / "connections.state.db"
    return hashlib.sha256(state.read_bytes()).hexdigest() if state.exists() else ""


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, tuple[int, str, str, str, str]]]:
    base = tmp_path_factory.mktemp("bad-input")
    (base / "rig").mkdir()
    # A module's fixture runs before each test's own isolation: a case that falls back to the user's default state
    # or config directory must find this module's, never the real ones.
    homes = pytest.MonkeyPatch()
    for name in ("XDG_STATE_HOME", "XDG_CONFIG_HOME"):
        homes.setenv(name, str(base / name.lower()))
    yield from _results(base)
    homes.undo()


def _results(base: Path) -> Iterator[dict[str, tuple[int, str, str, str, str]]]:
    rig = start_rig(base / "rig", ("nav", "bc"))
    try:
        warm = rig.cli("sync", "nav-zoho")  # a state file and cached tokens, as on a host that has run before
        assert warm.returncode == 0, warm.stderr

        def prepare(case: Case) -> tuple[Path, dict[str, str], str]:
            directory = base / case.name.replace(" ", "-")
            shutil.copytree(rig.tmp, directory)
            env_extra = case.arrange(directory) if case.arrange else None
            return directory, {"MLCONNECTOR_CONFIG": str(directory / "connections.toml"), **(env_extra or {})}, \
                _digest(directory)

        def in_own_process(case: Case) -> tuple[int, str, str, str, str]:
            directory, extra, before = prepare(case)
            try:
                result = rig.cli(*case.args, env=rig.env(**extra), timeout=60, stdin="")
            except subprocess.TimeoutExpired:  # this case fails, the others still run
                return -1, "", f"still running after 60 s: {case.args}", before, _digest(directory)
            return result.returncode, result.stdout, result.stderr, before, _digest(directory)

        def in_process(case: Case) -> tuple[int, str, str, str, str]:
            directory, extra, before = prepare(case)
            unset: dict[str, str | None] = {k: None for k in os.environ if k.startswith("MLCONNECTOR_")}
            result = CliRunner().invoke(build_app(), list(case.args), env={**unset, **extra, "NO_COLOR": "1"})
            if result.exception and not isinstance(result.exception, SystemExit):
                raise result.exception  # a traceback: the test fails and shows it
            rig.seen(result.stdout, result.stderr)
            return result.exit_code, result.stdout, result.stderr, before, _digest(directory)

        separate = [c for c in CASES if any(word in c.name for word in OWN_PROCESS)]
        with ThreadPoolExecutor(3) as pool:
            futures = {case.name: pool.submit(in_own_process, case) for case in separate}
            done = {case.name: in_process(case) for case in CASES if case not in separate}
            done.update({name: future.result() for name, future in futures.items()})
        yield done
    finally:
        rig.stop()


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_a_mistake_gives_one_line_naming_the_fix_and_the_documented_exit_code(case: Case, results):
    code, out, err, before, after = results[case.name]
    assert "Traceback" not in out + err, err
    assert code == case.code, f"exit {code}, documented {case.code}: {err or out}"
    assert case.says in err + out, err + out
    if case.args[0] != "ping" and (code != 2 or err.startswith("error: ")):  # ping reports per system
        lines = [line for line in (err or out).splitlines() if line.strip()]
        assert len(lines) == 1, f"more than one line: {err}"
    if case.name.startswith("state file"):
        assert before == after, "the corrupt state file was changed"
    count("bad_input_cases")


def test_json_commands_print_their_errors_as_json(results):
    code, out, err, _, _ = results["json errors are json"]
    assert json.loads(out) == {"error": err.strip().removeprefix("error: "), "exit_code": code} and code == 2


def test_there_are_at_least_thirty_cases():
    assert len(CASES) >= 30


def test_listen_on_a_busy_port_or_a_foreign_address_exits_2_before_saying_it_listens(make_rig):
    rig = make_rig(erps=("nav",))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = rig.cli("listen", "--port", str(busy.getsockname()[1]), timeout=30)
    # 192.0.2.1 (TEST-NET-1) is an address of no machine: it cannot be listened on here.
    foreign = rig.cli("listen", "--host", "192.0.2.1", "--port", "8765", timeout=30)
    for result, names in ((taken, "--port"), (foreign, "--host 192.0.2.1")):
        assert result.returncode == 2, result.stderr
        assert "listening" not in result.stderr and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and names in result.stderr, result.stderr
        count("bad_input_cases")
