"""Tests: ``@app.subscriber(..., transactional=True)`` on a private Kafka: an App pipeline
SIGKILLed while a handler's output is produced but its input not yet committed gives each
input exactly one output for read_committed readers after a restart (the same harness
without ``transactional`` gives a duplicate), and a raising handler's outputs are aborted
while the message is retried and dead-lettered per its policy. Prints the figures."""

from __future__ import annotations

import asyncio
import signal
import sys
import uuid
from collections import Counter
from pathlib import Path

import pytest

from brokers.kafka.kafka_support import open_kafka, scale, topic_name
from brokers.kafka.test_kafka_transactions import read_all
from eventwire.core import headers as h
from eventwire.core.errors import ConnectionLostError
from eventwire.core.message import Message
from eventwire.reliability.retry import RetryPolicy
from eventwire.runtime.app import App
from eventwire.runtime.context import Context
from eventwire.testing.app_runs import read_dead_letters, running, wait_until
from eventwire.testing.spawn_kafka import KafkaServer

pytestmark = [
    pytest.mark.integration,
    pytest.mark.kafka,
    pytest.mark.reconnect,
    pytest.mark.slow,
    pytest.mark.asyncio(loop_scope="module"),
]

PIPELINE = Path(__file__).with_name("kafka_app_pipeline.py")


async def run_killed_pipeline(
    server: KafkaServer, mode: str, tmp_path: Path
) -> tuple[int, Counter[bytes], set[bytes], int]:
    """Feed ``total`` inputs to the App pipeline, SIGKILL it while it handles the third of
    them (output produced, input not committed), restart it with the same transactional id
    and let it finish: ``(total, read_committed outputs, missing, records in the log)``."""
    total = scale(300, 2_000)
    source, target = topic_name(f"app-{mode}-in"), topic_name(f"app-{mode}-out")
    url = f"{server.url}?transactional_id=ewt-app-pipeline-{uuid.uuid4().hex[:8]}"
    marker = tmp_path / f"{mode}.stalled"
    stall = f"n{total // 3}"
    broker = await open_kafka(server.url)

    async def committed() -> int | None:
        """The group's committed offsets summed (None while an open transaction holds them
        back: see test_kafka_transactions)."""
        try:
            return sum(lag.committed or 0 for lag in await broker.lag(source, "pipeline"))
        except ConnectionLostError:
            return None

    async def start() -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            sys.executable, str(PIPELINE), url, source, target, "pipeline", mode,
            str(marker), stall,
        )  # fmt: skip

    try:
        inputs = [Message(body=f"n{n}".encode(), key=f"k{n % 16}") for n in range(total)]
        await broker.publish(source, *inputs)
        first = await start()
        try:
            async with asyncio.timeout(120):
                while not marker.exists() and first.returncode is None:
                    await asyncio.sleep(0.05)
            assert first.returncode is None, "the pipeline ended before the kill"
            first.send_signal(signal.SIGKILL)
            await first.wait()
        finally:
            if first.returncode is None:
                first.kill()
                await first.wait()
        second = await start()
        try:
            async with asyncio.timeout(180):
                while (await committed() or 0) < total:
                    await asyncio.sleep(0.1)
        finally:
            second.send_signal(signal.SIGKILL)
            await second.wait()
        outputs = await asyncio.to_thread(read_all, server.bootstrap, target, "read_committed")
        in_log = await asyncio.to_thread(read_all, server.bootstrap, target, "read_uncommitted")
    finally:
        await broker.aclose()
    counts = Counter(outputs)
    missing = {b"out:" + m.body for m in inputs} - set(counts)
    twice = {body: n for body, n in counts.items() if n > 1}
    print(
        f"\nkafka App pipeline ({mode}): {total} inputs, killed in the handler of {stall}, "
        f"outputs read_committed {len(outputs)} (missing {len(missing)}, more than once "
        f"{len(twice)}), records in the log {len(in_log)}"
    )
    return total, counts, missing, len(in_log)


async def test_transactional_app_pipeline_killed_mid_handler_outputs_each_input_once(
    private_kafka: KafkaServer, tmp_path: Path
) -> None:
    total, counts, missing, in_log = await run_killed_pipeline(private_kafka, "tx", tmp_path)
    assert not missing
    assert {body: n for body, n in counts.items() if n > 1} == {}
    assert sum(counts.values()) == total
    assert in_log > total  # the killed transaction's output was in the log, never committed


async def test_the_same_pipeline_without_transactional_outputs_a_duplicate(
    private_kafka: KafkaServer, tmp_path: Path
) -> None:
    total, counts, missing, _ = await run_killed_pipeline(private_kafka, "plain", tmp_path)
    assert not missing  # at-least-once: nothing lost ...
    assert counts[f"out:n{total // 3}".encode()] >= 2  # ... but the killed one's output twice


async def test_a_raising_handler_aborts_its_outputs_and_is_retried_then_dead_lettered(
    private_kafka: KafkaServer,
) -> None:
    source, target = topic_name("app-tx-fail-in"), topic_name("app-tx-fail-out")
    app = App(private_kafka.url, name="kafka-app-tx-fail")
    attempts: Counter[bytes] = Counter()

    @app.subscriber(
        source,
        group="transform",
        transactional=True,
        retry=RetryPolicy(max_attempts=2, initial_delay=0.2, jitter=0.0),
    )
    async def transform(message: Message, ctx: Context) -> None:
        attempts[message.body] += 1
        await ctx.publish(target, Message(body=b"out:" + message.body))
        await asyncio.sleep(0.3)  # past linger: the output reaches the log before the abort
        if message.body == b"bad" or (message.body == b"flaky" and ctx.attempt == 1):
            raise RuntimeError(f"transform of {message.body!r} failed after publishing")

    async with app, running(app):
        for body in (b"good", b"flaky", b"bad"):
            await app.publish(source, Message(body=body))
        await wait_until(lambda: app.stats.processed == 2, deadline=60)
        dead = await read_dead_letters(app.broker, source, 1, deadline=60)
    seen = await asyncio.to_thread(read_all, private_kafka.bootstrap, target, "read_committed")
    in_log = await asyncio.to_thread(read_all, private_kafka.bootstrap, target, "read_uncommitted")
    print(
        f"\nkafka App transaction failures: attempts {dict(attempts)}, read_committed saw "
        f"{sorted(seen)}, read_uncommitted saw {len(in_log)}, dead letters "
        f"{[(m.body, m.headers.get(h.DLQ_REASON)) for m in dead]}"
    )
    assert attempts == {b"good": 1, b"flaky": 2, b"bad": 2}
    assert sorted(seen) == [b"out:flaky", b"out:good"]  # no aborted attempt's output
    assert sorted(in_log) == [b"out:bad", b"out:bad", b"out:flaky", b"out:flaky", b"out:good"]
    assert [m.body for m in dead] == [b"bad"]
    assert dead[0].headers.get(h.DLQ_REASON) == "max-attempts"
