"""Benchmark: eventwire's Redis Streams adapter against raw redis-py doing the same work.

Same run, same server, same messages (~200-byte JSON), same work per message (decode the
JSON, call an async handler), same acks (XACK), same approximate MAXLEN:

* publish msg/s         batches of 100 (eventwire: publish(topic, *batch); raw: a pipeline
                        of XADD), each call returns once Redis replied (confirmed);
* consume-with-ack msg/s  a pre-filled stream read by a new group with prefetch/COUNT 100;
* end-to-end latency    p50/p99 at a paced 1,000 msg/s, one message per publish.

    .venv/bin/python benchmarks/bench_redis.py --messages 100000 [--url redis://...]

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

import redis.asyncio as aioredis

from eventwire.brokers.catalog import open_broker
from eventwire.core.message import Message

BATCH = 100
MAXLEN = 1_000_000


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


# -- raw redis-py ---------------------------------------------------------------------------


async def raw_publish(client: aioredis.Redis, key: str, bodies: list[bytes]) -> float:
    started = time.perf_counter()
    for start in range(0, len(bodies), BATCH):
        pipe = client.pipeline(transaction=False)
        for body in bodies[start : start + BATCH]:
            pipe.xadd(key, {"id": uuid.uuid4().hex, "body": body}, maxlen=MAXLEN, approximate=True)
        await pipe.execute()
    return len(bodies) / (time.perf_counter() - started)


async def raw_consume(client: aioredis.Redis, key: str, count: int) -> float:
    await client.xgroup_create(key, "bench", id="0", mkstream=True)
    done = 0
    started = time.perf_counter()
    while done < count:
        reply = await client.xreadgroup("bench", "c1", {key: ">"}, count=BATCH, block=1000)
        for _stream, entries in reply or ():
            ids = []
            for entry_id, fields in entries:
                await handler(json.loads(fields[b"body"]))
                ids.append(entry_id)
            await client.xack(key, "bench", *ids)
            done += len(ids)
    return count / (time.perf_counter() - started)


async def raw_latency(client: aioredis.Redis, key: str, count: int, rate: float) -> list[float]:
    await client.xgroup_create(key, "lat", id="$", mkstream=True)
    latencies: list[float] = []

    async def consume() -> None:
        while len(latencies) < count:
            reply = await client.xreadgroup("lat", "c1", {key: ">"}, count=BATCH, block=1000)
            for _stream, entries in reply or ():
                ids = []
                for entry_id, fields in entries:
                    obj = json.loads(fields[b"body"])
                    await handler(obj)
                    latencies.append((time.perf_counter_ns() - obj["sent_ns"]) / 1e6)
                    ids.append(entry_id)
                await client.xack(key, "lat", *ids)

    async def send(i: int) -> None:
        body = json.loads(payload(i))
        body["sent_ns"] = time.perf_counter_ns()
        await client.xadd(
            key,
            {"id": uuid.uuid4().hex, "body": json.dumps(body).encode()},
            maxlen=MAXLEN,
            approximate=True,
        )

    await paced(send, count, rate, consume())
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
        return count / (time.perf_counter() - started)  # includes the final XACK flush


async def ew_latency(url: str, topic: str, count: int, rate: float) -> list[float]:
    latencies: list[float] = []
    async with (
        open_broker(url) as broker,
        broker.subscribe(topic, group="lat", prefetch=BATCH) as sub,
    ):

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
    send: Callable[[int], Awaitable[None]], count: int, rate: float, consumer: Awaitable[None]
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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--messages", type=int, default=100_000)
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
    raw_client = aioredis.Redis.from_url(args.url)
    keys: list[str] = []
    bodies = [payload(i) for i in range(args.messages)]
    pubs: tuple[list[float], list[float]] = ([], [])
    cons: tuple[list[float], list[float]] = ([], [])
    lats: tuple[list[float], list[float]] = ([], [])
    per_round = max(1, args.latency_messages // args.rounds)
    try:
        for r in range(args.rounds):
            raw_key, topic = f"bench-raw:{run}:{r}", f"bench-ew.{run}.{r}"
            lat_key, lat_topic = f"bench-raw-lat:{run}:{r}", f"bench-ew-lat.{run}.{r}"
            keys += [raw_key, lat_key]
            keys += [f"ew:{t}{s}" for t in (topic, lat_topic) for s in ("", ".dlq")]
            pubs[0].append(await raw_publish(raw_client, raw_key, bodies))
            pubs[1].append(await ew_publish(args.url, topic, bodies))
            cons[0].append(await raw_consume(raw_client, raw_key, args.messages))
            cons[1].append(await ew_consume(args.url, topic, args.messages))
            await raw_client.delete(*keys)  # keep the server's memory flat between rounds
            lats[0].extend(await raw_latency(raw_client, lat_key, per_round, args.rate))
            lats[1].extend(await ew_latency(args.url, lat_topic, per_round, args.rate))
    finally:
        if keys:
            await raw_client.delete(*keys)
        await raw_client.aclose()
    results = {
        "publish msg/s (batches of 100)": (max(pubs[0]), max(pubs[1])),
        "consume-with-ack msg/s": (max(cons[0]), max(cons[1])),
        f"e2e p50 ms @ {args.rate:.0f}/s": (pct(lats[0], 0.5), pct(lats[1], 0.5)),
        f"e2e p99 ms @ {args.rate:.0f}/s": (pct(lats[0], 0.99), pct(lats[1], 0.99)),
        "e2e mean ms": (statistics.fmean(lats[0]), statistics.fmean(lats[1])),
    }
    print(
        f"redis streams: {args.messages} messages x {args.rounds} rounds (best round), "
        f"{len(lats[0])} latency samples per side"
    )
    print(f"{'figure':36} {'raw redis-py':>14} {'eventwire':>12} {'ratio':>7}")
    for name, (raw, ew) in results.items():
        print(f"{name:36} {raw:14.2f} {ew:12.2f} {ew / raw:7.2f}x")
    print("all rounds, publish raw/ew:", [round(x) for x in pubs[0]], [round(x) for x in pubs[1]])
    print("all rounds, consume raw/ew:", [round(x) for x in cons[0]], [round(x) for x in cons[1]])


if __name__ == "__main__":
    asyncio.run(main())
