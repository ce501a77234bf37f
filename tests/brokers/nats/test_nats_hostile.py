"""Hostile producers on JetStream (issue 11 #7, #8): raw HPUB frames on a plain socket, between
good messages, consumed by a typed handler (concurrency 4, max_attempts 3). Prints figures."""

from __future__ import annotations

import asyncio

import pytest

from brokers.nats.nats_support import SHARED, header_block, raw_publish, url_for
from eventwire.brokers.catalog import open_broker
from eventwire.core import headers as h
from eventwire.core.message import Message
from eventwire.testing.app_runs import listed_dead_letters, serving, wait_until
from eventwire.testing.hostile import HostileRun, interleave, job_body

pytestmark = [pytest.mark.integration, pytest.mark.nats]

GOOD_BODY = job_body(-1)  # a valid Job, but a hostile envelope: it must not be handled
HOSTILE: dict[str, tuple[bytes, bytes]] = {
    "NUL in a header": (header_block(b"x-a: v\x00w"), GOOD_BODY),
    "header block over 16 KiB": (header_block(b"x-big: " + b"y" * 20_000), GOOD_BODY),
    "trailing U+00A0 in a header value": (header_block("x-nb: v\u00a0".encode()), GOOD_BODY),
    "status-line header block": (header_block(b"x-s: 1", status=b"NATS/1.0 503"), GOOD_BODY),
    "1,000,000-byte body": (header_block(b"x-e: 1"), b"z" * 1_000_000),
    # These two ended nats-py's read loop at every redelivery (brokers/nats/frames.py).
    "header block of just NATS/1.0": (b"NATS/1.0", GOOD_BODY),
    "status line not UTF-8": (b"NATS/1.0 503 \xff\xfe\r\n\r\n", GOOD_BODY),
}


async def test_hostile_jetstream_messages_are_dead_lettered_and_harm_nothing(prefix: str) -> None:
    url = url_for(SHARED, prefix, ack_wait=5)
    topic = "hostile.jobs"
    run = HostileRun()
    app = run.typed_worker(url, topic, name="hostile-js")
    async with serving(app):
        subject = app.broker.options.subject(topic)  # type: ignore[attr-defined]  # NATS adapter's own options, not on the Broker protocol
        frames, n = interleave(
            HOSTILE.values(),
            lambda g: (header_block(b"Nats-Msg-Id: good-%d" % g), job_body(g)),
            per=10,
        )
        await raw_publish(SHARED, subject, frames)
        await wait_until(lambda: len(run.handled) >= n, deadline=60)
        letters = await listed_dead_letters(url, topic, at_least=len(HOSTILE), deadline=60)
        assert app.ready
    figures = run.figures(cases=len(HOSTILE), good_sent=n, letters=letters)
    print("nats-jetstream hostile figures:", figures)
    run.check(figures, good_sent=n)
    assert len(letters) == len(HOSTILE)
    assert sorted(len(m.body) for m in letters) == sorted(len(b) for _, b in HOSTILE.values())


async def test_dead_letters_sharing_a_message_id_are_each_kept(prefix: str) -> None:
    # On main the second was dropped by the DLQ stream's duplicate window (Nats-Msg-Id = id).
    url = url_for(SHARED, prefix)
    topic = "hostile.sameid"
    async with open_broker(url) as broker, broker.subscribe(topic, group="g") as sub:
        await broker.publish(topic, Message(body=b"one", id="same-id"))
        delivery = await asyncio.wait_for(anext(sub), 10)
        await delivery.dead_letter("permanent-error")
        # Another producer reuses the id after the publish dedup window let it in.
        await raw_publish(
            SHARED,
            broker.options.subject(topic),  # type: ignore[attr-defined]  # NATS adapter's own options, not on the Broker protocol
            [(header_block(b"x-eventwire-id: same-id"), b"two")],
        )
        delivery = await asyncio.wait_for(anext(sub), 10)
        await delivery.dead_letter("permanent-error")
    letters = await listed_dead_letters(url, topic)
    assert sorted(m.body for m in letters) == [b"one", b"two"]
    assert {m.id for m in letters} == {"same-id"}


async def test_a_message_without_an_id_keeps_one_id_across_redeliveries(prefix: str) -> None:
    url = url_for(SHARED, prefix)
    topic = "hostile.noid"
    async with open_broker(url) as broker, broker.subscribe(topic, group="g") as sub:
        subject = broker.options.subject(topic)  # type: ignore[attr-defined]  # NATS adapter's own options, not on the Broker protocol
        await raw_publish(SHARED, subject, [(header_block(b"x-a: 1"), b"anon")])
        one = await asyncio.wait_for(anext(sub), 10)
        await one.nack()
        two = await asyncio.wait_for(anext(sub), 10)
        await two.ack()
    assert two.attempt == 2
    assert one.message.id == two.message.id
    assert one.message.headers.get(h.REPLAY_GROUP) is None
