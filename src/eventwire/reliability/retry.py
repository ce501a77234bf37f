"""Reliability layer: ``RetryPolicy``, bounded exponential backoff with jitter."""

from __future__ import annotations

import random
from dataclasses import dataclass

from eventwire.core.errors import ConfigurationError


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """How often and how patiently a failing message is tried before it is dead-lettered.

    ``max_attempts`` counts every handler call, the first one included, so ``max_attempts=1``
    means "never retry". The delay before attempt ``n + 1`` is
    ``initial_delay * multiplier ** (n - 1)``, spread by ``+-jitter`` (a fraction) so that a
    burst of failures does not retry in lockstep, and never more than ``max_delay`` (a hard
    cap: brokers with a longest delay, and operators reading the config, rely on it).
    """

    max_attempts: int = 5
    initial_delay: float = 0.5
    max_delay: float = 30.0
    multiplier: float = 2.0
    jitter: float = 0.1

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ConfigurationError(f"max_attempts must be at least 1, got {self.max_attempts}")
        if self.initial_delay < 0 or self.max_delay < 0:
            raise ConfigurationError("retry delays must not be negative")
        if self.multiplier < 1:
            raise ConfigurationError(f"multiplier must be at least 1, got {self.multiplier}")
        if not 0 <= self.jitter <= 1:
            raise ConfigurationError(f"jitter must be between 0 and 1, got {self.jitter}")

    def should_retry(self, attempt: int) -> bool:
        """Whether a failure on ``attempt`` (1-based) leaves another attempt."""
        return attempt < self.max_attempts

    def delay_for(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed ``attempt`` (1-based) before the next one."""
        exponent = max(attempt, 1) - 1
        try:
            base = min(self.initial_delay * self.multiplier**exponent, self.max_delay)
        except OverflowError:  # a long-failing message: float ** int overflows, the cap applies
            base = self.max_delay
        if not self.jitter or not base:
            return base
        spread = (rng or random).uniform(-self.jitter, self.jitter)
        return max(0.0, min(base * (1 + spread), self.max_delay))


NO_RETRY = RetryPolicy(max_attempts=1, initial_delay=0.0)
