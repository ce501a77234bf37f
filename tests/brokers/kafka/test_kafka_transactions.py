"""Tests: exactly-once consume-transform-produce on a private Kafka: an aborted transaction's
records never reach a read_committed consumer, and a pipeline SIGKILLed mid-batch produces
each output exactly once. Prints the figures."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from brokers.kafka.kafka_support import open_kafka, scale, topic_name
from eventwire.core.errors import ConfigurationError
from eventwire.core.message import Message
from eventwire.reliability.replay import next_within
from eventwire.testing.spawn_kafka import KafkaServer

pytestmark = [
    pytest.mark.integration,
    pytest.mark.kafka,
    pytest.mark.reconnect,
    pytest.mark.slow,
    pytest.mark.asyncio(loop_scope="module"),
]

PIPELINE = Path(__file__).with_name("kafka_pipeline.py")


def read_all(bootstrap: str, topic: str, isolation: str, partitions: int = 4) -> list[bytes]:
    """Every data record of ``topic`` as a reader with ``isolation`` sees it (raw client)."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"ewt-{uuid.uuid4().hex}",
         "isolation.level": isolation, "enable.partition.eof": True,
         "enable.auto.commit": False}
    )  # fmt: skip
    try:
        consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        found: list[bytes] = []
        ended: set[int] = set()
        deadline = time.monotonic() + 60
        while len(ended) < partitions and time.monotonic() < deadline:
            for record in consumer.consume(num_messages=500, timeout=0.5):
                error = record.error()
                if error is None:
                    found.append(record.value() or b"")
                else:
                    ended.add(record.partition() or 0)
        assert len(ended) == partitions, "not every partition read to its end"
        return found
    finally:
        consumer.close()


async def test_aborted_transaction_never_reaches_a_read_committed_consumer(
    private_kafka: KafkaServer,
) -> None:
    url = private_kafka.url
    source, target = topic_name("tx-in"), topic_name("tx-out")
    broker = await open_kafka(url)
    try:
        await broker.publish(source, *[Message(body=f"n{n}".encode()) for n in range(3)])
        done: list[bytes] = []
        aborted = 0
        async with broker.subscribe(source, group="tx", prefetch=1) as deliveries:
            while len(done) < 3:
                delivery = await asyncio.wait_for(anext(deliveries), 60)
                body = delivery.message.body
                try:
                    async with broker.transaction(delivery) as tx:
                        await tx.publish(target, Message(body=b"out:" + body))
                        if body == b"n1" and delivery.attempt == 1:
                            await tx.flush()  # in the log, so that the abort has work to do
                            raise RuntimeError("the transform failed after producing")
                except RuntimeError:
                    aborted += 1
                    await delivery.nack()  # tried again through the retry topic
                    continue
                done.append(body)
        seen: list[bytes] = []
        async with broker.subscribe(target, group="reader") as outputs:
            while (output := await next_within(outputs, 5)) is not None:
                seen.append(output.message.body)
                await output.ack()
        uncommitted = await asyncio.to_thread(
            read_all, private_kafka.bootstrap, target, "read_uncommitted"
        )
    finally:
        await broker.aclose()
    print(
        f"\nkafka aborted transaction: {aborted} aborted, read_committed saw {len(seen)}, "
        f"read_uncommitted saw {len(uncommitted)}"
    )
    assert aborted == 1
    assert sorted(seen) == [b"out:n0", b"out:n1", b"out:n2"]  # the aborted copy never seen
    assert sorted(uncommitted) == [b"out:n0", b"out:n1", b"out:n1", b"out:n2"]  # it was there


async def test_pipeline_sigkilled_mid_batch_produces_each_output_exactly_once(
    private_kafka: KafkaServer,
) -> None:
    total = scale(300, 2_000)
    source, target = topic_name("eos-in"), topic_name("eos-out")
    # A stable transactional id: the restarted pipeline fences the killed one at once.
    url = f"{private_kafka.url}?transactional_id=ewt-pipeline-{uuid.uuid4().hex[:8]}"
    broker = await open_kafka(private_kafka.url)

    async def committed() -> int:
        return sum(lag.committed or 0 for lag in await broker.lag(source, "pipeline"))

    def start() -> asyncio.Future[asyncio.subprocess.Process]:
        return asyncio.ensure_future(
            asyncio.create_subprocess_exec(
                sys.executable, str(PIPELINE), url, source, target, "pipeline"
            )
        )

    try:
        inputs = [Message(body=f"n{n}".encode(), key=f"k{n % 16}") for n in range(total)]
        await broker.publish(source, *inputs)
        first = await start()
        try:
            progress = 0
            async with asyncio.timeout(120):
                while progress < total // 3:
                    progress = await committed()
                    await asyncio.sleep(0.05)
            os.kill(first.pid, signal.SIGKILL)
            await first.wait()
        finally:
            if first.returncode is None:
                first.kill()
                await first.wait()
        at_kill = await committed()
        second = await start()
        try:
            async with asyncio.timeout(180):
                while await committed() < total:
                    await asyncio.sleep(0.1)
        finally:
            second.send_signal(signal.SIGKILL)
            await second.wait()
        outputs = await asyncio.to_thread(
            read_all, private_kafka.bootstrap, target, "read_committed"
        )
        in_log = await asyncio.to_thread(
            read_all, private_kafka.bootstrap, target, "read_uncommitted"
        )
    finally:
        await broker.aclose()
    counts = Counter(outputs)
    expected = {b"out:" + m.body for m in inputs}
    missing = expected - set(counts)
    twice = {body: n for body, n in counts.items() if n > 1}
    print(
        f"\nkafka exactly-once pipeline: {total} inputs, killed after {at_kill} committed, "
        f"outputs read_committed {len(outputs)} (missing {len(missing)}, more than once "
        f"{len(twice)}), records in the log {len(in_log)} "
        f"({len(in_log) - len(outputs)} from aborted transactions)"
    )
    assert at_kill < total, "the kill came after the end: nothing was tested"
    assert not missing
    assert twice == {}
    assert set(counts) == expected


async def test_transaction_refuses_a_broadcast_delivery(private_kafka: KafkaServer) -> None:
    topic = topic_name("tx-broadcast")
    broker = await open_kafka(private_kafka.url)
    try:
        async with broker.subscribe(topic) as deliveries:
            await broker.publish(topic, Message(body=b"x"))
            delivery = await asyncio.wait_for(anext(deliveries), 60)
            with pytest.raises(ConfigurationError, match="needs a group"):
                async with broker.transaction(delivery) as tx:
                    await tx.publish(topic_name("tx-nowhere"), Message(body=b"y"))
    finally:
        await broker.aclose()
