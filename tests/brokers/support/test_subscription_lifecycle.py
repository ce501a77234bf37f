"""Tests: BrokerBase owns the subscription lifecycle (tracking, closing order, idempotence)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from eventwire.brokers._support.lifecycle import BrokerBase
from eventwire.brokers._support.subscription import Subscription
from eventwire.brokers.catalog import profile_named
from eventwire.brokers.memory.broker import MemoryBroker
from eventwire.core.errors import ClosedError
from eventwire.core.message import Delivery, Message
from eventwire.core.url import BrokerURL


class _Recorded:
    """A ``Subscription`` that writes what happens to it into the broker's log."""

    def __init__(self, log: list[str], name: str, *, fail_open: bool = False) -> None:
        self._log, self._name, self._fail_open = log, name, fail_open
        self._closed = False

    async def open(self) -> AsyncIterator[Delivery]:
        self._log.append(f"open {self._name}")
        if self._fail_open:
            raise RuntimeError("refused")
        return self

    def __aiter__(self) -> AsyncIterator[Delivery]:
        return self

    async def __anext__(self) -> Delivery:
        raise StopAsyncIteration

    async def aclose(self) -> int:
        if self._closed:
            return 0
        self._closed = True
        self._log.append(f"close {self._name}")
        return 2


class _OrderBroker(BrokerBase):
    def __init__(self) -> None:
        super().__init__(BrokerURL.parse("fake://u:pw@host:1"), profile_named("memory"))
        self.log: list[str] = []
        self.fail_open = False

    async def _connect(self) -> None:
        self.log.append("connect")

    async def _publish(self, topic: str, messages: tuple[Message, ...]) -> None:
        self.log.append(f"publish {topic}")

    def _subscribe(self, topic: str, group: str | None, prefetch: int) -> Subscription:
        return _Recorded(self.log, topic, fail_open=self.fail_open)

    async def _flush_publishes(self) -> None:
        self.log.append("flush publishes")

    async def _close_connection(self) -> None:
        self.log.append("close connection")


async def test_closing_the_broker_flushes_then_closes_subscriptions_then_the_connection() -> None:
    broker = _OrderBroker()
    async with broker.subscribe("a"), broker.subscribe("b", group="g"):
        await broker.aclose()
        assert broker.log[:3] == ["connect", "open a", "open b"]
        assert broker.log[3] == "flush publishes"
        assert sorted(broker.log[4:6]) == ["close a", "close b"]
        assert broker.log[6:] == ["close connection"]
    # Leaving afterwards closes nothing twice.
    assert broker.log.count("close a") == 1
    assert broker.log.count("close b") == 1


async def test_a_subscription_left_is_no_longer_closed_by_the_broker() -> None:
    broker = _OrderBroker()
    async with broker.subscribe("a"):
        pass
    await broker.aclose()
    assert broker.log == ["connect", "open a", "close a", "flush publishes", "close connection"]


async def test_a_subscription_that_fails_to_open_is_closed_and_forgotten() -> None:
    broker = _OrderBroker()
    broker.fail_open = True
    with pytest.raises(RuntimeError, match="refused"):
        async with broker.subscribe("a"):
            pytest.fail("entered a subscription that failed to open")
    await broker.aclose()
    assert broker.log == ["connect", "open a", "close a", "flush publishes", "close connection"]


async def test_subscribing_to_a_closed_broker_is_refused_before_anything_opens() -> None:
    broker = _OrderBroker()
    await broker.connect()
    await broker.aclose()
    with pytest.raises(ClosedError, match="cannot subscribe to 'a'"):
        broker.subscribe("a")
    assert "open a" not in broker.log


async def test_memory_subscription_gives_back_its_unsettled_deliveries_once() -> None:
    async with MemoryBroker(BrokerURL.parse("memory://"), profile_named("memory")) as broker:
        await broker.publish("t", *(Message(body=bytes([i])) for i in range(5)))
        sub = broker._subscribe("t", "g", 10)
        deliveries = await sub.open()
        taken = [await anext(deliveries) for _ in range(3)]
        await taken[0].ack()
        assert await sub.aclose() == 2
        assert await sub.aclose() == 0
        # What went back is delivered again, attempt + 1.
        async with broker.subscribe("t", group="g") as again:
            seen = [await anext(again) for _ in range(4)]
        assert sorted(d.message.body for d in seen) == [b"\x01", b"\x02", b"\x03", b"\x04"]
        assert sorted(d.attempt for d in seen) == [1, 1, 2, 2]


@pytest.mark.integration
@pytest.mark.kafka
async def test_kafka_subscription_gives_back_its_unsettled_deliveries_once() -> None:
    from brokers.kafka.kafka_support import open_kafka, topic_name
    from eventwire.testing.services import service_url

    broker = await open_kafka(service_url("kafka"))
    topic = topic_name("give-back")
    try:
        # One key: one partition, so the commit point is the first unsettled offset.
        await broker.publish(topic, *(Message(body=bytes([i]), key="k") for i in range(5)))
        sub = broker._subscribe(topic, "g", 10)
        async with asyncio.timeout(60):
            deliveries = await sub.open()
            taken = [await anext(deliveries) for _ in range(3)]
        await taken[0].ack()
        assert await sub.aclose() == 2
        assert await sub.aclose() == 0
        # What went back is read again: the two handed out with attempt + 1.
        async with asyncio.timeout(60), broker.subscribe(topic, group="g") as again:
            seen = [await anext(again) for _ in range(4)]
        assert [d.message.body for d in seen] == [b"\x01", b"\x02", b"\x03", b"\x04"]
        assert [d.attempt for d in seen] == [2, 2, 1, 1]
    finally:
        await broker.delete_topics(broker.created_topics)
        await broker.aclose()
