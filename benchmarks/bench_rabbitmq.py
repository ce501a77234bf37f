"""Benchmark: eventwire's RabbitMQ adapter against raw aio-pika doing the same work.

Same run, same server, same topology (topic exchange -> durable quorum queue with the same
arguments), same messages (~200-byte JSON, persistent, message id set), same work per message
(decode the JSON, call an async handler), same publisher confirms and per-message acks:

* publish-confirmed msg/s   batches of 500 (eventwire: publish(topic, *batch); raw: gather of
                            exchange.publish on a confirm channel), each returns when confirmed;
* consume-with-ack msg/s    a pre-filled queue drained with prefetch 100;
* end-to-end latency        p50/p99 at a paced 1,000 msg/s, one message per publish.

    .venv/bin/python benchmarks/bench_rabbitmq.py --messages 100000 [--quick] [--url amqp://...]

Prints each figure and the eventwire/raw ratio (targets: >= 0.75x throughput, p99 <= 1.5x).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import _harness as bench
import aio_pika

from eventwire.brokers.catalog import open_broker
from eventwire.brokers.rabbitmq.options import (
    RabbitMQSettings,
    group_queue,
    group_queue_arguments,
)
from eventwire.core.url import BrokerURL

BATCH = 500
PREFETCH = 100
JSON = "application/json"
WIDTHS = (40, 13, 11)  # columns: figure, raw, eventwire


# -- raw aio-pika ---------------------------------------------------------------------------


class Raw:
    def __init__(self, url: str, exchange: str) -> None:
        self.url, self.exchange_name = url, exchange
        self.settings = RabbitMQSettings.from_url(BrokerURL.parse(f"{url}?exchange={exchange}"))

    async def __aenter__(self) -> Raw:
        self.conn = await aio_pika.connect(self.url)
        self.channel = await self.conn.channel(publisher_confirms=True)
        self.exchange = await self.channel.declare_exchange(
            self.exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.conn.close()

    async def queue(self, topic: str, prefetch: int = PREFETCH) -> aio_pika.abc.AbstractQueue:
        channel = await self.conn.channel()
        await channel.set_qos(prefetch_count=prefetch)
        name = "raw-" + group_queue(self.exchange_name, topic, "g")
        args = group_queue_arguments(self.settings, topic, "g")
        queue = await channel.declare_queue(name, durable=True, arguments=args)
        await queue.bind(self.exchange, topic)
        return queue

    async def publish(self, topic: str, bodies: list[bytes]) -> float:
        started = time.perf_counter()
        for start in range(0, len(bodies), BATCH):
            await asyncio.gather(*(self._send(topic, b) for b in bodies[start : start + BATCH]))
        return bench.per_second(len(bodies), started)

    async def _send(self, topic: str, body: bytes) -> None:
        message = aio_pika.Message(
            body,
            message_id=uuid.uuid4().hex,
            content_type=JSON,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        await self.exchange.publish(message, topic, mandatory=False)

    async def consume(self, queue: aio_pika.abc.AbstractQueue, count: int) -> float:
        started = time.perf_counter()
        seen = 0
        async with queue.iterator() as it:
            async for message in it:
                await bench.handler(json.loads(message.body))
                await message.ack()
                seen += 1
                if seen == count:
                    break
        return bench.per_second(count, started)

    async def latency(self, topic: str, count: int, rate: float) -> list[float]:
        queue = await self.queue(topic)
        latencies: list[float] = []

        async def consume() -> None:
            async with queue.iterator() as it:
                async for message in it:
                    obj = json.loads(message.body)
                    await bench.handler(obj)
                    latencies.append(bench.latency_ms(obj["sent_ns"]))
                    await message.ack()
                    if len(latencies) == count:
                        return

        async def send(i: int) -> None:
            await self._send(topic, bench.payload(i, time.perf_counter_ns()))

        await bench.paced(send, count, rate, consume(), overlap=True)
        await queue.delete(if_unused=False, if_empty=False)
        return latencies


# -- eventwire ------------------------------------------------------------------------------


async def ew_consume(url: str, topic: str, count: int) -> float:
    broker = open_broker(url)
    async with broker, broker.subscribe(topic, group="g", prefetch=PREFETCH) as sub:
        started = time.perf_counter()
        await bench.ew_drain(sub, count)
        return bench.per_second(count, started)


async def cleanup(url: str, exchange: str, queues: list[str]) -> None:
    conn = await aio_pika.connect(url)
    try:
        channel = await (await conn.channel()).get_underlay_channel()
        for queue in queues:
            await channel.queue_delete(queue)
        await channel.exchange_delete(exchange)
    finally:
        await conn.close()


async def main() -> None:
    cli = bench.parser(
        __doc__,
        url="amqp://guest:guest@127.0.0.1:5672/",
        rounds=1,
        rounds_help="throughput rounds (alternating)",
    )
    cli.add_argument(
        "--latency-rounds",
        type=int,
        default=3,
        help="latency rounds, raw and eventwire alternating; each side's best round counts "
        "(other work on a shared machine hits both sides alike)",
    )
    args = cli.parse_args()
    count, lat_count = bench.messages(args), bench.latency_messages(args)
    run = uuid.uuid4().hex[:8]
    exchange = f"bench-{run}"
    ew_url = f"{args.url.rstrip('/')}/?exchange={exchange}"
    bodies = [bench.payload(i) for i in range(count)]
    pubs: bench.Sides = ([], [])
    cons: bench.Sides = ([], [])
    lats: tuple[list[list[float]], list[list[float]]] = ([], [])
    queues: list[str] = []
    async with Raw(args.url, exchange) as raw:
        try:
            for r in range(args.rounds):
                topic = f"bench.{run}.{r}"
                queues += [
                    group_queue(exchange, topic, "g"),
                    "raw-" + group_queue(exchange, topic, "g"),
                ]
                queues.append(group_queue(exchange, f"{topic}.dlq", "eventwire-dlq"))
                queue = await raw.queue(topic)
                pubs[0].append(await raw.publish(topic, bodies))
                cons[0].append(await raw.consume(queue, count))
                await queue.delete(if_unused=False, if_empty=False)
                async with open_broker(ew_url) as broker, broker.subscribe(topic, group="g"):
                    pass  # the group queue exists before publishing, like the raw one
                pubs[1].append(
                    await bench.ew_publish(ew_url, topic, bodies, BATCH, content_type=JSON)
                )
                cons[1].append(await ew_consume(ew_url, topic, count))
            for r in range(args.latency_rounds):
                lat_topic = f"bench-lat.{run}.{r}"
                queues += [group_queue(exchange, lat_topic, "lat")]
                queues.append(group_queue(exchange, f"{lat_topic}.dlq", "eventwire-dlq"))
                lats[0].append(await raw.latency(lat_topic, lat_count, args.rate))
                lats[1].append(
                    await bench.ew_latency(
                        ew_url,
                        lat_topic,
                        lat_count,
                        args.rate,
                        prefetch=PREFETCH,
                        content_type=JSON,
                        overlap=True,
                    )
                )
        finally:
            await cleanup(args.url, exchange, queues)
    best_lats = (
        min(lats[0], key=lambda x: bench.pct(x, 0.99)),
        min(lats[1], key=lambda x: bench.pct(x, 0.99)),
    )
    figures = {
        f"publish-confirmed msg/s (batches of {BATCH})": bench.best(pubs),
        "consume-with-ack msg/s": bench.best(cons),
        **bench.latency_figures(args.rate, best_lats),
    }
    print(
        f"rabbitmq: {count} messages x {args.rounds} round(s); latency {lat_count} samples "
        f"x {args.latency_rounds} rounds (best round per side)"
    )
    bench.print_figures(figures, WIDTHS, raw_label="raw aio-pika")
    rounds = [
        (round(bench.pct(a, 0.99), 1), round(bench.pct(b, 0.99), 1))
        for a, b in zip(*lats, strict=True)
    ]
    print("p99 ms per latency round (raw, eventwire):", rounds)
    # Medians over rounds: robust to one round hit by other work on the shared cores.
    p50s: bench.Sides = ([bench.pct(x, 0.5) for x in lats[0]], [bench.pct(x, 0.5) for x in lats[1]])
    p99s: bench.Sides = (
        [bench.pct(x, 0.99) for x in lats[0]],
        [bench.pct(x, 0.99) for x in lats[1]],
    )
    print("medians over rounds:")
    bench.print_figures(
        {
            "publish-confirmed msg/s": bench.medians(pubs),
            "consume-with-ack msg/s": bench.medians(cons),
            "e2e p50 ms": bench.medians(p50s),
            "e2e p99 ms": bench.medians(p99s),
        },
        WIDTHS,
    )


if __name__ == "__main__":
    asyncio.run(main())
