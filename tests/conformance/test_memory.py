"""Tests: the conformance suite against the in-process memory broker."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace

import pytest

from eventwire.brokers.catalog import profile_named
from eventwire.brokers.memory.broker import forget_hub
from eventwire.core.capabilities import BrokerProfile, Guarantee
from eventwire.core.contract import Broker, Health
from eventwire.core.message import Delivery, Message
from eventwire.core.url import BrokerURL
from eventwire.testing.conformance import QUICK, CaseContext, ConformanceSuite, Harness
from eventwire.testing.conformance.context import missing_reason, requirements_of
from eventwire.testing.conformance.harness import open_connected

pytestmark = pytest.mark.conformance


class MemoryHarness(Harness):
    """Clients of one named in-process broker, private to the test that made the harness."""

    def __init__(self) -> None:
        self.profile = profile_named("memory")
        self.name = f"conformance-{uuid.uuid4().hex[:12]}"

    async def open(self) -> Broker:
        return await open_connected(f"memory://{self.name}")

    async def aclose(self) -> None:
        forget_hub(self.name)


class TestMemoryConformance(ConformanceSuite):
    PROFILE = "memory"

    @pytest.fixture
    async def harness(self) -> AsyncIterator[Harness]:
        harness = MemoryHarness()
        yield harness
        await harness.aclose()


# --- Over-claiming fails: a broker that claims a capability but does not deliver it ----------


class LyingDelivery(Delivery):
    """Wraps a real delivery but breaks the behaviour named by ``lie``."""

    __slots__ = ("inner", "lie")

    def __init__(self, inner: Delivery, lie: str) -> None:
        super().__init__(
            message=inner.message, topic=inner.topic, attempt=inner.attempt, group=inner.group
        )
        self.inner = inner
        self.lie = lie

    async def _ack(self) -> None:
        await self.inner.ack()

    async def _nack(self, delay: float | None) -> None:
        if self.lie == "redelivery":
            await self.inner.ack()  # "nack" that silently drops the message
        elif self.lie == "delayed_redelivery":
            await self.inner.nack()  # ignores the delay
        else:
            await self.inner.nack(delay=delay)

    async def _dead_letter(self, dead: Message) -> None:
        if self.lie == "dead_letter":
            await self.inner.ack()  # claims a DLQ, keeps nothing
        else:
            await self.inner._dead_letter(dead)


class LyingBroker:
    """A memory client that claims the full memory profile but breaks one capability."""

    def __init__(self, inner: Broker, lie: str) -> None:
        self.inner = inner
        self.lie = lie

    @property
    def profile(self) -> BrokerProfile:
        return self.inner.profile

    @property
    def url(self) -> BrokerURL:
        return self.inner.url

    async def connect(self) -> None:
        await self.inner.connect()

    async def health(self) -> Health:
        return await self.inner.health()

    async def publish(self, topic: str, *messages: Message) -> None:
        await self.inner.publish(topic, *messages)

    @asynccontextmanager
    async def subscribe(
        self, topic: str, *, group: str | None = None, prefetch: int = 100
    ) -> AsyncIterator[AsyncIterator[Delivery]]:
        if self.lie == "exclusive_in_flight":
            prefetch = 100
        if self.lie == "broadcast" and group is None:
            group = "everyone-competes"
        async with self.inner.subscribe(topic, group=group, prefetch=prefetch) as sub:
            yield self._wrap(sub)

    async def _wrap(self, sub: AsyncIterator[Delivery]) -> AsyncIterator[Delivery]:
        held: list[Delivery] = []
        async for delivery in sub:
            if self.lie != "ordered_per_key":
                yield LyingDelivery(delivery, self.lie)
                continue
            held.append(delivery)  # hand out chunks of 32 in reverse: keys go out of order
            if len(held) == 32:
                for reordered in reversed(held):
                    yield LyingDelivery(reordered, self.lie)
                held.clear()

    async def aclose(self) -> None:
        await self.inner.aclose()

    async def __aenter__(self) -> LyingBroker:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


class LyingHarness(MemoryHarness):
    scale = replace(QUICK, timeout=0.5, quiet=0.2, messages=20)

    def __init__(self, lie: str) -> None:
        super().__init__()
        self.lie = lie

    async def open(self) -> Broker:
        return LyingBroker(await super().open(), self.lie)


@pytest.mark.parametrize(
    ("lie", "case"),
    [
        ("redelivery", "test_redelivery_after_nack"),
        ("redelivery", "test_continue_after_many_errors"),
        ("delayed_redelivery", "test_delayed_redelivery"),
        ("dead_letter", "test_dead_letter_reaches_dlq"),
        ("exclusive_in_flight", "test_no_next_message_before_ack"),
        ("broadcast", "test_broadcast_without_group"),
        ("ordered_per_key", "test_order_per_key"),
    ],
)
async def test_overclaiming_fails(lie: str, case: str) -> None:
    harness = LyingHarness(lie)
    assert lie in requirements_of(getattr(ConformanceSuite, case)), "case does not prove it"
    assert missing_reason(harness, requirements_of(getattr(ConformanceSuite, case))) is None
    ctx = CaseContext(harness, case)
    try:
        with pytest.raises(AssertionError):
            await getattr(ConformanceSuite(), case)(ctx)
    finally:
        await ctx.aclose()
        await harness.aclose()


async def test_unclaimed_capability_skips_with_reason() -> None:
    at_most_once = replace(
        profile_named("memory").capabilities, guarantee=Guarantee.AT_MOST_ONCE, redelivery=False
    )
    harness = MemoryHarness()
    harness.profile = replace(harness.profile, capabilities=at_most_once)
    case = ConformanceSuite.test_redelivery_after_nack
    assert missing_reason(harness, requirements_of(case)) == "profile does not claim redelivery"
    basic = ConformanceSuite.test_publish_subscribe_envelope
    assert missing_reason(harness, requirements_of(basic)) is None, "basic cases always run"
