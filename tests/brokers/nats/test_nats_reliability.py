"""Tests: JetStream reliability on a real server: crashes, poison, bad input, slow handlers."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from pathlib import Path

import pytest

from brokers.nats.nats_support import SHARED, stream_messages, url_for
from eventwire.brokers.catalog import open_broker
from eventwire.core import headers as h
from eventwire.core.errors import (
    ConnectionLostError,
    EventwireError,
    InvalidHeaderError,
    MessageTooLargeError,
    PublishError,
)
from eventwire.core.message import DEAD_LETTER_GROUP, Delivery, Message, dead_letter_topic
from eventwire.testing.helpers import scale
from eventwire.testing.spawn_nats import NatsServer

pytestmark = [pytest.mark.integration, pytest.mark.nats]

WORKER = Path(__file__).with_name("nats_worker.py")


async def test_killed_consumer_with_50_unacked_redelivers_all_to_another_member(
    prefix: str,
) -> None:
    url = url_for(SHARED, prefix, ack_wait=2)
    topic, group = "rel.killed", "workers"
    sent = [Message(body=f"job-{i}".encode()) for i in range(50)]
    async with open_broker(url) as broker:
        async with broker.subscribe(topic, group=group):
            pass  # the group exists before anything is published
        await broker.publish(topic, *sent)
        worker = await asyncio.create_subprocess_exec(
            sys.executable, str(WORKER), url, topic, group, "50", stdout=asyncio.subprocess.PIPE
        )
        try:
            assert worker.stdout is not None
            line = await asyncio.wait_for(worker.stdout.readline(), 30)
            assert line.strip() == b"held 50"
            async with broker.subscribe(topic, group=group, prefetch=100) as sub:
                worker.kill()  # no nak, no goodbye: only AckWait brings them back
                await worker.wait()
                got: list[Delivery] = []
                async with asyncio.timeout(20):
                    while len(got) < 50:
                        delivery = await anext(sub)
                        got.append(delivery)
                        await delivery.ack()
        finally:
            if worker.returncode is None:
                worker.kill()
                await worker.wait()
    assert sorted(d.message.id for d in got) == sorted(m.id for m in sent)
    assert all(d.attempt == 2 for d in got)


async def test_poison_messages_are_dead_lettered_byte_identical(prefix: str) -> None:
    total = scale(300, 10_000)
    max_attempts = 3
    url = url_for(SHARED, prefix, ack_wait=5)
    topic, group = "rel.poison", "handlers"
    sent = [
        Message(body=f'{{"n": {i}, "blob": "\\u00e9\\u0000"}}'.encode(), headers={"i": str(i)})
        for i in range(total)
    ]
    poison = {m.id for m in sent[::100]}  # 1 %
    by_id = {m.id: m for m in sent}
    async with open_broker(url) as broker:
        async with broker.subscribe(topic, group=group, prefetch=200) as sub:
            await broker.publish(topic, *sent)
            done: set[str] = set()
            async with asyncio.timeout(120):
                async for delivery in sub:
                    mid = delivery.message.id
                    if mid in poison:
                        if delivery.attempt < max_attempts:
                            await delivery.nack(delay=0.05)
                            continue
                        await delivery.dead_letter("max-attempts")
                    else:
                        await delivery.ack()
                    done.add(mid)
                    if len(done) == total:
                        break
        dead: list[Message] = []
        async with broker.subscribe(dead_letter_topic(topic), group=DEAD_LETTER_GROUP) as dlq:
            async with asyncio.timeout(30):
                while len(dead) < len(poison):
                    delivery = await anext(dlq)
                    dead.append(delivery.message)
                    await delivery.ack()
    assert {m.id for m in dead} == poison
    for message in dead:
        original = by_id[message.id]
        assert message.body == original.body  # byte-identical
        assert message.headers[h.DLQ_REASON] == "max-attempts"
        assert message.headers[h.DLQ_ATTEMPTS] == str(max_attempts)
        assert message.headers["i"] == original.headers["i"]


async def test_over_delivered_message_goes_to_dlq_not_lost(prefix: str) -> None:
    url = url_for(SHARED, prefix, max_deliver=2)
    topic = "rel.limit"
    async with open_broker(url) as broker, broker.subscribe(topic, group="g") as sub:
        await broker.publish(topic, Message(body=b"crashy"))
        for _ in range(2):
            await (await asyncio.wait_for(anext(sub), 10)).nack()
        # The third delivery never reaches the handler: the adapter dead-letters it.
        dlq_topic = dead_letter_topic(topic)
        async with broker.subscribe(dlq_topic, group=DEAD_LETTER_GROUP) as dlq:
            dead = await asyncio.wait_for(anext(dlq), 10)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(anext(sub), 0.5)
    assert dead.message.body == b"crashy"
    assert dead.message.headers[h.DLQ_REASON] == "max-deliveries"


@pytest.mark.parametrize(
    ("message", "error"),
    [
        (Message(body=b"x", headers={"h": "a\r\nNats-Msg-Id: evil"}), InvalidHeaderError),
        (Message(body=b"x", headers={"h": "bad \udcff text"}), InvalidHeaderError),
        (Message(body=b"x", headers={"Nats-Rollup": "all"}), InvalidHeaderError),
        (Message(body=b"x", headers={"h": " padded "}), InvalidHeaderError),
        (Message(body=b"x" * (1024 * 1024 + 1)), MessageTooLargeError),
        (
            Message(
                body=b"x" * (1024 * 1024 - 70_000),
                headers={
                    "h": "y" * 16_000,
                    "i": "z" * 16_000,
                    "j": "w" * 16_000,
                    "k": "v" * 16_000,
                    "l": "u" * 16_000,
                },
            ),
            MessageTooLargeError,
        ),
    ],
    ids=[
        "crlf",
        "non-utf8",
        "reserved",
        "whitespace",
        "body-over-max-payload",
        "headers-push-over",
    ],
)
async def test_bad_messages_fail_before_anything_is_sent(
    prefix: str, message: Message, error: type[EventwireError]
) -> None:
    async with open_broker(url_for(SHARED, prefix)) as broker:
        good = Message(body=b"fine")
        with pytest.raises(error) as caught:
            await broker.publish("rel.bad", good, message)  # the good one must not go either
        assert str(caught.value)
        await broker.publish("rel.bad", Message(body=b"marker"))  # the stream exists now
        stream = broker.options.stream("rel.bad")  # type: ignore[attr-defined]  # NATS adapter's own options, not on the Broker protocol
        assert await stream_messages(SHARED, stream) == 1  # only the marker ever got there


async def test_in_progress_keeps_a_slow_handlers_message(prefix: str) -> None:
    url = url_for(SHARED, prefix, ack_wait=1)
    topic = "rel.slow"
    async with (
        open_broker(url) as slow,
        open_broker(url) as rival,
        slow.subscribe(topic, group="g", prefetch=1) as sub_a,
    ):
        await slow.publish(topic, Message(body=b"long job"))
        held = await asyncio.wait_for(anext(sub_a), 10)
        async with rival.subscribe(topic, group="g") as sub_b:
            with pytest.raises(TimeoutError):  # 2.5x AckWait: progress keeps it leased
                await asyncio.wait_for(anext(sub_b), 2.5)
            await held.ack()
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(anext(sub_b), 1.2)
    assert held.attempt == 1


async def test_publish_during_outage_waits_then_raises(private_nats: NatsServer) -> None:
    url = f"{private_nats.url}?publish_timeout=2"
    async with open_broker(url) as broker:
        await broker.publish("out.t", Message(body=b"before"))
        await private_nats.kill()
        started = time.monotonic()
        with pytest.raises(PublishError, match="not sent") as caught:
            await broker.publish("out.t", Message(body=b"during"))
        assert 1.5 <= time.monotonic() - started < 10
        assert caught.value.__cause__ is not None
        await private_nats.start()
        async with asyncio.timeout(15):
            while True:  # back by itself once the server is
                try:
                    await broker.publish("out.t", Message(body=b"after"))
                    break
                except PublishError:
                    continue


async def test_canary_password_never_appears(caplog: pytest.LogCaptureFixture) -> None:
    canary = "Canary-Pw-5f3a9"
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    async with NatsServer(user="app", password=canary) as server:
        url = server.url + "?publish_timeout=1"
        broker = open_broker(url)
        texts += [repr(broker), str(broker.url), repr(broker.url)]
        async with broker:
            await broker.publish("canary.t", Message(body=b"x"))
            texts.append(repr(broker))
            texts.append(str(await broker.health()))
            await server.kill()
            with pytest.raises(PublishError) as caught:
                await broker.publish("canary.t", Message(body=b"y"))
            texts += [str(caught.value), repr(caught.value)]
            await server.start()
        wrong = open_broker(url.replace(canary, canary + "x"))
        with pytest.raises(EventwireError) as refused:
            await wrong.connect()
        texts += [str(refused.value), repr(refused.value), repr(wrong)]
        await wrong.aclose()
    unreachable = open_broker(f"nats://app:{canary}@127.0.0.1:1")
    with pytest.raises(ConnectionLostError) as down:
        await unreachable.connect()
    texts += [str(down.value), repr(down.value)]
    texts += [r.getMessage() for r in caplog.records] + [caplog.text]
    assert sum(text.count(canary) for text in texts) == 0


async def test_stream_limits_from_the_url_reach_the_server(prefix: str) -> None:
    import nats

    url = url_for(SHARED, prefix, max_bytes=4 * 1024 * 1024, max_age=600)
    async with open_broker(url) as broker:
        await broker.publish("rel.limits", Message(body=b"x"))
        stream = broker.options.stream("rel.limits")  # type: ignore[attr-defined]  # NATS adapter's own options, not on the Broker protocol
    nc = await nats.connect(f"nats://{SHARED}")
    try:
        config = (await nc.jetstream().stream_info(stream)).config
    finally:
        await nc.close()
    assert config.max_bytes == 4 * 1024 * 1024
    assert config.max_age == 600


async def test_listing_dead_letters_often_never_moves_them(prefix: str) -> None:
    # `eventwire dlq list` reads the DLQ and hands every dead letter back; with max_deliver=2
    # the third listing used to dead-letter the dead letter into "<topic>.dlq.dlq".
    url = url_for(SHARED, prefix, max_deliver=2, pull_expires=0.2)  # quick to leave
    topic = "rel.dlqlist"
    dlq_topic = dead_letter_topic(topic)
    async with open_broker(url) as broker:
        async with broker.subscribe(topic, group="g") as sub:
            await broker.publish(topic, Message(body=b"bad"))
            await (await asyncio.wait_for(anext(sub), 10)).dead_letter("permanent")
        attempts = []
        for _ in range(4):  # list, leaving it in place
            async with broker.subscribe(dlq_topic, group=DEAD_LETTER_GROUP) as dlq:
                attempts.append((await asyncio.wait_for(anext(dlq), 10)).attempt)
        stream = broker.options.stream(dead_letter_topic(dlq_topic))  # type: ignore[attr-defined]  # NATS adapter's own options, not on the Broker protocol
    assert attempts[-1] > 2  # past max_deliver, still in the DLQ
    assert await stream_messages(SHARED, stream) == 0
