"""Tests: the conformance suite against the shared RabbitMQ server (quorum-queue profile)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import aio_pika
import pytest

from eventwire.brokers.catalog import profile_named
from eventwire.brokers.rabbitmq.broker import RabbitMQBroker
from eventwire.core.contract import Broker
from eventwire.testing.conformance import ConformanceSuite, Harness
from eventwire.testing.conformance.harness import open_connected, rewrite_host

pytestmark = [pytest.mark.conformance, pytest.mark.integration, pytest.mark.rabbitmq]

HOST, PORT = "127.0.0.1", 5672


class RabbitMQHarness(Harness):
    """Clients on a private exchange; every queue they declared is deleted afterwards."""

    def __init__(self) -> None:
        self.profile = profile_named("rabbitmq")
        self.exchange = f"ewc-{uuid.uuid4().hex[:10]}"
        self.url = f"amqp://guest:guest@{HOST}:{PORT}/?exchange={self.exchange}"
        self.upstream = (HOST, PORT)
        self._opened: list[Broker] = []

    async def open(self) -> Broker:
        return await open_connected(self.url)

    def track(self, broker: Broker) -> None:
        self._opened.append(broker)

    def url_via(self, host: str, port: int) -> str:
        return rewrite_host(self.url, host, port)

    async def aclose(self) -> None:
        await delete_topology(self.exchange, self._opened)


async def delete_topology(exchange: str, brokers: list[Broker]) -> None:
    """Delete the durable queues ``brokers`` declared and the exchange (shared server hygiene)."""
    queues: set[str] = set()
    exchanges = {exchange}
    for broker in brokers:
        queues.update(getattr(broker, "declared_queues", ()))
        exchanges.update(getattr(broker, "declared_exchanges", ()))
    connection = await aio_pika.connect(host=HOST, port=PORT)
    try:
        channel = await connection.channel()
        raw = await channel.get_underlay_channel()
        for queue in sorted(queues):
            await raw.queue_delete(queue)
        for name in sorted(exchanges):
            await raw.exchange_delete(name)
    finally:
        await connection.close()


class TestRabbitMQConformance(ConformanceSuite):
    PROFILE = "rabbitmq"

    @pytest.fixture
    async def harness(self, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Harness]:
        harness = RabbitMQHarness()
        # Cases also open clients themselves (through a fault proxy): track every connect so
        # the queues those declared are deleted too.
        connect = RabbitMQBroker._connect

        async def tracking(broker: RabbitMQBroker) -> None:
            harness.track(broker)
            await connect(broker)

        monkeypatch.setattr(RabbitMQBroker, "_connect", tracking)
        yield harness
        await harness.aclose()
