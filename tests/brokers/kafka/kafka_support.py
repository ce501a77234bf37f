"""Tests: helpers shared by the Kafka fault tests (scale, running an App, waiting, reading)."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

from eventwire.brokers.catalog import open_broker
from eventwire.brokers.kafka.broker import KafkaBroker
from eventwire.core.contract import Broker
from eventwire.core.message import DEAD_LETTER_GROUP, Message, dead_letter_topic
from eventwire.runtime.app import App
from eventwire.testing.helpers import scale, wait_until

__all__ = ["scale", "wait_until"]  # the Kafka tests' helpers, the shared ones included


def topic_name(what: str) -> str:
    return f"ewt.kafka.{what}.{uuid.uuid4().hex[:8]}"


async def open_kafka(url: str) -> KafkaBroker:
    broker = open_broker(url)
    assert isinstance(broker, KafkaBroker)
    await broker.connect()
    return broker


class Running:
    """An App running in the background; ``stop`` ends it gracefully (its members leave)."""

    def __init__(self, app: App, task: asyncio.Task[None], stop: asyncio.Event) -> None:
        self.app, self.task, self._stop = app, task, stop

    async def stop(self, within: float = 60.0) -> None:
        self._stop.set()
        async with asyncio.timeout(within):
            await self.task


@asynccontextmanager
async def running(app: App, within: float = 60.0) -> AsyncIterator[Running]:
    """Run ``app`` (connected: ``async with app``) in the background until it has
    subscribed; stop it gracefully on exit."""
    app.broker  # noqa: B018 - ClosedError unless connected: wait_ready binds on connect
    stop = asyncio.Event()
    task = asyncio.create_task(app.run(stop))
    ready = asyncio.create_task(app.wait_ready())
    await asyncio.wait({task, ready}, timeout=within, return_when=asyncio.FIRST_COMPLETED)
    ready.cancel()
    if task.done():
        task.result()  # raises the consumer's error
    assert app.ready, f"{app.name} did not subscribe within {within:g} s"
    handle = Running(app, task, stop)
    try:
        yield handle
    finally:
        await handle.stop()


async def read_dead_letters(
    broker: Broker, topic: str, count: int, deadline: float
) -> list[Message]:
    """The first ``count`` dead letters of ``topic`` through the DLQ group, acked."""
    found: list[Message] = []
    async with (
        asyncio.timeout(deadline),
        broker.subscribe(dead_letter_topic(topic), group=DEAD_LETTER_GROUP) as deliveries,
    ):
        async for delivery in deliveries:
            found.append(delivery.message)
            await delivery.ack()
            if len(found) == count:
                break
    return found


def order_breaks(handled: Iterable[tuple[str, int]]) -> dict[str, list[int]]:
    """Per key, the sequence numbers handled for the first time after a higher one had been:
    empty when every key's first handlings came in publish order (duplicates allowed)."""
    seen: dict[str, set[int]] = defaultdict(set)
    highest: dict[str, int] = {}
    breaks: dict[str, list[int]] = defaultdict(list)
    for key, seq in handled:
        if seq in seen[key]:
            continue  # a redelivery: duplicates come from the uncommitted window
        seen[key].add(seq)
        if seq < highest.get(key, -1):
            breaks[key].append(seq)
        highest[key] = max(highest.get(key, -1), seq)
    return dict(breaks)
