"""Redis Streams retention: trimmed to what every group acknowledged, never further by default;
a user-set ``maxlen`` that drops unread entries is logged and counted."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import pytest
import redis.asyncio as aioredis

from brokers.redis.redis_support import FAST, SHARED
from eventwire.brokers._support.retention import dropped_counts
from eventwire.brokers.catalog import open_broker
from eventwire.core.message import Message

pytestmark = [pytest.mark.integration, pytest.mark.redis]

COUNT = 200  # the figure: 200 published while one group's worker was stopped


async def _consume(url: str, topic: str, group: str, count: int) -> list[str]:
    """Ack ``count`` messages as ``group``; their ids in delivery order."""
    seen: list[str] = []
    async with open_broker(url) as broker, broker.subscribe(topic, group=group) as deliveries:
        async with asyncio.timeout(30):
            async for delivery in deliveries:
                seen.append(delivery.message.id)
                await delivery.ack()
                if len(seen) == count:
                    break
    return seen


async def _until(predicate: Callable[[], Awaitable[object]], within: float = 20.0) -> None:
    async with asyncio.timeout(within):
        while not await predicate():
            await asyncio.sleep(0.05)


async def test_a_stopped_group_loses_nothing_and_acked_entries_are_trimmed(
    topic: str, raw: aioredis.Redis
) -> None:
    # On main: approximate MAXLEN at XADD, blind to groups (128 of 200 gone with maxlen=50),
    # and nothing acknowledged was ever trimmed below maxlen (1,000,000 by default).
    url = f"{SHARED}?{FAST}"
    async with open_broker(url) as broker:
        async with broker.subscribe(topic, group="slow"):
            pass  # the group exists; its worker is now stopped
        sent = [Message(body=f"m{n}".encode()) for n in range(COUNT)]
        await broker.publish(topic, *sent)
    key = f"ew:{topic}"
    # The other group reads everything; its members trim every claim_idle / 3 seconds.
    assert await _consume(url, topic, "fast", COUNT) == [m.id for m in sent]
    assert await raw.xlen(key) == COUNT, "trimmed entries the stopped group had not read"
    assert await _consume(url, topic, "slow", COUNT) == [m.id for m in sent]

    async def trimmed() -> bool:
        async with open_broker(url) as broker:
            await broker.trim(topic)  # type: ignore[attr-defined]  # Redis adapter's own trim(), not on the Broker protocol
        return int(await raw.xlen(key)) <= 1  # the last acknowledged entry is kept

    await _until(trimmed)


async def test_a_user_maxlen_that_drops_unread_entries_is_logged_and_counted(
    topic: str, raw: aioredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"{SHARED}?{FAST}&maxlen=50"
    async with open_broker(url) as broker:
        async with broker.subscribe(topic, group="slow"):
            pass
        await broker.publish(topic, *(Message(body=b"x") for _ in range(COUNT)))
    before = dropped_counts().get(("redis-streams", topic), 0)

    async def counted() -> bool:
        return dropped_counts().get(("redis-streams", topic), 0) - before == COUNT - 50

    with caplog.at_level(logging.WARNING, logger="eventwire.brokers.retention"):
        # A live member of another group trims (every claim_idle / 3 s, first at start).
        async with open_broker(url) as broker, broker.subscribe(topic, group="fast"):
            await _until(counted)
    assert await raw.xlen(f"ew:{topic}") == 50
    assert any(
        "maxlen=50" in r.message and "had not acknowledged" in r.message for r in caplog.records
    )
