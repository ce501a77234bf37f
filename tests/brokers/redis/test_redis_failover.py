"""Redis failover replies (READONLY, MASTERDOWN, BUSY...) to a publish are a transient outage.

A private redis-server is demoted to a replica of a dead master (REPLICAOF a free port):
writes then get READONLY (or MASTERDOWN with stale data off), as after a failover.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, cast

import pytest
import redis.asyncio as aioredis
from redis import exceptions as rex

from eventwire.brokers.catalog import open_broker
from eventwire.core.errors import PublishError
from eventwire.core.message import Message
from eventwire.testing.spawn import RedisServer, free_port, spawn_redis

if TYPE_CHECKING:
    from brokers.redis.redis_support import StreamEntries

pytestmark = [pytest.mark.integration, pytest.mark.redis, pytest.mark.reconnect]

DEMOTIONS = {
    "READONLY": {},
    "MASTERDOWN": {"replica-read-only": "no", "replica-serve-stale-data": "no"},
}


@pytest.fixture
async def server() -> AsyncIterator[RedisServer]:
    async with spawn_redis() as private:
        yield private


async def errors(raw: aioredis.Redis, code: str) -> int:
    """How many ``code`` error replies the server sent so far (INFO errorstats)."""
    stats = await raw.info("errorstats")
    entry = stats.get(f"errorstat_{code}", {})
    return int(entry.get("count", 0)) if isinstance(entry, dict) else 0


async def demote(raw: aioredis.Redis, code: str) -> None:
    for name, value in DEMOTIONS[code].items():
        await raw.config_set(name, value)
    await raw.replicaof("127.0.0.1", free_port())  # a master that never answers


async def promote(raw: aioredis.Redis) -> None:
    await raw.replicaof("NO", "ONE")


@pytest.mark.parametrize("code", sorted(DEMOTIONS))
async def test_publish_rides_out_a_failover(server: RedisServer, topic: str, code: str) -> None:
    async with (
        aioredis.Redis.from_url(server.url) as raw,
        open_broker(f"{server.url}?publish_timeout=30&backoff_cap=0.2") as broker,
    ):
        await broker.publish(topic, Message(body=b"before"))
        await demote(raw, code)
        publishing = asyncio.create_task(broker.publish(topic, Message(body=b"during")))
        async with asyncio.timeout(20):  # the publish was refused, and retried, 3 times
            while await errors(raw, code) < 3:
                assert not publishing.done(), publishing
                await asyncio.sleep(0.05)
        refused = await errors(raw, code)
        await promote(raw)
        await asyncio.wait_for(publishing, 20)
        entries = cast("StreamEntries", await raw.xrange(f"ew:{topic}"))
        bodies = [fields[b"body"] for _id, fields in entries]
    print(f"\nredis {code}: publish refused {refused} times, then went through after promotion")
    assert bodies == [b"before", b"during"]


async def test_publish_gives_up_after_publish_timeout(server: RedisServer, topic: str) -> None:
    async with (
        aioredis.Redis.from_url(server.url) as raw,
        open_broker(f"{server.url}?publish_timeout=1&backoff_cap=0.1") as broker,
    ):
        await broker.publish(topic, Message(body=b"before"))  # connected before the failover
        await demote(raw, "READONLY")
        started = time.monotonic()
        with pytest.raises(PublishError) as caught:
            await asyncio.wait_for(broker.publish(topic, Message(body=b"never")), 20)
        took = time.monotonic() - started
        refused = await errors(raw, "READONLY")
    assert isinstance(caught.value.__cause__, rex.ReadOnlyError)
    assert took >= 0.9, f"gave up after {took:.2f} s, before publish_timeout"
    assert refused >= 2, "retried, not failed at the first READONLY"
