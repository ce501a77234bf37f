"""Core layer: capped exponential backoff with bounded jitter, the one formula every retry uses.

Reconnect loops, fetch-error pauses and message retries all wait ``ceiling(n)`` scaled down by
a random fraction of at most ``jitter``: ``delay(n)`` lies in ``[ceiling * (1 - jitter),
ceiling]``. ``jitter=1`` is AWS's "full jitter" (anywhere in ``[0, ceiling]``); ``jitter=0.5``
is "equal jitter". The ceiling is computed without ever raising ``2.0 ** n`` to a power that
overflows a float: a loop that has failed ten thousand times waits ``cap``, it does not crash
(an ``OverflowError`` after ~1,024 tries once froze a reconnect loop here).
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from eventwire.core.errors import ConfigurationError


@dataclass(frozen=True, slots=True, kw_only=True)
class Backoff:
    """``initial * multiplier ** (attempt - 1)``, at most ``cap``, minus up to ``jitter`` of it."""

    initial: float = 0.1
    cap: float = 30.0
    multiplier: float = 2.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if not (0 <= self.initial <= self.cap) or not math.isfinite(self.cap):
            raise ConfigurationError(
                f"backoff needs 0 <= initial <= cap < inf, got {self.initial} and {self.cap}"
            )
        if not (1 <= self.multiplier < math.inf):
            raise ConfigurationError(f"backoff multiplier must be >= 1, got {self.multiplier}")
        if not 0 <= self.jitter <= 1:
            raise ConfigurationError(f"backoff jitter must be between 0 and 1, got {self.jitter}")

    def ceiling(self, attempt: int) -> float:
        """The un-jittered wait after failed ``attempt`` (1-based; 0 and below count as 1)."""
        if self.initial == 0 or self.multiplier == 1:
            return self.initial
        exponent = max(attempt, 1) - 1
        # Compared as logarithms, so neither cap / initial nor multiplier ** exponent is ever
        # computed where it could overflow (a subnormal initial, a ten-thousandth attempt).
        growth = exponent * math.log(self.multiplier)
        if growth >= math.log(self.cap) - math.log(self.initial):
            return self.cap
        return min(self.cap, math.exp(math.log(self.initial) + growth))

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """The jittered wait after failed ``attempt``: in ``[ceiling*(1-jitter), ceiling]``."""
        ceiling = self.ceiling(attempt)
        if not self.jitter:
            return ceiling
        fraction = (rng or random).random()  # [0, 1)
        return ceiling * (1 - self.jitter * fraction)


class BackoffStreak:
    """A loop's run of consecutive failures, paced by ``backoff``: each ``wait`` sleeps the
    delay after one more failure; ``reset`` after a success starts the run again from
    ``initial``. For loops that never give up (reads, acks, publishes riding out an outage)."""

    __slots__ = ("_backoff", "_failures", "_rng", "_sleep")

    def __init__(
        self,
        backoff: Backoff,
        *,
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._backoff = backoff
        self._rng = rng
        self._sleep = sleep
        self._failures = 0

    def reset(self) -> None:
        self._failures = 0

    def next_delay(self) -> float:
        """Count one more failure and return the wait after it."""
        self._failures += 1
        return self._backoff.delay(self._failures, self._rng)

    async def wait(self) -> None:
        await self._sleep(self.next_delay())
