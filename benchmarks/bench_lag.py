"""Benchmark: what reading consumer lag costs the consume path, and what one read takes.

Per broker (memory:// and sqlite:// always; each ``--broker URL`` adds one): an App with a
group subscriber (concurrency 4) handles ``--messages`` published to its topic once it has
subscribed (publish + handle time, batches of 500), with lag reading off
(``WatchPolicy(lag=None)``) and reading every 50 ms (100x the default rate), alternating,
best of ``--rounds`` each, in the same run; then the median time of one ``LagReader.read``.

    .venv/bin/python benchmarks/bench_lag.py [--messages 20000] [--rounds 5] [--broker URL]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aio_pika

from eventwire import App
from eventwire.brokers.kafka.broker import KafkaBroker
from eventwire.brokers.nats.jetstream import JetStreamBroker
from eventwire.brokers.rabbitmq.broker import RabbitMQBroker
from eventwire.brokers.redis.streams import RedisStreamsBroker
from eventwire.core.message import dead_letter_topic
from eventwire.observability.lag import LagPolicy, open_lag_reader
from eventwire.runtime.watching import WatchPolicy

OFF = WatchPolicy(lag=None)
EAGER = WatchPolicy(lag=LagPolicy(every=0.05))


async def consume_rate(
    url: str, count: int, watch: WatchPolicy
) -> tuple[float, float, float | None]:
    """Messages per second an App publishes and handles, this process's CPU µs per message
    meanwhile (steadier than wall time on a shared machine), and one lag read's median (ms)."""
    topic, group = f"bench.lag.{uuid.uuid4().hex[:8]}", f"g{uuid.uuid4().hex[:8]}"
    app = App(url, name="bench-lag", watch=watch)
    done = asyncio.Event()
    seen = 0

    @app.subscriber(topic, group=group, concurrency=4)
    async def handle(payload: dict[str, Any]) -> None:
        nonlocal seen
        seen += 1
        if seen == count:
            done.set()

    read_ms = None
    async with app:
        stop = asyncio.Event()
        runner = asyncio.create_task(app.run(stop))
        await app.wait_ready()  # subscribed first: RabbitMQ refuses unroutable publishes
        started, cpu = time.perf_counter(), time.process_time()
        for start in range(0, count, 500):
            await app.publish_batch(
                topic, ({"n": n} for n in range(start, min(start + 500, count)))
            )
        async with asyncio.timeout(300):
            await done.wait()
        rate = count / (time.perf_counter() - started)
        cpu_us = (time.process_time() - cpu) / count * 1e6
        stop.set()
        await runner
        reader = open_lag_reader(app.broker)
        if reader is not None:
            reads = []
            for _ in range(20):
                begun = time.perf_counter()
                await reader.read(topic, group)
                reads.append((time.perf_counter() - begun) * 1000)
            await reader.aclose()
            read_ms = sorted(reads)[len(reads) // 2]
        await remove(app, url, topic, group)
    return rate, cpu_us, read_ms


async def remove(app: App, url: str, topic: str, group: str) -> None:
    """Delete the benchmark's topic from a shared broker (its queues, streams, keys)."""
    broker, dlq = app.broker, dead_letter_topic(topic)
    if isinstance(broker, KafkaBroker):
        await broker.delete_topics(broker.created_topics)
    elif isinstance(broker, RedisStreamsBroker):
        await broker.client.delete(
            broker.stream_key(topic), broker.stream_key(dlq), broker.schedule_key(topic, group)
        )
    elif isinstance(broker, JetStreamBroker):
        js = broker.client.jetstream()
        for name in (topic, dlq):
            await js.delete_stream(broker.options.stream(name))
    elif isinstance(broker, RabbitMQBroker):
        connection = await aio_pika.connect(url)
        async with connection:
            channel = await connection.channel()
            for queue in broker.declared_queues:
                if topic in queue:
                    await channel.queue_delete(queue)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--broker", action="append", default=[])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        urls = [f"memory://bench-lag-{uuid.uuid4().hex[:6]}", f"sqlite:///{Path(tmp) / 'b.db'}"]
        for url in urls + args.broker:
            off: list[tuple[float, float, float | None]] = []
            on: list[tuple[float, float, float | None]] = []
            for _ in range(args.rounds):  # alternating: load changes hit both sides alike
                off.append(await consume_rate(url, args.messages, OFF))
                on.append(await consume_rate(url, args.messages, EAGER))
            rate_off, rate_on = max(r[0] for r in off), max(r[0] for r in on)
            cpu_off, cpu_on = min(r[1] for r in off), min(r[1] for r in on)
            read = min(r[2] or 0.0 for r in on)
            print(
                f"{url.split('://')[0]:>8}: lag off {rate_off:>7,.0f} msg/s {cpu_off:5.1f} µs/msg"
                f" | lag every 50 ms {rate_on:>7,.0f} msg/s {cpu_on:5.1f} µs/msg"
                f" | CPU ratio {cpu_on / cpu_off:.3f}, one read {read:.2f} ms"
            )


if __name__ == "__main__":
    asyncio.run(main())
