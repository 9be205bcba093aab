"""Scenario 5: no secret value (client secrets, refresh and access tokens, web service keys, the clientState and
channel token, the master key) appears in any CLI output, log, traceback, state file, audit row or cassette.
Here for what this test process has run so far; after the whole suite, every worker's registry merged, in
tests/conftest.py (pytest_sessionfinish), which fails the run on a find."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from mlconnector.cli.main import build_app
from tests.reliability import leaks
from tests.reliability.harness import ROOT, count

CASSETTES = Path(__file__).parents[1] / "cassettes"


def test_typer_never_shows_locals_in_tracebacks():
    assert build_app().pretty_exceptions_show_locals is False


def test_a_crash_with_debug_on_prints_no_secret_held_in_a_frame(tmp_path):
    # MLCONNECTOR_DEBUG=1 lets a bug's traceback through: it must not carry the values of the frame's locals.
    secret = "sk-live-" + os.urandom(12).hex()
    plugin = tmp_path / "crashing_plugin.py"
    plugin.write_text(
        "import os\n"
        "from mlconnector.systems import register_kind\n"
        "def crashy(system, context):\n"
        "    client_secret = os.environ['CRASHY_CLIENT_SECRET']  # held by the frame, not in the source\n"
        "    raise RuntimeError('a bug')\n"
        "def register():\n"
        "    register_kind('crashy', crashy)\n")
    config = tmp_path / "connections.toml"
    config.write_text('[systems.crashy]\nkind = "crashy"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLCONNECTOR_")}
    env.update(PYTHONPATH=f"{tmp_path}{os.pathsep}{ROOT}", MLCONNECTOR_PLUGINS="crashing_plugin",
               MLCONNECTOR_DEBUG="1", NO_COLOR="1", CRASHY_CLIENT_SECRET=secret,
               MLCONNECTOR_CONFIG=str(config), MLCONNECTOR_STATE=str(tmp_path / "state.db"))
    result = subprocess.run([sys.executable, "-m", "mlconnector", "ping", "crashy"], capture_output=True, text=True, env=env,
                            timeout=60)
    assert result.returncode == 1 and "a bug" in result.stderr and "Traceback" in result.stderr, result.stderr
    assert secret not in result.stdout + result.stderr
    leaks.register([secret])


def test_no_secret_appears_in_any_output_log_state_file_audit_row_or_cassette():
    assert leaks.SECRETS, "no secrets were registered: the suite checked nothing"
    found = leaks.find_leaks([CASSETTES])
    count("secrets_tracked", len(leaks.SECRETS))
    count("places_scanned", len(leaks.OUTPUTS) + len(set(leaks.FILES)))
    assert found == [], found
