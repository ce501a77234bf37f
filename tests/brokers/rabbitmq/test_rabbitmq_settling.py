"""Tests: RabbitMQ settling paths: queues deleted behind the adapter, broker-made dead letters."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import aio_pika
import pytest

from brokers.rabbitmq.rabbitmq_support import HOST, PORT, Opener
from eventwire.brokers.rabbitmq import delays
from eventwire.brokers.rabbitmq import options as names
from eventwire.core import headers as h
from eventwire.core.errors import PublishError
from eventwire.core.message import DEAD_LETTER_GROUP, Delivery, Message, dead_letter_topic

pytestmark = [pytest.mark.integration, pytest.mark.rabbitmq]


async def _delete_queue(queue: str) -> None:
    connection = await aio_pika.connect(host=HOST, port=PORT)
    try:
        channel = await (await connection.channel()).get_underlay_channel()
        await channel.queue_delete(queue)
    finally:
        await connection.close()


async def _next(sub: AsyncIterator[Delivery], patience: float = 30.0) -> Delivery:
    async with asyncio.timeout(patience):
        return await anext(sub)


def _same_message(got: Message, sent: Message) -> None:
    assert got.body == sent.body
    assert (got.id, got.key, got.correlation_id, got.causation_id) == (
        sent.id,
        sent.key,
        sent.correlation_id,
        sent.causation_id,
    )
    assert got.timestamp == sent.timestamp
    assert got.content_type == sent.content_type
    assert dict(got.headers) == dict(sent.headers)


async def test_consumer_comes_back_after_its_queue_is_deleted(
    open_rmq: Opener, exchange: str
) -> None:
    """basic.cancel from the server (queue deleted): declare again and consume again."""
    topic = f"gone.{uuid.uuid4().hex[:8]}"
    broker = await open_rmq()
    async with broker.subscribe(topic, group="g") as sub:
        await broker.publish(topic, Message(body=b"first"))
        await (await _next(sub)).ack()
        await _delete_queue(names.group_queue(exchange, topic, "g"))
        # Publish until the re-declared queue takes one; each publish before that comes back.
        sent = Message(body=b"after")
        async with asyncio.timeout(30):
            while True:
                try:
                    await broker.publish(topic, sent)
                except PublishError:
                    await asyncio.sleep(0.1)
                    continue
                try:
                    got = await _next(sub, patience=0.5)
                except TimeoutError:
                    continue
                break
        assert got.message.body == b"after"
        await got.ack()


async def test_nack_delay_reaches_a_deleted_retry_queue(open_rmq: Opener, exchange: str) -> None:
    """The retry copy must not be confirmed into nowhere and the original acked (loss)."""
    topic = f"retry.{uuid.uuid4().hex[:8]}"
    broker = await open_rmq()
    sent = Message(body=b"\x00\xffpayload", key="k1", headers={"h": "v\u00e9"}, correlation_id="c1")
    async with broker.subscribe(topic, group="g") as sub:
        await broker.publish(topic, sent)
        first = await _next(sub)
        await first.nack(delay=0.1)
        second = await _next(sub)
        assert second.attempt == 2
        _same_message(second.message, sent)
        await _delete_queue(delays.level_queue(exchange, 0))
        await second.nack(delay=0.1)
        third = await _next(sub)
        assert third.attempt == 3
        _same_message(third.message, sent)
        await third.ack()


async def test_dead_letter_reaches_a_deleted_dead_letter_queue(
    open_rmq: Opener, exchange: str
) -> None:
    topic = f"dlqgone.{uuid.uuid4().hex[:8]}"
    broker = await open_rmq()
    sent = Message(body=b"poison", headers={"a": "b"})
    async with broker.subscribe(topic, group="g") as sub:
        dlq_topic = dead_letter_topic(topic)
        await _delete_queue(names.group_queue(exchange, dlq_topic, DEAD_LETTER_GROUP))
        await broker.publish(topic, sent)
        await (await _next(sub)).dead_letter("bad")
    async with broker.subscribe(dlq_topic, group=DEAD_LETTER_GROUP) as dlq:
        dead = await _next(dlq)
        assert dead.message.body == sent.body
        assert dead.message.headers["x-eventwire-dlq-reason"] == "bad"
        await dead.ack()


async def test_broker_dead_letter_after_a_delayed_retry_names_topic_and_group(
    open_rmq: Opener,
) -> None:
    """After a delayed retry the routing key is the delay key, not the topic."""
    topic = f"limit2.{uuid.uuid4().hex[:8]}"
    broker = await open_rmq(delivery_limit=1)
    async with (
        broker.subscribe(topic, group="svc", prefetch=1) as sub,
        broker.subscribe(dead_letter_topic(topic), group=DEAD_LETTER_GROUP) as dlq,
    ):
        await broker.publish(topic, Message(body=b"crash-loop"))
        await (await _next(sub)).nack(delay=0.1)
        attempts = []
        for _ in range(2):  # x-delivery-limit 1: the second return dead-letters it
            delivery = await _next(sub)
            attempts.append(delivery.attempt)
            await delivery.nack()
        dead = await _next(dlq)
        await dead.ack()
    assert attempts == [2, 3]
    assert dead.message.body == b"crash-loop"
    assert dead.message.headers[h.DLQ_REASON] == "delivery-limit"
    assert dead.message.headers[h.DLQ_ORIGINAL_TOPIC] == topic
    assert dead.message.headers[h.DLQ_GROUP] == "svc"


async def test_nack_delay_is_honoured_within_bounded_error(open_rmq: Opener) -> None:
    """Issue 10 #4: a requested delay d comes back after d, within max(1 s, 5 %) (the old
    buckets turned 0.519 s into 1 s, 7.3 s into 10 s, 301 s into 900 s)."""
    topic = f"delay.{uuid.uuid4().hex[:8]}"
    broker = await open_rmq()
    wanted = {b"a": 0.519, b"b": 2.7, b"c": 7.3}
    loop = asyncio.get_running_loop()
    nacked: dict[bytes, float] = {}
    waited: dict[bytes, float] = {}
    async with broker.subscribe(topic, group="g", prefetch=10) as sub:
        await broker.publish(topic, *(Message(body=body) for body in wanted))
        for _ in wanted:
            first = await _next(sub)
            nacked[first.message.body] = loop.time()
            await first.nack(delay=wanted[first.message.body])
        for _ in wanted:
            again = await _next(sub)
            waited[again.message.body] = loop.time() - nacked[again.message.body]
            assert again.attempt == 2
            await again.ack()
    print("\nrequested -> waited (s):", {wanted[b]: round(w, 3) for b, w in waited.items()})
    for body, delay in wanted.items():
        assert delay - 0.05 <= waited[body] <= delay + max(1.0, 0.05 * delay), (delay, waited)


RUN_MARK = "x-eventwire-replay-run"  # the mark `dlq replay` puts on what it republishes


async def test_dead_letter_reading_is_a_snapshot_and_keeps_replay_marks(
    open_rmq: Opener,
) -> None:
    """Issue 10 item 1, RabbitMQ's side: a DLQ reader gets each letter once (unsettled ones
    are not handed out again while it reads), and a replayed message that fails again (a
    delayed retry, then the adapter's dead letter or the broker's delivery-limit one) keeps
    the replay's mark, so the replay can tell its own letters from those it must replay."""
    topic = f"snap.{uuid.uuid4().hex[:8]}"
    broker = await open_rmq(delivery_limit=1)
    dlq_topic = dead_letter_topic(topic)
    async with broker.subscribe(topic, group="svc", prefetch=10) as sub:
        await broker.publish(
            topic,
            Message(body=b"adapter", headers={RUN_MARK: "r1"}),
            Message(body=b"broker", headers={RUN_MARK: "r1"}),
            *(Message(body=f"old-{i}".encode()) for i in range(3)),
        )
        for _ in range(5):
            first = await _next(sub)
            await first.nack(delay=0.1)  # through the delay levels
        for _ in range(5):
            again = await _next(sub)
            if again.message.body == b"broker":
                await again.nack()  # x-delivery-limit 1: the broker dead-letters the next return
                await (await _next(sub)).nack()
            else:
                await again.dead_letter("handler-failed")
    async with broker.subscribe(dlq_topic, group=DEAD_LETTER_GROUP, prefetch=100) as dlq:
        seen = [await _next(dlq) for _ in range(5)]
        with pytest.raises(TimeoutError):
            await _next(dlq, patience=1.0)  # nothing handed out twice while unsettled
    marks = {d.message.body: d.message.headers.get(RUN_MARK) for d in seen}
    assert marks == {
        b"adapter": "r1",
        b"broker": "r1",
        b"old-0": None,
        b"old-1": None,
        b"old-2": None,
    }
    reasons = {d.message.body: d.message.headers[h.DLQ_REASON] for d in seen}
    assert reasons[b"broker"] == "delivery-limit"
    assert reasons[b"adapter"] == "handler-failed"
    # Left unsettled, they are all still there for the next reader, ids unchanged.
    async with broker.subscribe(dlq_topic, group=DEAD_LETTER_GROUP, prefetch=100) as dlq:
        again_seen = [await _next(dlq) for _ in range(5)]
        for letter in again_seen:
            await letter.ack()
    assert sorted(d.message.id for d in again_seen) == sorted(d.message.id for d in seen)


async def test_delayed_retry_reaches_its_group_queue_deleted_meanwhile(
    open_rmq: Opener, exchange: str
) -> None:
    """The queue comes back with its deliver binding at every (re)open, so a retry waiting in
    the delay levels while its group queue is deleted and declared again still arrives."""
    topic = f"regone.{uuid.uuid4().hex[:8]}"
    broker = await open_rmq()
    async with broker.subscribe(topic, group="g") as sub:
        await broker.publish(topic, Message(body=b"waiting"))
        await (await _next(sub)).nack(delay=1.5)
        await _delete_queue(names.group_queue(exchange, topic, "g"))
        again = await _next(sub)
        assert again.message.body == b"waiting"
        assert again.attempt == 2
        await again.ack()


async def test_replay_goes_straight_into_the_failed_groups_queue(
    open_rmq: Opener, exchange: str
) -> None:
    """`dlq replay` addresses the group that failed the message: on RabbitMQ the copy is
    published into that group's queue only, so the other group's queue never holds it."""
    from eventwire.reliability.replay import replay_dead_letters

    topic = f"replay.{uuid.uuid4().hex[:8]}"
    broker = await open_rmq()
    sent = Message(body=b"once more")
    async with (
        broker.subscribe(topic, group="ok") as ok,
        broker.subscribe(topic, group="bad") as bad,
    ):
        await broker.publish(topic, sent)
        await (await _next(ok)).ack()
        await (await _next(bad)).dead_letter("handler-failed")
    result = await replay_dead_letters(broker, topic, limit=10, wait=1.0)
    assert result.replayed == 1
    assert await _ready(names.group_queue(exchange, topic, "ok")) == 0
    assert await _ready(names.group_queue(exchange, topic, "bad")) == 1
    async with broker.subscribe(topic, group="bad") as bad:
        again = await _next(bad)
        assert (again.message.id, again.message.body) == (sent.id, sent.body)
        await again.ack()


async def _ready(queue: str) -> int:
    connection = await aio_pika.connect(host=HOST, port=PORT)
    try:
        channel = await (await connection.channel()).get_underlay_channel()
        return (await channel.queue_declare(queue, passive=True)).message_count or 0
    finally:
        await connection.close()
