"""Tests: memory-broker specifics the conformance suite does not cover (hubs, retention, keys)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from eventwire.brokers.catalog import open_broker
from eventwire.brokers.memory.broker import MemoryBroker, forget_hub
from eventwire.core.errors import ClosedError, ConfigurationError
from eventwire.core.message import Message
from eventwire.testing.conformance.helpers import collect, expect_nothing, ids, next_delivery

QUICK = 5.0  # generous deadline; everything here is in-process
QUIET = 0.05


@pytest.fixture
async def hub() -> AsyncIterator[str]:
    name = f"unit-{uuid.uuid4().hex[:10]}"
    yield name
    forget_hub(name)


async def opened(url: str) -> MemoryBroker:
    broker = open_broker(url)
    assert isinstance(broker, MemoryBroker)
    await broker.connect()
    return broker


async def test_same_name_shares_state_private_does_not(hub: str) -> None:
    a, b = await opened(f"memory://{hub}"), await opened(f"memory://{hub}")
    p, q = await opened("memory://"), await opened("memory://")
    try:
        assert a.hub is b.hub
        assert p.hub is not q.hub
        assert a.hub is not p.hub
        await a.publish("t", Message(body=b"shared"))
        async with b.subscribe("t", group="g") as sub:
            assert (await next_delivery(sub, QUICK)).message.body == b"shared"
        await p.publish("t", Message(body=b"private"))
        async with q.subscribe("t", group="g") as sub:
            await expect_nothing(sub, QUIET)
        assert (await a.health()).detail == f"in-process broker {hub}"
    finally:
        for broker in (a, b, p, q):
            await broker.aclose()


async def test_state_outlives_its_clients_until_forgotten(hub: str) -> None:
    async with await opened(f"memory://{hub}") as first:
        await first.publish("t", Message(body=b"kept"))
    second = await opened(f"memory://{hub}")
    async with second, second.subscribe("t", group="late") as sub:
        assert (await next_delivery(sub, QUICK)).message.body == b"kept"
    forget_hub(hub)
    async with await opened(f"memory://{hub}") as third:
        assert "t" not in third.hub.topics


@pytest.mark.parametrize("value", ["0", "-1", "many"])
def test_bad_retention_is_a_configuration_error(value: str) -> None:
    with pytest.raises(ConfigurationError, match="retention"):
        open_broker(f"memory://x?retention={value}")


async def test_retention_keeps_newest_and_never_loses_in_flight(hub: str) -> None:
    async with await opened(f"memory://{hub}?retention=5") as broker:
        async with broker.subscribe("t", group="slow") as sub:
            await broker.publish("t", Message(body=b"held"))
            held = await next_delivery(sub, QUICK)
            messages = [Message(body=str(i).encode()) for i in range(20)]
            await broker.publish("t", *messages)
            assert len(broker.hub.topic("t").log) == 5
            await held.nack()
            again = await next_delivery(sub, QUICK)
            assert again.message.body == b"held"
            assert again.attempt == 2
            await again.ack()
            # The group lagged beyond retention: it resumes at the oldest retained message.
            rest = await collect(sub, 5, QUICK)
            assert ids(rest) == ids(messages[-5:])
        async with broker.subscribe("t", group="new") as sub:
            assert ids(await collect(sub, 5, QUICK)) == ids(messages[-5:])


async def test_retention_dropping_unread_messages_is_counted(hub: str) -> None:
    from eventwire.brokers._support.retention import dropped_counts

    before = dropped_counts().get(("memory", "t"), 0)
    async with await opened(f"memory://{hub}?retention=5") as broker:
        async with broker.subscribe("t", group="slow"):
            pass
        await broker.publish("t", *(Message(body=str(i).encode()) for i in range(20)))
    assert dropped_counts()[("memory", "t")] - before == 15


async def test_key_stays_with_one_member_while_in_flight(hub: str) -> None:
    a, b = await opened(f"memory://{hub}"), await opened(f"memory://{hub}")
    try:
        async with (
            a.subscribe("t", group="g", prefetch=5) as sub_a,
            b.subscribe("t", group="g", prefetch=5) as sub_b,
        ):
            k1, k2, other = (
                Message(body=b"k1", key="k"),
                Message(body=b"k2", key="k"),
                Message(body=b"o", key="other"),
            )
            await a.publish("t", k1, k2, other)
            first = await next_delivery(sub_a, QUICK)
            assert first.message.id == k1.id
            # b may not overtake k1 with k2; it gets the other key instead.
            got_b = await next_delivery(sub_b, QUICK)
            assert got_b.message.id == other.id
            await got_b.ack()
            await expect_nothing(sub_b, QUIET)
            await first.ack()
            # Once the key is free, whoever asks next gets k2.
            following = await next_delivery(sub_b, QUICK)
            assert following.message.id == k2.id
            await following.ack()
    finally:
        await a.aclose()
        await b.aclose()


async def test_aclose_returns_in_flight_to_the_group(hub: str) -> None:
    a, b = await opened(f"memory://{hub}"), await opened(f"memory://{hub}")
    try:
        async with a.subscribe("t", group="g") as sub:
            await a.publish("t", Message(body=b"x"))
            held = await next_delivery(sub, QUICK)
            await a.aclose()
            await held.ack()  # no-op: it went back to the group
        async with b.subscribe("t", group="g") as sub:
            again = await next_delivery(sub, QUICK)
            assert again.attempt == 2
            await again.ack()
        with pytest.raises(ClosedError):
            async with a.subscribe("t", group="g"):
                pass
    finally:
        await b.aclose()


async def test_broadcast_groups_end_with_their_subscriber(hub: str) -> None:
    async with await opened(f"memory://{hub}") as broker:
        async with broker.subscribe("t") as sub:
            await broker.publish("t", Message(body=b"x"))
            await next_delivery(sub, QUICK)  # left unsettled: dropped with the group
            assert len(broker.hub.topic("t").broadcast) == 1
        assert not broker.hub.topic("t").broadcast
        assert not broker.hub.topic("t").groups


async def test_key_order_survives_a_member_leaving(hub: str) -> None:
    a, b = await opened(f"memory://{hub}"), await opened(f"memory://{hub}")
    try:
        k1, k2 = Message(body=b"k1", key="k"), Message(body=b"k2", key="k")
        async with b.subscribe("t", group="g", prefetch=5) as sub_b:
            async with a.subscribe("t", group="g", prefetch=5) as sub_a:
                await a.publish("t", k1, k2)
                assert (await next_delivery(sub_a, QUICK)).message.id == k1.id
                await expect_nothing(sub_b, QUIET)  # k2 waits behind k1, held by a
            # a left holding k1: b must get k1 again before k2.
            got = await collect(sub_b, 2, QUICK)
            assert ids(got) == [k1.id, k2.id]
            assert [d.attempt for d in got] == [2, 1]
    finally:
        await a.aclose()
        await b.aclose()


async def test_delayed_nack_comes_back_when_the_timer_fires_early(hub: str) -> None:
    """asyncio runs timers up to its clock resolution early (15 ms on Windows); an idle
    group must still get its delayed redelivery, not wait for the next publish."""
    loop = asyncio.get_running_loop()
    resolution = loop._clock_resolution  # type: ignore[attr-defined]  # asyncio's private clock resolution, coarsened for the test
    loop._clock_resolution = 1.0  # type: ignore[attr-defined]  # asyncio's private clock resolution, coarsened for the test
    broker = await opened(f"memory://{hub}")
    try:
        async with broker.subscribe("t", group="g") as sub:
            await broker.publish("t", Message(body=b"later"))
            first = await next_delivery(sub, QUICK)
            await first.nack(delay=0.3)
            again = await asyncio.wait_for(anext(sub), QUICK)
            assert (again.message.id, again.attempt) == (first.message.id, 2)
    finally:
        loop._clock_resolution = resolution  # type: ignore[attr-defined]  # asyncio's private clock resolution, restored
        await broker.aclose()
