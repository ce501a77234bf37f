"""Benchmarks: what the eventwire-vs-raw-client scripts share (bodies, pacing, figures, CLI).

Each ``bench_<broker>.py`` measures the raw client and eventwire doing the same work; this
module holds what must be the same on both sides and across brokers (the ~200-byte JSON
body, the handler, the paced latency sender, percentiles) and what would otherwise be
written three times: eventwire's publish and consume loops, the command line, and the
printed table of figures with their eventwire/raw ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import AsyncIterable, Awaitable, Callable, Coroutine, Mapping
from typing import Any

from eventwire.brokers.catalog import open_broker
from eventwire.core.message import DEFAULT_CONTENT_TYPE, Delivery, Message

# Samples of one figure, per side: (raw client, eventwire), one entry per round.
Sides = tuple[list[float], list[float]]

QUICK_MESSAGES = 10_000
QUICK_LATENCY_MESSAGES = 1_000


def payload(i: int, sent_ns: int = 0) -> bytes:
    """Message ``i``'s JSON body (~200 bytes); ``sent_ns`` stamps latency samples."""
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


def latency_ms(sent_ns: int) -> float:
    """Milliseconds since ``sent_ns`` (a ``time.perf_counter_ns()`` of this process)."""
    return (time.perf_counter_ns() - sent_ns) / 1e6


def per_second(count: int, started: float) -> float:
    """Throughput of ``count`` messages since ``started`` (a ``time.perf_counter()``)."""
    return count / (time.perf_counter() - started)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def paced(
    send: Callable[[int], Coroutine[Any, Any, None]],
    count: int,
    rate: float,
    consumer: Awaitable[object],
    *,
    overlap: bool = False,
) -> None:
    """Call ``send(i)`` at ``rate`` per second while ``consumer`` runs: one at a time, or
    with ``overlap`` each in its own task (each awaiting its own confirm)."""
    consuming = asyncio.ensure_future(consumer)
    await asyncio.sleep(0.05)
    start = time.perf_counter()
    pending: set[asyncio.Task[None]] = set()
    for i in range(count):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        if overlap:
            task = asyncio.create_task(send(i))
            pending.add(task)
            task.add_done_callback(pending.discard)
        else:
            await send(i)
    await asyncio.gather(*pending)
    await asyncio.wait_for(consuming, 60)


# -- eventwire's side ---------------------------------------------------------------------


async def ew_publish(
    url: str,
    topic: str,
    bodies: list[bytes],
    batch: int,
    *,
    content_type: str = DEFAULT_CONTENT_TYPE,
) -> float:
    """Publish ``bodies`` in batches of ``batch`` (each call returns once confirmed): msg/s."""
    async with open_broker(url) as broker:
        started = time.perf_counter()
        for start in range(0, len(bodies), batch):
            chunk = bodies[start : start + batch]
            outgoing = (Message(body=b, content_type=content_type) for b in chunk)
            await broker.publish(topic, *outgoing)
        return per_second(len(bodies), started)


async def ew_drain(deliveries: AsyncIterable[Delivery], count: int) -> None:
    """Handle and ack ``count`` deliveries."""
    done = 0
    async for delivery in deliveries:
        await handler(json.loads(delivery.message.body))
        await delivery.ack()
        done += 1
        if done == count:
            return


async def ew_latency(
    url: str,
    topic: str,
    count: int,
    rate: float,
    *,
    prefetch: int = 100,
    content_type: str = DEFAULT_CONTENT_TYPE,
    overlap: bool = False,
) -> list[float]:
    """Latencies (ms) of ``count`` messages published one per call at ``rate`` per second
    (see ``paced``) and consumed by a new group ``lat`` meanwhile."""
    latencies: list[float] = []
    broker = open_broker(url)
    async with broker, broker.subscribe(topic, group="lat", prefetch=prefetch) as sub:

        async def consume() -> None:
            async for delivery in sub:
                obj = json.loads(delivery.message.body)
                await handler(obj)
                latencies.append(latency_ms(obj["sent_ns"]))
                await delivery.ack()
                if len(latencies) == count:
                    return

        async def send(i: int) -> None:
            body = payload(i, time.perf_counter_ns())
            await broker.publish(topic, Message(body=body, content_type=content_type))

        await paced(send, count, rate, consume(), overlap=overlap)
    return latencies


# -- command line and report ----------------------------------------------------------------


def parser(doc: str | None, *, url: str, rounds: int, rounds_help: str) -> argparse.ArgumentParser:
    """The options every benchmark takes; ``messages(args)`` and ``latency_messages(args)``
    resolve the message counts (a positional count, ``--quick`` or the flags)."""
    out = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    out.add_argument("messages_pos", nargs="?", type=int, help="same as --messages")
    out.add_argument("--url", default=url)
    out.add_argument("--messages", type=int, default=100_000)
    out.add_argument("--latency-messages", type=int, default=5_000)
    out.add_argument("--rate", type=float, default=1_000.0)
    out.add_argument("--rounds", type=int, default=rounds, help=rounds_help)
    out.add_argument(
        "--quick",
        action="store_true",
        help=f"{QUICK_MESSAGES:,} messages, {QUICK_LATENCY_MESSAGES:,} latency samples",
    )
    return out


def messages(args: argparse.Namespace) -> int:
    count: int = args.messages_pos or (QUICK_MESSAGES if args.quick else args.messages)
    return count


def latency_messages(args: argparse.Namespace) -> int:
    count: int = QUICK_LATENCY_MESSAGES if args.quick else args.latency_messages
    return count


def best(sides: Sides) -> tuple[float, float]:
    """Each side's best throughput round (noise on a shared machine only slows rounds)."""
    return max(sides[0]), max(sides[1])


def medians(sides: Sides) -> tuple[float, float]:
    return statistics.median(sides[0]), statistics.median(sides[1])


def latency_figures(rate: float, lats: Sides) -> dict[str, tuple[float, float]]:
    """p50 and p99 of each side's latency samples."""
    return {
        f"e2e p50 ms @ {rate:.0f}/s": (pct(lats[0], 0.5), pct(lats[1], 0.5)),
        f"e2e p99 ms @ {rate:.0f}/s": (pct(lats[0], 0.99), pct(lats[1], 0.99)),
    }


def print_figures(
    figures: Mapping[str, tuple[float, float]],
    widths: tuple[int, int, int],
    *,
    raw_label: str | None = None,
) -> None:
    """One row per figure: raw, eventwire and the eventwire/raw ratio (a header row with
    ``raw_label``); ``widths`` are the name, raw and eventwire column widths."""
    name_w, raw_w, ew_w = widths
    if raw_label is not None:
        print(f"{'figure':{name_w}} {raw_label:>{raw_w}} {'eventwire':>{ew_w}} {'ratio':>7}")
    for name, (raw, ew) in figures.items():
        print(f"{name:{name_w}} {raw:{raw_w}.2f} {ew:{ew_w}.2f} {ew / raw:7.2f}x")


def print_rounds(pubs: Sides, cons: Sides) -> None:
    """Every throughput round of both sides (to judge the noise behind the best ones)."""
    print("all rounds, publish raw/ew:", *([round(x) for x in side] for side in pubs))
    print("all rounds, consume raw/ew:", *([round(x) for x in side] for side in cons))
