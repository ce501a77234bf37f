"""CLI layer: what ``eventwire bench`` measures, the same way through the App and a raw client.

Both sides run the same three phases on a topic of their own, with the same bodies (JSON
``{"i", "sent_ns", "pad"}`` padded to ``--size`` bytes) and the same work per message (decode
the JSON, then settle):

1. **publish-confirmed**: one untimed warm-up, then ``messages`` publishes, ``concurrency``
   of them in flight, each awaiting its own confirmation (the App: ``app.publish``; raw:
   the client's confirmed publish); msg/s over the phase and each call's latency
   (p50/p99/p99.9).
2. **consume-with-ack**: the backlog of phase 1 drained by a consumer group that existed
   before it was published (the App: ``@app.subscriber`` whose handler takes a pydantic
   model; the ack follows the handler); msg/s from the first message handled to the last,
   so a consumer's start-up (a Kafka group join) is not counted on either side.
3. **end-to-end**: ``latency_messages`` published one at a time, paced at ``rate`` per
   second, while the consumer runs: publish-to-handler latency (p50/p99/p99.9).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from pydantic import BaseModel

from eventwire.core.contract import Broker

# {"i": ..., "sent_ns": ..., "pad": ""} takes about 50 bytes; the rest of --size is padding.
MIN_SIZE = 64
Progress = Callable[[int], None]


@dataclass(frozen=True, slots=True, kw_only=True)
class BenchPlan:
    """One run's sizes; the same for both sides."""

    messages: int
    size: int
    concurrency: int
    latency_messages: int
    rate: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Latency:
    """Percentiles of one latency sample, in milliseconds."""

    p50_ms: float
    p99_ms: float
    p999_ms: float
    samples: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SideFigures:
    """What one side (the App, or the raw client) achieved."""

    publish_per_s: float
    publish_cpu_us: float  # CPU time of this process per message (all threads), publishing
    publish_latency: Latency
    consume_per_s: float
    consume_cpu_us: float  # ... and consuming: steadier than msg/s on a shared machine
    end_to_end: Latency


class Sample(BaseModel):
    """The App handler's model of a bench body."""

    i: int
    sent_ns: int
    pad: str


class RawDriver(Protocol):
    """A broker's own client library doing the bench's work (``brokers/<name>/bench_raw``)."""

    async def open(self) -> None: ...
    async def publish(self, body: bytes) -> None: ...
    async def start_live(self) -> None:
        """Get ready for the latency phase (called before its first publish)."""

    async def consume(
        self, count: int, each: Callable[[object], None], *, live: bool = False
    ) -> None:
        """Handle and ack ``count`` messages; ``live``: in the latency phase, where they
        arrive one by one (a driver may read them another way than a backlog)."""

    async def aclose(self) -> None: ...


def body(i: int, size: int) -> dict[str, object]:
    """Message ``i``: stamped now, padded so its JSON is ``size`` bytes."""
    sent = time.perf_counter_ns()
    frame = len(json.dumps({"i": i, "sent_ns": sent, "pad": ""}))
    return {"i": i, "sent_ns": sent, "pad": "x" * max(0, size - frame)}


def encode(payload: dict[str, object]) -> bytes:
    return json.dumps(payload, separators=(", ", ": ")).encode()


def percentiles(values_ms: list[float]) -> Latency:
    ordered = sorted(values_ms)
    if not ordered:
        return Latency(p50_ms=0.0, p99_ms=0.0, p999_ms=0.0, samples=0)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return Latency(p50_ms=at(0.5), p99_ms=at(0.99), p999_ms=at(0.999), samples=len(ordered))


class Recorder:
    """Counts handled messages and stamps the first and last; collects e2e latencies."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._expected = 0
        self._seen = 0
        self._first = 0.0
        self._last = 0.0
        self._first_cpu = 0.0
        self._last_cpu = 0.0
        self._done = asyncio.Event()
        self.latencies: list[float] = []
        self.timing = False

    def expect(self, count: int, *, timing: bool) -> None:
        self._expected, self._seen, self.timing = count, 0, timing
        self.latencies = []
        self._done = asyncio.Event()
        if count == 0:
            self._done.set()

    def handled(self, sent_ns: int) -> None:
        now, cpu = time.perf_counter(), time.process_time()
        if self._seen == 0:
            self._first, self._first_cpu = now, cpu
        self._last, self._last_cpu = now, cpu
        if self.timing:
            self.latencies.append((time.perf_counter_ns() - sent_ns) / 1e6)
        self._seen += 1
        self._progress(1)
        if self._seen == self._expected:
            self._done.set()

    async def wait(self, within: float) -> None:
        try:
            async with asyncio.timeout(within):
                await self._done.wait()
        except TimeoutError:
            raise TimeoutError(
                f"only {self._seen} of {self._expected} messages arrived within {within:g} s"
            ) from None

    def rate(self) -> float:
        span = self._last - self._first
        return (self._seen - 1) / span if self._seen > 1 and span > 0 else 0.0

    def cpu_us(self) -> float:
        """CPU µs per message between the first message handled and the last."""
        return (self._last_cpu - self._first_cpu) / max(1, self._seen - 1) * 1e6


async def publish_phase(
    plan: BenchPlan, send: Callable[[int], Awaitable[None]], progress: Progress
) -> tuple[float, float, Latency]:
    """``plan.messages`` calls of ``send(i)``, ``plan.concurrency`` in flight: (msg/s, CPU µs
    per message, latency).

    One warm-up message goes first, untimed: a client's first publish to a topic fetches its
    metadata or opens its channel, a one-off cost neither side should be measured on."""
    await send(plan.messages)
    latencies: list[float] = []
    next_index = iter(range(plan.messages))

    async def worker() -> None:
        for i in next_index:
            started = time.perf_counter_ns()
            await send(i)
            latencies.append((time.perf_counter_ns() - started) / 1e6)
            progress(1)

    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(min(plan.concurrency, plan.messages))))
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    return plan.messages / elapsed, cpu / plan.messages * 1e6, percentiles(latencies)


async def paced(plan: BenchPlan, send: Callable[[int], Awaitable[None]]) -> None:
    """``plan.latency_messages`` calls of ``send(i)``, one at a time at ``plan.rate`` per s."""
    start = time.perf_counter()
    for i in range(plan.latency_messages):
        delay = start + i / plan.rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        await send(i)


def phase_timeout(count: int) -> float:
    """Generous: a shared 2-core machine may be slow, but a lost message must not hang."""
    return 30.0 + count / 100


# -- the App, the path users run ------------------------------------------------------------


async def measure_app(
    url: str,
    topic: str,
    group: str,
    plan: BenchPlan,
    *,
    progress: Progress,
    used: list[Broker],
) -> SideFigures:
    """The three phases through an ``App``; its broker is added to ``used`` once connected
    (the clean-up reads what it created, also after a failure)."""
    from eventwire.runtime.app import App

    record = Recorder(progress)
    app = App(url, name="eventwire-bench")

    @app.subscriber(topic, group=group, prefetch=100)
    async def handle(sample: Sample) -> None:
        record.handled(sample.sent_ns)

    async with app:
        broker = app.broker
        used.append(broker)
        # The group exists before anything is published (RabbitMQ refuses a publish no queue
        # takes; the others would hand a new group only what comes later on some settings).
        async with broker.subscribe(topic, group=group, prefetch=1):
            pass

        async def send(i: int) -> None:
            await app.publish(topic, body(i, plan.size))

        publish_rate, publish_cpu, publish_latency = await publish_phase(plan, send, progress)
        record.expect(plan.messages + 1, timing=False)
        stop = asyncio.Event()
        runner = asyncio.create_task(app.run(stop))
        try:
            await _unless_stopped(record.wait(phase_timeout(plan.messages + 1)), runner)
            consume_rate, consume_cpu = record.rate(), record.cpu_us()
            record.expect(plan.latency_messages, timing=True)
            await _unless_stopped(paced(plan, send), runner)
            await _unless_stopped(record.wait(phase_timeout(plan.latency_messages)), runner)
        finally:
            stop.set()
            await runner
    return SideFigures(
        publish_per_s=publish_rate,
        publish_cpu_us=publish_cpu,
        publish_latency=publish_latency,
        consume_per_s=consume_rate,
        consume_cpu_us=consume_cpu,
        end_to_end=percentiles(record.latencies),
    )


async def _unless_stopped(work: Awaitable[None], runner: asyncio.Task[None]) -> None:
    """Await ``work``; if the App stops first (a broker error), raise what stopped it."""
    task = asyncio.ensure_future(work)
    await asyncio.wait({task, runner}, return_when=asyncio.FIRST_COMPLETED)
    if not task.done():
        task.cancel()
        await runner  # re-raises the App's error
        raise RuntimeError("the App stopped before the bench finished")
    await task


# -- the raw client -------------------------------------------------------------------------


async def measure_raw(driver: RawDriver, plan: BenchPlan, progress: Progress) -> SideFigures:
    """The three phases through a broker's own client library."""
    record = Recorder(progress)

    def each(obj: object) -> None:
        sent = obj.get("sent_ns", 0) if isinstance(obj, dict) else 0
        record.handled(int(sent))

    await driver.open()
    try:

        async def send(i: int) -> None:
            await driver.publish(encode(body(i, plan.size)))

        publish_rate, publish_cpu, publish_latency = await publish_phase(plan, send, progress)
        record.expect(plan.messages + 1, timing=False)
        async with asyncio.timeout(phase_timeout(plan.messages + 1)):
            await driver.consume(plan.messages + 1, each)
        consume_rate, consume_cpu = record.rate(), record.cpu_us()
        record.expect(plan.latency_messages, timing=True)
        await driver.start_live()
        consumer = asyncio.create_task(driver.consume(plan.latency_messages, each, live=True))
        try:
            await paced(plan, send)
            async with asyncio.timeout(phase_timeout(plan.latency_messages)):
                await consumer
        finally:
            consumer.cancel()
    finally:
        await driver.aclose()
    return SideFigures(
        publish_per_s=publish_rate,
        publish_cpu_us=publish_cpu,
        publish_latency=publish_latency,
        consume_per_s=consume_rate,
        consume_cpu_us=consume_cpu,
        end_to_end=percentiles(record.latencies),
    )
