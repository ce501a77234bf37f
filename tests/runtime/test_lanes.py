"""Dispatcher: concurrency bound, per-key order, parallel keys, drain semantics."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from eventwire.core.message import Delivery
from eventwire.runtime import lanes
from eventwire.runtime.lanes import Dispatcher

from .fakes import RecordingDelivery


class Job:
    """A delivery and the work for it, as the consumer submits them."""

    def __init__(self, delivery: Delivery, run: Callable[[], Awaitable[None]]) -> None:
        self.delivery = delivery
        self.run = run
        self.started = False

    async def step(self, delivery: Delivery, value: Any) -> None:
        assert delivery is self.delivery
        self.started = True
        await self.run()


def submit(dispatcher: Dispatcher, key: str | None, job: Job) -> None:
    dispatcher.submit(key, job.step, job.delivery, None)


async def wait_for(predicate: Callable[[], object], deadline: float = 5.0) -> None:
    async with asyncio.timeout(deadline):
        while not predicate():
            await asyncio.sleep(0)


async def test_per_key_order_with_parallel_keys() -> None:
    dispatcher = Dispatcher(4)
    seen: dict[str, list[int]] = {}
    running = 0
    peak = 0
    rng = random.Random(1)

    def make(key: str, n: int) -> Job:
        async def run() -> None:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            for _ in range(rng.randint(0, 3)):  # yield a random number of times
                await asyncio.sleep(0)
            seen.setdefault(key, []).append(n)
            running -= 1
            await delivery.ack()

        delivery = RecordingDelivery(key=key)
        return Job(delivery, run)

    for n in range(200):
        key = f"k{n % 8}"
        submit(dispatcher, key, make(key, n))
    await wait_for(lambda: sum(map(len, seen.values())) == 200)
    assert all(seq == sorted(seq) for seq in seen.values())
    assert peak == 4  # bounded, and keys did run in parallel
    await dispatcher.drain(1.0)


async def test_unkeyed_jobs_respect_concurrency() -> None:
    dispatcher = Dispatcher(3)
    gate = asyncio.Event()
    started = 0

    async def run() -> None:
        nonlocal started
        started += 1
        await gate.wait()

    for _ in range(10):
        submit(dispatcher, None, Job(RecordingDelivery(), run))
    await wait_for(lambda: started == 3)
    for _ in range(10):
        await asyncio.sleep(0)
    assert started == 3
    gate.set()
    await wait_for(lambda: started == 10)
    await dispatcher.drain(1.0)


async def test_drain_waits_for_running_and_returns_queued() -> None:
    dispatcher = Dispatcher(1)
    release = asyncio.Event()
    finished: list[str] = []

    def job(name: str, key: str | None) -> tuple[Job, RecordingDelivery]:
        delivery = RecordingDelivery(key=key)

        async def run() -> None:
            await release.wait()
            await delivery.ack()
            finished.append(name)

        return Job(delivery, run), delivery

    first, d1 = job("first", "k")
    second, d2 = job("second", "k")
    third, d3 = job("third", None)
    for j, key in ((first, "k"), (second, "k"), (third, None)):
        submit(dispatcher, key, j)
    await wait_for(lambda: first.started)
    drain = asyncio.create_task(dispatcher.drain(5.0))
    await asyncio.sleep(0)
    release.set()
    await drain
    assert finished == ["first"]
    assert d1.settled == "ack"
    assert d2.settled == "nack"
    assert d3.settled == "nack"


async def test_drain_cancels_after_grace_and_nacks() -> None:
    dispatcher = Dispatcher(2)
    cancelled: list[bool] = []
    deliveries = [RecordingDelivery(key=k) for k in ("a", None)]

    async def stuck() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    jobs = [Job(d, stuck) for d in deliveries]
    submit(dispatcher, "a", jobs[0])
    submit(dispatcher, None, jobs[1])
    await wait_for(lambda: all(j.started for j in jobs))
    await dispatcher.drain(0.01)
    assert cancelled == [True, True]
    assert [d.settled for d in deliveries] == ["nack", "nack"]
    assert dispatcher.in_flight == 0


async def test_processing_bug_returns_the_delivery_and_lane_continues() -> None:
    dispatcher = Dispatcher(1)
    bad = RecordingDelivery(key="k")
    good = RecordingDelivery(key="k")

    async def boom() -> None:
        raise RuntimeError("bug")

    async def fine() -> None:
        await good.ack()

    submit(dispatcher, "k", Job(bad, boom))
    submit(dispatcher, "k", Job(good, fine))
    await wait_for(lambda: good.settled is not None)
    assert bad.settled == "nack"
    assert bad.nack_delays == [lanes.FAILURE_DELAY], "returned at once, a failure would spin"
    assert good.settled == "ack"
    await dispatcher.drain(1.0)


async def test_drain_returns_a_keys_queued_jobs_only_after_its_running_one() -> None:
    """Returned before the key's running job settles, a queued job could be taken by another
    consumer and handled before it: the key's order would break during every shutdown."""
    dispatcher = Dispatcher(2)
    events: list[str] = []
    release = asyncio.Event()

    class Tracing(RecordingDelivery):
        __slots__ = ("name",)

        def __init__(self, name: str) -> None:
            super().__init__(key="k")
            self.name = name

        async def _ack(self) -> None:
            events.append(f"ack {self.name}")

        async def _nack(self, delay: float | None) -> None:
            events.append(f"nack {self.name}")

    head, tail, other = Tracing("head"), Tracing("tail"), Tracing("other")

    async def slow() -> None:
        await release.wait()
        await head.ack()

    async def never() -> None:
        raise AssertionError("must not start while draining")

    submit(dispatcher, "k", Job(head, slow))
    submit(dispatcher, "k", Job(tail, never))
    submit(dispatcher, None, Job(other, never))
    await wait_for(lambda: dispatcher.running == 1)
    drain = asyncio.create_task(dispatcher.drain(5.0))
    await wait_for(lambda: "nack other" in events)
    release.set()
    await drain
    assert events == ["nack other", "ack head", "nack tail"]


async def test_drain_does_not_hang_on_a_handler_that_swallows_cancellation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(lanes, "_CANCEL_GRACE", 0.05)
    dispatcher = Dispatcher(1)
    delivery = RecordingDelivery(key="k")
    give_up = asyncio.Event()
    ended: list[bool] = []

    async def stubborn() -> None:
        while not give_up.is_set():
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                continue
        ended.append(True)

    submit(dispatcher, "k", Job(delivery, stubborn))
    await wait_for(lambda: dispatcher.running == 1)
    await asyncio.wait_for(dispatcher.drain(0.01), 5.0)
    assert delivery.settled == "nack"
    give_up.set()
    await wait_for(lambda: ended)


async def test_keyed_jobs_respect_concurrency_and_lanes_are_freed() -> None:
    """Lanes bound in-flight handlers like unkeyed jobs do, and a drained lane is removed, so
    a stream of ever-new keys (order ids) does not grow memory."""
    dispatcher = Dispatcher(3)
    running = peak = 0
    done: list[int] = []

    def job(n: int) -> Job:
        async def run() -> None:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            await asyncio.sleep(0)
            running -= 1
            done.append(n)

        return Job(RecordingDelivery(key=str(n)), run)

    for n in range(500):
        submit(dispatcher, f"order-{n % 250}", job(n))
    await wait_for(lambda: len(done) == 500)
    await wait_for(lambda: dispatcher.in_flight == 0 and dispatcher.running == 0)
    assert peak == 3
    assert len(dispatcher._workers) == 3  # workers are kept, never one task per message
    assert dispatcher._lanes == {}
    by_key: dict[int, list[int]] = {}
    for n in done:
        by_key.setdefault(n % 250, []).append(n)
    assert all(seq == sorted(seq) for seq in by_key.values())
