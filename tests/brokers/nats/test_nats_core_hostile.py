"""Hostile producers on core NATS (issue 11): raw HPUB frames on a plain socket, between good
messages, consumed by a typed handler (concurrency 4, max_attempts 3). Prints the figures.

Core NATS keeps nothing (dead_letter=NONE): what the worker cannot read is published, raw and
with its reason, to the DLQ subject, which a live reader sees; nothing stores it. So the
assertions are: every good message processed once, every hostile one seen on the DLQ subject
with its bytes (or processed when its body is valid), the worker still consuming afterwards.
The frame-level cases are the ones that ended nats-py's read loop before ``TolerantClient``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections import Counter
from dataclasses import dataclass

import pytest

from brokers.nats.nats_support import SHARED, header_block, raw_publish
from eventwire.brokers._support.envelope import REASON_PREFIX
from eventwire.brokers.catalog import open_broker
from eventwire.core import headers as h
from eventwire.core.message import Message, dead_letter_topic
from eventwire.testing.app_runs import serving, wait_until
from eventwire.testing.hostile import MAX_ATTEMPTS, HostileRun, interleave
from eventwire.testing.hostile import job_body as _job

pytestmark = [pytest.mark.integration, pytest.mark.nats]

URL = f"nats+core://{SHARED}"


@dataclass(frozen=True)
class Hostile:
    headers: bytes
    body: bytes
    expect: str  # "unreadable", "decode" (dead-lettered by the handler path), "processed"


HOSTILE: dict[str, Hostile] = {
    # Frame level: each of these ended nats-py 2.16's read loop (nothing read until the ping
    # timeout reconnected; JetStream would redeliver it and end the loop again, forever).
    "header block of just NATS/1.0": Hostile(b"NATS/1.0", _job(-1), "unreadable"),
    "status line not UTF-8": Hostile(b"NATS/1.0 503 \xff\xfe\r\n\r\n", _job(-2), "unreadable"),
    "status code not UTF-8": Hostile(b"NATS/1.0 \xff\xfe\xfd\r\n\r\n", _job(-3), "unreadable"),
    "status description not UTF-8 with headers": Hostile(
        b"NATS/1.0 100 Idle\xff\r\nx: 1\r\n\r\n", _job(-4), "unreadable"
    ),
    # Envelope level: read by nats-py, refused by the decoding boundary.
    "NUL in a header": Hostile(header_block(b"x-a: v\x00w"), _job(-5), "unreadable"),
    "header over 16 KiB": Hostile(header_block(b"x-big: " + b"y" * 20_000), _job(-6), "unreadable"),
    "300 headers": Hostile(
        header_block(*(b"x-%d: v" % i for i in range(300))), _job(-8), "unreadable"
    ),
    "an id over 1,024 characters": Hostile(
        header_block(b"x-eventwire-id: " + b"i" * 2000), _job(-9), "unreadable"
    ),
    # Body level: a readable envelope, a body the typed handler cannot take.
    "body not JSON": Hostile(header_block(b"x-a: 1"), b"\x00\xff not json", "decode"),
    "body not a Job": Hostile(header_block(b"x-a: 1"), b'{"n": "x"}', "decode"),
    "JSON nested 100,000 deep": Hostile(header_block(b"x-a: 1"), b"[" * 100_000, "decode"),
    "1,000,000-byte body": Hostile(header_block(b"x-a: 1"), b"z" * 1_000_000, "decode"),
    # Forged envelope fields with a valid body: handled, the forgery ignored.
    "infinite timestamp": Hostile(
        header_block(b"x-eventwire-timestamp: inf"), _job(9001), "processed"
    ),
    "400-digit timestamp": Hostile(
        header_block(b"x-eventwire-timestamp: " + b"9" * 400), _job(9002), "processed"
    ),
    "forged attempt -1000, always failing": Hostile(
        header_block(b"x-eventwire-attempt: -1000", b"x-eventwire-id: forged-attempt"),
        _job(9003, fail=True),
        "decode",  # dead-lettered after MAX_ATTEMPTS calls (max-attempts, not unreadable)
    ),
    "trailing U+00A0 in a header value (nats-py strips it)": Hostile(
        header_block("x-nb: v\u00a0".encode()), _job(9005), "processed"
    ),
    "non-UTF-8 header line (nats-py drops the headers)": Hostile(
        header_block(b"x-\xff: \xfe"), _job(9004), "processed"
    ),
}


async def test_hostile_core_nats_messages_harm_nothing_else() -> None:
    topic = f"hostile.core.{uuid.uuid4().hex[:8]}"
    run = HostileRun()
    letters: list[Message] = []
    app = run.typed_worker(URL, topic, name="hostile-core")

    # A live reader of the DLQ subject: the only place core NATS dead letters reach.
    watcher = open_broker(URL)
    async with watcher, serving(app) as task, watcher.subscribe(dead_letter_topic(topic)) as dlq:

        async def collect() -> None:
            async for delivery in dlq:
                letters.append(delivery.message)
                await delivery.ack()

        collector = asyncio.create_task(collect())
        subject = app.broker.options.subject(topic)  # type: ignore[attr-defined]  # NATS adapter's own options, not on the Broker protocol
        frames, n = interleave(
            ((case.headers, case.body) for case in HOSTILE.values()),
            lambda g: (header_block(b"x-eventwire-id: good-%d" % g), _job(g)),
        )
        await raw_publish(SHARED, subject, frames)
        dead_expected = sum(1 for c in HOSTILE.values() if c.expect != "processed")
        await wait_until(lambda: len(run.handled) >= n and len(letters) >= dead_expected, 60)
        # Still consuming afterwards: nothing stopped the subscription or the connection.
        await app.publish(topic, {"n": n})
        await wait_until(lambda: n in run.handled, 30)
        good_sent = n + 1
        assert not task.done(), "the worker's run task ended"
        assert app.ready
        collector.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await collector

    bodies = Counter(m.body for m in letters)
    unreadable = [m for m in letters if m.headers[h.DLQ_REASON].startswith(REASON_PREFIX)]
    figures = run.figures(cases=len(HOSTILE), good_sent=good_sent, letters=letters)
    figures["consumer task deaths"] = int(task.exception() is not None)
    figures["of which unreadable envelope"] = len(unreadable)
    print("nats-core hostile figures (dead letters as seen on the DLQ subject):", figures)
    run.check(figures, good_sent=good_sent)
    assert run.calls[9003] == MAX_ATTEMPTS
    for name, case in HOSTILE.items():
        if case.expect == "processed":
            assert run.handled[json.loads(case.body)["n"]] == 1, name
        else:
            assert bodies[case.body] == 1, f"{name}: not on the DLQ subject with its bytes"
    reasons = sorted(f"{m.body[:12]!r} {m.headers[h.DLQ_REASON][:70]}" for m in letters)
    assert len(unreadable) == sum(1 for c in HOSTILE.values() if c.expect == "unreadable"), reasons
    assert len(letters) == dead_expected
