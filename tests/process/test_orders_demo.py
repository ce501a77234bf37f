"""Process test: the README's main command (the orders demo) works from a clean checkout."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("how", ["module", "script"])
def test_orders_demo_processes_everything_and_dead_letters_the_poison(
    tmp_path: Path, how: str
) -> None:
    entry = ["-m", "examples.orders.demo"] if how == "module" else ["examples/orders/demo.py"]
    done = subprocess.run(
        [sys.executable, *entry, "--orders", "300", "--workers", "2", "--dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "OK: every order charged exactly once" in done.stdout
    assert "dead-lettered          1 ['max-attempts']" in done.stdout
    assert "orders charged         299/299" in done.stdout
    assert "duplicate notifications 0" in done.stdout
