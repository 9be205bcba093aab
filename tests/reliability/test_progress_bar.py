"""The progress bar a terminal shows during a sync: the total where the source's API gives a count (NAV and Business
Central answer $count with the first page), the rate, and never `5000/?`."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import time

from tests.reliability.harness import MLCONNECTOR, exit_code_ok


def _run_on_a_terminal(rig, *args: str) -> tuple[int, str]:
    """The CLI with its stderr on a pseudo-terminal (where the bar is drawn); returns its exit code and all it drew."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([*MLCONNECTOR, *args], stdout=subprocess.PIPE, stderr=slave, stdin=subprocess.DEVNULL,
                            env=rig.env(TERM="xterm-256color"), cwd=rig.tmp)
    os.close(slave)
    drawn = b""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the terminal closed with the process
                break
            if not chunk:
                break
            drawn += chunk
        elif proc.poll() is not None:
            break
    os.close(master)
    out, _ = proc.communicate(timeout=30)
    rig.seen(out.decode(), drawn.decode(errors="replace"))
    return proc.returncode, re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", drawn.decode(errors="replace"))


def test_the_bar_shows_the_total_the_api_counts_and_the_rate(make_rig):
    rig = make_rig(erps=("nav",), seed="medium", pair_settings={"batch_size": 5})
    rig.set_faults(latency=0.02)  # long enough for the bar to be drawn a few times
    customers = len(rig.sandboxes.dynamics.records(rig.company("nav-zoho"), "customers"))
    code, drawn = _run_on_a_terminal(rig, "sync", "nav-zoho", "--flow", "customers")
    exit_code_ok(code, (0,), drawn)
    assert re.search(rf"customers\s.*\d+/{customers}\b", drawn), drawn[-2000:]  # done/total
    assert re.search(r"\d+/s\b", drawn), drawn[-2000:]  # the rate
    assert "/?" not in drawn, drawn[-2000:]
