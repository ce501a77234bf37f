"""CLI tests: `eventwire run --loop uvloop` runs handlers on uvloop; a wrong name is one line."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from eventwire.brokers.catalog import open_broker
from eventwire.cli.main import app
from eventwire.core.message import Message

LOOP_SERVICE = textwrap.dedent(
    """
    import asyncio
    from pathlib import Path

    from eventwire import App

    app = App(name="loop-svc")
    OUT = Path(__file__).with_name("loop.txt")


    @app.subscriber("cli.loop", group="g")
    async def handle(payload: dict) -> None:
        OUT.write_text(type(asyncio.get_running_loop()).__module__)
    """
)


async def _publish_one(url: str) -> None:
    async with open_broker(url) as broker:
        await broker.publish("cli.loop", Message(body=b"{}", content_type="application/json"))


def _wait_for_file(path: Path, timeout: float) -> str | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text():
            return path.read_text()
        time.sleep(0.05)
    return None


@pytest.mark.parametrize(
    ("flags", "module"),
    [(["--loop", "uvloop"], "uvloop"), ([], "asyncio")],
    ids=["uvloop", "default"],
)
def test_run_loop_flag_picks_the_event_loop(tmp_path: Path, flags: list[str], module: str) -> None:
    (tmp_path / "svc.py").write_text(LOOP_SERVICE)
    url = f"sqlite:///{tmp_path}/loop.db"
    asyncio.run(_publish_one(url))
    worker = subprocess.Popen(
        [sys.executable, "-m", "eventwire.cli", "run", f"{tmp_path}/svc.py:app", "-b", url, *flags],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        seen = _wait_for_file(tmp_path / "loop.txt", 60)
    finally:
        worker.send_signal(signal.SIGTERM)
        _, err = worker.communicate(timeout=30)
    assert seen is not None, err
    assert seen.split(".")[0] == module
    assert worker.returncode == 0, err


def test_run_unknown_loop_is_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["run", "x:app", "--loop", "trio", "-b", "memory://"])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "--loop" in lines[0]
    assert "uvloop" in lines[0]
