"""Plugins installed as packages: found through the `mlconnector.plugins` entry-point group, no environment
variable needed; a broken one is one line naming it (exit 2)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]


def installed(tmp_path: Path, module: str, value: str) -> Path:
    """A package as pip leaves it: its module and a dist-info with its entry point."""
    site = tmp_path / "site"
    (site / "acme_mlc-1.0.dist-info").mkdir(parents=True)
    (site / "acme_mlc-1.0.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-mlc\nVersion: 1.0\n")
    (site / "acme_mlc-1.0.dist-info" / "entry_points.txt").write_text(f"[mlconnector.plugins]\nacme = {value}\n")
    (site / "acme_mlc.py").write_text(module)
    return site


def run(site: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLCONNECTOR_PLUGINS")}
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(ROOT)])
    return subprocess.run([sys.executable, "-m", "mlconnector", *args], env=env, capture_output=True, text=True,
                          timeout=60)


def test_a_pair_from_an_installed_package_gets_its_sync_command(tmp_path):
    site = installed(tmp_path, """
import dataclasses

def register():
    from mlconnector import pairs
    from tests.fakes import TEST_PAIR
    pairs.register(dataclasses.replace(TEST_PAIR, name="acme-pair", description="Acme's own pair"))
""", "acme_mlc:register")
    result = run(site, "sync", "--help")
    assert result.returncode == 0, result.stderr
    assert "acme-pair" in result.stdout


def test_a_broken_plugin_is_one_line_and_exit_2(tmp_path):
    site = installed(tmp_path, "raise RuntimeError('half installed')\n", "acme_mlc")
    result = run(site, "status")
    assert result.returncode == 2
    assert result.stderr.strip() == ("error: plugin acme (acme_mlc, entry point group mlconnector.plugins) cannot be "
                                     "loaded (RuntimeError: half installed); fix or uninstall its package")
