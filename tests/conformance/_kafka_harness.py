"""Tests: conformance harnesses for Kafka: the shared server, and a private one behind a relay.

Kafka clients connect to the address the broker advertises, not to the bootstrap address, so
a fault proxy that only sees the bootstrap connection would test nothing. The private broker
therefore advertises the port of a relay (a ``FaultProxy`` used as a plain pipe) started
before it. ``url_via(proxy)`` points the relay at the case's fault proxy: from then on every
connection a client opens, bootstrap or advertised, runs through that proxy, and cutting or
blackholing it cuts the client off completely (a reset behind the relay reaches the client).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from eventwire.brokers.catalog import open_broker, profile_named
from eventwire.brokers.kafka.broker import KafkaBroker
from eventwire.core.contract import Broker
from eventwire.testing.conformance import Harness
from eventwire.testing.conformance.harness import URLHarness, open_connected
from eventwire.testing.fault_proxy import FaultProxy
from eventwire.testing.spawn import LOOPBACK, free_port
from eventwire.testing.spawn_kafka import KafkaServer, spawn_kafka

SHARED = "kafka://127.0.0.1:9092"


class SharedKafkaHarness(URLHarness):
    """The shared Kafka: never restarted, no proxy (its advertised listener would bypass one);
    every topic its clients created is deleted afterwards."""

    def __init__(self, options: str = "") -> None:
        super().__init__(SHARED + options)
        self.upstream = None
        self.opened: list[KafkaBroker] = []

    async def aclose(self) -> None:
        await delete_created_topics(SHARED, self.opened)


async def delete_created_topics(url: str, brokers: list[KafkaBroker]) -> None:
    """Delete what ``brokers`` created on ``url`` (shared server hygiene)."""
    created = sorted({t for b in brokers for t in b.created_topics})
    if not created:
        return
    admin = open_broker(url)
    assert isinstance(admin, KafkaBroker)
    try:
        await admin.delete_topics(created)
    finally:
        await admin.aclose()


class PrivateKafkaHarness(Harness):
    """A private Kafka advertising ``relay``'s port; restarts and fault proxies allowed."""

    def __init__(self, server: KafkaServer, relay: FaultProxy) -> None:
        self.profile = profile_named("kafka")
        self.server = server
        self.relay = relay
        self.supports_restart = True
        self.upstream = (server.host, server.port)  # the broker's own listener

    @property
    def url(self) -> str:
        return f"kafka://{LOOPBACK}:{self.relay.port}"

    async def open(self) -> Broker:
        return await open_connected(self.url)

    async def restart_broker(self) -> None:
        await self.server.restart()

    def url_via(self, host: str, port: int) -> str:
        self.relay.upstream = (host, port)
        return f"kafka://{host}:{port}"


@contextlib.asynccontextmanager
async def private_kafka() -> AsyncIterator[PrivateKafkaHarness]:
    """A private Kafka behind a relay, both gone afterwards."""
    port = free_port()
    async with (
        FaultProxy(LOOPBACK, port) as relay,
        spawn_kafka(port=port, advertised_port=relay.port) as server,
    ):
        yield PrivateKafkaHarness(server, relay)
