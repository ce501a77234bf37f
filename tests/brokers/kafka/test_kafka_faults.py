"""Tests: Kafka under faults, on a private broker (never the shared one): the broker SIGKILLed
mid-stream, a rebalance during traffic, a worker SIGKILLed at concurrency 16, 1 % poison.
Each prints its figures; sizes grow with EVENTWIRE_TEST_SCALE=full."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any, cast

import pytest
from confluent_kafka import Consumer, TopicPartition
from pydantic import BaseModel

from brokers.kafka.kafka_support import (
    open_kafka,
    order_breaks,
    read_dead_letters,
    running,
    scale,
    topic_name,
    wait_until,
)
from eventwire import App, Context, RetryPolicy
from eventwire.brokers.kafka.broker import KafkaBroker
from eventwire.core import headers as h
from eventwire.core.errors import PublishError
from eventwire.core.message import Message
from eventwire.testing.spawn_kafka import KafkaServer

pytestmark = [
    pytest.mark.integration,
    pytest.mark.kafka,
    pytest.mark.reconnect,
    pytest.mark.slow,
    pytest.mark.asyncio(loop_scope="module"),
]

KEYS = 16
WORKER = Path(__file__).with_name("kafka_worker.py")


class Entry(BaseModel):
    account: str
    seq: int


def entries(count: int) -> list[Entry]:
    return [Entry(account=f"acct-{seq % KEYS}", seq=seq) for seq in range(count)]


async def test_broker_sigkilled_mid_stream_loses_no_confirmed_publish(
    private_kafka: KafkaServer,
) -> None:
    """Publishing and consuming go on while the broker is SIGKILLed and started again: every
    publish that returned is consumed; the consumer resumes by itself."""
    total, batch = scale(3_000, 10_000), 50
    # publish_timeout covers the outage: librdkafka holds the records and sends them after.
    url = f"{private_kafka.url}?publish_timeout=120"
    topic = topic_name("kill")
    handled: Counter[int] = Counter()
    app = App(url, name="kill-consumer", shutdown_timeout=30)

    @app.subscriber(topic, group="svc", concurrency=4)
    async def handle(entry: Entry) -> None:
        handled[entry.seq] += 1

    publisher = await open_kafka(url)
    await publisher.publish(topic, Message(body=b"{}", id="warm-up"))  # the topic exists
    confirmed: set[int] = set()
    unconfirmed: set[int] = set()
    stream = entries(total)

    async def publish_all() -> None:
        for start in range(0, total, batch):
            chunk = stream[start : start + batch]
            messages = [Message(body=e.model_dump_json().encode(), key=e.account) for e in chunk]
            try:
                await publisher.publish(topic, *messages)
            except PublishError:
                unconfirmed.update(e.seq for e in chunk)
            else:
                confirmed.update(e.seq for e in chunk)
            await asyncio.sleep(0.005)

    started = time.monotonic()
    try:
        async with app, running(app):
            producing = asyncio.create_task(publish_all())
            await wait_until(lambda: len(handled) >= total // 3, 60, what="a third consumed")
            committed_before = 0
            async with asyncio.timeout(30):
                while not committed_before:  # commits made before the kill must survive it
                    lags = await publisher.lag(topic, "svc")
                    committed_before = sum(lag.committed or 0 for lag in lags)
            killed_at = len(handled)
            await private_kafka.kill()
            down = time.monotonic()
            handled_by_kill = len(handled)
            sent_before = len(confirmed)
            await asyncio.sleep(2)  # the outage itself, not an assertion
            await private_kafka.start()
            outage = time.monotonic() - down
            await asyncio.wait_for(producing, 180)
            await wait_until(
                lambda: confirmed <= set(handled), 180, what="every confirmed publish consumed"
            )
            resumed = time.monotonic() - down
    finally:
        await publisher.aclose()
    lost = confirmed - set(handled)
    duplicates = sum(count - 1 for count in handled.values())
    print(
        f"\nkafka broker SIGKILL: {total} published, {len(confirmed)} confirmed "
        f"({sent_before} before the kill), {len(unconfirmed)} reported not sent, "
        f"killed after {killed_at} consumed ({committed_before} committed), "
        f"down {outage:.1f} s, all consumed "
        f"{resumed:.1f} s after the kill, lost {len(lost)}, duplicates {duplicates}, "
        f"{time.monotonic() - started:.1f} s in all"
    )
    assert sent_before < total, "the kill came after the last publish: nothing was tested"
    assert not lost
    assert len(confirmed) + len(unconfirmed) == total
    # What was committed before the kill is not read again: only the uncommitted window is.
    # (+1: the warm-up record is dead-lettered, not handled, and counted in the offsets.)
    assert duplicates <= handled_by_kill + 1 - committed_before


async def test_rebalance_mid_stream_loses_nothing_and_keeps_order_per_key(
    private_kafka: KafkaServer,
) -> None:
    """A second member joins, then the first leaves, while messages keep coming."""
    total = scale(4_000, 10_000)
    url = private_kafka.url
    topic = topic_name("rebalance")
    handled: list[tuple[str, int]] = []
    by_member: Counter[str] = Counter()

    def member(name: str) -> App:
        app = App(url, name=name, shutdown_timeout=30)

        @app.subscriber(topic, group="svc", concurrency=4, ordered_by="account")
        async def handle(entry: Entry) -> None:
            await asyncio.sleep(0.001)
            handled.append((entry.account, entry.seq))
            by_member[name] += 1

        return app

    first, second = member("first"), member("second")
    publisher = await open_kafka(url)
    stream = entries(total)

    async def publish_paced() -> None:
        for start in range(0, total, 20):
            await publisher.publish(
                topic,
                *[
                    Message(body=e.model_dump_json().encode(), key=e.account)
                    for e in stream[start : start + 20]
                ],
            )
            await asyncio.sleep(0.03)  # a stream lasting several rebalances

    def seen() -> int:
        return len({seq for _, seq in handled})

    try:
        await publisher.publish(topic, Message(body=b'{"account": "x", "seq": -1}'))
        async with first, second, running(first) as first_run:
            producing = asyncio.create_task(publish_paced())
            await wait_until(lambda: seen() >= total // 5, 60, what="a fifth consumed")
            async with running(second):
                joined_at = seen()
                await wait_until(
                    lambda: by_member["second"] > 0, 60, what="the new member gets work"
                )
                await wait_until(lambda: seen() >= total // 2, 60, what="half consumed")
                left_at = seen()
                still_publishing = not producing.done()
                await first_run.stop()  # the first member leaves; the second takes over
                await asyncio.wait_for(producing, 120)
                await wait_until(lambda: seen() >= total + 1, 120, what="everything consumed")
    finally:
        await publisher.aclose()
    lost = total + 1 - seen()
    breaks = order_breaks(handled)
    duplicates = len(handled) - seen()
    print(
        f"\nkafka rebalance: {total} messages, {KEYS} keys, second joined at {joined_at}, "
        f"first left at {left_at}, handled by first {by_member['first']} / second "
        f"{by_member['second']}, lost {lost}, duplicates {duplicates}, order breaks "
        f"{sum(len(b) for b in breaks.values())}"
    )
    assert still_publishing, "the first member left after the stream ended: no live rebalance"
    assert lost == 0
    assert breaks == {}


def _records_below(bootstrap: str, topic: str, committed: dict[int, int]) -> list[Entry]:
    """The entries of every partition of ``topic`` below its committed offset (raw client)."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"ewt-{uuid.uuid4().hex}",
         "enable.auto.commit": False}
    )  # fmt: skip
    try:
        wanted = {p: end for p, end in committed.items() if end > 0}
        consumer.assign([TopicPartition(topic, p, 0) for p in wanted])
        found: list[Entry] = []
        left = sum(wanted.values())
        deadline = time.monotonic() + 60
        while left and time.monotonic() < deadline:
            for record in consumer.consume(num_messages=500, timeout=0.5):
                # A record without an error always carries its partition.
                partition = cast("int", record.partition())
                if record.error() is None and (record.offset() or 0) < wanted[partition]:
                    found.append(Entry.model_validate_json(record.value() or b""))
                    left -= 1
        assert left == 0, f"{left} records below the committed offsets not read back"
        return found
    finally:
        consumer.close()


def _read_lines(path: Path) -> list[tuple[str, int]]:
    rows = []
    for line in path.read_text().splitlines():
        account, seq = line.split()
        rows.append((account, int(seq)))
    return rows


async def test_worker_sigkilled_at_concurrency_16_skips_nothing(
    private_kafka: KafkaServer, tmp_path: Path
) -> None:
    """Handlers finish out of order at concurrency 16; the worker is SIGKILLed mid-stream.
    The group's committed offsets never pass an unfinished message, so the next worker
    skips nothing, and the first handlings of each key come in publish order."""
    total = scale(3_000, 10_000)
    url = private_kafka.url
    topic = topic_name("crash16")
    out = tmp_path / "handled.txt"
    publisher = await open_kafka(url)
    try:
        stream = entries(total)
        for start in range(0, total, 500):
            await publisher.publish(
                topic,
                *[
                    Message(body=e.model_dump_json().encode(), key=e.account)
                    for e in stream[start : start + 500]
                ],
            )

        def spawn(seed: int) -> asyncio.Future[asyncio.subprocess.Process]:
            return asyncio.ensure_future(
                asyncio.create_subprocess_exec(
                    sys.executable, str(WORKER), url, topic, "svc", str(out), str(seed)
                )
            )

        def count() -> int:
            return len(out.read_text().splitlines()) if out.exists() else 0

        first = await spawn(1)
        try:
            await wait_until(lambda: count() >= total // 3, 90, what="a third handled")
            os.kill(first.pid, signal.SIGKILL)
            await first.wait()
        finally:
            if first.returncode is None:
                first.kill()
                await first.wait()
        before_crash = _read_lines(out)
        lags = await publisher.lag(topic, "svc")
        committed = {lag.partition: lag.committed or 0 for lag in lags}
        below = await asyncio.to_thread(_records_below, private_kafka.bootstrap, topic, committed)
        finished = {seq for _, seq in before_crash}
        passed_unfinished = sorted(e.seq for e in below if e.seq not in finished)
        second = await spawn(2)
        try:
            await wait_until(
                lambda: len({seq for _, seq in _read_lines(out)}) >= total,
                120,
                what="every message handled",
            )
        finally:
            second.send_signal(signal.SIGTERM)
            async with asyncio.timeout(60):
                await second.wait()
    finally:
        await publisher.aclose()
    rows = _read_lines(out)
    handled = {seq for _, seq in rows}
    skipped = sorted(set(range(total)) - handled)
    breaks = order_breaks(rows)
    print(
        f"\nkafka worker SIGKILL at concurrency 16: {total} messages, {len(before_crash)} "
        f"handled before the kill, committed {sum(committed.values())} (every one of them "
        f"finished: {not passed_unfinished}), skipped {len(skipped)}, duplicates "
        f"{len(rows) - len(handled)}, order breaks {sum(len(b) for b in breaks.values())}"
    )
    assert sum(committed.values()) > 0, "nothing was committed before the kill"
    assert len(before_crash) < total, "the kill came after the end: nothing was tested"
    assert passed_unfinished == [], "a committed offset passed an unfinished message"
    assert skipped == []
    assert breaks == {}


async def test_one_percent_poison_dead_lettered_raw_while_the_rest_flows(
    private_kafka: KafkaServer,
) -> None:
    """1 % undecodable bytes (dead-lettered at once, byte-identical, reason decode-error) and
    0.5 % that the handler always fails (retried with delays through the retry topics, then
    dead-lettered): every good message is handled while the failing ones wait, and the
    group's committed offsets reach the end of every partition."""
    total = scale(2_000, 10_000)
    url = private_kafka.url
    topic = topic_name("poison")
    policy = RetryPolicy(max_attempts=3, initial_delay=4.0, multiplier=1.0, jitter=0.0)
    app = App(url, name="poison")
    done: dict[int, float] = {}
    calls: Counter[int] = Counter()
    last_tries: list[float] = []

    @app.subscriber(topic, group="svc", concurrency=8, retry=policy)
    async def handle(entry: Entry, ctx: Context) -> None:
        calls[entry.seq] += 1
        if calls[entry.seq] == policy.max_attempts:
            last_tries.append(time.monotonic())
        if entry.seq % 200 == 50:
            raise ValueError(f"rejected {entry.seq}")
        done[entry.seq] = time.monotonic()

    messages: list[Message] = []
    undecodable: dict[str, bytes] = {}
    failing: dict[str, int] = {}
    for seq, entry in enumerate(entries(total)):
        if seq % 100 == 0:
            body = b"\xff\xfe\x00" + os.urandom(16) + f" not json {seq}".encode()
            message = Message(body=body, key=entry.account, content_type="application/json")
            undecodable[message.id] = body
        else:
            message = Message(body=entry.model_dump_json().encode(), key=entry.account)
            if seq % 200 == 50:
                failing[message.id] = seq
        messages.append(message)
    good = {seq for seq in range(total) if seq % 100 != 0 and seq % 200 != 50}
    started = time.monotonic()
    async with app, running(app):
        await app.broker.publish(topic, *messages)
        await wait_until(lambda: good <= set(done), 90, what="every good message handled")
        good_done = time.monotonic()
        letters = await read_dead_letters(
            app.broker, topic, len(undecodable) + len(failing), deadline=90
        )
        last_letter = time.monotonic()
        broker = app.broker
        assert isinstance(broker, KafkaBroker)
        await wait_until(lambda: app.stats.dead_lettered == len(letters), 30, what="counted")
    # The commits made on leaving are in: read the group's position with a fresh client.
    checker = await open_kafka(url)
    try:
        lags = await checker.lag(topic, "svc")
    finally:
        await checker.aclose()
    by_id = {m.id: m for m in letters}
    reasons = Counter(m.headers[h.DLQ_REASON] for m in letters)
    figures: dict[str, Any] = {
        "messages": total,
        "undecodable": len(undecodable),
        "handler-rejected": len(failing),
        "good handled/expected": f"{len(good & set(done))}/{len(good)}",
        "good handled in s": round(good_done - started, 2),
        "all dead letters in s": round(last_letter - started, 2),
        "dead letters by reason": dict(reasons),
        "lag after": sum(lag.lag for lag in lags),
    }
    print("\nkafka poison:", json.dumps(figures))
    assert set(by_id) == set(undecodable) | set(failing)
    for message_id, body in undecodable.items():
        assert by_id[message_id].body == body  # byte-identical
        assert by_id[message_id].headers[h.DLQ_REASON] == "decode-error"
        assert by_id[message_id].headers[h.DLQ_ORIGINAL_TOPIC] == topic
    for message_id, seq in failing.items():
        assert by_id[message_id].headers[h.DLQ_REASON] == "max-attempts"
        assert by_id[message_id].headers[h.DLQ_ATTEMPTS] == "3"
        assert calls[seq] == 3
    assert all(calls[seq] == 1 for seq in good)
    # No partition waited for its failing messages: blocked behind one, the good messages
    # after it would wait for its last try; here all are done before the first last try.
    assert good_done < min(last_tries)
    assert all(lag.lag == 0 for lag in lags), lags
