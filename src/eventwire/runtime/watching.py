"""Runtime layer: what an app watches in the background: its broker's health (readiness)
and its groups' backlog (``observability.lag``), each on its own task, off the message path.

Readiness must notice a lost broker even where the adapter keeps a subscription object
alive through reconnects (no consumer fails, so the supervisor stays "ready"):
``HealthWatch`` asks ``broker.health()`` every ``WatchPolicy.health_every`` seconds, each
check bounded by ``health_timeout``, so a lost broker turns readiness false within
``health_every + health_timeout`` seconds (10 s by default) and a recovered one true again
at the next check.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Self

from eventwire.core.contract import Broker
from eventwire.core.errors import ConfigurationError
from eventwire.core.lifetime import ClosesOnExit
from eventwire.observability.counters import SubscriberMetrics
from eventwire.observability.lag import LagPolicy, LagWatch, open_lag_reader
from eventwire.observability.logs import get_logger
from eventwire.observability.periodic import Periodic

_log = get_logger("runtime")


@dataclass(frozen=True, slots=True, kw_only=True)
class WatchPolicy:
    """How often the broker's health is checked while the app runs (seconds), how long one
    check may take, and how the backlog is read (``lag=None``: not read at all)."""

    health_every: float = 5.0
    health_timeout: float = 5.0
    lag: LagPolicy | None = field(default_factory=LagPolicy)

    def __post_init__(self) -> None:
        if not self.health_every > 0 or not self.health_timeout > 0:
            raise ConfigurationError(
                "health checks need health_every > 0 and health_timeout > 0, got "
                f"{self.health_every} and {self.health_timeout}"
            )


class HealthWatch(ClosesOnExit):
    """``async with HealthWatch(broker, policy) as watch:`` keeps ``watch.healthy`` current."""

    def __init__(self, broker: Broker, policy: WatchPolicy) -> None:
        self._broker = broker
        self._policy = policy
        self._periodic = Periodic(self.check, policy.health_every, "eventwire-health")
        self.healthy = True  # just connected; the first check runs at once
        self.detail = ""
        self.checks = 0

    async def check(self) -> bool:
        """One health check (what each round of the task does); whether the broker is ok."""
        try:
            async with asyncio.timeout(self._policy.health_timeout):
                health = await self._broker.health()
            ok, detail = health.ok, health.detail
        except TimeoutError:
            ok, detail = False, f"no health answer within {self._policy.health_timeout:g} s"
        except Exception as exc:  # noqa: BLE001 - any failure to answer is "unhealthy"
            ok, detail = False, f"{type(exc).__name__}: {exc}"
        if ok != self.healthy:
            if ok:
                _log.info("broker %s answers again: ready", self._broker.url)
            else:
                _log.warning("broker %s is unhealthy (%s): not ready", self._broker.url, detail)
        self.healthy, self.detail = ok, detail
        self.checks += 1
        return ok

    async def __aenter__(self) -> Self:
        self._periodic.start()
        return self

    async def aclose(self) -> None:
        """Stop checking (what leaving ``async with`` does)."""
        await self._periodic.aclose()


async def watch_lag(
    broker: Broker,
    subscribers: Callable[[], Sequence[SubscriberMetrics]],
    policy: WatchPolicy,
) -> LagWatch | None:
    """A started ``LagWatch`` of ``broker`` (close it before the broker), or None when lag
    reading is off or the broker keeps no backlog."""
    if policy.lag is None:
        return None
    reader = open_lag_reader(broker)
    if reader is None:
        _log.info("%s keeps no backlog: no consumer lag is reported", broker.profile.name)
        return None
    return await LagWatch(reader, subscribers, policy.lag).__aenter__()
