"""Benchmark: publish and consume-with-ack throughput of the embedded brokers (memory, SQLite).

    python benchmarks/bench_embedded.py [--memory 100000] [--sqlite 20000]

Each run publishes ~200-byte JSON bodies in batches, then consumes them all with an ack per
message, once through the raw ``Subscriber`` API and once through an ``App`` with a trivial
handler. Publishing and consuming are timed separately; "end to end" is messages divided by
both times added. Targets are printed next to each figure. Not a test: figures vary by host.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from eventwire.brokers.catalog import open_broker
from eventwire.core.contract import Broker
from eventwire.core.message import Message
from eventwire.runtime.app import App

TOPIC = "bench.events"
BATCH = 500
TARGETS = {
    ("memory", "end to end"): 50_000,
    ("sqlite", "publish"): 10_000,
    ("sqlite", "consume+ack"): 3_000,
}


def bodies(count: int) -> list[Message]:
    pad = "x" * 137  # bodies of ~200 bytes
    return [
        Message(
            body=json.dumps(
                {"id": n, "kind": "order.placed", "customer": f"c-{n % 97}", "pad": pad}
            ).encode(),
            content_type="application/json",
        )
        for n in range(count)
    ]


async def publish_all(broker: Broker, messages: list[Message]) -> float:
    started = time.perf_counter()
    for start in range(0, len(messages), BATCH):
        await broker.publish(TOPIC, *messages[start : start + BATCH])
    return time.perf_counter() - started


async def consume_raw(broker: Broker, count: int) -> float:
    seen = 0
    started = time.perf_counter()
    async with broker.subscribe(TOPIC, group="raw", prefetch=1000) as deliveries:
        async for delivery in deliveries:
            await delivery.ack()
            seen += 1
            if seen == count:
                break
    return time.perf_counter() - started


async def consume_app(url: str, count: int, concurrency: int) -> float:
    app = App(url, name="bench")
    done = asyncio.Event()
    seen = [0]

    @app.subscriber(TOPIC, group="app", concurrency=concurrency)
    async def handle(payload: dict[str, Any]) -> None:
        seen[0] += 1
        if seen[0] == count:
            done.set()

    stop = asyncio.Event()
    started = time.perf_counter()
    runner = asyncio.create_task(app.run(stop))
    waiter = asyncio.create_task(done.wait())
    await asyncio.wait({runner, waiter}, return_when=asyncio.FIRST_COMPLETED)
    elapsed = time.perf_counter() - started
    stop.set()
    waiter.cancel()
    await runner  # re-raises if the app failed
    return elapsed


def row(broker: str, what: str, count: int, seconds: float) -> None:
    rate = count / seconds if seconds else float("inf")
    target = TARGETS.get((broker, what.split(" (", maxsplit=1)[0]))
    verdict = (
        "" if target is None else f"target >= {target:>7,}  {'OK' if rate >= target else 'BELOW'}"
    )
    print(
        f"  {broker:<7} {what:<28} {count:>8,} msgs {seconds:7.2f} s "
        f"{rate:>10,.0f} msg/s  {verdict}"
    )


async def bench(name: str, url_for: Callable[[str], str], count: int, concurrency: int) -> None:
    messages = bodies(count)
    print(f"{name}: {count:,} messages of {len(messages[0].body)} bytes, batches of {BATCH}")
    # Raw API: one broker client publishes, then the same client consumes with acks.
    async with open_broker(url_for("raw")) as broker:
        pub = await publish_all(broker, messages)
        con = await consume_raw(broker, count)
    row(name, "publish (batched)", count, pub)
    row(name, "consume+ack (Subscriber)", count, con)
    row(name, "end to end (Subscriber)", count, pub + con)
    # App: the history is published first; the app's group replays it from the start.
    async with open_broker(url_for("app")) as broker:
        pub = await publish_all(broker, messages)
        con = await consume_app(url_for("app"), count, concurrency)
    row(name, "consume+ack (App handler)", count, con)
    row(name, "end to end (App handler)", count, pub + con)


async def main(args: argparse.Namespace) -> None:
    await bench("memory", lambda tag: f"memory://bench-{tag}", args.memory, args.concurrency)
    with tempfile.TemporaryDirectory() as tmp:
        await bench(
            "sqlite", lambda tag: f"sqlite:///{Path(tmp) / tag}.db", args.sqlite, args.concurrency
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--memory", type=int, default=100_000)
    parser.add_argument("--sqlite", type=int, default=20_000)
    parser.add_argument(
        "--concurrency", type=int, default=1, help="App handler concurrency (1, the default)"
    )
    asyncio.run(main(parser.parse_args()))
