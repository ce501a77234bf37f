"""Tests: fixtures for the RabbitMQ adapter: clients on a private exchange, cleaned up after."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from brokers.rabbitmq.rabbitmq_support import HOST, PORT, Opener, topology_removed
from eventwire.brokers.catalog import open_broker
from eventwire.brokers.rabbitmq.broker import RabbitMQBroker


@pytest.fixture
async def exchange() -> AsyncIterator[str]:
    """An exchange of this test alone; whatever any broker object (an App's too) declared
    under it is deleted after the test, delay levels included."""
    name = f"ewt-{uuid.uuid4().hex[:10]}"
    async with topology_removed(name):
        yield name


@pytest.fixture
async def open_rmq(exchange: str) -> AsyncIterator[Opener]:
    """``await open_rmq(port=..., password=..., **options)``: a connected RabbitMQBroker."""
    opened: list[RabbitMQBroker] = []

    async def opener(
        *, port: int = PORT, password: str = "guest", connect: bool = True, **options: object
    ) -> RabbitMQBroker:
        query = "&".join(f"{k}={v}" for k, v in {"exchange": exchange, **options}.items())
        broker = open_broker(f"amqp://guest:{password}@{HOST}:{port}/?{query}")
        assert isinstance(broker, RabbitMQBroker)
        opened.append(broker)
        if connect:
            await broker.connect()
        return broker

    yield opener
    for broker in opened:
        await broker.aclose()
