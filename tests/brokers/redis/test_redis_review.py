"""Redis adapter regressions from review: dead-letter failures, Pub/Sub dead letters, stale
members, trimmed pending entries (real server, bounded deadlines, no sleep-based asserts)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, cast

import pytest
import redis.asyncio as aioredis

from brokers.redis.redis_support import FAST, SHARED
from eventwire.brokers.catalog import open_broker
from eventwire.core.errors import PublishError
from eventwire.core.message import Delivery, Message, dead_letter_topic
from eventwire.testing.fault_proxy import FaultProxy
from eventwire.testing.spawn import RedisServer

if TYPE_CHECKING:
    from brokers.redis.redis_support import GroupRead, StreamEntries

pytestmark = [pytest.mark.integration, pytest.mark.redis]

URL = f"{SHARED}?{FAST}"


async def first(sub: AsyncIterator[Delivery], timeout: float = 15.0) -> Delivery:
    async with asyncio.timeout(timeout):
        return await anext(sub)


async def test_failed_dead_letter_keeps_the_entry_and_the_consumer_alive(
    topic: str, raw: aioredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    """A dead-letter write Redis refuses must neither XACK the entry (MULTI/EXEC ran the XACK
    after a failed XADD) nor stop the read loop for good (the error escaped the loop)."""
    dlq_key = f"ew:{dead_letter_topic(topic)}"
    async with open_broker(URL) as broker, broker.subscribe(topic, group="g") as sub:
        await raw.delete(dlq_key)
        await raw.set(dlq_key, "not a stream")  # every XADD to it now fails (WRONGTYPE)
        foreign = await raw.xadd(f"ew:{topic}", {"body": b"foreign", "foo": "bar"})
        await broker.publish(topic, Message(body=b"one"))
        await (await first(sub)).ack()
        # Until the dead-letter write has failed (logged as an error); then make the key
        # writable again.
        async with asyncio.timeout(15):
            while not any(r.levelno >= logging.ERROR for r in caplog.records):
                await asyncio.sleep(0.05)
        pending = await raw.xpending_range(f"ew:{topic}", "g", min="-", max="+", count=10)
        assert foreign in [p["message_id"] for p in pending], "acked without a dead letter"
        await raw.delete(dlq_key)
        await broker.publish(topic, Message(body=b"two"))
        second = await first(sub)
        assert second.message.body == b"two"
        await second.ack()
        async with asyncio.timeout(15):
            while not await raw.exists(dlq_key):
                await asyncio.sleep(0.05)
        dead = cast("StreamEntries", await raw.xrange(dlq_key))
    from eventwire.brokers.redis.envelope import fields_of_raw_entry

    assert [fields_of_raw_entry(fields[b"body"])[b"body"] for _, fields in dead] == [b"foreign"]


@pytest.mark.parametrize("scheme", ["redis", "redis+pubsub"])
async def test_groupless_dead_letter_after_the_subscription_closed_is_written(
    scheme: str, topic: str, raw: aioredis.Redis
) -> None:
    """Pub/Sub and group-less stream readers cannot redeliver: a dead letter settled after
    leaving the subscription must still reach the dead-letter stream, not vanish."""
    async with open_broker(f"{scheme}://127.0.0.1:6379/0?{FAST}") as broker:
        async with broker.subscribe(topic) as sub:
            await broker.publish(topic, Message(body=b"poison"))
            delivery = await first(sub)
        await delivery.dead_letter("handler-failed")
        dead = cast("StreamEntries", await raw.xrange(f"ew:{dead_letter_topic(topic)}"))
    assert [fields[b"body"] for _, fields in dead] == [b"poison"]


async def test_broadcast_delayed_nacks_leave_no_timers_behind(topic: str) -> None:
    """Every nack(delay) on a group-less reader armed a timer that stayed in a set forever:
    a long-lived subscriber nacking often grew without bound."""
    async with open_broker(URL) as broker, broker.subscribe(topic) as sub:
        await broker.publish(topic, Message(body=b"again"))
        for attempt in range(1, 21):
            delivery = await first(sub)
            assert delivery.attempt == attempt
            await delivery.nack(delay=0.001)
        await (await first(sub)).ack()
        assert len(sub._timers) == 0  # type: ignore[attr-defined]  # the subscription's private timer set


async def test_trimmed_entries_of_a_dead_member_leave_the_pel(
    topic: str, raw: aioredis.Redis
) -> None:
    """Entries deleted (trimmed) while pending under a dead member: the live ones are
    reclaimed with attempt 2, the deleted ones leave the PEL instead of staying forever."""
    key = f"ew:{topic}"
    async with open_broker(URL) as broker:
        async with broker.subscribe(topic, group="g"):
            pass  # creates the group (and the dead-letter stream)
        await broker.publish(topic, *(Message(body=f"m{i}".encode()) for i in range(4)))
        read = cast("GroupRead", await raw.xreadgroup("g", "dead-member", {key: ">"}, count=4))
        ids = [entry_id for entry_id, _ in read[0][1]]
        await raw.xdel(key, ids[1], ids[2])  # what MAXLEN trimming does to old entries
        async with broker.subscribe(topic, group="g") as sub:
            got = [await first(sub), await first(sub)]
            for delivery in got:
                await delivery.ack()
            assert sorted(d.message.body for d in got) == [b"m0", b"m3"]
            assert [d.attempt for d in got] == [2, 2]
            async with asyncio.timeout(15):
                while (await raw.xpending(key, "g"))["pending"]:
                    await asyncio.sleep(0.05)


async def test_publish_into_a_dead_network_fails_by_its_deadline(
    private_redis: RedisServer, topic: str
) -> None:
    """A half-open connection held a publish until socket_timeout (8 s here) although its
    publish_timeout (1 s) had long passed."""
    async with FaultProxy(private_redis.host, private_redis.port) as proxy:
        url = f"redis://{proxy.host}:{proxy.port}/0?publish_timeout=1&socket_timeout=8"
        async with open_broker(url) as broker:
            await broker.publish(topic, Message(body=b"connected"))
            proxy.blackhole(new_connections=True)
            started = time.monotonic()
            with pytest.raises(PublishError):
                await broker.publish(topic, Message(body=b"lost"))
            took = time.monotonic() - started
            proxy.heal()
    assert took < 5.0, f"publish_timeout=1 but the publish failed after {took:.1f} s"


async def test_pubsub_subscriber_survives_a_refused_resubscribe(
    private_redis: RedisServer, topic: str, caplog: pytest.LogCaptureFixture
) -> None:
    """An ACL change drops the subscriber and refuses its SUBSCRIBE (NOPERM): the read loop
    stopped for good; it must keep retrying and resume once the channel is allowed again."""
    admin = aioredis.Redis.from_url(private_redis.url)
    await admin.execute_command(  # type: ignore[no-untyped-call]  # redis-py leaves it untyped
        "ACL", "SETUSER", "sub", "on", ">pw-1", "~*", "&*", "+@all"
    )
    base = f"{private_redis.host}:{private_redis.port}/0?{FAST}"
    try:
        async with (
            open_broker(f"redis+pubsub://{base}") as publisher,
            open_broker(f"redis+pubsub://sub:pw-1@{base}") as broker,
            broker.subscribe(topic) as sub,
        ):
            await publisher.publish(topic, Message(body=b"before"))
            await (await first(sub)).ack()
            await admin.execute_command(  # type: ignore[no-untyped-call]  # redis-py leaves it untyped
                "ACL", "SETUSER", "sub", "resetchannels"
            )
            async with asyncio.timeout(15):
                while not any(r.levelno >= logging.ERROR for r in caplog.records):
                    await asyncio.sleep(0.05)
            await admin.execute_command(  # type: ignore[no-untyped-call]  # redis-py leaves it untyped
                "ACL", "SETUSER", "sub", "allchannels"
            )
            async with asyncio.timeout(20):
                while True:  # at-most-once: probes sent while re-subscribing are lost
                    await publisher.publish(topic, Message(body=b"after"))
                    try:
                        delivery = await asyncio.wait_for(anext(sub), 0.2)
                    except TimeoutError:
                        continue
                    break
            assert delivery.message.body == b"after"
            await delivery.ack()
    finally:
        await admin.aclose()


async def test_retry_parked_by_a_dead_member_is_not_stranded(
    topic: str, raw: aioredis.Redis
) -> None:
    """A member nacked with a delay (id parked in the schedule) and died: reclaiming skips
    parked ids, so the schedule alone must bring it back, to a live member, once due."""
    key = f"ew:{topic}"
    async with open_broker(URL) as broker:
        async with broker.subscribe(topic, group="g"):
            pass
        await broker.publish(topic, Message(body=b"parked"))
        read = cast("GroupRead", await raw.xreadgroup("g", "dead-member", {key: ">"}, count=1))
        entry_id = read[0][1][0][0]
        due_ms = int((time.time() + 0.5) * 1000)
        await raw.zadd(f"ew:{topic}:retry:g", {entry_id: due_ms})  # what nack(delay) does
        async with broker.subscribe(topic, group="g") as sub:
            delivery = await first(sub)
            assert (delivery.message.body, delivery.attempt) == (b"parked", 2)
            await delivery.ack()


async def test_members_that_leave_cleanly_leave_no_consumer_behind(
    topic: str, raw: aioredis.Redis
) -> None:
    """Consumer names are unique per subscription: each clean exit must delete its own
    name, or the group's consumer list grows with every restart of the app."""
    async with open_broker(URL) as broker:
        for round_ in range(4):
            async with broker.subscribe(topic, group="g") as sub:
                await broker.publish(topic, Message(body=b"r%d" % round_))
                await (await first(sub)).ack()
            async with broker.subscribe(topic, group="g"):
                pass  # one that never read anything
        assert await raw.xinfo_consumers(f"ew:{topic}", "g") == []


async def test_stream_deleted_under_a_live_group_is_recreated(
    topic: str, raw: aioredis.Redis
) -> None:
    """DEL of the stream takes the group with it (NOGROUP): the member re-creates the group
    and goes on with the new stream's entries, counting attempts afresh."""
    async with open_broker(URL) as broker, broker.subscribe(topic, group="g") as sub:
        await broker.publish(topic, Message(body=b"old"))
        old = await first(sub)
        await raw.delete(f"ew:{topic}")
        await old.ack()  # an XACK for a group that is gone: dropped, nothing breaks
        async with asyncio.timeout(20):
            while True:
                await broker.publish(topic, Message(body=b"new"))
                try:
                    delivery = await asyncio.wait_for(anext(sub), 0.5)
                except TimeoutError:
                    continue
                break
        assert (delivery.message.body, delivery.attempt) == (b"new", 1)
        await delivery.ack()
