"""Tests: core NATS (at-most-once) on the shared server: a slow consumer's memory stays bounded."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from brokers.nats.nats_support import SHARED
from eventwire.brokers.catalog import open_broker
from eventwire.core.message import Message

pytestmark = [pytest.mark.integration, pytest.mark.nats]


async def test_slow_core_consumer_holds_at_most_prefetch() -> None:
    url = f"nats+core://{SHARED}?prefix=ewt{uuid.uuid4().hex[:8]}"
    total, prefetch = 300, 5
    async with (
        open_broker(url) as pub,
        open_broker(url) as broker,
        broker.subscribe("core.slow", group="q", prefetch=prefetch) as sub,
    ):
        await pub.publish("core.slow", *(Message(body=str(i).encode()) for i in range(total)))
        await pub.client.flush()  # type: ignore[attr-defined]  # NATS adapter's own nats-py client, not on the Broker protocol
        # Every message has reached the subscriber's client once its own PING is answered.
        await broker.client.flush()  # type: ignore[attr-defined]  # NATS adapter's own nats-py client, not on the Broker protocol
        for _ in range(total):  # let the client's callback task run as far as it can
            await asyncio.sleep(0)
        held = len(sub._ready)  # type: ignore[attr-defined]  # the subscription's private ready queue
        got: list[int] = []
        async with asyncio.timeout(20):
            while len(got) < total:
                delivery = await anext(sub)
                got.append(int(delivery.message.body))
                await delivery.ack()
    assert held <= prefetch  # the rest waits in nats-py's bounded subscription queue
    assert got == list(range(total))  # nothing lost below that bound, order kept
