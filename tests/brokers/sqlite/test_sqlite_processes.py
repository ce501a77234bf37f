"""Tests: several processes sharing one sqlite broker file (competition, SIGKILL, leases)."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from contextlib import closing
from pathlib import Path

import pytest

from eventwire.brokers.catalog import open_broker
from eventwire.core.message import Message

WORKER = Path(__file__).with_name("sqlite_worker.py")
FULL = os.environ.get("EVENTWIRE_TEST_SCALE", "").lower() == "full"
DEADLINE = 60.0

pytestmark = pytest.mark.slow


class Worker:
    """A worker process; stdout is read only through its buffered file (never raw fds),
    so lines read ahead by ``readline`` are not lost by a later read of the rest."""

    def __init__(self, tmp: Path, url: str, group: str, mode: str, name: str) -> None:
        self.log_path = tmp / f"{name}.log"
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, str(WORKER), url, "jobs", group, mode],
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )

    async def line(self) -> str:
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(self.proc.stdout.readline), DEADLINE)
        if not line:
            pytest.fail(f"worker exited early: {self.log_path.read_text()}")
        return line.strip()

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)

    async def rest(self) -> list[str]:
        """Every line still to come, once the process has ended."""
        assert self.proc.stdout is not None
        out = await asyncio.wait_for(asyncio.to_thread(self.proc.stdout.read), DEADLINE)
        self.proc.wait(timeout=DEADLINE)
        return out.split()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=DEADLINE)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log.close()


async def test_two_processes_in_one_group_share_without_loss_or_duplicates(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'b.db'}"
    count = 5000 if FULL else 400
    workers = [Worker(tmp_path, url, "workers", "consume", f"w{n}") for n in range(2)]
    try:
        for worker in workers:
            assert await worker.line() == "ready"
        async with open_broker(url) as broker:
            bodies = [str(i).encode() for i in range(count)]
            for start in range(0, count, 100):
                await broker.publish(
                    "jobs", *(Message(body=b) for b in bodies[start : start + 100])
                )
            # One stop per worker: each exits on its own stop and releases what it still holds.
            await broker.publish("jobs", Message(body=b"stop"), Message(body=b"stop"))
            results = [await worker.rest() for worker in workers]
        for worker in workers:
            assert worker.proc.returncode == 0, worker.log_path.read_text()
    finally:
        for worker in workers:
            worker.close()
    seen = Counter(body for lines in results for body in lines)
    assert set(seen) == {str(i) for i in range(count)}
    assert max(seen.values()) == 1, "a message was processed twice"
    assert all(results), "one worker got nothing: no competition"


async def test_sigkilled_worker_loses_its_claims_after_the_lease(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'b.db'}?lease=1"
    async with open_broker(url) as broker:
        async with broker.subscribe("jobs", group="g"):
            pass  # create the group so the worker and we share it from the first message
        await broker.publish("jobs", *(Message(body=str(i).encode()) for i in range(30)))
        holder = Worker(tmp_path, url, "g", "hold", "holder")
        try:
            assert await holder.line() == "ready"
            assert await holder.line() == "holding 10"
        finally:
            holder.kill()
            holder.close()
        killed_at = time.monotonic()
        attempts: dict[str, int] = {}
        async with broker.subscribe("jobs", group="g", prefetch=50) as sub:
            async with asyncio.timeout(DEADLINE):
                async for delivery in sub:
                    attempts[delivery.message.body.decode()] = delivery.attempt
                    await delivery.ack()
                    if len(attempts) == 30:
                        break
        waited = time.monotonic() - killed_at
    assert set(attempts) == {str(i) for i in range(30)}
    redelivered = {body for body, attempt in attempts.items() if attempt == 2}
    assert redelivered == {str(i) for i in range(10)}, attempts
    assert waited < 10


async def test_heartbeat_keeps_a_slow_handlers_claims(tmp_path: Path) -> None:
    path = tmp_path / "b.db"
    url = f"sqlite:///{path}?lease=2"
    async with (
        open_broker(url) as slow,
        open_broker(url) as other,
        slow.subscribe("jobs", group="g", prefetch=1) as held,
    ):
        await slow.publish("jobs", Message(body=b"long job"))
        delivery = await asyncio.wait_for(anext(aiter(held)), DEADLINE)
        first_lease_end = lease_end(path)
        async with other.subscribe("jobs", group="g") as competing:
            stolen = asyncio.ensure_future(anext(aiter(competing)))
            # Wait (no fixed sleep) until heartbeats carried the lease a whole lease past its
            # first end: without them the competing consumer would have taken it by then.
            async with asyncio.timeout(DEADLINE):
                while lease_end(path) <= first_lease_end + 2:
                    await asyncio.sleep(0.05)
            assert not stolen.done()
            stolen.cancel()
            await delivery.ack()


def lease_end(path: Path) -> float:
    with closing(sqlite3.connect(path)) as conn:
        return float(conn.execute("SELECT MAX(due_at) FROM claims").fetchone()[0])


async def test_worker_killed_mid_stream_loses_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'b.db'}?lease=1"
    count = 2000 if FULL else 300
    everything = {str(i) for i in range(count)}
    first = Worker(tmp_path, url, "g", "consume", "first")
    try:
        assert await first.line() == "ready"
        async with open_broker(url) as broker:
            await broker.publish("jobs", *(Message(body=str(i).encode()) for i in range(count)))
            done_by_first = [await first.line() for _ in range(count // 4)]
            first.kill()
            done_by_first += await first.rest()
            assert set(done_by_first) < everything, "killed too late to test a takeover"
            second: list[str] = []
            async with broker.subscribe("jobs", group="g") as sub, asyncio.timeout(DEADLINE):
                async for delivery in sub:
                    await delivery.ack()
                    second.append(delivery.message.body.decode())
                    if set(done_by_first) | set(second) >= everything:
                        break
    finally:
        first.close()
    duplicates = set(done_by_first) & set(second)
    # Only what the killed worker held or had acked in its last unflushed batch comes back.
    assert len(duplicates) <= 20, sorted(duplicates)
