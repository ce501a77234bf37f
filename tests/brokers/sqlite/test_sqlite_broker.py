"""Tests: the sqlite broker in one process: restart, retention, delays, bad rows, dedup."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import closing
from dataclasses import replace
from pathlib import Path

import pytest

from eventwire.brokers.catalog import open_broker, profile_named
from eventwire.brokers.sqlite import retention
from eventwire.brokers.sqlite.broker import SQLiteBroker
from eventwire.core import headers as h
from eventwire.core.contract import Broker
from eventwire.core.errors import MessageTooLargeError, PublishError
from eventwire.core.message import DEAD_LETTER_GROUP, Delivery, Message, dead_letter_topic

DEADLINE = 10.0


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'broker.db'}"


async def take(sub: AsyncIterator[Delivery], n: int) -> list[Delivery]:
    out: list[Delivery] = []
    async with asyncio.timeout(DEADLINE):
        while len(out) < n:
            out.append(await anext(sub))
    return out


def quiet(url: str) -> SQLiteBroker:
    """A broker whose background retention waits an hour after its first (empty) sweep, so a
    test's own ``run_retention()`` count is not taken first by it on a loaded machine."""
    broker = open_broker(url)
    assert isinstance(broker, SQLiteBroker)
    broker.settings = replace(broker.settings, sweep_interval=3600.0)
    return broker


def bodies(deliveries: list[Delivery]) -> list[bytes]:
    return [d.message.body for d in deliveries]


def count_rows(url: str, topic: str) -> int:
    path = url.removeprefix("sqlite:///").split("?")[0]
    with closing(sqlite3.connect(path)) as conn:
        return int(
            conn.execute("SELECT COUNT(*) FROM messages WHERE topic = ?", (topic,)).fetchone()[0]
        )


async def test_restart_keeps_unacked_messages_and_returns_held_ones(url: str) -> None:
    async with open_broker(url) as broker, broker.subscribe("t", group="g", prefetch=3) as sub:
        await broker.publish("t", *(Message(body=b"%d" % i) for i in range(5)))
        first = await take(sub, 3)
        await first[0].ack()
        await first[1].ack()
    async with open_broker(url) as reopened, reopened.subscribe("t", group="g") as sub:
        rest = await take(sub, 3)
    assert bodies(rest) == [b"2", b"3", b"4"]
    assert [d.attempt for d in rest] == [2, 1, 1]


async def test_retention_deletes_consumed_and_keeps_unconsumed(url: str) -> None:
    async with quiet(url + "?retention=0") as broker:
        async with (
            broker.subscribe("t", group="fast") as fast,
            broker.subscribe("t", group="slow") as slow,
        ):
            await broker.publish("t", *(Message(body=b"%d" % i) for i in range(10)))
            for d in await take(fast, 10):
                await d.ack()
            for d in await take(slow, 6):
                await d.ack()
            await broker.publish("t", Message(body=b"10"))  # flushes the batched acks first
            assert await broker.run_retention() == 6
            assert count_rows(url, "t") == 5
        async with broker.subscribe("t", group="late") as late:
            assert bodies(await take(late, 5)) == [b"6", b"7", b"8", b"9", b"10"]


async def test_retention_age_is_checked_against_the_sweep_clock(url: str) -> None:
    broker = open_broker(url + "?retention=3600")
    async with broker, broker.subscribe("t", group="g") as sub:
        await broker.publish("t", *(Message(body=b"%d" % i) for i in range(4)))
        for d in await take(sub, 3):
            await d.ack()
        await broker.publish("quiet", Message(body=b"nobody reads this topic"))
    path = url.removeprefix("sqlite:///")
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        assert retention.sweep(conn, retention=3600, max_messages=None) == 0  # too young
        later = time.time() + 7200
        # Settled ones go; the unsettled one stays; a topic with no group ages out.
        assert retention.sweep(conn, retention=3600, max_messages=None, now=later) == 4
    assert count_rows(url, "t") == 1
    assert count_rows(url, "quiet") == 0


async def test_max_messages_caps_consumed_history(url: str) -> None:
    async with open_broker(url + "?max_messages=3") as broker:
        assert isinstance(broker, SQLiteBroker)
        async with broker.subscribe("t", group="g") as sub:
            await broker.publish("t", *(Message(body=b"%d" % i) for i in range(8)))
            for d in await take(sub, 8):
                await d.ack()
            await broker.publish("other", Message(body=b"x"))
            await broker.run_retention()
        assert count_rows(url, "t") == 3


async def test_nack_with_delay_waits_before_redelivery(url: str) -> None:
    async with open_broker(url) as broker, broker.subscribe("t", group="g") as sub:
        await broker.publish("t", Message(body=b"x"))
        (first,) = await take(sub, 1)
        nacked = time.monotonic()
        await first.nack(delay=0.4)
        (again,) = await take(sub, 1)
        assert time.monotonic() - nacked >= 0.39
        assert again.attempt == 2
        assert again.message.id == first.message.id
        await again.ack()


async def test_leaving_returns_unsettled_deliveries_at_once(url: str) -> None:
    async with open_broker(url) as broker:
        async with broker.subscribe("t", group="g", prefetch=1) as sub:
            await broker.publish("t", Message(body=b"a"), Message(body=b"b"))
            (held,) = await take(sub, 1)
            with pytest.raises(TimeoutError):  # prefetch=1: nothing more until it settles
                await asyncio.wait_for(anext(sub), 0.2)
        await held.ack()  # after leaving: a no-op, the message went back to the group
        async with broker.subscribe("t", group="g") as sub:
            again = await take(sub, 2)
    assert bodies(again) == [b"a", b"b"]
    assert [d.attempt for d in again] == [2, 1]


async def test_republished_message_id_is_dropped(url: str) -> None:
    async with open_broker(url) as broker:
        message = Message(body=b"once")
        async with broker.subscribe("t", group="g") as sub:
            await broker.publish("t", message)
            await broker.publish("t", message, Message(body=b"next"))
            assert bodies(await take(sub, 2)) == [b"once", b"next"]


async def test_broadcast_sees_only_new_messages_and_leaves_no_group(url: str) -> None:
    async with open_broker(url) as broker:
        await broker.publish("t", Message(body=b"old"))
        async with broker.subscribe("t") as one, broker.subscribe("t") as two:
            await broker.publish("t", Message(body=b"new"))
            assert bodies(await take(one, 1)) == [b"new"]
            assert bodies(await take(two, 1)) == [b"new"]
    path = url.removeprefix("sqlite:///")
    with closing(sqlite3.connect(path)) as conn:
        groups = conn.execute("SELECT grp FROM consumer_groups WHERE topic = 't'").fetchall()
    assert groups == []


async def _insert_raw(url: str, headers: bytes | str, msg_id: bytes | str, body: bytes) -> None:
    path = url.removeprefix("sqlite:///")
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute(
            "INSERT INTO messages (topic, msg_id, content_type, created, headers, body, "
            "stored_at) VALUES ('t', ?, 'text/plain', 0, ?, ?, ?)",
            (msg_id, headers, body, time.time()),
        )


@pytest.mark.parametrize(
    ("headers", "msg_id"),
    [("{not json", "id-1"), (b'{"a": "\xff"}', "id-2"), ("{}", b"\xfe\xff"), ('{"a": 1}', "i")],
    ids=["bad-json", "non-utf8-headers", "non-utf8-id", "non-string-header"],
)
async def test_malformed_row_is_dead_lettered_not_fatal(
    url: str, headers: bytes | str, msg_id: bytes | str
) -> None:
    async with open_broker(url) as broker:
        async with broker.subscribe("t", group="g") as sub:
            await _insert_raw(url, headers, msg_id, b"\x00raw body\xff")
            await broker.publish("t", Message(body=b"good"))
            assert bodies(await take(sub, 1)) == [b"good"]
        async with broker.subscribe(dead_letter_topic("t"), group=DEAD_LETTER_GROUP) as dlq:
            (dead,) = await take(dlq, 1)
    assert dead.message.body == b"\x00raw body\xff"
    assert dead.message.headers[h.DLQ_REASON].startswith("unreadable envelope: ")
    assert dead.message.headers[h.DLQ_ORIGINAL_TOPIC] == "t"


async def test_aclose_ends_iteration_while_a_delivery_is_held(url: str) -> None:
    broker: Broker = open_broker(url)
    await broker.connect()
    async with broker.subscribe("t", group="g") as sub:
        await broker.publish("t", Message(body=b"a"))
        (held,) = await take(sub, 1)

        async def next_one() -> Delivery:
            return await anext(sub)

        waiting = asyncio.create_task(next_one())
        await asyncio.sleep(0)
        await broker.aclose()
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(waiting, DEADLINE)
        await held.ack()  # a no-op now
    async with open_broker(url) as reopened, reopened.subscribe("t", group="g") as sub:
        (again,) = await take(sub, 1)
        assert again.attempt == 2


async def test_health_reports_the_file(url: str) -> None:
    async with open_broker(url) as broker:
        health = await broker.health()
    assert health.ok
    assert (await broker.health()).ok is False


async def test_two_groups_dead_lettering_one_message_keep_both(url: str) -> None:
    async with open_broker(url) as broker:
        message = Message(body=b"poison")
        async with broker.subscribe("t", group="a") as a, broker.subscribe("t", group="b") as b:
            await broker.publish("t", message)
            (first,) = await take(a, 1)
            await first.nack()
            (again,) = await take(a, 1)
            await again.dead_letter("bad")
            (other,) = await take(b, 1)
            await other.dead_letter("bad")
        async with broker.subscribe(dead_letter_topic("t"), group=DEAD_LETTER_GROUP) as dlq:
            dead = await take(dlq, 2)
    by_group = {d.message.headers[h.DLQ_GROUP]: d.message.headers for d in dead}
    assert set(by_group) == {"a", "b"}
    assert h.DLQ_FIRST_FAILURE in by_group["a"]  # the nack recorded a first failure
    assert h.DLQ_FIRST_FAILURE not in by_group["b"]


async def test_broadcast_group_of_a_dead_process_stops_pinning_messages(url: str) -> None:
    async with quiet(url + "?retention=0") as broker:
        await broker.publish("t", Message(body=b"a"))
        path = url.removeprefix("sqlite:///")
        with closing(sqlite3.connect(path)) as conn, conn:
            # What a SIGKILLed broadcast subscriber leaves behind: its heartbeat stopped.
            conn.execute(
                "INSERT INTO consumer_groups (topic, grp, cursor, ephemeral_until) "
                "VALUES ('t', '~broadcast-dead', 0, ?)",
                (time.time() - 1,),
            )
        assert await broker.run_retention() == 1
        assert count_rows(url, "t") == 0


async def test_lock_held_by_another_process_delays_but_does_not_break(url: str) -> None:
    path = url.removeprefix("sqlite:///")
    broker = open_broker(url + "?busy_timeout=50")
    async with broker, broker.subscribe("t", group="g") as sub:
        await broker.publish("t", Message(body=b"a"))
        blocker = sqlite3.connect(path, isolation_level=None)
        try:
            blocker.execute("BEGIN IMMEDIATE")
            with pytest.raises(PublishError, match="locked"):
                await broker.publish("t", Message(body=b"b"))
            waiting = asyncio.ensure_future(take(sub, 1))
            await asyncio.sleep(0.2)  # claims time out on the lock meanwhile, quietly
            assert not waiting.done()
            blocker.execute("COMMIT")
            assert bodies(await waiting) == [b"a"]
        finally:
            blocker.close()


async def test_largest_allowed_body_round_trips_and_larger_is_refused(url: str) -> None:
    limit = profile_named("sqlite").capabilities.max_body_bytes
    async with open_broker(url) as broker, broker.subscribe("t", group="g") as sub:
        big = Message(body=bytes(range(256)) * (limit // 256))
        await broker.publish("t", big)
        with pytest.raises(MessageTooLargeError):
            await broker.publish("t", Message(body=b"x" * (limit + 1)))
        (got,) = await take(sub, 1)
        assert got.message.body == big.body
