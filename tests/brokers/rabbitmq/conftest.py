"""Tests: fixtures for the RabbitMQ adapter: clients on a private exchange, cleaned up after."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import aio_pika
import pytest
from rabbitmq_support import HOST, PORT, Opener

from eventwire.brokers.catalog import open_broker
from eventwire.brokers.rabbitmq.broker import RabbitMQBroker


@pytest.fixture
def exchange() -> str:
    return f"ewt-{uuid.uuid4().hex[:10]}"


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
    queues = {q for b in opened for q in b.declared_queues}
    exchanges = {x for b in opened for x in b.declared_exchanges} | {exchange}
    for broker in opened:
        await broker.aclose()
    connection = await aio_pika.connect(host=HOST, port=PORT)
    try:
        channel = await (await connection.channel()).get_underlay_channel()
        for queue in sorted(queues):
            await channel.queue_delete(queue)
        for name in sorted(exchanges):
            await channel.exchange_delete(name)
    finally:
        await connection.close()
