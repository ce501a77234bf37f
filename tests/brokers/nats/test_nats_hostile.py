"""Hostile producers on JetStream (issue 11 #7, #8): raw HPUB frames on a plain socket, between
good messages, consumed by a typed handler (concurrency 4, max_attempts 3). Prints figures."""

from __future__ import annotations

import asyncio
import json
from collections import Counter

import pytest
from nats_support import SHARED, header_block, raw_publish, url_for
from pydantic import BaseModel

from eventwire import App, Context, PermanentError, RetryPolicy
from eventwire.brokers.catalog import open_broker
from eventwire.core import headers as h
from eventwire.core.message import Message
from eventwire.testing.app_runs import listed_dead_letters, serving, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.nats]


class Job(BaseModel):
    n: int


GOOD_BODY = b'{"n": -1}'
HOSTILE: dict[str, tuple[bytes, bytes]] = {
    "NUL in a header": (header_block(b"x-a: v\x00w"), GOOD_BODY),
    "header block over 16 KiB": (header_block(b"x-big: " + b"y" * 20_000), GOOD_BODY),
    "trailing U+00A0 in a header value": (header_block("x-nb: v\u00a0".encode()), GOOD_BODY),
    "status-line header block": (header_block(b"x-s: 1", status=b"NATS/1.0 503"), GOOD_BODY),
    "1,000,000-byte body": (header_block(b"x-e: 1"), b"z" * 1_000_000),
    # These two ended nats-py's read loop at every redelivery (brokers/nats/_frames.py).
    "header block of just NATS/1.0": (b"NATS/1.0", GOOD_BODY),
    "status line not UTF-8": (b"NATS/1.0 503 \xff\xfe\r\n\r\n", GOOD_BODY),
}


async def test_hostile_jetstream_messages_are_dead_lettered_and_harm_nothing(prefix: str) -> None:
    url = url_for(SHARED, prefix, ack_wait=5)
    topic = "hostile.jobs"
    handled: Counter[int] = Counter()
    calls: Counter[str] = Counter()
    app = App(url, name="hostile-js")

    @app.subscriber(
        topic, group="workers", concurrency=4, retry=RetryPolicy(max_attempts=3, initial_delay=0.05)
    )
    async def handle(job: Job, ctx: Context) -> None:
        calls[ctx.message.id] += 1
        if job.n == -1:
            raise PermanentError("a hostile message with a valid body reached the handler")
        handled[job.n] += 1

    async with serving(app):
        subject = app.broker.options.subject(topic)  # type: ignore[attr-defined]
        frames: list[tuple[bytes, bytes]] = []
        n = 0
        for hostile in HOSTILE.values():
            for _ in range(10):
                frames.append(
                    (
                        header_block(b"Nats-Msg-Id: g" + str(n).encode()),
                        json.dumps({"n": n}).encode(),
                    )
                )
                n += 1
            frames.append(hostile)
        await raw_publish(SHARED, subject, frames)
        await wait_until(lambda: len(handled) >= n, within=60)
        letters = await listed_dead_letters(url, topic, at_least=len(HOSTILE), within=60)
        assert app.ready
    figures = {
        "hostile cases injected": len(HOSTILE),
        "good processed/sent": f"{sum(1 for g in range(n) if handled[g] == 1)}/{n}",
        "good dead-lettered unhandled": sum(
            1 for m in letters if m.body != GOOD_BODY and len(m.body) < 1_000_000
        ),
        "lost": n - len(handled),
        "handler calls above max_attempts": sum(1 for c in calls.values() if c > 3),
        "dead letters": len(letters),
    }
    print("nats-jetstream hostile figures:", figures)
    assert all(handled[g] == 1 for g in range(n))
    assert figures["good dead-lettered unhandled"] == 0
    assert figures["handler calls above max_attempts"] == 0
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
            broker.options.subject(topic),  # type: ignore[attr-defined]
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
        subject = broker.options.subject(topic)  # type: ignore[attr-defined]
        await raw_publish(SHARED, subject, [(header_block(b"x-a: 1"), b"anon")])
        one = await asyncio.wait_for(anext(sub), 10)
        await one.nack()
        two = await asyncio.wait_for(anext(sub), 10)
        await two.ack()
    assert two.attempt == 2
    assert one.message.id == two.message.id
    assert one.message.headers.get(h.REPLAY_GROUP) is None
