"""Tests: fixtures for the Redis adapter tests (private servers, raw client, unique topics)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from redis_support import SHARED

from eventwire.testing.spawn import RedisServer, scrubbed_keys, spawn_redis


@pytest.fixture(autouse=True)
async def _no_leftover_keys() -> AsyncIterator[None]:
    """Every test here writes under ``ew:ewt.*``/``ew:ewc.*`` on the shared server: what a
    test created is deleted after it (streams, dead-letter streams, retry schedules)."""
    async with scrubbed_keys(SHARED, "ew:ew[tc].*"):
        yield


@pytest.fixture
def topic() -> str:
    return f"ewt.redis.{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def raw() -> AsyncIterator[aioredis.Redis]:
    """A plain redis-py client on the shared server, to look behind the adapter's back."""
    client = aioredis.Redis.from_url(SHARED)
    yield client
    await client.aclose()


@pytest.fixture
async def private_redis() -> AsyncIterator[RedisServer]:
    async with spawn_redis(appendonly=True) as server:
        yield server
