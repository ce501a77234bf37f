"""Runtime layer: ``BreakerGate``, a subscriber's circuit breaker as something to wait at.

Handler calls wait at the gate while the breaker is open (so no attempt is burnt and no
message is dead-lettered for a downstream outage), one probe goes through when it is
half-open, and the consumer stops fetching meanwhile: only the deliveries already taken
are held, the rest stays on the broker as a backlog. The gate counts its state in the
subscriber's counters (``/metrics``) and readiness reads it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from eventwire.observability.counters import SubscriberMetrics
from eventwire.observability.logs import get_logger
from eventwire.reliability.circuit_breaker import BreakerPolicy, CircuitBreaker

_log = get_logger("runtime")
# How often a consumer held by an open breaker checks whether it has nothing left to probe
# with (then it takes one more delivery, else the breaker could never close).
_IDLE_CHECK = 0.05


class BreakerGate:
    """Where one subscriber's handler calls (and its consumer) wait while its breaker is open."""

    def __init__(self, policy: BreakerPolicy, *, counters: SubscriberMetrics, name: str) -> None:
        self.breaker = CircuitBreaker(policy)
        self._counters = counters
        self._name = name
        self._changed = asyncio.Event()

    @property
    def closed(self) -> bool:
        return self.breaker.state == "closed"

    async def enter(self, stopping: asyncio.Event) -> bool:
        """Wait until a call may start; False when the app starts stopping first."""
        breaker = self.breaker
        while not breaker.try_enter():
            if stopping.is_set():
                return False
            # Open: until the probe is due. Half-open with the probe out: until its verdict.
            due = breaker.retry_in() if breaker.state == "open" else None
            await _first(self._changed.wait(), stopping.wait(), at_most=due)
        return True

    def leave(self, failed: bool | None) -> None:
        """A call that ``enter`` let in ended (``failed``; None: no verdict, cancelled)."""
        breaker = self.breaker
        was = breaker.state
        breaker.record(failed)
        now = breaker.state
        if now == was:
            return
        self._counters.breaker_open = 0 if now == "closed" else 1
        if now == "open" and was == "closed":
            self._counters.breaker_opened += 1
            _log.warning(
                "circuit breaker of %s opened after %d failures in a row: pausing consumption "
                "for %.1f s",
                self._name,
                breaker.policy.failure_threshold,
                breaker.retry_in(),
            )
        elif now == "closed":
            _log.info("circuit breaker of %s closed: consuming again", self._name)
        # Wake every waiter: a close lets them all in, a reopen restarts their wait.
        self._changed.set()
        self._changed = asyncio.Event()

    async def hold_consumer(self, in_flight: Callable[[], int], stopping: asyncio.Event) -> None:
        """Return once the consumer may fetch again: the breaker closed, or the consumer
        holds no delivery a probe could be made with (``in_flight() == 0``, re-read every
        ``_IDLE_CHECK`` s), or the app is stopping."""
        while not self.closed and in_flight() and not stopping.is_set():
            await _first(self._changed.wait(), stopping.wait(), at_most=_IDLE_CHECK)


async def _first(*waits: Coroutine[Any, Any, Any], at_most: float | None) -> None:
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, timeout=at_most, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
