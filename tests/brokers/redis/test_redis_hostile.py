"""Hostile producers on Redis Streams and Pub/Sub (issue 11 #1, #2): entries and payloads
written with the raw client in eventwire's layout, one field broken at a time, between good
messages, consumed by a typed handler (concurrency 4, max_attempts 3). Prints the figures."""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import TYPE_CHECKING

import pytest
import redis.asyncio as aioredis
from pydantic import BaseModel

from brokers.redis.redis_support import FAST, SHARED
from eventwire import App
from eventwire.core import headers as h
from eventwire.testing.app_runs import listed_dead_letters, serving, wait_until
from eventwire.testing.hostile import GOOD_PREFIX, HostileRun, interleave

if TYPE_CHECKING:
    from redis.typing import EncodableT, FieldT

    # What XADD takes (redis-py's dict type is invariant: dict[bytes, bytes] is refused).
    Fields = dict[FieldT, EncodableT]

pytestmark = [pytest.mark.integration, pytest.mark.redis]

GOOD = 60  # good messages, before, between and after the hostile ones


class Job(BaseModel):
    n: int


def _entry(n: int, **broken: bytes | None) -> Fields:
    fields: dict[bytes, bytes | None] = {
        b"id": (f"{GOOD_PREFIX}{n}" if n >= 0 else f"hostile{n}").encode(),
        b"body": json.dumps({"n": n}).encode(),
        b"ts": repr(time.time()).encode(),
        b"ct": b"application/json",
    }
    fields.update({k.encode(): v for k, v in broken.items()})
    return {k: v for k, v in fields.items() if v is not None}


HOSTILE_ENTRIES: dict[str, Fields] = {
    "header JSON nested 100,000 deep": _entry(-1, h=b"[" * 100_000 + b"]" * 100_000),
    "no body field": _entry(-2, body=None),
    "raw fields over 16,000 characters": _entry(-3, body=None, x=b"y" * 50_000),
    "infinite timestamp": _entry(-4, ts=b"inf"),
    "400-digit timestamp": _entry(-5, ts=b"9" * 400),
    "no id": _entry(-6, id=None),
    "headers not an object": _entry(-7, h=b'["a", "b"]'),
    "non-UTF-8 id": _entry(-8, id=b"\xff\xfe"),
    "body not a Job": _entry(-9, body=b'{"n": "not a number"}'),
    "body not JSON": _entry(-10, body=b"\x00\xff not json"),
}


async def test_hostile_stream_entries_are_dead_lettered_raw_and_harm_nothing(
    topic: str, raw: aioredis.Redis
) -> None:
    url = f"{SHARED}?{FAST}"
    key = f"ew:{topic}"
    run = HostileRun()
    app = run.typed_worker(url, topic)
    async with serving(app):
        entries, n = interleave(HOSTILE_ENTRIES.values(), _entry, per=GOOD // len(HOSTILE_ENTRIES))
        for entry in entries:
            await raw.xadd(key, entry)
        await wait_until(lambda: len(run.handled) >= n and app.stats.dead_lettered >= 2, 30)
        assert app.ready, "a consumer task died: the worker is not ready"
        # Still consuming afterwards: nothing stalled the group.
        await raw.xadd(key, _entry(n))
        await wait_until(lambda: n in run.handled, deadline=30)
        good_sent = n + 1
        letters = await listed_dead_letters(url, topic, at_least=len(HOSTILE_ENTRIES))
    reasons = Counter(m.headers[h.DLQ_REASON].split(":")[0] for m in letters)
    figures = run.figures(cases=len(HOSTILE_ENTRIES), good_sent=good_sent, letters=letters)
    figures["unsettled"] = int((await raw.xpending(key, "workers"))["pending"])
    figures["dead letters by reason"] = dict(reasons)
    print("redis-streams hostile figures:", figures)
    run.check(figures, good_sent=good_sent)
    assert figures["unsettled"] == 0
    assert len(letters) == len(HOSTILE_ENTRIES)
    assert reasons["unreadable envelope"] == 8  # envelope broken
    assert reasons["validation-error"] + reasons["decode-error"] == 2  # body broken only


async def test_hostile_pubsub_payloads_never_stop_the_subscription(
    topic: str, raw: aioredis.Redis
) -> None:
    url = f"redis+pubsub://127.0.0.1:6379/0?{FAST}"
    handled: Counter[int] = Counter()
    hostile = [
        b'EW1\n{"id":"a","ts":' + b"9" * 400 + b"}\n{}",  # a 400-digit timestamp
        b"EW1\n" + b"[" * 100_000 + b"\n{}",  # a nested envelope
        b'EW1\n{"id":{"nested":{"id":1}},"ts":1}\n{}',
        b'EW1\n{"id":"b","ts":1e999}\n{}',
        b"not an eventwire payload \xff",
    ]
    app = App(url, name="hostile-pubsub")

    @app.subscriber(topic, concurrency=4)
    async def handle(job: Job) -> None:
        handled[job.n] += 1

    async with serving(app):
        channel = f"ew:{topic}"
        n = 0
        for payload in hostile:
            await app.publish(topic, {"n": n})
            n += 1
            await raw.publish(channel, payload)
        await app.publish(topic, {"n": n})
        n += 1
        await wait_until(lambda: len(handled) >= n, deadline=30)
        letters = await listed_dead_letters(url, topic, at_least=len(hostile))
    print(
        "redis-pubsub hostile figures:",
        {
            "hostile": len(hostile),
            "good processed/sent": f"{len(handled)}/{n}",
            "dead letters": len(letters),
        },
    )
    assert all(handled[g] == 1 for g in range(n))
    assert sorted(m.body for m in letters) == sorted(hostile)  # every byte kept
    assert all(m.headers[h.DLQ_REASON].startswith("unreadable envelope: ") for m in letters)
