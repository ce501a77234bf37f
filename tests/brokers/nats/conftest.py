"""Tests: fixtures for the NATS adapter tests (a private nats-server, shared-server prefixes)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from brokers.nats.nats_support import stream_prefix
from eventwire.testing.spawn_nats import NatsServer


@pytest.fixture
async def private_nats() -> AsyncIterator[NatsServer]:
    async with NatsServer() as server:
        yield server


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    async with stream_prefix() as name:
        yield name
