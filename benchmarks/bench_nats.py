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

    .venv/bin/python benchmarks/bench_nats.py 100000 [--quick] [--url nats://127.0.0.1:4222]

Prints each figure and the eventwire/raw ratio (targets: >= 0.75x throughput, p99 <= 1.5x).
Streams made by the run are deleted at the end.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
import uuid

import _harness as bench
import nats
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StreamConfig

from eventwire.brokers.catalog import open_broker

BATCH = 100


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
    return bench.per_second(len(bodies), started)


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
            await bench.handler(json.loads(msg.data))
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
        await bench.handler(obj)
        latencies.append(bench.latency_ms(obj["sent_ns"]))
        await msg.ack()
        if len(latencies) == count:
            finished.set()

    sub = await js.subscribe(subject, durable="raw-lat", cb=on_msg, manual_ack=True)

    async def send(i: int) -> None:
        body = bench.payload(i, time.perf_counter_ns())
        await js.publish(subject, body, headers={"Nats-Msg-Id": str(i)})

    await bench.paced(send, count, rate, finished.wait())
    await sub.unsubscribe()
    return latencies


# -- eventwire ------------------------------------------------------------------------------


async def ew_consume(url: str, topic: str, count: int) -> float:
    async with open_broker(url) as broker:
        started = time.perf_counter()
        async with broker.subscribe(topic, group="bench", prefetch=BATCH) as sub:
            await bench.ew_drain(sub, count)
            await broker.client.flush()  # type: ignore[attr-defined]
            elapsed = time.perf_counter() - started  # leaving the subscription is not timed
        return count / elapsed


async def main() -> None:
    args = bench.parser(
        __doc__,
        url="nats://127.0.0.1:4222",
        rounds=3,
        rounds_help="raw and eventwire alternate this many times; the best round of each counts "
        "(a shared machine's noise hits both sides alike)",
    ).parse_args()
    count, lat_count = bench.messages(args), bench.latency_messages(args)
    run = uuid.uuid4().hex[:8]
    prefix = f"EWBENCH{run}_"
    url = f"{args.url}?stream_prefix={prefix}&max_age=3600"
    nc = await nats.connect(args.url)
    js = nc.jetstream(publish_async_max_pending=8192)
    bodies = [bench.payload(i) for i in range(count)]
    pubs: bench.Sides = ([], [])
    cons: bench.Sides = ([], [])
    lats: bench.Sides = ([], [])
    per_round = max(1, lat_count // args.rounds)
    try:
        for r in range(args.rounds):
            raw_name, raw_subject = f"{prefix}RAW{r}", f"bench.raw.{run}.{r}"
            lat_name, lat_subject = f"{prefix}RAWLAT{r}", f"bench.rawlat.{run}.{r}"
            await raw_stream(js, raw_name, raw_subject)
            topic, lat_topic = f"bench.ew.{run}.{r}", f"bench.ewlat.{run}.{r}"
            pubs[0].append(await raw_publish(js, raw_subject, bodies))
            pubs[1].append(await bench.ew_publish(url, topic, bodies, BATCH))
            cons[0].append(await raw_consume(js, raw_name, raw_subject, count))
            cons[1].append(await ew_consume(url, topic, count))
            await delete_streams(js, prefix)  # keep the server's disk flat between rounds
            await raw_stream(js, lat_name, lat_subject)
            lats[0].extend(await raw_latency(js, lat_subject, per_round, args.rate))
            lats[1].extend(await bench.ew_latency(url, lat_topic, per_round, args.rate))
            await delete_streams(js, prefix)
    finally:
        await delete_streams(js, prefix)
        await nc.close()
    figures = {
        "publish-confirmed msg/s (batches 100)": bench.best(pubs),
        "consume-with-ack msg/s": bench.best(cons),
        **bench.latency_figures(args.rate, lats),
        "e2e mean ms": (statistics.fmean(lats[0]), statistics.fmean(lats[1])),
    }
    print(
        f"nats jetstream: {count} messages x {args.rounds} rounds (best round), "
        f"{len(lats[0])} latency samples per side"
    )
    bench.print_figures(figures, (38, 12, 12), raw_label="raw nats-py")
    bench.print_rounds(pubs, cons)


async def delete_streams(js: JetStreamContext, prefix: str) -> None:
    for info in await js.streams_info():
        if info.config.name and info.config.name.startswith(prefix):
            await js.delete_stream(info.config.name)


if __name__ == "__main__":
    asyncio.run(main())
