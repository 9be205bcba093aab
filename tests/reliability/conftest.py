"""Fixtures of the reliability suite: a rig of sandboxes on loopback with a config the real CLI uses.

MLCONNECTOR_SOAK=1 runs the long version (more trials, more records, more notifications)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.reliability.harness import Rig, start_rig


@pytest.fixture
def make_rig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Rig]]:
    # The config's own [secrets] table must be what the CLI uses, as after `mlconnector sandbox serve`.
    monkeypatch.delenv("MLCONNECTOR_SECRETS_DIR", raising=False)
    rigs: list[Rig] = []

    def make(**kwargs: Any) -> Rig:
        directory = tmp_path / f"rig{len(rigs)}"
        directory.mkdir()
        rig = start_rig(directory, **kwargs)
        rigs.append(rig)
        return rig

    yield make
    for rig in rigs:
        rig.stop()
