"""Runtime layer: bounded concurrent dispatch, with per-key lanes that keep order per key.

Every job takes one of ``concurrency`` slots while it runs. Jobs with a key run one at a
time per key, in submission (delivery) order; different keys run in parallel. A job that
fails and is retried keeps its lane (the retry happens in place, inside the job), so later
messages of the same key wait behind it: order survives retries at the cost of head-of-line
blocking for that one key, and of the slot the retrying job keeps while it backs off.

On ``drain``: unkeyed jobs that never started are abandoned at once (their deliveries go back
to the broker), running ones get ``timeout`` seconds to finish, then are cancelled and
abandoned too; a key's queued jobs are abandoned only after its running job, in key order.
Abandoning is ``Delivery.nack()``, a no-op for an already settled delivery.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable

from eventwire.core.message import Delivery

_log = logging.getLogger("eventwire.runtime")

FAILURE_DELAY = 5.0  # seconds before a delivery whose processing itself failed comes back
_CANCEL_GRACE = 5.0  # seconds a cancelled handler gets to unwind before shutdown moves on


class Job:
    """One delivery to process; ``run`` must settle it and should not raise."""

    __slots__ = ("delivery", "run", "started")

    def __init__(self, delivery: Delivery, run: Callable[[], Awaitable[None]]) -> None:
        self.delivery = delivery
        self.run = run
        self.started = False

    async def abandon(self, delay: float | None = None) -> None:
        """Give the delivery back to the broker unless it is already settled."""
        try:
            await self.delivery.nack(delay=delay)
        except Exception:  # noqa: BLE001 - connection gone: the broker redelivers it anyway
            _log.warning("could not return %r to the broker", self.delivery, exc_info=True)


class Dispatcher:
    """Runs jobs, at most ``concurrency`` at once, one at a time per key."""

    def __init__(self, concurrency: int) -> None:
        self._slots = asyncio.Semaphore(concurrency)
        self._lanes: dict[str, deque[Job]] = {}
        self._tasks: dict[asyncio.Task[None], Job | None] = {}  # None: a lane task
        self._closing = False

    @property
    def in_flight(self) -> int:
        """Jobs submitted and not finished (running or queued)."""
        return sum(1 for job in self._tasks.values() if job is not None) + sum(
            len(lane) for lane in self._lanes.values()
        )

    def submit(self, key: str | None, job: Job) -> None:
        """Queue ``job``; never blocks (the subscription's prefetch bounds what is queued)."""
        if self._closing:
            raise RuntimeError("dispatcher is draining")
        if key is None:
            self._track(asyncio.create_task(self._run_one(job)), job)
            return
        lane = self._lanes.get(key)
        if lane is not None:
            lane.append(job)
            return
        self._lanes[key] = deque([job])
        self._track(asyncio.create_task(self._run_lane(key)), None)

    def _track(self, task: asyncio.Task[None], job: Job | None) -> None:
        self._tasks[task] = job
        task.add_done_callback(lambda t: self._tasks.pop(t, None))

    async def _run_one(self, job: Job) -> None:
        async with self._slots:
            if self._closing:
                await job.abandon()
                return
            await self._execute(job)

    async def _run_lane(self, key: str) -> None:
        lane = self._lanes[key]
        try:
            while lane and not self._closing:
                async with self._slots:
                    if self._closing:
                        break
                    await self._execute(lane[0])
                lane.popleft()
        finally:
            # No await between the emptiness check above and this removal, so a concurrent
            # submit() either lands in this lane before it ends or starts a fresh one.
            # While draining, a non-empty lane stays so that drain() can return its jobs.
            if not lane and self._lanes.get(key) is lane:
                del self._lanes[key]

    async def _execute(self, job: Job) -> None:
        job.started = True
        try:
            await job.run()
        except Exception:  # noqa: BLE001 - a processing bug must not kill the lane
            _log.exception("processing %r failed unexpectedly; returning it", job.delivery)
            # Delayed: when settling itself fails (a DLQ refusing the message, say), returning
            # it at once would spin redelivering it as fast as the broker can.
            await job.abandon(FAILURE_DELAY)

    async def drain(self, grace: float) -> None:
        """Stop starting jobs, wait up to ``grace`` s for running ones, then cancel them."""
        self._closing = True
        # Unkeyed jobs that never started go back at once. Queued jobs of a key stay until the
        # key's running job is settled (or cancelled and returned): returned earlier, another
        # consumer could take them before it and break the key's order.
        queued = [job for job in self._tasks.values() if job is not None and not job.started]
        for job in queued:
            await job.abandon()
        tasks_jobs = dict(self._tasks)
        tasks = list(tasks_jobs)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=max(grace, 0.0))
            if pending:
                _log.warning(
                    "%d handler(s) still running after %.1f s: cancelling them",
                    len(pending),
                    grace,
                )
            for task in pending:
                task.cancel()
            if pending:
                # A handler that swallows CancelledError must not hang the shutdown forever.
                _, stubborn = await asyncio.wait(pending, timeout=_CANCEL_GRACE)
                if stubborn:
                    _log.error(
                        "%d handler(s) ignored cancellation: returning their messages anyway",
                        len(stubborn),
                    )
            for task in pending:
                if task.done() and not task.cancelled():
                    task.exception()  # retrieved: _execute logs failures itself
                cancelled = tasks_jobs.get(task)
                if cancelled is not None:
                    queued.append(cancelled)
        # Whatever was cancelled mid-handler (or never reached) goes back to the broker, each
        # key's jobs in their order.
        leftovers = [job for lane in self._lanes.values() for job in lane]
        self._lanes.clear()
        self._tasks.clear()
        for job in leftovers + queued:
            await job.abandon()
