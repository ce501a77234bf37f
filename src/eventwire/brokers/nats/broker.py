"""Broker layer: the base both NATS adapters share (connection, tracked publish, health)."""

from __future__ import annotations

import asyncio
import contextlib
from abc import abstractmethod
from typing import ClassVar

from nats.aio.client import Client

from eventwire.brokers._support.lifecycle import BrokerBase
from eventwire.brokers.nats.connection import open_connection
from eventwire.brokers.nats.envelope import check_size, to_headers
from eventwire.brokers.nats.options import NatsOptions
from eventwire.core.capabilities import BrokerProfile
from eventwire.core.contract import Health
from eventwire.core.errors import BrokerError
from eventwire.core.message import Message
from eventwire.core.url import BrokerURL


class NatsBrokerBase(BrokerBase):
    """One NATS connection per broker object; subclasses implement only how messages go out
    (``_send``), subscriptions, and what else ``_connect`` / ``_close_connection`` set up
    or release."""

    #: The connection name the server shows for this adapter.
    connection_name: ClassVar[str]

    def __init__(self, url: BrokerURL, profile: BrokerProfile) -> None:
        super().__init__(url, profile)
        self.options = NatsOptions.from_url(url)
        self._inflight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._nc: Client | None = None

    async def _connect(self) -> None:
        self._nc = await open_connection(self.url, self.options, name=self.connection_name)

    @property
    def client(self) -> Client:
        if self._nc is None:
            raise BrokerError(f"NATS broker at {self.url} is not connected")
        return self._nc

    async def _publish(self, topic: str, messages: tuple[Message, ...]) -> None:
        # aclose() waits for publishes already under way, so a confirmed one is never cut off.
        self._inflight += 1
        self._idle.clear()
        try:
            await self._publish_now(topic, messages)
        finally:
            self._inflight -= 1
            if not self._inflight:
                self._idle.set()

    async def _publish_now(self, topic: str, messages: tuple[Message, ...]) -> None:
        nc = self.client
        subject = self.options.subject(topic)
        prepared = []
        for message in messages:  # every message is checked before any is sent
            headers = to_headers(message)
            check_size(message, headers, nc.max_payload)
            prepared.append((message, headers))
        await self._send(topic, subject, prepared)

    @abstractmethod
    async def _send(
        self, topic: str, subject: str, prepared: list[tuple[Message, dict[str, str]]]
    ) -> None:
        """Send messages already checked by ``_publish_now`` (with their NATS headers)."""

    async def _flush_publishes(self) -> None:
        """Give publishes under way up to ``publish_timeout`` to finish (part of ``aclose``)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), self.options.publish_timeout)

    async def _close_connection(self) -> None:
        """Flush what nats-py still buffers, then close; nothing here may fail ``aclose``."""
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await self._nc.flush(timeout=2)
            with contextlib.suppress(Exception):
                await self._nc.close()

    def _connected_detail(self) -> str:
        return "connected"

    async def _health(self) -> Health:
        nc = self.client
        if nc.is_connected:
            return Health(ok=True, detail=self._connected_detail())
        return Health(ok=False, detail="reconnecting" if nc.is_reconnecting else "disconnected")
