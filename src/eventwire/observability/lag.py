"""Observability layer: reads every group subscriber's backlog from the broker, periodically.

``LagWatch`` runs one background task per app while the app is connected: every
``LagPolicy.every`` seconds it asks the broker's ``LagReader`` (``brokers/<name>/lag.py``,
found next to the adapter named by the profile's factory, over a connection of its own) for
each group subscriber's backlog, one read after the other, each bounded by ``timeout``. The
figures land in the subscriber's counters, which ``/metrics`` renders; the consume path never
waits for any of it. A failed read is counted at once, logged once per outage (from the
second failed read in a row), and the last figure is dropped (a stale lag would look like a
healthy one).
Broadcast subscribers (no group) have no backlog on any broker and are not read.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Self, cast

from eventwire.core.contract import Broker
from eventwire.core.errors import ConfigurationError
from eventwire.core.lag import LagReader
from eventwire.core.lifetime import ClosesOnExit
from eventwire.observability.counters import SubscriberMetrics
from eventwire.observability.logs import get_logger
from eventwire.observability.periodic import Periodic

_log = get_logger("observability")
# A single failed read is usually a blip (a Kafka leader moving, a reconnect under way): it is
# counted at once but logged only when the next read fails too, then once per outage.
_WARN_AFTER = 2


@dataclass(frozen=True, slots=True, kw_only=True)
class LagPolicy:
    """How often (seconds) the backlog is read, and how long one read may take."""

    every: float = 5.0
    timeout: float = 5.0

    def __post_init__(self) -> None:
        if not self.every > 0 or not self.timeout > 0:
            raise ConfigurationError(
                f"lag reading needs every > 0 and timeout > 0, got {self.every} and {self.timeout}"
            )


def open_lag_reader(broker: Broker) -> LagReader | None:
    """The broker's lag reader (not connected yet), or None for brokers that keep no
    backlog (core NATS, Redis Pub/Sub) or ship no reader."""
    package = broker.profile.factory.partition(":")[0].rpartition(".")[0]
    name = f"{package}.lag"
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name != name:
            raise
        return None
    opener = cast("Callable[[Broker], LagReader | None]", module.open_reader)
    return opener(broker)


class LagWatch(ClosesOnExit):
    """``async with LagWatch(reader, subscribers, policy):`` keeps their backlogs fresh."""

    def __init__(
        self,
        reader: LagReader,
        subscribers: Callable[[], Sequence[SubscriberMetrics]],
        policy: LagPolicy | None = None,
    ) -> None:
        """``subscribers`` lists the app's subscribers at each round (registered late ones
        are read too); those without a group are skipped."""
        self._reader = reader
        self._subscribers = subscribers
        self._policy = policy or LagPolicy()
        self._periodic = Periodic(self.read_once, self._policy.every, "eventwire-lag")
        self._failing: dict[tuple[str, str], int] = {}  # failed reads in a row
        self.rounds = 0  # completed reading rounds (tests wait on it)

    async def read_once(self) -> None:
        """Read every subscriber's backlog once (what each round of the task does)."""
        for sub in self._subscribers():
            if not sub.group:
                continue
            where = (sub.topic, sub.group)
            try:
                async with asyncio.timeout(self._policy.timeout):
                    sub.backlog = await self._reader.read(sub.topic, sub.group)
            except Exception as exc:  # noqa: BLE001 - a failed read never stops the watch
                sub.backlog = None
                sub.lag_read_failures += 1
                in_a_row = self._failing[where] = self._failing.get(where, 0) + 1
                if in_a_row == _WARN_AFTER:
                    _log.warning(
                        "cannot read the lag of group %s on %s: %s",
                        sub.group,
                        sub.topic,
                        exc or type(exc).__name__,
                    )
            else:
                if self._failing.pop(where, 0) >= _WARN_AFTER:
                    _log.info("reading the lag of group %s on %s again", sub.group, sub.topic)
        self.rounds += 1

    async def __aenter__(self) -> Self:
        self._periodic.start()
        return self

    async def aclose(self) -> None:
        await self._periodic.aclose()
        for sub in self._subscribers():
            sub.backlog = None
        try:
            async with asyncio.timeout(self._policy.timeout):
                await self._reader.aclose()
        except Exception:  # noqa: BLE001 - closing must not fail the app's shutdown
            _log.warning("closing the lag reader failed", exc_info=True)
