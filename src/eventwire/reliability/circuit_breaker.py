"""Reliability layer: a circuit breaker for a handler's downstream (pure state, no I/O).

Closed, it counts consecutive failures; ``failure_threshold`` of them open it. Open, it
allows nothing for ``open_for`` seconds, then lets exactly one probe through (half-open): a
probe that succeeds closes it, one that fails opens it again for twice as long (up to
``max_open_for``). The runtime turns "allows nothing" into *not consuming*: no handler call,
no fetch, no attempt burnt, so a downstream outage leaves a backlog on the broker instead of
a dead-letter queue full of good messages.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, TypeAlias

from eventwire.core.errors import ConfigurationError

BreakerState: TypeAlias = Literal["closed", "open", "half-open"]


@dataclass(frozen=True, slots=True, kw_only=True)
class BreakerPolicy:
    """When to open (consecutive failures) and how long to stay open before a probe."""

    failure_threshold: int = 5
    open_for: float = 5.0  # seconds before the first probe
    max_open_for: float = 60.0  # each failed probe doubles the wait, up to this

    def __post_init__(self) -> None:
        if self.failure_threshold < 1:
            raise ConfigurationError(
                f"failure_threshold must be at least 1, got {self.failure_threshold}"
            )
        if not self.open_for > 0 or self.max_open_for < self.open_for:
            raise ConfigurationError(
                f"need 0 < open_for <= max_open_for, got {self.open_for} and {self.max_open_for}"
            )


class CircuitBreaker:
    """The breaker's state machine; ``clock`` is monotonic seconds (tests inject one)."""

    def __init__(
        self, policy: BreakerPolicy, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.policy = policy
        self._clock = clock
        self._state: BreakerState = "closed"
        self._failures = 0
        self._open_for = policy.open_for
        self._opened_at = 0.0
        self._probing = False
        self.times_opened = 0

    @property
    def state(self) -> BreakerState:
        if self._state == "open" and self._clock() >= self._opened_at + self._open_for:
            self._state = "half-open"
        return self._state

    def try_enter(self) -> bool:
        """Whether a call may start now (closed, or the one probe of a half-open breaker);
        every call let in must end with ``record(...)``."""
        state = self.state
        if state == "closed":
            return True
        if state == "half-open" and not self._probing:
            self._probing = True
            return True
        return False

    def retry_in(self) -> float:
        """Seconds until ``try_enter`` may say yes (0 when it may now, or a probe is out)."""
        if self.state != "open":
            return 0.0
        return max(0.0, self._opened_at + self._open_for - self._clock())

    def record(self, failed: bool | None) -> None:
        """A call let in ended: ``failed`` True/False, or None when it ended without a
        verdict (cancelled), which only frees the probe slot."""
        probe, self._probing = self._probing, False
        if failed is None:
            return
        if not failed:
            self._failures = 0
            if self._state != "closed":
                self._state = "closed"
                self._open_for = self.policy.open_for
            return
        self._failures += 1
        if probe and self._state == "half-open":
            self._open(min(self._open_for * 2, self.policy.max_open_for))
        elif self._state == "closed" and self._failures >= self.policy.failure_threshold:
            self._open(self.policy.open_for)

    def _open(self, seconds: float) -> None:
        self._state = "open"
        self._open_for = seconds
        self._opened_at = self._clock()
        self.times_opened += 1
