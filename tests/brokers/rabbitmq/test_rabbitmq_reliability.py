"""Tests: RabbitMQ adapter against the shared server: killed consumer, poison, DLQ, validation."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import textwrap
import uuid

import pytest

from brokers.rabbitmq.rabbitmq_support import FULL, HOST, PORT, Opener
from eventwire.core import headers as h
from eventwire.core.errors import (
    ConfigurationError,
    ConnectionLostError,
    EventwireError,
    InvalidHeaderError,
    MessageTooLargeError,
)
from eventwire.core.message import DEAD_LETTER_GROUP, Delivery, Message, dead_letter_topic
from eventwire.reliability.retry import RetryPolicy

pytestmark = [pytest.mark.integration, pytest.mark.rabbitmq]

CANARY = "canary-Pw-5e1d07"

_KILLED_CONSUMER = textwrap.dedent(
    """
    import asyncio, sys
    from eventwire.brokers.catalog import open_broker

    async def main(url, topic, group, count):
        broker = open_broker(url)
        await broker.connect()
        held = []
        async with broker.subscribe(topic, group=group, prefetch=count) as sub:
            async for delivery in sub:
                held.append(delivery)
                if len(held) == count:
                    print("held", flush=True)
                    await asyncio.Event().wait()  # never settles: SIGKILL ends the process

    asyncio.run(main(*sys.argv[1:4], int(sys.argv[4])))
    """
)


async def test_killed_consumer_unacked_messages_go_to_another_member(
    open_rmq: Opener, exchange: str
) -> None:
    topic, group, count = f"kill.{uuid.uuid4().hex[:8]}", "workers", 50
    publisher = await open_rmq()
    url = f"amqp://guest:guest@{HOST}:{PORT}/?exchange={exchange}"
    async with publisher.subscribe(topic, group=group):
        pass  # the group queue exists before anything is published
    messages = [Message(body=f"job-{i}".encode()) for i in range(count)]
    await publisher.publish(topic, *messages)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _KILLED_CONSUMER, url, topic, group, str(count),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(30):
            assert (await proc.stdout.readline()).strip() == b"held"
        survivor = await open_rmq()
        async with survivor.subscribe(topic, group=group, prefetch=100) as sub:
            os.kill(proc.pid, signal.SIGKILL)
            await proc.wait()
            got: list[Delivery] = []
            async with asyncio.timeout(30):
                async for delivery in sub:
                    got.append(delivery)
                    await delivery.ack()
                    if len(got) == count:
                        break
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert sorted(d.message.id for d in got) == sorted(m.id for m in messages)
    assert all(d.attempt == 2 for d in got), "a consumer death counts as a delivery attempt"


async def test_poison_messages_dead_lettered_after_max_attempts(open_rmq: Opener) -> None:
    total = 10_000 if FULL else 500
    policy = RetryPolicy(max_attempts=3, initial_delay=0.05, jitter=0.0)
    topic = f"poison.{uuid.uuid4().hex[:8]}"
    broker = await open_rmq()
    messages = [
        Message(body=f'{{"n": {i}, "poison": {str(i % 100 == 0).lower()}}}'.encode())
        for i in range(total)
    ]
    poison = {m.id: m for m in messages if b'"poison": true' in m.body}
    done: set[str] = set()
    async with (
        broker.subscribe(topic, group="svc", prefetch=200) as sub,
        broker.subscribe(dead_letter_topic(topic), group=DEAD_LETTER_GROUP) as dlq,
    ):
        await broker.publish(topic, *messages)
        dead: list[Delivery] = []

        async def consume() -> None:
            async for delivery in sub:
                if delivery.message.id not in poison:
                    done.add(delivery.message.id)
                    await delivery.ack()
                elif policy.should_retry(delivery.attempt):
                    await delivery.nack(delay=policy.delay_for(delivery.attempt))
                else:
                    await delivery.dead_letter("max-attempts", headers={h.DLQ_DETAIL: "boom"})

        worker = asyncio.create_task(consume())
        try:
            async with asyncio.timeout(120 if FULL else 30):
                async for delivery in dlq:
                    dead.append(delivery)
                    await delivery.ack()
                    if len(dead) == len(poison):
                        break
                while len(done) < total - len(poison):
                    await asyncio.sleep(0.01)
        finally:
            worker.cancel()
    assert len(done) == total - len(poison)
    assert sorted(d.message.id for d in dead) == sorted(poison)
    for delivery in dead:
        original = poison[delivery.message.id]
        assert delivery.message.body == original.body  # byte-identical
        assert delivery.message.headers[h.DLQ_REASON] == "max-attempts"
        assert delivery.message.headers[h.DLQ_ATTEMPTS] == "3"
        assert delivery.message.headers[h.DLQ_ORIGINAL_TOPIC] == topic
        assert delivery.message.timestamp == original.timestamp
    print(f"\npoison: {len(poison)} of {total} dead-lettered after 3 attempts")


async def test_delivery_limit_dead_letters_crash_loops(open_rmq: Opener) -> None:
    topic = f"limit.{uuid.uuid4().hex[:8]}"
    broker = await open_rmq(delivery_limit=2)
    message = Message(body=b"crash-loop", headers={"tenant": "t1"})
    async with (
        broker.subscribe(topic, group="svc", prefetch=1) as sub,
        broker.subscribe(dead_letter_topic(topic), group=DEAD_LETTER_GROUP) as dlq,
    ):
        await broker.publish(topic, message)
        attempts = []
        async with asyncio.timeout(20):
            for _ in range(3):
                delivery = await anext(sub)
                attempts.append(delivery.attempt)
                await delivery.nack()
            dead = await anext(dlq)
    assert attempts == [1, 2, 3]
    assert dead.message.body == message.body
    assert dead.message.id == message.id
    assert dead.message.headers["tenant"] == "t1"
    assert dead.message.headers[h.DLQ_REASON] == "delivery-limit"
    assert dead.message.headers[h.DLQ_ORIGINAL_TOPIC] == topic


async def test_dead_letters_kept_before_anyone_reads_the_dlq(open_rmq: Opener) -> None:
    topic = f"early.{uuid.uuid4().hex[:8]}"
    broker = await open_rmq()
    async with broker.subscribe(topic, group="svc") as sub:
        await broker.publish(topic, Message(body=b"bad"))
        await (await anext(sub)).dead_letter("permanent")
    async with broker.subscribe(dead_letter_topic(topic), group=DEAD_LETTER_GROUP) as dlq:
        async with asyncio.timeout(10):
            dead = await anext(dlq)
    assert dead.message.body == b"bad"
    assert dead.message.headers[h.DLQ_REASON] == "permanent"


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        (Message(body=b"x", headers={"h": "a\r\nx-injected: 1"}), InvalidHeaderError),
        (Message(body=b"x" * (16 * 1024 * 1024 + 1)), MessageTooLargeError),
        (Message(body=b"x", headers={"h": "\udcff"}), InvalidHeaderError),
    ],
    ids=["crlf", "oversize", "non-utf8"],
)
async def test_invalid_message_refused_before_sending(
    open_rmq: Opener, bad: Message, error: type[Exception]
) -> None:
    topic = f"invalid.{uuid.uuid4().hex[:8]}"
    broker = await open_rmq()
    good, sentinel = Message(body=b"good"), Message(body=b"sentinel")
    async with broker.subscribe(topic, group="svc") as sub:
        with pytest.raises(error) as info:
            await broker.publish(topic, good, bad)  # one bad message: none of the call is sent
        assert str(info.value)
        await broker.publish(topic, sentinel)
        async with asyncio.timeout(10):
            first = await anext(sub)
    assert first.message.id == sentinel.id, "a message of the refused call reached the broker"


async def test_canary_password_never_in_logs_errors_or_reprs(
    open_rmq: Opener, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    seen: list[str] = []
    wrong = await open_rmq(password=CANARY, connect=False)  # wrong password: auth fails
    seen += [repr(wrong), str(wrong.url), repr(wrong.url)]
    with pytest.raises(ConfigurationError) as auth:
        await wrong.connect()
    refused = await open_rmq(password=CANARY, port=1, connect=False)  # nothing listens there
    with pytest.raises(ConnectionLostError) as down:
        await refused.connect()
    for exc in (auth.value, down.value):
        assert isinstance(exc, EventwireError)
        assert exc.__cause__ is not None
        seen += [str(exc), repr(exc), str(exc.__cause__), repr(exc.__cause__)]
    seen += [r.getMessage() for r in caplog.records] + [caplog.text]
    assert caplog.records, "expected client log lines to inspect"
    assert sum(text.count(CANARY) for text in seen) == 0


async def test_subscription_survives_a_channel_error(open_rmq: Opener) -> None:
    topic = f"chanerr.{uuid.uuid4().hex[:8]}"
    broker = await open_rmq()
    async with broker.subscribe(topic, group="svc") as sub:
        await broker.publish(topic, Message(body=b"one"))
        first = await anext(sub)
        await first.ack()
        before = sub._channel  # type: ignore[attr-defined]  # the subscription's private channel
        raw = await before.get_underlay_channel()
        await raw.basic_ack(999_999)  # unknown delivery tag: the broker closes this channel
        async with asyncio.timeout(15):
            while sub._channel is before or sub._channel.is_closed:  # type: ignore[attr-defined]  # the subscription's private channel
                await asyncio.sleep(0.01)
        second = Message(body=b"two")
        await broker.publish(topic, second)
        async with asyncio.timeout(15):
            got = await anext(sub)
        await got.ack()
    assert got.message.id == second.id
    assert broker.reconnects == 0  # the connection itself stayed up


async def test_publish_before_any_group_subscribed_is_an_error_not_a_silent_drop(
    open_rmq: Opener,
) -> None:
    """Issue 10: the broker confirmed and dropped these; now the caller sees it."""
    from eventwire.core.errors import PublishError

    topic = f"nogroup.{uuid.uuid4().hex[:8]}"
    broker = await open_rmq()
    with pytest.raises(PublishError, match="no group has subscribed"):
        await broker.publish(topic, Message(body=b"early"))
    with pytest.raises(PublishError, match="2 message"):
        await broker.publish(topic, Message(body=b"a"), Message(body=b"b"))
    async with broker.subscribe(topic, group="late") as sub:
        await broker.publish(topic, Message(body=b"kept"))
        async with asyncio.timeout(30):
            got = await anext(sub)
        assert got.message.body == b"kept"
        await got.ack()
    await broker.publish(topic, Message(body=b"queued for the group"))  # the queue stays
    dropper = await open_rmq(unroutable="drop")
    await dropper.publish(f"nogroup.{uuid.uuid4().hex[:8]}", Message(body=b"pubsub"))
