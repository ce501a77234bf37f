"""Benchmark: the App path (``@app.subscriber`` with a pydantic handler, ``app.publish``,
``app.publish_batch``) next to the adapter and the raw client, in one run, with ratios.

Same ~200-byte JSON bodies as the other benchmarks. Per broker (memory://, and Redis
Streams when ``--redis URL`` is given or reachable):

* consume msg/s           a pre-filled topic read by a new group, an ack per message:
                          raw client (Redis only: XREADGROUP + json.loads + XACK of each batch),
                          the adapter (``broker.subscribe`` + json.loads + ack), and the App
                          (``@app.subscriber`` whose handler takes a pydantic model);
* publish msg/s           raw pipeline (Redis), ``app.publish_batch`` of 1,000, and 1,000
                          concurrent ``app.publish()`` calls (each awaits its own confirm),
                          next to the floor of that case: 1,000 gathered no-op coroutines
                          (the callers' own tasks, which no publisher can avoid);
* e2e latency (Redis)     p50/p99 at a paced ``--rate`` per second, one message per publish:
                          raw redis-py (XADD, XREADGROUP) against ``app.publish`` + the App
                          handler;

Each figure is the best of ``--rounds`` (noise on a shared machine only slows rounds), with
the CPU cost per message of this process (µs, ``time.process_time``): it moves far less
with the machine's load than wall-clock throughput does.

``--broker URL`` (repeatable; RabbitMQ, NATS JetStream, Kafka, Redis, any at-least-once URL)
runs the measurement ``eventwire bench`` makes, from the library (``eventwire.cli.bench_*``
and each broker's ``bench_raw`` driver): ``1,000`` concurrent ``app.publish()`` calls
against the raw client's 1,000 concurrent confirmed publishes, the App consuming a backlog
with a pydantic handler against the raw client's consume-and-ack loop, and end-to-end
latency at ``--rate``; each figure the median of ``--rounds``, with App/raw ratios.

    .venv/bin/python benchmarks/bench_app.py [--messages 20000] [--rounds 3] [--loop uvloop]
    .venv/bin/python benchmarks/bench_app.py --skip-memory --broker kafka://127.0.0.1:9092
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import _harness as bench
from pydantic import BaseModel

from eventwire.brokers.catalog import open_broker
from eventwire.core.contract import Broker
from eventwire.core.message import Message
from eventwire.runtime.app import App
from eventwire.runtime.loops import run_with_loop

BATCH = 1_000  # publish_batch size and number of concurrent app.publish() calls
PREFETCH = 100


class Order(BaseModel):
    """The handler's model of ``bench.payload``."""

    order_id: str
    customer: str
    amount: float
    items: int
    currency: str
    sent_ns: int
    note: str


@dataclass(slots=True)
class Figure:
    """Best throughput over the rounds, and the CPU µs per message of that round."""

    rate: float = 0.0
    cpu_us: float = 0.0

    def add(self, rate: float, cpu_us: float) -> None:
        if rate > self.rate:
            self.rate, self.cpu_us = rate, cpu_us


async def timed(count: int, work: Callable[[], Awaitable[None]]) -> tuple[float, float]:
    """(msg/s, CPU µs per message) of ``work`` handling ``count`` messages."""
    cpu, wall = time.process_time(), time.perf_counter()
    await work()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return count / wall, cpu / count * 1e6


# -- eventwire: adapter and App ------------------------------------------------------------


async def fill(url: str, topic: str, bodies: list[bytes]) -> None:
    async with open_broker(url) as broker:
        for start in range(0, len(bodies), BATCH):
            chunk = bodies[start : start + BATCH]
            await broker.publish(
                topic, *(Message(body=b, content_type="application/json") for b in chunk)
            )


async def adapter_consume(url: str, topic: str, count: int) -> tuple[float, float]:
    async with open_broker(url) as broker:

        async def work() -> None:
            async with broker.subscribe(topic, group="adapter", prefetch=PREFETCH) as sub:
                await bench.ew_drain(sub, count)

        return await timed(count, work)


async def app_consume(url: str, topic: str, count: int, concurrency: int) -> tuple[float, float]:
    app = App(url, name="bench")
    done = asyncio.Event()
    seen = 0

    @app.subscriber(topic, group="app", concurrency=concurrency, prefetch=PREFETCH)
    async def handle(order: Order) -> None:
        nonlocal seen
        seen += 1
        if seen == count:
            done.set()

    async with app:
        stop = asyncio.Event()

        async def work() -> None:
            runner = asyncio.create_task(app.run(stop))
            waiter = asyncio.create_task(done.wait())
            await asyncio.wait({runner, waiter}, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            if runner.done():
                await runner  # re-raises what stopped it
            stop.set()
            await runner

        return await timed(count, work)


async def app_publish(
    url: str, topic: str, bodies: list[bytes], concurrent: bool
) -> tuple[float, float]:
    async with App(url, name="bench-pub") as app:
        return await publish_with(app, topic, bodies, concurrent)


async def publish_with(
    app: App, topic: str, bodies: list[bytes], concurrent: bool
) -> tuple[float, float]:
    """``bodies`` through ``app``: ``publish_batch`` of ``BATCH``, or ``BATCH`` concurrent
    ``app.publish()`` calls at a time."""
    objs = [json.loads(b) for b in bodies]

    async def work() -> None:
        for start in range(0, len(objs), BATCH):
            chunk = objs[start : start + BATCH]
            if concurrent:
                await asyncio.gather(*(app.publish(topic, o) for o in chunk))
            else:
                await app.publish_batch(topic, chunk)

    return await timed(len(objs), work)


async def app_latency(url: str, topic: str, count: int, rate: float) -> list[float]:
    """Milliseconds from ``app.publish`` to the App handler, paced at ``rate`` per second."""
    app = App(url, name="bench-lat")
    latencies: list[float] = []
    done = asyncio.Event()

    @app.subscriber(topic, group="lat", prefetch=PREFETCH)
    async def handle(order: Order) -> None:
        latencies.append(bench.latency_ms(order.sent_ns))
        if len(latencies) == count:
            done.set()

    async with app:
        stop = asyncio.Event()
        runner = asyncio.create_task(app.run(stop))
        await app.wait_ready()

        async def send(i: int) -> None:
            await app.publish(topic, json.loads(bench.payload(i, time.perf_counter_ns())))

        await bench.paced(send, count, rate, done.wait())
        stop.set()
        await runner
    return latencies


async def gather_floor(count: int) -> tuple[float, float]:
    """What ``count`` concurrent calls cost before they do anything: their own tasks."""

    async def nothing() -> None:
        return None

    async def work() -> None:
        for _ in range(count // BATCH):
            await asyncio.gather(*(nothing() for _ in range(BATCH)))

    return await timed(count, work)


# -- raw redis-py ---------------------------------------------------------------------------


async def redis_raw_publish(url: str, key: str, bodies: list[bytes]) -> tuple[float, float]:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)

    async def work() -> None:
        for start in range(0, len(bodies), BATCH):
            pipe = client.pipeline(transaction=False)
            for body in bodies[start : start + BATCH]:
                pipe.xadd(key, {"id": uuid.uuid4().hex, "body": body})
            await pipe.execute()

    try:
        return await timed(len(bodies), work)
    finally:
        await client.aclose()


async def redis_raw_consume(url: str, key: str, count: int) -> tuple[float, float]:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    await client.xgroup_create(key, "raw", id="0", mkstream=True)

    async def work() -> None:
        done = 0
        while done < count:
            reply = await client.xreadgroup("raw", "c1", {key: ">"}, count=PREFETCH, block=1000)
            for _stream, entries in reply or ():
                ids = []
                for entry_id, fields in entries:
                    await bench.handler(json.loads(fields[b"body"]))
                    ids.append(entry_id)
                await client.xack(key, "raw", *ids)
                done += len(ids)

    try:
        return await timed(count, work)
    finally:
        await client.aclose()


async def redis_cleanup(url: str, keys: list[str]) -> None:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    try:
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


# -- the run --------------------------------------------------------------------------------


def report(title: str, figures: dict[str, Figure], base: str | None) -> None:
    print(title)
    ref = figures.get(base) if base else None
    print(f"  {'case':<44} {'msg/s':>10} {'CPU µs/msg':>11} {'ratio':>7}")
    for name, fig in figures.items():
        ratio = f"{fig.rate / ref.rate:6.2f}x" if ref and ref.rate else ""
        print(f"  {name:<44} {fig.rate:>10,.0f} {fig.cpu_us:>11.1f} {ratio:>7}")


async def memory_run(count: int, rounds: int, concurrency: int) -> None:
    bodies = [bench.payload(i) for i in range(count)]
    figs = {
        name: Figure()
        for name in (
            "adapter consume+ack (json.loads)",
            "App consume (pydantic handler)",
            f"App consume (pydantic, concurrency={concurrency})",
            f"app.publish_batch({BATCH})",
            f"{BATCH} concurrent app.publish()",
        )
    }
    floor = Figure()
    names = list(figs)
    for r in range(rounds):
        floor.add(*await gather_floor(count))
        url = f"memory://bench-app-{uuid.uuid4().hex[:6]}-{r}"
        await fill(url, "t", bodies)
        figs[names[0]].add(*await adapter_consume(url, "t", count))
        figs[names[1]].add(*await app_consume(url, "t", count, 1))
        await fill(url, "t2", bodies)
        figs[names[2]].add(*await app_consume(url, "t2", count, concurrency))
        figs[names[3]].add(*await app_publish(url, "p1", bodies, concurrent=False))
        figs[names[4]].add(*await app_publish(url, "p2", bodies, concurrent=True))
    figs[f"  (floor: {BATCH} gathered no-op coroutines)"] = floor
    report(f"memory://: {count:,} messages x {rounds} rounds (best round)", figs, names[0])


async def redis_run(url: str, count: int, rounds: int, lat_count: int, rate: float) -> None:
    bodies = [bench.payload(i) for i in range(count)]
    cons = {
        n: Figure()
        for n in (
            "raw redis-py consume+ack",
            "adapter consume+ack",
            "App consume (pydantic handler)",
        )
    }
    pubs = {
        n: Figure()
        for n in (
            f"raw redis-py pipeline of {BATCH} XADD",
            f"app.publish_batch({BATCH})",
            f"{BATCH} concurrent app.publish()",
        )
    }
    cn, pn = list(cons), list(pubs)
    run = uuid.uuid4().hex[:6]
    keys: list[str] = []
    lats: bench.Sides = ([], [])
    try:
        for r in range(rounds):
            raw_key, topic = f"bench-app-raw:{run}:{r}", f"bench-app.{run}.{r}"
            p1, p2 = f"bench-app-p1.{run}.{r}", f"bench-app-p2.{run}.{r}"
            keys += [raw_key, *(f"ew:{t}{s}" for t in (topic, p1, p2) for s in ("", ".dlq"))]
            pubs[pn[0]].add(*await redis_raw_publish(url, raw_key, bodies))
            await fill(url, topic, bodies)
            cons[cn[0]].add(*await redis_raw_consume(url, raw_key, count))
            cons[cn[1]].add(*await adapter_consume(url, topic, count))
            cons[cn[2]].add(*await app_consume(url, topic, count, 1))
            pubs[pn[1]].add(*await app_publish(url, p1, bodies, concurrent=False))
            pubs[pn[2]].add(*await app_publish(url, p2, bodies, concurrent=True))
            await redis_cleanup(url, keys)
        if lat_count:
            lats = await redis_latencies(url, run, lat_count, rate)
            keys += [f"bench-app-rawlat:{run}", f"ew:bench-app-lat.{run}"]
    finally:
        await redis_cleanup(url, keys)
    report(f"redis streams {url}: {count:,} messages x {rounds} rounds (best round)", cons, cn[0])
    report("  publishing", pubs, pn[0])
    if lat_count:
        print(f"  latency, {lat_count:,} messages each at {rate:,.0f}/s")
        bench.print_figures(
            bench.latency_figures(rate, lats), (44, 12, 10), raw_label="raw redis-py"
        )


async def redis_latencies(url: str, run: str, count: int, rate: float) -> bench.Sides:
    import bench_redis
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    try:
        raw = await bench_redis.raw_latency(client, f"bench-app-rawlat:{run}", count, rate)
    finally:
        await client.aclose()
    return raw, await app_latency(url, f"bench-app-lat.{run}", count, rate)


async def broker_run(url: str, args: argparse.Namespace) -> None:
    """``eventwire bench``'s measurement on ``url``, ``--rounds`` times: medians, ratios."""
    import statistics

    from eventwire.cli import resolve
    from eventwire.cli.bench_commands import measure, print_report
    from eventwire.cli.bench_measure import BenchPlan

    plan = BenchPlan(
        messages=args.broker_messages,
        size=200,
        concurrency=BATCH,
        latency_messages=args.latency_messages or 1,
        rate=args.rate,
    )
    reports = [await measure(resolve.broker_url(url), plan) for _ in range(args.rounds)]

    def median_of(side: str, path: tuple[str, ...]) -> float:
        values = []
        for report in reports:
            value = report[side]
            for key in path:
                value = value[key]
            values.append(value)
        return float(statistics.median(values))

    merged = dict(reports[0])
    for side in ("eventwire", "raw"):
        if merged[side] is None:
            continue
        merged[side] = {
            "publish_per_s": median_of(side, ("publish_per_s",)),
            "publish_cpu_us": median_of(side, ("publish_cpu_us",)),
            "consume_per_s": median_of(side, ("consume_per_s",)),
            "consume_cpu_us": median_of(side, ("consume_cpu_us",)),
            **{
                name: {q: median_of(side, (name, q)) for q in ("p50_ms", "p99_ms", "p999_ms")}
                for name in ("publish_latency", "end_to_end")
            },
        }
    print(f"median of {args.rounds} rounds:")
    print_report(merged)
    await publish_modes(url, args.broker_messages, args.rounds)


async def publish_modes(url: str, count: int, rounds: int) -> None:
    """On ``url``: ``app.publish_batch`` of 1,000 against 1,000 concurrent ``app.publish()``
    (each awaiting its own confirm), same bodies, median of ``rounds``, with the ratio.

    The topic and group are the run's own: the group is made before the first publish (a
    RabbitMQ queue to take them, a Kafka topic), and both are deleted afterwards."""
    import statistics

    from eventwire.brokers.catalog import profile_for
    from eventwire.cli import resolve
    from eventwire.cli.bench_commands import _raw_module as raw_module  # its clean-up

    resolved = resolve.broker_url(url)
    run = uuid.uuid4().hex[:10]
    topic, group = f"ewbench-pub.{run}", f"ewbench-pub-{run}"
    bodies = [bench.payload(i) for i in range(count)]
    samples: dict[str, list[tuple[float, float]]] = {
        f"app.publish_batch({BATCH})": [],
        f"{BATCH} concurrent app.publish()": [],
    }
    batch_name, concurrent_name = samples
    used: list[Broker] = []
    try:
        async with App(resolved.url.secret(), name="bench-pub") as app:
            used.append(app.broker)
            async with app.broker.subscribe(topic, group=group, prefetch=1):
                pass
            await app.publish(topic, json.loads(bodies[0]))  # warm-up: metadata, channel
            for _ in range(rounds):
                samples[batch_name].append(await publish_with(app, topic, bodies, False))
                samples[concurrent_name].append(await publish_with(app, topic, bodies, True))
    finally:
        module = raw_module(profile_for(resolved.url))
        if module is not None:
            await module.remove_run(resolved.url, topic, group, used)
    figures = {
        name: Figure(
            rate=statistics.median(rate for rate, _ in values),
            cpu_us=statistics.median(cpu for _, cpu in values),
        )
        for name, values in samples.items()
    }
    report(
        f"  publishing through the App, {count:,} messages, median of {rounds}", figures, batch_name
    )


async def main(args: argparse.Namespace) -> None:
    loop = type(asyncio.get_running_loop()).__module__.split(".")[0]
    print(f"event loop: {loop}")
    for url in args.broker:
        await broker_run(url, args)
    if args.skip_memory:
        return
    await memory_run(args.messages, args.rounds, args.concurrency)
    if args.redis:
        await redis_run(
            args.redis,
            args.redis_messages or args.messages,
            args.rounds,
            args.latency_messages,
            args.rate,
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--redis-messages", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--latency-messages", type=int, default=2_000, help="0: no latency run")
    parser.add_argument("--rate", type=float, default=1_000.0)
    parser.add_argument("--redis", default=None, help="a Redis URL, e.g. redis://127.0.0.1:6379/0")
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    parser.add_argument(
        "--broker", action="append", default=[], help="also measure this broker (repeatable)"
    )
    parser.add_argument("--broker-messages", type=int, default=10_000)
    parser.add_argument("--skip-memory", action="store_true", help="only the --broker runs")
    arguments = parser.parse_args()
    run_with_loop(main(arguments), loop=arguments.loop)
