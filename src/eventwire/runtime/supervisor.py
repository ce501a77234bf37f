"""Runtime layer: runs one ``Consumer`` per subscriber of an app until stopped; readiness."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from eventwire.core.contract import Broker
from eventwire.observability.logs import get_logger
from eventwire.observability.metrics import Recorder
from eventwire.reliability.dead_letter import FailureLog
from eventwire.reliability.idempotency import IdempotencyStore
from eventwire.runtime.consumer import Consumer
from eventwire.runtime.context import PublishFn
from eventwire.runtime.handling import Processor, Timing
from eventwire.runtime.stats import StatsCounter
from eventwire.runtime.subscriber import SubscriberSpec

_log = get_logger("runtime")


@dataclass(frozen=True, slots=True, kw_only=True)
class Services:
    """What every subscriber's ``Processor`` of one app shares."""

    stats: StatsCounter
    store: IdempotencyStore
    publish: PublishFn
    failures: FailureLog
    timing: Timing
    metrics: Recorder


class Supervisor:
    """The consumers of an app's ``run``: started together, stopped together (the first
    failure stops the rest), ready once every one of them is subscribed."""

    def __init__(self) -> None:
        self._ready = asyncio.Event()
        self._consumers: list[Consumer] = []

    def rebind(self) -> None:
        """A fresh readiness event, bound to the running event loop (``serve()`` may run
        many loops one after the other)."""
        self._ready = asyncio.Event()

    @property
    def ready(self) -> bool:
        """True while every subscription exists on the broker; false while a consumer is
        resubscribing after a broker failure."""
        return self._ready.is_set() and all(c.subscribed.is_set() for c in self._consumers)

    async def wait_ready(self) -> None:
        await self._ready.wait()

    def not_ready(self) -> None:
        self._ready.clear()

    async def consume(
        self,
        broker: Broker,
        specs: Sequence[SubscriberSpec],
        services: Services,
        *,
        stop: asyncio.Event,
        stopping: asyncio.Event,
        concurrency: int | None,
        shutdown_timeout: float,
        name: str,
    ) -> None:
        """Consume with every spec until ``stop`` is set or a consumer fails (raised)."""
        in_place = not broker.profile.capabilities.delayed_redelivery
        if in_place:
            _log.info("%s has no delayed redelivery: retries happen in place", broker.profile.name)
        consumers = [
            Consumer(
                Processor(
                    spec,
                    stats=services.stats,
                    store=services.store,
                    publish=services.publish,
                    failures=services.failures,
                    stopping=stopping,
                    in_place_retries=in_place,
                    timing=services.timing,
                    metrics=services.metrics.subscriber(spec.topic, spec.group, spec.name),
                ),
                broker=broker,
                concurrency=concurrency or spec.concurrency,
                stopping=stopping,
                shutdown_timeout=shutdown_timeout,
                timing=services.timing,
            )
            for spec in specs
        ]
        self._consumers = consumers
        tasks = [
            asyncio.create_task(c.run(), name=f"eventwire:{spec.topic}:{spec.name}")
            for c, spec in zip(consumers, specs, strict=True)
        ]
        stop_wait = asyncio.create_task(stop.wait())
        ready_wait = asyncio.create_task(self._all_subscribed(consumers))
        try:
            await asyncio.wait([stop_wait, *tasks], return_when=asyncio.FIRST_COMPLETED)
        finally:
            # Reached on stop, on a consumer failing, or when run() itself is cancelled.
            stopping.set()
            stop_wait.cancel()
            ready_wait.cancel()
            self._ready.clear()
            results = await asyncio.gather(*tasks, return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        for error in errors:
            if not isinstance(error, asyncio.CancelledError):
                _log.error("consumer failed: %s", error, exc_info=error)
        if errors:
            raise errors[0]
        _log.info("%s stopped gracefully", name)

    async def _all_subscribed(self, consumers: list[Consumer]) -> None:
        for consumer in consumers:
            await consumer.subscribed.wait()
        self._ready.set()
