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

import argparse
import asyncio
import json
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable

import aio_pika

from eventwire.brokers.catalog import open_broker
from eventwire.brokers.rabbitmq.settings import (
    RabbitMQSettings,
    group_queue,
    group_queue_arguments,
)
from eventwire.core.message import Message
from eventwire.core.url import BrokerURL

BATCH = 500
PREFETCH = 100


def payload(i: int, sent_ns: int = 0) -> bytes:
    body = {
        "order_id": f"ord-{i:08d}",
        "customer": "c-1234",
        "amount": 1234.5,
        "items": 3,
        "currency": "EUR",
        "sent_ns": sent_ns,
        "note": "x" * 60,
    }
    return json.dumps(body).encode()


async def handler(obj: dict[str, object]) -> None:
    """The application's work: nothing, but awaited like a real async handler."""


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
        return len(bodies) / (time.perf_counter() - started)

    async def _send(self, topic: str, body: bytes) -> None:
        message = aio_pika.Message(
            body,
            message_id=uuid.uuid4().hex,
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        await self.exchange.publish(message, topic, mandatory=False)

    async def consume(self, queue: aio_pika.abc.AbstractQueue, count: int) -> float:
        started = time.perf_counter()
        seen = 0
        async with queue.iterator() as it:
            async for message in it:
                await handler(json.loads(message.body))
                await message.ack()
                seen += 1
                if seen == count:
                    break
        return count / (time.perf_counter() - started)

    async def latency(self, topic: str, count: int, rate: float) -> list[float]:
        queue = await self.queue(topic)
        latencies: list[float] = []

        async def consume() -> None:
            async with queue.iterator() as it:
                async for message in it:
                    obj = json.loads(message.body)
                    await handler(obj)
                    latencies.append((time.perf_counter_ns() - obj["sent_ns"]) / 1e6)
                    await message.ack()
                    if len(latencies) == count:
                        return

        async def send(i: int) -> None:
            await self._send(topic, payload(i, time.perf_counter_ns()))

        await paced(send, count, rate, consume())
        await queue.delete(if_unused=False, if_empty=False)
        return latencies


# -- eventwire ------------------------------------------------------------------------------


async def ew_publish(url: str, topic: str, bodies: list[bytes]) -> float:
    async with open_broker(url) as broker:
        started = time.perf_counter()
        for start in range(0, len(bodies), BATCH):
            batch = [
                Message(body=b, content_type="application/json")
                for b in bodies[start : start + BATCH]
            ]
            await broker.publish(topic, *batch)
        return len(bodies) / (time.perf_counter() - started)


async def ew_consume(url: str, topic: str, count: int) -> float:
    broker = open_broker(url)
    async with broker, broker.subscribe(topic, group="g", prefetch=PREFETCH) as sub:
        started = time.perf_counter()
        seen = 0
        async for delivery in sub:
            await handler(json.loads(delivery.message.body))
            await delivery.ack()
            seen += 1
            if seen == count:
                break
        return count / (time.perf_counter() - started)


async def ew_latency(url: str, topic: str, count: int, rate: float) -> list[float]:
    latencies: list[float] = []
    broker = open_broker(url)
    async with broker, broker.subscribe(topic, group="lat", prefetch=PREFETCH) as sub:

        async def consume() -> None:
            async for delivery in sub:
                obj = json.loads(delivery.message.body)
                await handler(obj)
                latencies.append((time.perf_counter_ns() - obj["sent_ns"]) / 1e6)
                await delivery.ack()
                if len(latencies) == count:
                    return

        async def send(i: int) -> None:
            body = payload(i, time.perf_counter_ns())
            await broker.publish(topic, Message(body=body, content_type="application/json"))

        await paced(send, count, rate, consume())
    return latencies


# -- shared ---------------------------------------------------------------------------------


async def paced(
    send: Callable[[int], Awaitable[None]], count: int, rate: float, consumer: Awaitable[None]
) -> None:
    """Start ``send(i)`` at ``rate`` per second (each awaits its own confirm) while consuming."""
    consuming = asyncio.ensure_future(consumer)
    await asyncio.sleep(0.05)
    start = time.perf_counter()
    pending: set[asyncio.Task[None]] = set()
    for i in range(count):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(send(i))
        pending.add(task)
        task.add_done_callback(pending.discard)
    await asyncio.gather(*pending)
    await asyncio.wait_for(consuming, 60)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


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
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--url", default="amqp://guest:guest@127.0.0.1:5672/")
    parser.add_argument("messages_pos", nargs="?", type=int, help="same as --messages")
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--latency-messages", type=int, default=5_000)
    parser.add_argument("--rate", type=float, default=1_000.0)
    parser.add_argument("--rounds", type=int, default=1, help="throughput rounds (alternating)")
    parser.add_argument(
        "--latency-rounds",
        type=int,
        default=3,
        help="latency rounds, raw and eventwire alternating; each side's best round counts "
        "(other work on a shared machine hits both sides alike)",
    )
    parser.add_argument("--quick", action="store_true", help="10k messages, 1k latency samples")
    args = parser.parse_args()
    messages = args.messages_pos or (10_000 if args.quick else args.messages)
    lat_count = 1_000 if args.quick else args.latency_messages
    run = uuid.uuid4().hex[:8]
    exchange = f"bench-{run}"
    ew_url = f"{args.url.rstrip('/')}/?exchange={exchange}"
    bodies = [payload(i) for i in range(messages)]
    pubs: tuple[list[float], list[float]] = ([], [])
    cons: tuple[list[float], list[float]] = ([], [])
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
                cons[0].append(await raw.consume(queue, messages))
                await queue.delete(if_unused=False, if_empty=False)
                async with open_broker(ew_url) as broker, broker.subscribe(topic, group="g"):
                    pass  # the group queue exists before publishing, like the raw one
                pubs[1].append(await ew_publish(ew_url, topic, bodies))
                cons[1].append(await ew_consume(ew_url, topic, messages))
            for r in range(args.latency_rounds):
                lat_topic = f"bench-lat.{run}.{r}"
                queues += [group_queue(exchange, lat_topic, "lat")]
                queues.append(group_queue(exchange, f"{lat_topic}.dlq", "eventwire-dlq"))
                lats[0].append(await raw.latency(lat_topic, lat_count, args.rate))
                lats[1].append(await ew_latency(ew_url, lat_topic, lat_count, args.rate))
        finally:
            await cleanup(args.url, exchange, queues)
    best = (min(lats[0], key=lambda x: pct(x, 0.99)), min(lats[1], key=lambda x: pct(x, 0.99)))
    results = {
        f"publish-confirmed msg/s (batches of {BATCH})": (max(pubs[0]), max(pubs[1])),
        "consume-with-ack msg/s": (max(cons[0]), max(cons[1])),
        f"e2e p50 ms @ {args.rate:.0f}/s": (pct(best[0], 0.5), pct(best[1], 0.5)),
        f"e2e p99 ms @ {args.rate:.0f}/s": (pct(best[0], 0.99), pct(best[1], 0.99)),
    }
    print(
        f"rabbitmq: {messages} messages x {args.rounds} round(s); latency {lat_count} samples "
        f"x {args.latency_rounds} rounds (best round per side)"
    )
    print(f"{'figure':40} {'raw aio-pika':>13} {'eventwire':>11} {'ratio':>7}")
    for name, (raw_value, ew_value) in results.items():
        print(f"{name:40} {raw_value:13.2f} {ew_value:11.2f} {ew_value / raw_value:7.2f}x")
    rounds = [(round(pct(a, 0.99), 1), round(pct(b, 0.99), 1)) for a, b in zip(*lats, strict=True)]
    print("p99 ms per latency round (raw, eventwire):", rounds)
    # Medians over rounds: robust to one round hit by other work on the shared cores.
    medians = {
        "publish-confirmed msg/s": (statistics.median(pubs[0]), statistics.median(pubs[1])),
        "consume-with-ack msg/s": (statistics.median(cons[0]), statistics.median(cons[1])),
        "e2e p50 ms": tuple(statistics.median(pct(x, 0.5) for x in side) for side in lats),
        "e2e p99 ms": tuple(statistics.median(pct(x, 0.99) for x in side) for side in lats),
    }
    print("medians over rounds:")
    for name, (raw_value, ew_value) in medians.items():
        print(f"{name:40} {raw_value:13.2f} {ew_value:11.2f} {ew_value / raw_value:7.2f}x")


if __name__ == "__main__":
    asyncio.run(main())
