"""Graceful shutdown: in-flight work finishes, nothing new is taken, stragglers go back."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from eventwire.brokers.catalog import open_broker
from eventwire.core.message import Message
from eventwire.runtime.app import App
from eventwire.runtime.context import Context

from .helpers import memory_url, running, wait_until


async def test_stop_lets_in_flight_finish_and_takes_nothing_new() -> None:
    url = memory_url()
    app = App(url, shutdown_timeout=10)
    release = asyncio.Event()
    started: list[bytes] = []
    finished: list[bytes] = []

    @app.subscriber("work", group="w", concurrency=1, prefetch=3)
    async def handle(body: bytes) -> None:
        started.append(body)
        await release.wait()
        finished.append(body)

    later = App(url)
    rest: list[tuple[bytes, int]] = []

    @later.subscriber("work", group="w")
    async def take_rest(body: bytes, ctx: Context) -> None:
        rest.append((body, ctx.attempt))

    async with app, later:
        stop = asyncio.Event()
        run = asyncio.create_task(app.run(stop))
        await app.wait_ready()
        for i in range(5):
            await app.publish("work", f"m{i}".encode())
        await wait_until(lambda: started == [b"m0"])
        stop.set()
        await wait_until(lambda: not app.ready)  # the stop request has been taken in
        assert not run.done()
        assert finished == []
        release.set()
        await asyncio.wait_for(run, 10)
        assert finished == [b"m0"]
        assert app.stats.processed == 1
        async with running(later):
            await wait_until(lambda: len(rest) == 4)
    assert [b for b, _ in rest] == [b"m1", b"m2", b"m3", b"m4"]


async def test_handlers_past_the_timeout_are_cancelled_and_returned() -> None:
    url = memory_url()
    app = App(url, shutdown_timeout=0.05)
    cancelled = asyncio.Event()
    entered = asyncio.Event()

    @app.subscriber("work", group="w")
    async def hang(body: bytes) -> None:
        entered.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async with app:
        async with running(app):
            await app.publish("work", b"slow")
            await asyncio.wait_for(entered.wait(), 10)
        assert cancelled.is_set()
        async with app.broker.subscribe("work", group="w") as deliveries:
            delivery = await asyncio.wait_for(anext(aiter(deliveries)), 10)
            assert (delivery.message.body, delivery.attempt) == (b"slow", 2)
            await delivery.ack()


_SERVICE = textwrap.dedent(
    """
    import asyncio, logging, sys
    from eventwire.runtime.app import App

    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    app = App(sys.argv[1], shutdown_timeout=10)

    @app.subscriber("work", group="svc")
    async def handle(body: bytes) -> None:
        print("handling", body.decode(), flush=True)
        await asyncio.sleep(0.5)
        print("done", body.decode(), flush=True)

    sys.exit(app.serve())
    """
)


async def test_serve_returns_zero_after_sigterm_with_in_flight_work(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'svc.db'}?poll=0.02"
    async with open_broker(url) as broker:
        # Create the group first so the message waits for it, then hand it over.
        async with broker.subscribe("work", group="svc"):
            pass
        await broker.publish("work", Message(body=b"job-1"))
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _SERVICE,
        url,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        assert line.decode().strip() == "handling job-1"
        proc.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode()
    assert out.decode().strip() == "done job-1"
    log = err.decode()
    assert "SIGTERM received" in log
    assert "stopped gracefully" in log
