"""Tests: fixtures for the Redis adapter tests (private servers, raw client, unique topics)."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from eventwire.testing.spawn import RedisServer, spawn_redis

SHARED = "redis://127.0.0.1:6379/0"
FAST = "claim_idle=1&poll_interval=0.05&block=0.5&socket_timeout=3&publish_timeout=10"
FULL = os.environ.get("EVENTWIRE_TEST_SCALE") == "full"


def scale(quick: int, full: int) -> int:
    return full if FULL else quick


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
