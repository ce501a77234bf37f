"""Process tests: the ``rig`` fixture; workers it started are killed if a test fails."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from process.proc_rig import Rig, make_rig


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    made = make_rig(tmp_path)
    try:
        yield made
    finally:
        for worker in made.workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
