"""Benchmark: eventwire's Redis Streams adapter against raw redis-py doing the same work.

Same run, same server, same messages (~200-byte JSON), same work per message (decode the
JSON, call an async handler), same acks (XACK), same approximate MAXLEN:

* publish msg/s         batches of 100 (eventwire: publish(topic, *batch); raw: a pipeline
                        of XADD), each call returns once Redis replied (confirmed);
* consume-with-ack msg/s  a pre-filled stream read by a new group with prefetch/COUNT 100;
* end-to-end latency    p50/p99 at a paced 1,000 msg/s, one message per publish.

    .venv/bin/python benchmarks/bench_redis.py --messages 100000 [--quick] [--url redis://...]

Prints each figure and the eventwire/raw ratio (targets: >= 0.75x throughput, p99 <= 1.5x).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
import uuid

import _harness as bench
import redis.asyncio as aioredis

from eventwire.brokers.catalog import open_broker

BATCH = 100
MAXLEN = 1_000_000


# -- raw redis-py ---------------------------------------------------------------------------


async def raw_publish(client: aioredis.Redis, key: str, bodies: list[bytes]) -> float:
    started = time.perf_counter()
    for start in range(0, len(bodies), BATCH):
        pipe = client.pipeline(transaction=False)
        for body in bodies[start : start + BATCH]:
            pipe.xadd(key, {"id": uuid.uuid4().hex, "body": body}, maxlen=MAXLEN, approximate=True)
        await pipe.execute()
    return bench.per_second(len(bodies), started)


async def raw_consume(client: aioredis.Redis, key: str, count: int) -> float:
    await client.xgroup_create(key, "bench", id="0", mkstream=True)
    done = 0
    started = time.perf_counter()
    while done < count:
        reply = await client.xreadgroup("bench", "c1", {key: ">"}, count=BATCH, block=1000)
        for _stream, entries in reply or ():
            ids = []
            for entry_id, fields in entries:
                await bench.handler(json.loads(fields[b"body"]))
                ids.append(entry_id)
            await client.xack(key, "bench", *ids)
            done += len(ids)
    return bench.per_second(count, started)


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
                    await bench.handler(obj)
                    latencies.append(bench.latency_ms(obj["sent_ns"]))
                    ids.append(entry_id)
                await client.xack(key, "lat", *ids)

    async def send(i: int) -> None:
        body = bench.payload(i, time.perf_counter_ns())
        await client.xadd(
            key, {"id": uuid.uuid4().hex, "body": body}, maxlen=MAXLEN, approximate=True
        )

    await bench.paced(send, count, rate, consume())
    return latencies


# -- eventwire ------------------------------------------------------------------------------


async def ew_consume(url: str, topic: str, count: int) -> float:
    async with open_broker(url) as broker:
        started = time.perf_counter()
        async with broker.subscribe(topic, group="bench", prefetch=BATCH) as sub:
            await bench.ew_drain(sub, count)
        return bench.per_second(count, started)  # includes the final XACK flush


async def main() -> None:
    args = bench.parser(
        __doc__,
        url="redis://127.0.0.1:6379/0",
        rounds=3,
        rounds_help="raw and eventwire alternate this many times; the best round of each counts "
        "(a shared machine's noise hits both sides alike)",
    ).parse_args()
    count, lat_count = bench.messages(args), bench.latency_messages(args)
    run = uuid.uuid4().hex[:8]
    raw_client = aioredis.Redis.from_url(args.url)
    keys: list[str] = []
    bodies = [bench.payload(i) for i in range(count)]
    pubs: bench.Sides = ([], [])
    cons: bench.Sides = ([], [])
    lats: bench.Sides = ([], [])
    per_round = max(1, lat_count // args.rounds)
    try:
        for r in range(args.rounds):
            raw_key, topic = f"bench-raw:{run}:{r}", f"bench-ew.{run}.{r}"
            lat_key, lat_topic = f"bench-raw-lat:{run}:{r}", f"bench-ew-lat.{run}.{r}"
            keys += [raw_key, lat_key]
            keys += [f"ew:{t}{s}" for t in (topic, lat_topic) for s in ("", ".dlq")]
            pubs[0].append(await raw_publish(raw_client, raw_key, bodies))
            pubs[1].append(await bench.ew_publish(args.url, topic, bodies, BATCH))
            cons[0].append(await raw_consume(raw_client, raw_key, count))
            cons[1].append(await ew_consume(args.url, topic, count))
            await raw_client.delete(*keys)  # keep the server's memory flat between rounds
            lats[0].extend(await raw_latency(raw_client, lat_key, per_round, args.rate))
            lats[1].extend(
                await bench.ew_latency(args.url, lat_topic, per_round, args.rate, prefetch=BATCH)
            )
    finally:
        if keys:
            await raw_client.delete(*keys)
        await raw_client.aclose()
    figures = {
        "publish msg/s (batches of 100)": bench.best(pubs),
        "consume-with-ack msg/s": bench.best(cons),
        **bench.latency_figures(args.rate, lats),
        "e2e mean ms": (statistics.fmean(lats[0]), statistics.fmean(lats[1])),
    }
    print(
        f"redis streams: {count} messages x {args.rounds} rounds (best round), "
        f"{len(lats[0])} latency samples per side"
    )
    bench.print_figures(figures, (36, 14, 12), raw_label="raw redis-py")
    bench.print_rounds(pubs, cons)


if __name__ == "__main__":
    asyncio.run(main())
