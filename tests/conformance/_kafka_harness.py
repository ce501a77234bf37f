"""Tests: conformance harnesses for Kafka: the shared server, and a private one behind a relay.

Kafka clients connect to the address the broker advertises, not to the bootstrap address, so
a fault proxy that only sees the bootstrap connection would test nothing. The private broker
therefore advertises the port of a relay (a ``FaultProxy`` used as a plain pipe) started
before it. ``url_via(proxy)`` points the relay at the case's fault proxy: from then on every
connection a client opens, bootstrap or advertised, runs through that proxy, and cutting or
blackholing it cuts the client off completely.

The relay is not a ``FaultProxy``: a FaultProxy link whose upstream side is reset stays open
towards its client until the client sends something, so a cut behind it looked like a silent
(half-open) connection to an idle client. The relay resets both sides as soon as one ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Self

from eventwire.brokers.catalog import open_broker, profile_named
from eventwire.brokers.kafka.broker import KafkaBroker
from eventwire.core.contract import Broker
from eventwire.testing.conformance import Harness
from eventwire.testing.conformance.harness import URLHarness, open_connected
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


def _reset(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class Relay:
    """A plain TCP pipe to ``upstream`` (changeable) that resets both sides when one ends."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._accept, LOOPBACK, 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            _reset(writer)
            return
        pumps = {
            asyncio.create_task(self._pump(reader, up_writer)),
            asyncio.create_task(self._pump(up_reader, writer)),
        }
        self._tasks.update(pumps)
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            self._tasks.difference_update(pumps)
            _reset(writer)
            _reset(up_writer)

    @staticmethod
    async def _pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()


class PrivateKafkaHarness(Harness):
    """A private Kafka advertising ``relay``'s port; restarts and fault proxies allowed."""

    def __init__(self, server: KafkaServer, relay: Relay) -> None:
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
        Relay((LOOPBACK, port)) as relay,
        spawn_kafka(port=port, advertised_port=relay.port) as server,
    ):
        yield PrivateKafkaHarness(server, relay)
