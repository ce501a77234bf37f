"""Observability tests: the oldest-unsettled and oldest-waiting ages a dispatcher reports,
with an injected clock: a lane stuck behind one slow key shows up even when lag is small."""

from __future__ import annotations

import asyncio
from typing import Any

from eventwire.core.message import Delivery
from eventwire.runtime.lanes import Dispatcher
from runtime.fakes import RecordingDelivery


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def settle_soon() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_ages_follow_running_and_queued_jobs() -> None:
    clock = Clock()
    dispatcher = Dispatcher(2, clock=clock)
    release = asyncio.Event()

    async def slow(delivery: Delivery, value: Any) -> None:
        await release.wait()
        await delivery.ack()

    assert dispatcher.oldest_ages() == (None, None)
    dispatcher.submit("k", slow, RecordingDelivery(key="k"), None)  # runs at 100
    clock.now = 103.0
    dispatcher.submit("k", slow, RecordingDelivery(key="k"), None)  # waits behind it
    clock.now = 104.0
    dispatcher.submit(None, slow, RecordingDelivery(), None)  # runs on the second worker
    await settle_soon()
    clock.now = 110.0
    assert dispatcher.oldest_ages() == (10.0, 7.0)
    clock.now = 111.0
    dispatcher.submit(None, slow, RecordingDelivery(), None)  # both workers busy: it waits
    await settle_soon()
    assert dispatcher.oldest_ages() == (11.0, 8.0)
    release.set()
    async with asyncio.timeout(5):
        while dispatcher.in_flight:
            await asyncio.sleep(0)
    assert dispatcher.oldest_ages() == (None, None)
    await dispatcher.drain(1.0)
