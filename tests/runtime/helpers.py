"""Shared helpers for runtime behaviour tests on real embedded brokers."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from eventwire.core.contract import Broker
from eventwire.core.message import DEAD_LETTER_GROUP, Message, dead_letter_topic
from eventwire.runtime.app import App

FULL = os.environ.get("EVENTWIRE_TEST_SCALE") == "full"


def scale(quick: int, full: int) -> int:
    return full if FULL else quick


def memory_url() -> str:
    """A named hub, so several App instances in one test share a broker."""
    return f"memory://rt-{uuid.uuid4().hex[:12]}"


def broker_url(kind: str, tmp_path: Path) -> str:
    if kind == "memory":
        return memory_url()
    return f"sqlite:///{tmp_path / 'broker.db'}?poll=0.02"


async def wait_until(predicate: Callable[[], bool], deadline: float = 20.0) -> None:
    """Poll ``predicate`` until true; fail after ``deadline`` seconds (no fixed sleeps)."""
    async with asyncio.timeout(deadline):
        while not predicate():
            await asyncio.sleep(0.005)


@asynccontextmanager
async def running(app: App, **run_options: object) -> AsyncIterator[asyncio.Task[None]]:
    """Run ``app`` (already connected) in the background; stop it gracefully on exit."""
    stop = asyncio.Event()
    task = asyncio.create_task(app.run(stop, **run_options))  # type: ignore[arg-type]
    ready = asyncio.create_task(app.wait_ready())
    await asyncio.wait({task, ready}, timeout=20, return_when=asyncio.FIRST_COMPLETED)
    ready.cancel()
    if task.done():
        task.result()  # raises the consumer's error
    assert app.ready, "app did not subscribe in time"
    try:
        yield task
    finally:
        stop.set()
        async with asyncio.timeout(30):
            await task


async def read_dlq(broker: Broker, topic: str, count: int, deadline: float = 20.0) -> list[Message]:
    """The first ``count`` dead letters of ``topic``, acked, in DLQ order."""
    found: list[Message] = []
    async with (
        asyncio.timeout(deadline),
        broker.subscribe(dead_letter_topic(topic), group=DEAD_LETTER_GROUP) as deliveries,
    ):
        if count == 0:
            return found
        async for delivery in deliveries:
            found.append(delivery.message)
            await delivery.ack()
            if len(found) == count:
                break
    return found
