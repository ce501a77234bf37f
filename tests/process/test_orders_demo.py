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


def test_orders_demo_survives_a_killed_worker_without_repeating_side_effects(
    tmp_path: Path,
) -> None:
    # 1,500 orders: enough that the demo's 0.5 s progress poll sees a third of them done
    # before all are, so the SIGKILL really lands mid-run (300 can finish between two polls).
    done = subprocess.run(
        [
            sys.executable,
            *("-m", "examples.orders.demo", "--kill-one"),
            *("--orders", "1500", "--workers", "2", "--dir", str(tmp_path)),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "killed worker pid" in done.stdout, output
    labels = ("repeated charges", "duplicate notifications")
    summary = dict(
        line.strip().rsplit(maxsplit=1)
        for line in done.stdout.split("\nsummary\n", 1)[1].splitlines()
        if line.strip().startswith(labels)
    )
    assert summary == {"repeated charges": "0", "duplicate notifications": "0"}, output
    assert "OK: every order charged exactly once" in done.stdout
