"""Hostile producers on Kafka (issue 11): records written with the raw confluent-kafka
producer in eventwire's header layout, one field forged or broken at a time, between good
records, consumed by a typed handler (concurrency 4, max_attempts 3). Prints the figures.

One partition, so a record that stalled its partition would stall every good one behind it.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from confluent_kafka import Producer

from eventwire.brokers.catalog import open_broker
from eventwire.brokers.kafka.broker import KafkaBroker
from eventwire.core import headers as h
from eventwire.testing.app_runs import listed_dead_letters, serving, wait_until
from eventwire.testing.hostile import MAX_ATTEMPTS, HostileRun, interleave
from eventwire.testing.hostile import job_body as _job

pytestmark = [pytest.mark.integration, pytest.mark.kafka]

SHARED = "kafka://127.0.0.1:9092"


@dataclass(frozen=True)
class Hostile:
    value: bytes | None
    headers: list[tuple[str, str | bytes | None]]  # what Producer.produce takes
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

    # Patched on the class: the brokers open_broker() makes inside the tests are tracked too.
    KafkaBroker._connect = tracking  # type: ignore[method-assign, assignment]
    try:
        yield brokers
    finally:
        KafkaBroker._connect = connect  # type: ignore[method-assign]  # restores the method patched above
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
    run = HostileRun()
    app = run.typed_worker(url, topic, name="hostile-kafka")

    async with serving(app) as task:
        records, n = interleave(
            HOSTILE.values(),
            lambda g: Hostile(_job(g), [(h.MESSAGE_ID, b"good-%d" % g)], "processed"),
        )
        await asyncio.to_thread(_produce, topic, records)
        await wait_until(lambda: len(run.handled) >= n, deadline=90)
        await app.publish(topic, {"n": n})  # still consuming afterwards
        await wait_until(lambda: n in run.handled, deadline=60)
        good_sent = n + 1
        dead = [c for c in HOSTILE.values() if c.expect == "dead"]
        letters = await listed_dead_letters(url, topic, at_least=len(dead), deadline=90)
        assert not task.done(), "the worker's run task ended"
        assert app.ready
    figures = run.figures(cases=len(HOSTILE), good_sent=good_sent, letters=letters)
    print("kafka hostile figures:", figures)
    run.check(figures, good_sent=good_sent)
    assert run.calls[9003] == MAX_ATTEMPTS, "a forged attempt cut the retries short"
    for name, case in HOSTILE.items():
        if case.expect == "processed":
            assert case.value is not None
            assert run.handled[json.loads(case.value)["n"]] == 1, name
    assert sorted(m.body for m in letters) == sorted(c.value or b"" for c in dead)
