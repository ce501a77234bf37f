"""Tests: BrokerBase validates before sending, connects once and closes idempotently."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from eventwire.brokers._support.lifecycle import BrokerBase, validate_topic
from eventwire.brokers._support.subscription import Subscription
from eventwire.brokers.catalog import profile_named
from eventwire.core.errors import (
    ClosedError,
    ConfigurationError,
    InvalidHeaderError,
    MessageTooLargeError,
)
from eventwire.core.message import Delivery, Message
from eventwire.core.url import BrokerURL


class _Empty:
    """A ``Subscription`` with nothing to deliver."""

    async def open(self) -> AsyncIterator[Delivery]:
        return _nothing()

    async def aclose(self) -> int:
        return 0


async def _nothing() -> AsyncIterator[Delivery]:
    nothing: tuple[Delivery, ...] = ()
    for delivery in nothing:
        yield delivery


class RecordingBroker(BrokerBase):
    def __init__(self) -> None:
        super().__init__(BrokerURL.parse("fake://u:hunter2@host:1"), profile_named("memory"))
        self.calls: list[str] = []
        self.sent: list[Message] = []

    async def _connect(self) -> None:
        self.calls.append("connect")

    async def _publish(self, topic: str, messages: tuple[Message, ...]) -> None:
        self.sent.extend(messages)

    def _subscribe(self, topic: str, group: str | None, prefetch: int) -> Subscription:
        return _Empty()

    async def _aclose(self) -> None:
        self.calls.append("close")


async def test_one_bad_message_sends_nothing_of_the_call() -> None:
    broker = RecordingBroker()
    good = Message(body=b"ok")
    with pytest.raises(InvalidHeaderError):
        await broker.publish("t", good, Message(body=b"", headers={"a": "\n"}))
    limit = broker.profile.capabilities.max_body_bytes
    with pytest.raises(MessageTooLargeError):
        await broker.publish("t", good, Message(body=bytes(limit + 1)))
    assert broker.sent == []
    await broker.publish("t", good)
    assert broker.sent == [good]


async def test_connects_lazily_once_and_closes_idempotently() -> None:
    broker = RecordingBroker()
    assert (await broker.health()).detail == "not connected"
    await broker.publish("t", Message(body=b"1"))
    await broker.connect()
    await broker.publish("t", Message(body=b"2"))
    assert (await broker.health()).ok
    await broker.aclose()
    await broker.aclose()
    assert broker.calls == ["connect", "close"]
    assert not (await broker.health()).ok
    with pytest.raises(ClosedError):
        await broker.publish("t", Message(body=b"3"))
    with pytest.raises(ClosedError):
        await broker.connect()


async def test_context_manager_and_repr_without_password() -> None:
    async with RecordingBroker() as broker:
        assert "connected" in repr(broker)
        assert "hunter2" not in repr(broker)
    assert broker.closed
    assert "closed" in repr(broker)


@pytest.mark.parametrize("name", ["", ".hidden", "has space", "a/b", "x" * 201, "ü"])
def test_bad_topic_and_group_names(name: str) -> None:
    with pytest.raises(ConfigurationError):
        validate_topic(name)
    broker = RecordingBroker()
    with pytest.raises(ConfigurationError):
        broker.subscribe(name)
    with pytest.raises(ConfigurationError):
        broker.subscribe("ok", group=name)


def test_prefetch_must_be_positive() -> None:
    with pytest.raises(ConfigurationError, match="prefetch"):
        RecordingBroker().subscribe("t", prefetch=0)


def test_portable_names_pass() -> None:
    for name in ("orders", "orders.v1", "a-b_c.D9", "x" * 200):
        validate_topic(name)


async def test_subscribing_after_close_is_refused_by_the_base_for_every_adapter() -> None:
    broker = RecordingBroker()
    await broker.connect()
    await broker.aclose()
    # subscribe() itself raises, before the adapter's _subscribe is reached.
    with pytest.raises(ClosedError, match="cannot subscribe to 't'"):
        broker.subscribe("t")
