"""Runtime layer: bounded concurrent dispatch, with per-key lanes that keep order per key.

``concurrency`` worker tasks (started on the first job, kept for the subscription's life)
take jobs from one ready queue, so a delivery costs a deque append and, at most, waking an
idle worker: no task per message. Jobs with a key run one at a time per key, in submission
(delivery) order; different keys run in parallel. A key's *lane* stands in the ready queue
(or is held by a worker) exactly while it has jobs; after each of its jobs it goes to the
back of the queue, so one busy key cannot starve the others. A job that fails and is
retried keeps its lane (the retry happens in place, inside the job), so later messages of
the same key wait behind it: order survives retries at the cost of head-of-line blocking for
that one key, and of the worker the retrying job keeps while it backs off.

A worker that dies anyway (a bug: jobs catch their own failures) is logged, counted in
``restarts`` and replaced, and its delivery returned, so concurrency never erodes.

On ``drain``: unkeyed jobs that never started are abandoned at once (their deliveries go back
to the broker), running ones get ``grace`` seconds to finish, then are cancelled and
abandoned too; a key's queued jobs are abandoned only after its running job, in key order.
Abandoning is ``Delivery.nack()``, a no-op for an already settled delivery.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias

from eventwire.core.message import Delivery
from eventwire.observability.logs import bind_message, get_logger

_log = get_logger("runtime")

FAILURE_DELAY = 5.0  # seconds before a delivery whose processing itself failed comes back
_CANCEL_GRACE = 5.0  # seconds a cancelled handler gets to unwind before shutdown moves on

Step: TypeAlias = Callable[[Delivery, Any], Awaitable[None]]
# One delivery to process: ``await step(delivery, value)`` must settle it and should not raise;
# the last item is when it was submitted (monotonic seconds), for the oldest-age gauges.
Job: TypeAlias = tuple[Step, Delivery, Any, float]


async def abandon(delivery: Delivery, delay: float | None = None) -> None:
    """Give ``delivery`` back to the broker unless it is already settled."""
    try:
        await delivery.nack(delay=delay)
    except Exception:  # noqa: BLE001 - connection gone: the broker redelivers it anyway
        bind_message(_log, delivery.message, delivery.topic).warning(
            "could not return %r to the broker", delivery, exc_info=True
        )


class Dispatcher:
    """Runs jobs, at most ``concurrency`` at once, one at a time per key."""

    def __init__(
        self,
        concurrency: int,
        *,
        on_restart: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``on_restart`` is called whenever a dead worker is replaced (for counting);
        ``clock`` (monotonic seconds) stamps each job for ``oldest_ages``."""
        self._concurrency = concurrency
        self._clock = clock
        self._on_restart = on_restart
        self._ready: deque[Job | str] = deque()  # a str is a key whose lane has its turn
        self._lanes: dict[str, deque[Job]] = {}
        self._idle: deque[asyncio.Future[None]] = deque()
        self._workers: dict[asyncio.Task[None], Job | str | None] = {}  # what each one runs
        self._returning: set[asyncio.Task[None]] = set()  # deliveries of workers that died
        self._closing = False

    @property
    def in_flight(self) -> int:
        """Jobs submitted and not finished (running or queued)."""
        unkeyed = sum(1 for unit in self._ready if not isinstance(unit, str))
        running = sum(1 for unit in self._workers.values() if isinstance(unit, tuple))
        return unkeyed + running + sum(len(lane) for lane in self._lanes.values())

    @property
    def running(self) -> int:
        """Jobs a worker is running now."""
        return sum(1 for unit in self._workers.values() if unit is not None)

    def oldest_ages(self) -> tuple[float | None, float | None]:
        """Seconds since the oldest unsettled job (running or not) and the oldest waiting one
        (not started: queued, or behind its key's running job) were submitted; None when
        there is none. Walks the queues, so it is for scrapes, not for the message path."""
        running_keys = {unit for unit in self._workers.values() if isinstance(unit, str)}
        started = [unit[3] for unit in self._workers.values() if isinstance(unit, tuple)]
        waiting: list[float] = []
        for unit in self._ready:
            if not isinstance(unit, str):
                waiting.append(unit[3])
                break  # unkeyed jobs are queued in submission order: the first is the oldest
        for key, lane in self._lanes.items():
            if key in running_keys:
                started.append(lane[0][3])
                if len(lane) > 1:
                    waiting.append(lane[1][3])
            elif lane:
                waiting.append(lane[0][3])
        now = self._clock()
        oldest_waiting = min(waiting, default=None)
        oldest = min((*started, *waiting), default=None)
        return (
            None if oldest is None else now - oldest,
            None if oldest_waiting is None else now - oldest_waiting,
        )

    def submit(self, key: str | None, step: Step, delivery: Delivery, value: Any) -> None:
        """Queue ``step(delivery, value)``; never blocks (the subscription's prefetch bounds
        what is queued)."""
        if self._closing:
            raise RuntimeError("dispatcher is draining")
        job: Job = (step, delivery, value, self._clock())
        if key is None:
            self._ready.append(job)
        else:
            lane = self._lanes.get(key)
            if lane is not None:  # already queued or running: it will get to this job
                lane.append(job)
                return
            self._lanes[key] = deque((job,))
            self._ready.append(key)
        if self._idle:
            waiter = self._idle.popleft()
            if not waiter.done():
                waiter.set_result(None)
        elif len(self._workers) < self._concurrency:
            self._start_worker()

    def _start_worker(self) -> None:
        task = asyncio.get_running_loop().create_task(self._work())
        self._workers[task] = None
        task.add_done_callback(self._worker_ended)

    async def _work(self) -> None:
        me = asyncio.current_task()
        assert me is not None
        ready, lanes, workers = self._ready, self._lanes, self._workers
        loop = asyncio.get_running_loop()
        while not self._closing:
            if not ready:
                waiter = loop.create_future()
                self._idle.append(waiter)
                await waiter
                continue
            unit = ready.popleft()
            workers[me] = unit
            step, delivery, value, _ = lanes[unit][0] if isinstance(unit, str) else unit
            # The step is awaited right here, not in a helper: one coroutine less per message.
            try:
                await step(delivery, value)
            except Exception:  # noqa: BLE001 - a processing bug must not kill the worker
                bind_message(_log, delivery.message, delivery.topic).exception(
                    "processing %r failed unexpectedly; returning it", delivery
                )
                # Delayed: when settling itself fails (a DLQ refusing the message, say),
                # returning it at once would spin redelivering it as fast as the broker can.
                await abandon(delivery, FAILURE_DELAY)
            except asyncio.CancelledError:
                if me.cancelling():
                    raise  # drain cancelling this worker
                # Raised from inside (the step awaited something cancelled elsewhere).
                bind_message(_log, delivery.message, delivery.topic).error(
                    "processing %r was cancelled from inside; returning it", delivery
                )
                await abandon(delivery, FAILURE_DELAY)
            if isinstance(unit, str):
                lane = lanes[unit]
                lane.popleft()
                # No await between this emptiness check and the removal, so a concurrent
                # submit() either lands in this lane before it ends or starts a fresh one.
                # While draining, a non-empty lane stays so that drain() can return its jobs.
                if not lane:
                    del lanes[unit]
                elif not self._closing:
                    ready.append(unit)
            workers[me] = None

    def _worker_ended(self, task: asyncio.Task[None]) -> None:
        unit = self._workers.pop(task, None)
        error = None if task.cancelled() else task.exception()
        if error is None or self._closing:
            return  # drained (drain returns what it held), or cancelled with the loop
        # Died anyway (an exception that is not an Exception, from a handler or a bug):
        # return what it held, count it, and replace it so concurrency does not erode.
        _log.error("a handler worker died; restarting it", exc_info=error)
        if unit is not None:
            self._requeue_after_death(unit)
        if self._on_restart is not None:
            self._on_restart()
        self._start_worker()

    def _requeue_after_death(self, unit: Job | str) -> None:
        if isinstance(unit, str):
            lane = self._lanes.get(unit)
            if lane:
                delivery = lane[0][1]
                lane.popleft()
                if lane:
                    self._ready.append(unit)
                else:
                    del self._lanes[unit]
            else:
                return
        else:
            delivery = unit[1]
        task = asyncio.get_running_loop().create_task(abandon(delivery, FAILURE_DELAY))
        self._returning.add(task)
        task.add_done_callback(self._returning.discard)

    async def drain(self, grace: float) -> None:
        """Stop starting jobs, wait up to ``grace`` s for running ones, then cancel them."""
        self._closing = True
        # Unkeyed jobs that never started go back at once. Queued jobs of a key stay until the
        # key's running job is settled (or cancelled and returned): returned earlier, another
        # consumer could take them before it and break the key's order.
        queued = [unit for unit in self._ready if not isinstance(unit, str)]
        self._ready.clear()
        while self._idle:  # idle workers wake up, see the flag and end
            waiter = self._idle.popleft()
            if not waiter.done():
                waiter.set_result(None)
        for _, delivery, _, _ in queued:
            await abandon(delivery)
        busy = {task: unit for task, unit in self._workers.items() if unit is not None}
        workers = list(self._workers)
        if workers:
            _, pending = await asyncio.wait(workers, timeout=max(grace, 0.0))
            stuck = [task for task in pending if busy.get(task) is not None]
            if stuck:
                _log.warning(
                    "%d handler(s) still running after %.1f s: cancelling them",
                    len(stuck),
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
        # Whatever was cancelled mid-handler (or never reached) goes back to the broker, each
        # key's jobs in their order (a key's running job is still first in its lane); for
        # a job that did finish, returning it is a no-op (its delivery is settled).
        cancelled = [unit for unit in busy.values() if isinstance(unit, tuple)]
        leftovers = [job for lane in self._lanes.values() for job in lane]
        self._lanes.clear()
        self._workers.clear()
        for _, delivery, _, _ in leftovers + cancelled:
            await abandon(delivery)
