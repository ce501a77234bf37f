"""Benchmark: eventwire's JetStream adapter against raw nats-py doing the same work.

Same run, same server, same ~200-byte JSON messages, same work per message (decode the JSON,
await an async handler), same acks (explicit ``+ACK`` per message), same file-backed stream
with a duplicate window:

* publish msg/s           batches of 100; raw: ``js.publish_async`` with a ``Nats-Msg-Id``
                          per message, then wait for every PubAck; eventwire:
                          ``publish(topic, *batch)`` (which does the same and more);
* consume-with-ack msg/s  a pre-filled stream read by a new durable pull consumer, 100 at a
                          time (raw: ``pull_subscribe`` + ``fetch(100)``);
* end-to-end latency      p50/p99 at a paced 1,000 msg/s, one confirmed publish per message
                          (raw consumer: a push subscription with manual acks, nats-py's
                          lowest-latency way; eventwire: its pull consumer, prefetch 100).

    .venv/bin/python benchmarks/bench_nats.py 100000 [--url nats://127.0.0.1:4222]

Prints each figure and the eventwire/raw ratio (targets: >= 0.75x throughput, p99 <= 1.5x).
Streams made by the run are deleted at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable

import nats
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StreamConfig

from eventwire.brokers.catalog import open_broker
from eventwire.core.message import Message

BATCH = 100


def payload(i: int) -> bytes:
    body = {
        "order_id": f"ord-{i:08d}",
        "customer": "c-1234",
        "amount": 1234.5,
        "items": 3,
        "currency": "EUR",
        "sent_ns": 0,
        "note": "x" * 60,
    }
    return json.dumps(body).encode()


async def handler(obj: dict[str, object]) -> None:
    """The application's work: nothing, but awaited like a real async handler."""


# -- raw nats-py ----------------------------------------------------------------------------


async def raw_stream(js: JetStreamContext, name: str, subject: str) -> None:
    await js.add_stream(StreamConfig(name=name, subjects=[subject], duplicate_window=120))


async def raw_publish(js: JetStreamContext, subject: str, bodies: list[bytes]) -> float:
    started = time.perf_counter()
    for start in range(0, len(bodies), BATCH):
        futures = [
            await js.publish_async(subject, body, headers={"Nats-Msg-Id": uuid.uuid4().hex})
            for body in bodies[start : start + BATCH]
        ]
        await asyncio.gather(*futures)
    return len(bodies) / (time.perf_counter() - started)


async def raw_consume(js: JetStreamContext, stream: str, subject: str, count: int) -> float:
    config = ConsumerConfig(
        ack_policy=AckPolicy.EXPLICIT, deliver_policy=DeliverPolicy.ALL, max_ack_pending=20_000
    )
    sub = await js.pull_subscribe(subject, "raw-bench", stream=stream, config=config)
    done = 0
    started = time.perf_counter()
    while done < count:
        try:
            msgs = await sub.fetch(BATCH, timeout=5)
        except nats.errors.TimeoutError:
            continue
        for msg in msgs:
            await handler(json.loads(msg.data))
            await msg.ack()
            done += 1
    await js._nc.flush()
    elapsed = time.perf_counter() - started
    await sub.unsubscribe()
    return count / elapsed


async def raw_latency(js: JetStreamContext, subject: str, count: int, rate: float) -> list[float]:
    latencies: list[float] = []
    finished = asyncio.Event()

    async def on_msg(msg: nats.aio.msg.Msg) -> None:
        obj = json.loads(msg.data)
        await handler(obj)
        latencies.append((time.perf_counter_ns() - obj["sent_ns"]) / 1e6)
        await msg.ack()
        if len(latencies) == count:
            finished.set()

    sub = await js.subscribe(subject, durable="raw-lat", cb=on_msg, manual_ack=True)

    async def send(i: int) -> None:
        body = json.loads(payload(i))
        body["sent_ns"] = time.perf_counter_ns()
        await js.publish(subject, json.dumps(body).encode(), headers={"Nats-Msg-Id": str(i)})

    await paced(send, count, rate, finished.wait())
    await sub.unsubscribe()
    return latencies


# -- eventwire ------------------------------------------------------------------------------


async def ew_publish(url: str, topic: str, bodies: list[bytes]) -> float:
    async with open_broker(url) as broker:
        started = time.perf_counter()
        for start in range(0, len(bodies), BATCH):
            await broker.publish(topic, *(Message(body=b) for b in bodies[start : start + BATCH]))
        return len(bodies) / (time.perf_counter() - started)


async def ew_consume(url: str, topic: str, count: int) -> float:
    async with open_broker(url) as broker:
        done = 0
        started = time.perf_counter()
        async with broker.subscribe(topic, group="bench", prefetch=BATCH) as sub:
            async for delivery in sub:
                await handler(json.loads(delivery.message.body))
                await delivery.ack()
                done += 1
                if done == count:
                    break
            await broker.client.flush()  # type: ignore[attr-defined]
            elapsed = time.perf_counter() - started  # leaving the subscription is not timed
        return count / elapsed


async def ew_latency(url: str, topic: str, count: int, rate: float) -> list[float]:
    latencies: list[float] = []
    async with open_broker(url) as broker, broker.subscribe(topic, group="lat") as sub:

        async def consume() -> None:
            async for delivery in sub:
                obj = json.loads(delivery.message.body)
                await handler(obj)
                latencies.append((time.perf_counter_ns() - obj["sent_ns"]) / 1e6)
                await delivery.ack()
                if len(latencies) == count:
                    return

        async def send(i: int) -> None:
            body = json.loads(payload(i))
            body["sent_ns"] = time.perf_counter_ns()
            await broker.publish(topic, Message(body=json.dumps(body).encode()))

        await paced(send, count, rate, consume())
    return latencies


# -- shared ---------------------------------------------------------------------------------


async def paced(
    send: Callable[[int], Awaitable[None]], count: int, rate: float, consumer: Awaitable[object]
) -> None:
    """Call ``send(i)`` at ``rate`` per second (one at a time) while ``consumer`` runs."""
    consuming = asyncio.ensure_future(consumer)
    await asyncio.sleep(0.05)
    start = time.perf_counter()
    for i in range(count):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        await send(i)
    await asyncio.wait_for(consuming, 60)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("messages", type=int, nargs="?", default=100_000)
    parser.add_argument("--url", default="nats://127.0.0.1:4222")
    parser.add_argument("--latency-messages", type=int, default=5_000)
    parser.add_argument("--rate", type=float, default=1_000.0)
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="raw and eventwire alternate this many times; the best round of each counts "
        "(a shared machine's noise hits both sides alike)",
    )
    args = parser.parse_args()
    run = uuid.uuid4().hex[:8]
    prefix = f"EWBENCH{run}_"
    url = f"{args.url}?stream_prefix={prefix}&max_age=3600"
    nc = await nats.connect(args.url)
    js = nc.jetstream(publish_async_max_pending=8192)
    bodies = [payload(i) for i in range(args.messages)]
    pubs: tuple[list[float], list[float]] = ([], [])
    cons: tuple[list[float], list[float]] = ([], [])
    lats: tuple[list[float], list[float]] = ([], [])
    per_round = max(1, args.latency_messages // args.rounds)
    try:
        for r in range(args.rounds):
            raw_name, raw_subject = f"{prefix}RAW{r}", f"bench.raw.{run}.{r}"
            lat_name, lat_subject = f"{prefix}RAWLAT{r}", f"bench.rawlat.{run}.{r}"
            await raw_stream(js, raw_name, raw_subject)
            topic, lat_topic = f"bench.ew.{run}.{r}", f"bench.ewlat.{run}.{r}"
            pubs[0].append(await raw_publish(js, raw_subject, bodies))
            pubs[1].append(await ew_publish(url, topic, bodies))
            cons[0].append(await raw_consume(js, raw_name, raw_subject, args.messages))
            cons[1].append(await ew_consume(url, topic, args.messages))
            await delete_streams(js, prefix)  # keep the server's disk flat between rounds
            await raw_stream(js, lat_name, lat_subject)
            lats[0].extend(await raw_latency(js, lat_subject, per_round, args.rate))
            lats[1].extend(await ew_latency(url, lat_topic, per_round, args.rate))
            await delete_streams(js, prefix)
    finally:
        await delete_streams(js, prefix)
        await nc.close()
    results = {
        "publish-confirmed msg/s (batches 100)": (max(pubs[0]), max(pubs[1])),
        "consume-with-ack msg/s": (max(cons[0]), max(cons[1])),
        f"e2e p50 ms @ {args.rate:.0f}/s": (pct(lats[0], 0.5), pct(lats[1], 0.5)),
        f"e2e p99 ms @ {args.rate:.0f}/s": (pct(lats[0], 0.99), pct(lats[1], 0.99)),
        "e2e mean ms": (statistics.fmean(lats[0]), statistics.fmean(lats[1])),
    }
    print(
        f"nats jetstream: {args.messages} messages x {args.rounds} rounds (best round), "
        f"{len(lats[0])} latency samples per side"
    )
    print(f"{'figure':38} {'raw nats-py':>12} {'eventwire':>12} {'ratio':>7}")
    for name, (raw, ew) in results.items():
        print(f"{name:38} {raw:12.2f} {ew:12.2f} {ew / raw:7.2f}x")
    print("all rounds, publish raw/ew:", [round(x) for x in pubs[0]], [round(x) for x in pubs[1]])
    print("all rounds, consume raw/ew:", [round(x) for x in cons[0]], [round(x) for x in cons[1]])


async def delete_streams(js: JetStreamContext, prefix: str) -> None:
    for info in await js.streams_info():
        if info.config.name and info.config.name.startswith(prefix):
            await js.delete_stream(info.config.name)


if __name__ == "__main__":
    asyncio.run(main())
