"""Tests: fixtures for the Redis adapter tests (private servers, raw client, unique topics)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from brokers.redis.redis_support import SHARED
from eventwire.testing.spawn import RedisServer, scrubbed_keys, spawn_redis


@pytest.fixture
def topic() -> str:
    """A topic of this test alone: every key it makes on the shared server starts with
    ``ew:<topic>`` (stream, ``.dlq`` stream, ``:retry:<group>`` schedule)."""
    return f"ewt.redis.{uuid.uuid4().hex[:10]}"


@pytest.fixture(autouse=True)
async def _no_leftover_keys(topic: str) -> AsyncIterator[None]:
    """What this test created on the shared server is deleted after it, and nothing else:
    the pattern is this test's own topic, never another run's keys (other sessions share
    the server and the ``ewt.``/``ewc.`` names)."""
    async with scrubbed_keys(SHARED, f"ew:{topic}*"):
        yield


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
