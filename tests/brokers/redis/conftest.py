"""Tests: fixtures for the Redis adapter tests (private servers, raw client, unique topics)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from redis_support import SHARED

from eventwire.testing.spawn import RedisServer, spawn_redis


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
