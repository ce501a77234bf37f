"""Hostile producers on Kafka (issue 11): records written with the raw confluent-kafka
producer in eventwire's header layout, one field forged or broken at a time, between good
records, consumed by a typed handler (concurrency 4, max_attempts 3). Prints the figures.

One partition, so a record that stalled its partition would stall every good one behind it.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from confluent_kafka import Producer
from pydantic import BaseModel

from eventwire import App, Context, RetryPolicy
from eventwire.brokers.catalog import open_broker
from eventwire.brokers.kafka.broker import KafkaBroker
from eventwire.core import headers as h
from eventwire.testing.app_runs import listed_dead_letters, serving, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.kafka]

SHARED = "kafka://127.0.0.1:9092"
MAX_ATTEMPTS = 3
GOOD_BETWEEN = 4


class Job(BaseModel):
    n: int
    fail: bool = False


def _job(n: int, *, fail: bool = False) -> bytes:
    return json.dumps({"n": n, "fail": fail}).encode()


@dataclass(frozen=True)
class Hostile:
    value: bytes | None
    headers: list[tuple[str, bytes]]
    expect: str  # "processed" (valid body) or "dead" (dead-lettered with its bytes)
    key: bytes | None = None


HOSTILE: dict[str, Hostile] = {
    # Retry-copy headers on the application topic: only eventwire's retry topics carry them.
    "forged due time in the year 5138": Hostile(
        _job(9001), [("x-eventwire-due", b"1e11")], "processed"
    ),
    "forged retry group of another group": Hostile(
        _job(9002), [("x-eventwire-retry-group", b"someone-else")], "processed"
    ),
    "forged attempt 99, always failing": Hostile(
        _job(9003, fail=True), [(h.ATTEMPT, b"99")], "dead"
    ),
    "forged attempt inf": Hostile(_job(9004), [(h.ATTEMPT, b"inf")], "processed"),
    "forged attempt nan": Hostile(_job(9005), [(h.ATTEMPT, b"nan")], "processed"),
    "timestamp nan": Hostile(_job(9006), [(h.TIMESTAMP, b"nan")], "processed"),
    "non-UTF-8 key and header value": Hostile(
        _job(9007), [("x-a", b"\xff\xfe")], "processed", key=b"\xff"
    ),
    "no value (tombstone)": Hostile(None, [], "dead"),
    "NUL in a header, body not JSON": Hostile(b"\x01 not json", [("x-a", b"v\x00w")], "dead"),
    "header of 20,000 bytes, body not a Job": Hostile(
        b'{"n": "x"}', [("x-big", b"y" * 20_000)], "dead"
    ),
    "NUL in the id, always failing": Hostile(
        _job(9008, fail=True), [(h.MESSAGE_ID, b"id\x00x")], "dead"
    ),
    "body not JSON": Hostile(b"\x00\xff not json", [], "dead"),
    "body nested 100,000 deep": Hostile(b"[" * 100_000, [], "dead"),
}


@pytest.fixture
async def created() -> AsyncIterator[list[KafkaBroker]]:
    """Every KafkaBroker the test connects; the topics they created are deleted after it."""
    brokers: list[KafkaBroker] = []
    connect = KafkaBroker._connect

    async def tracking(broker: KafkaBroker) -> None:
        brokers.append(broker)
        await connect(broker)

    KafkaBroker._connect = tracking  # type: ignore[method-assign]
    try:
        yield brokers
    finally:
        KafkaBroker._connect = connect  # type: ignore[method-assign]
        topics = sorted({t for b in brokers for t in b.created_topics})
        if topics:
            admin = open_broker(SHARED)
            assert isinstance(admin, KafkaBroker)
            try:
                await admin.delete_topics(topics)
            finally:
                await admin.aclose()


def _produce(topic: str, records: list[Hostile]) -> None:
    producer = Producer({"bootstrap.servers": "127.0.0.1:9092", "enable.idempotence": True})
    for record in records:
        producer.produce(topic, value=record.value, key=record.key, headers=record.headers)
    assert producer.flush(30) == 0, "records not delivered"


async def test_hostile_kafka_records_harm_nothing_else(created: list[KafkaBroker]) -> None:
    topic = f"ewt.kafka.hostile.{uuid.uuid4().hex[:8]}"
    url = f"{SHARED}?partitions=1"
    handled: Counter[int] = Counter()
    calls: Counter[int] = Counter()
    app = App(url, name="hostile-kafka")

    @app.subscriber(
        topic,
        group="workers",
        concurrency=4,
        retry=RetryPolicy(max_attempts=MAX_ATTEMPTS, initial_delay=0.05),
    )
    async def handle(job: Job, ctx: Context) -> None:
        calls[job.n] += 1
        if job.fail:
            raise ValueError("always fails")
        handled[job.n] += 1

    async with serving(app) as task:
        records: list[Hostile] = []
        n = 0
        for case in HOSTILE.values():
            for _ in range(GOOD_BETWEEN):
                records.append(Hostile(_job(n), [(h.MESSAGE_ID, b"good-%d" % n)], "processed"))
                n += 1
            records.append(case)
        await asyncio.to_thread(_produce, topic, records)
        await wait_until(lambda: len(handled) >= n, within=90)
        await app.publish(topic, {"n": n})  # still consuming afterwards
        await wait_until(lambda: n in handled, within=60)
        good_sent = n + 1
        dead = [c for c in HOSTILE.values() if c.expect == "dead"]
        letters = await listed_dead_letters(url, topic, at_least=len(dead), within=90)
        assert not task.done(), "the worker's run task ended"
        assert app.ready
    figures = {
        "hostile cases injected": len(HOSTILE),
        "good processed/sent": f"{sum(1 for g in range(good_sent) if handled[g] == 1)}/{good_sent}",
        "good dead-lettered unhandled": sum(1 for m in letters if m.id.startswith("good-")),
        "lost": good_sent - sum(1 for g in range(good_sent) if handled[g]),
        "handler calls above max_attempts": sum(1 for c in calls.values() if c > MAX_ATTEMPTS),
        "dead letters": len(letters),
    }
    print("kafka hostile figures:", figures)
    assert all(handled[g] == 1 for g in range(good_sent))
    assert figures["good dead-lettered unhandled"] == 0
    assert figures["handler calls above max_attempts"] == 0
    assert calls[9003] == MAX_ATTEMPTS, "a forged attempt cut the retries short"
    for name, case in HOSTILE.items():
        if case.expect == "processed":
            assert case.value is not None
            assert handled[json.loads(case.value)["n"]] == 1, name
    assert sorted(m.body for m in letters) == sorted(c.value or b"" for c in dead)
