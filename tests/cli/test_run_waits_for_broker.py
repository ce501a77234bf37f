"""CLI test: ``eventwire run`` started 10 s before its broker waits for it (one log line per
try), then processes every message published after, and exits 0 on SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from eventwire.brokers.catalog import open_broker
from eventwire.core.message import Message
from eventwire.testing.spawn_nats import NatsServer, free_port

pytestmark = [pytest.mark.integration, pytest.mark.nats, pytest.mark.slow]

COUNT = 100
EARLY = 10.0  # seconds the worker runs before its broker exists (the figure)

SERVICE = """
from pathlib import Path
from eventwire import App

app = App(name="early")
OUT = Path(__file__).with_name("seen.txt")


@app.subscriber("early.jobs", group="workers")
async def handle(payload: dict) -> None:
    with OUT.open("a") as out:
        out.write(f"{payload['n']}\\n")
"""


async def test_a_worker_started_before_its_broker_waits_and_then_processes_everything(
    tmp_path: Path,
) -> None:
    (tmp_path / "svc.py").write_text(SERVICE)
    port = free_port()
    url = f"nats://127.0.0.1:{port}?stream_prefix=EWWAIT_"
    worker = subprocess.Popen(
        [
            *(sys.executable, "-m", "eventwire.cli", "run", f"{tmp_path}/svc.py:app"),
            *("-b", url, "--wait-for-broker", "60"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    started = time.monotonic()
    try:
        await asyncio.sleep(EARLY)  # the broker comes up 10 s after the worker (setup)
        assert worker.poll() is None, "the worker gave up instead of waiting"
        async with NatsServer(port=port) as _server:
            async with open_broker(url) as broker:
                # Ready once the group exists on the broker (the worker subscribed).
                stream = broker.options.stream("early.jobs")  # type: ignore[attr-defined]  # NATS adapter's own options, not on the Broker protocol
                async with asyncio.timeout(60):
                    while not await _has_consumer(broker, stream):
                        await asyncio.sleep(0.1)
                await broker.publish(
                    "early.jobs", *(Message(body=f'{{"n": {n}}}'.encode()) for n in range(COUNT))
                )
            seen = tmp_path / "seen.txt"
            async with asyncio.timeout(60):
                while not seen.exists() or len(seen.read_text().splitlines()) < COUNT:
                    await asyncio.sleep(0.1)
            worker.send_signal(signal.SIGTERM)
            _, err = worker.communicate(timeout=60)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.communicate()
    assert worker.returncode == 0, err
    assert sorted(int(x) for x in seen.read_text().split()) == list(range(COUNT))
    tries = [line for line in err.splitlines() if "not ready (try" in line]
    assert len(tries) >= 3, err  # one line per try while the broker was away
    assert "Traceback" not in err
    assert time.monotonic() - started >= EARLY


async def _has_consumer(broker: object, stream: str) -> bool:
    js = broker._js  # type: ignore[attr-defined]  # NATS adapter's private JetStream context
    try:
        return bool(await js.consumers_info(stream))
    except Exception:
        return False
