"""Tests: fixtures for the Kafka adapter tests: one private Kafka per module (never the shared
one) for the fault tests, which kill and restart it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio

from eventwire.testing.spawn_kafka import KafkaServer, spawn_kafka


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def private_kafka() -> AsyncIterator[KafkaServer]:
    async with spawn_kafka() as server:
        yield server
