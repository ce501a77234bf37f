"""Benchmark: eventwire's Kafka adapter against raw confluent-kafka doing the same work.

Same run, same broker, same topics (4 partitions), same messages (~200-byte JSON), same
producer guarantee (acks=all, idempotence, lz4, linger 5 ms), same work per message (decode
the JSON, call an async handler) and the same commit guarantee (offsets stored only after the
handler finished; raw: ``store_offsets`` per message with auto-commit, librdkafka's
at-least-once recipe; eventwire: commits up to the lowest unfinished offset):

* publish-confirmed msg/s   batches of 500, each call returns once every delivery report is in;
* consume-with-commit msg/s a pre-filled topic drained by a new group, prefetch 100;
* end-to-end latency        p50/p99 at a paced 1,000 msg/s, one message per publish.

    .venv/bin/python benchmarks/bench_kafka.py --messages 100000 [--quick] [--url kafka://...]

Prints each figure and the eventwire/raw ratio (targets: >= 0.8x throughput, p99 <= 1.5x).
Every topic it creates is deleted at the end.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import _harness as bench
from confluent_kafka import Consumer, KafkaError, Message, Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from eventwire.brokers.catalog import open_broker
from eventwire.brokers.kafka.options import KafkaOptions
from eventwire.core.url import BrokerURL

BATCH = 500
PREFETCH = 100
PARTITIONS = 4
JSON = "application/json"
WIDTHS = (40, 13, 11)


class Raw:
    """confluent-kafka used the way its documentation recommends for at-least-once."""

    def __init__(self, url: str) -> None:
        self.options = KafkaOptions.from_url(BrokerURL.parse(url))
        self.admin = AdminClient({"bootstrap.servers": self.options.bootstrap})
        self.producer = Producer(self.options.producer_config())
        self._stop = False

    def create(self, topic: str) -> None:
        futures = self.admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
        for future in futures.values():
            future.result()

    async def publish(self, topic: str, bodies: list[bytes]) -> float:
        loop = asyncio.get_running_loop()
        poller = asyncio.create_task(asyncio.to_thread(self._poll))
        started = time.perf_counter()
        for start in range(0, len(bodies), BATCH):
            chunk = bodies[start : start + BATCH]
            done: asyncio.Future[None] = loop.create_future()
            left = [len(chunk)]

            def report(
                err: KafkaError | None, _msg: Message, done: Any = done, left: list[int] = left
            ) -> None:
                left[0] -= 1
                if left[0] == 0:
                    loop.call_soon_threadsafe(done.set_result, None)

            for body in chunk:
                headers = [
                    ("x-eventwire-id", uuid.uuid4().hex.encode()),
                    ("content-type", b"application/json"),
                ]
                self.producer.produce(topic, value=body, headers=headers, on_delivery=report)
            await done
        rate = bench.per_second(len(bodies), started)
        self._stop = True
        await poller
        self._stop = False
        return rate

    def _poll(self) -> None:
        while not self._stop:
            self.producer.poll(0.05)

    def consumer(self, group: str) -> Consumer:
        config = self.options.consumer_config(group, from_earliest=True)
        config.update({"enable.auto.commit": True, "auto.commit.interval.ms": 1000})
        config.pop("partition.assignment.strategy", None)
        return Consumer(config)

    async def consume(self, topic: str, count: int) -> float:
        consumer = self.consumer("raw-consume")
        consumer.subscribe([topic])
        started = time.perf_counter()
        seen = 0
        try:
            while seen < count:
                batch = await asyncio.to_thread(consumer.consume, PREFETCH, 0.1)
                for message in batch:
                    if message.error():
                        continue
                    await bench.handler(json.loads(message.value() or b"{}"))
                    consumer.store_offsets(message=message)
                    seen += 1
            return bench.per_second(count, started)
        finally:
            await asyncio.to_thread(consumer.close)

    async def latency(self, topic: str, count: int, rate: float) -> list[float]:
        consumer = self.consumer("raw-lat")
        consumer.subscribe([topic])
        # Joined before the first message is sent, like eventwire's subscribe.
        while not consumer.assignment():
            await asyncio.to_thread(consumer.poll, 0.1)
        latencies: list[float] = []
        loop = asyncio.get_running_loop()
        poller = asyncio.create_task(asyncio.to_thread(self._poll))

        async def consume() -> None:
            while len(latencies) < count:
                batch = await asyncio.to_thread(_fetch, consumer)
                for message in batch:
                    if message.error():
                        continue
                    obj = json.loads(message.value() or b"{}")
                    await bench.handler(obj)
                    latencies.append(bench.latency_ms(obj["sent_ns"]))
                    consumer.store_offsets(message=message)

        async def send(i: int) -> None:
            done: asyncio.Future[None] = loop.create_future()

            def report(err: KafkaError | None, _msg: Message) -> None:
                loop.call_soon_threadsafe(done.set_result, None)

            body = bench.payload(i, time.perf_counter_ns())
            self.producer.produce(topic, value=body, on_delivery=report)
            await done

        try:
            await bench.paced(send, count, rate, consume(), overlap=True)
        finally:
            self._stop = True
            await poller
            self._stop = False
            await asyncio.to_thread(consumer.close)
        return latencies

    def delete(self, topics: list[str]) -> None:
        for future in self.admin.delete_topics(topics).values():
            try:
                future.result()
            except Exception as exc:  # a missing topic is fine
                print("delete:", exc)


def _fetch(consumer: Consumer) -> list[Message]:
    # poll() returns with the first record; consume(n, timeout) would wait for n or timeout.
    first = consumer.poll(0.05)
    return [] if first is None else [first, *consumer.consume(PREFETCH - 1, 0)]


async def ew_consume(url: str, topic: str, count: int) -> float:
    broker = open_broker(url)
    async with broker, broker.subscribe(topic, group="ew-consume", prefetch=PREFETCH) as sub:
        started = time.perf_counter()
        await bench.ew_drain(sub, count)
        return bench.per_second(count, started)


async def main() -> None:
    cli = bench.parser(__doc__, url="kafka://127.0.0.1:9092", rounds=1, rounds_help="rounds")
    args = cli.parse_args()
    count, lat_count = bench.messages(args), bench.latency_messages(args)
    run = uuid.uuid4().hex[:8]
    ew_url = f"{args.url}?partitions={PARTITIONS}"
    bodies = [bench.payload(i) for i in range(count)]
    raw = Raw(args.url)
    pubs: bench.Sides = ([], [])
    cons: bench.Sides = ([], [])
    lats: bench.Sides = ([], [])
    created: list[str] = []
    try:
        for r in range(args.rounds):
            raw_topic, ew_topic = f"bench.{run}.raw.{r}", f"bench.{run}.ew.{r}"
            raw.create(raw_topic)
            created.append(raw_topic)
            pubs[0].append(await raw.publish(raw_topic, bodies))
            cons[0].append(await raw.consume(raw_topic, count))
            pubs[1].append(
                await bench.ew_publish(ew_url, ew_topic, bodies, BATCH, content_type=JSON)
            )
            cons[1].append(await ew_consume(ew_url, ew_topic, count))
        raw_lat, ew_lat = f"bench.{run}.raw-lat", f"bench.{run}.ew-lat"
        raw.create(raw_lat)
        created.append(raw_lat)
        lats = (
            await raw.latency(raw_lat, lat_count, args.rate),
            await bench.ew_latency(
                ew_url, ew_lat, lat_count, args.rate, prefetch=PREFETCH, content_type=JSON,
                overlap=True,
            ),
        )  # fmt: skip
    finally:
        metadata = raw.admin.list_topics(timeout=10)
        created += [t for t in metadata.topics if t.startswith(f"bench.{run}.ew")]
        raw.delete(created)
    figures = {
        f"publish-confirmed msg/s (batches of {BATCH})": bench.best(pubs),
        "consume-with-commit msg/s": bench.best(cons),
        **bench.latency_figures(args.rate, lats),
    }
    print(f"kafka: {count} messages x {args.rounds} round(s); latency {lat_count} samples")
    bench.print_figures(figures, WIDTHS, raw_label="raw confluent")
    bench.print_rounds(pubs, cons)


if __name__ == "__main__":
    asyncio.run(main())
