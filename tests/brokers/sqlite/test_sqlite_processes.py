"""Tests: several processes sharing one sqlite broker file (competition, SIGKILL, leases)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from eventwire.brokers.catalog import open_broker
from eventwire.core.message import Message

WORKER = Path(__file__).with_name("sqlite_worker.py")
FULL = os.environ.get("EVENTWIRE_TEST_SCALE", "").lower() == "full"
DEADLINE = 60.0

pytestmark = pytest.mark.slow


def _spawn(url: str, topic: str, group: str, mode: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(WORKER), url, topic, group, mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


async def _read_line(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), DEADLINE)
    if not line:
        _, err = proc.communicate(timeout=5)
        pytest.fail(f"worker exited early: {err}")
    return line.strip()


def _finish(proc: subprocess.Popen[str]) -> tuple[list[str], str]:
    out, err = proc.communicate(timeout=DEADLINE)
    return out.split(), err


async def test_two_processes_in_one_group_share_without_loss_or_duplicates(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'b.db'}"
    count = 5000 if FULL else 400
    workers = [_spawn(url, "jobs", "workers", "consume") for _ in range(2)]
    try:
        for proc in workers:
            assert await _read_line(proc) == "ready"
        async with open_broker(url) as broker:
            bodies = [str(i).encode() for i in range(count)]
            for start in range(0, count, 100):
                await broker.publish(
                    "jobs", *(Message(body=b) for b in bodies[start : start + 100])
                )
            # One stop per worker: each exits on its own stop and releases what it still holds.
            await broker.publish("jobs", Message(body=b"stop"), Message(body=b"stop"))
            results = [await asyncio.to_thread(_finish, p) for p in workers]
    finally:
        for proc in workers:
            if proc.poll() is None:
                proc.kill()
            proc.communicate(timeout=DEADLINE)
    for proc, (_, err) in zip(workers, results, strict=True):
        assert proc.returncode == 0, err
    seen = Counter(body for lines, _ in results for body in lines)
    assert set(seen) == {str(i) for i in range(count)}
    assert max(seen.values()) == 1, "a message was processed twice"
    assert all(lines for lines, _ in results), "one worker got nothing: no competition"


async def test_sigkilled_worker_loses_its_claims_after_the_lease(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'b.db'}?lease=1"
    async with open_broker(url) as broker:
        async with broker.subscribe("jobs", group="g"):
            pass  # create the group so the worker and we share it from the first message
        await broker.publish("jobs", *(Message(body=str(i).encode()) for i in range(30)))
        holder = _spawn(url, "jobs", "g", "hold")
        try:
            assert await _read_line(holder) == "ready"
            assert await _read_line(holder) == "holding 10"
        finally:
            holder.send_signal(signal.SIGKILL)
            holder.communicate(timeout=DEADLINE)
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
    url = f"sqlite:///{tmp_path / 'b.db'}?lease=0.3"
    async with (
        open_broker(url) as slow,
        open_broker(url) as other,
        slow.subscribe("jobs", group="g", prefetch=1) as held,
    ):
        await slow.publish("jobs", Message(body=b"long job"))
        delivery = await asyncio.wait_for(anext(aiter(held)), DEADLINE)
        async with other.subscribe("jobs", group="g") as competing:
            # Watch for three leases: the heartbeat must keep the claim ours.
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(anext(aiter(competing)), 1.0)
            await delivery.ack()


async def test_worker_killed_mid_stream_loses_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'b.db'}?lease=1"
    count = 2000 if FULL else 300
    first = _spawn(url, "jobs", "g", "consume")
    try:
        assert await _read_line(first) == "ready"
        async with open_broker(url) as broker:
            await broker.publish("jobs", *(Message(body=str(i).encode()) for i in range(count)))
            done_by_first = [await _read_line(first) for _ in range(count // 4)]
            first.send_signal(signal.SIGKILL)
            out, _ = first.communicate(timeout=DEADLINE)
            done_by_first += out.split()
            second: list[str] = []
            assert len(set(done_by_first)) < count, "killed too late to test a takeover"
            async with broker.subscribe("jobs", group="g") as sub, asyncio.timeout(DEADLINE):
                async for delivery in sub:
                    await delivery.ack()
                    second.append(delivery.message.body.decode())
                    if set(done_by_first) | set(second) >= {str(i) for i in range(count)}:
                        break
    finally:
        if first.poll() is None:
            first.kill()
            first.communicate(timeout=DEADLINE)
    duplicates = set(done_by_first) & set(second)
    # Only what the killed worker held or had acked in its last unflushed batch comes back.
    assert len(duplicates) <= 20, sorted(duplicates)
