"""Testing layer: run an ``App`` in the background for a test and read what it dead-lettered.

One set of helpers for every test that runs a worker in-process: ``running`` (the app is
already connected), ``serving`` (connect, run, stop, close), ``wait_until`` (poll a condition
with a deadline instead of sleeping) and the two ways to read dead letters: consuming them
(``read_dead_letters``, acked) or listing them as ``eventwire dlq list`` does
(``listed_dead_letters``, left in place). Nothing here imports pytest or a broker client.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from eventwire.brokers.catalog import open_broker
from eventwire.core.contract import Broker
from eventwire.core.message import DEAD_LETTER_GROUP, Message, dead_letter_topic
from eventwire.reliability.replay import list_dead_letters
from eventwire.runtime.app import App
from eventwire.testing import helpers

__all__ = ["listed_dead_letters", "read_dead_letters", "running", "serving", "wait_until"]


async def wait_until(predicate: Callable[[], bool], deadline: float = 20.0) -> None:
    """``helpers.wait_until`` as App tests call it (``deadline`` seconds)."""
    await helpers.wait_until(predicate, deadline)


@asynccontextmanager
async def running(
    app: App, *, ready_within: float = 20.0, stop_within: float = 30.0, **run_options: Any
) -> AsyncIterator[asyncio.Task[None]]:
    """Run ``app`` (already connected) in the background until every subscription exists;
    stop it gracefully on exit. Yields the run task: ``task.done()`` means a consumer died.

    If the app stops before it is ready, its error is raised here, not a timeout."""
    stop = asyncio.Event()
    task = asyncio.create_task(app.run(stop, **run_options))
    ready = asyncio.create_task(app.wait_ready())
    await asyncio.wait({task, ready}, timeout=ready_within, return_when=asyncio.FIRST_COMPLETED)
    ready.cancel()
    if task.done():
        task.result()  # raises why the app stopped
    if not app.ready:
        stop.set()
        await asyncio.wait_for(task, stop_within)
        raise AssertionError(f"app did not subscribe within {ready_within} s")
    try:
        yield task
    finally:
        stop.set()
        async with asyncio.timeout(stop_within):
            await task


@asynccontextmanager
async def serving(app: App, **run_options: Any) -> AsyncIterator[asyncio.Task[None]]:
    """Connect ``app``, run it as ``running`` does, then stop it and close it."""
    async with app, running(app, **run_options) as task:
        yield task


async def read_dead_letters(
    broker: Broker, topic: str, count: int, deadline: float = 20.0
) -> list[Message]:
    """The first ``count`` dead letters of ``topic``, consumed (acked), in DLQ order."""
    found: list[Message] = []
    async with (
        asyncio.timeout(deadline),
        broker.subscribe(dead_letter_topic(topic), group=DEAD_LETTER_GROUP) as deliveries,
    ):
        if count == 0:
            return found
        async for delivery in deliveries:
            found.append(delivery.message)
            await delivery.ack()
            if len(found) == count:
                break
    return found


async def listed_dead_letters(
    url: str, topic: str, *, at_least: int = 0, deadline: float = 30.0, wait: float = 1.0
) -> list[Message]:
    """What ``eventwire dlq list`` shows for ``topic`` on ``url`` (nothing is moved), listed
    again until at least ``at_least`` letters are there; ``TimeoutError`` after ``deadline``."""
    letters: list[Message] = []
    async with asyncio.timeout(deadline):
        while True:
            letters.clear()
            await list_dead_letters(
                open_broker(url), topic, limit=max(100, at_least), wait=wait, each=letters.append
            )
            if len(letters) >= at_least:
                return letters
