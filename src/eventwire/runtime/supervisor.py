"""Runtime layer: runs one ``Consumer`` per subscriber of an app until stopped; readiness.

A consumer task that dies anyway (its own loop already survives broker failures and bad
input, so this means a bug or a ``BaseException`` from a handler) is logged, counted in the
subscriber's ``restarts`` and started again after a backoff, and readiness is false until it
has subscribed again. A closed broker or a configuration error still stops the app: no
restart can fix those.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from eventwire.core.contract import Broker
from eventwire.core.errors import ClosedError, ConfigurationError
from eventwire.observability.counters import AppCounters
from eventwire.observability.logs import get_logger
from eventwire.reliability.dead_letter import FailureLog
from eventwire.reliability.idempotency import IdempotencyStore
from eventwire.runtime.consumer import RESUBSCRIBE, Consumer
from eventwire.runtime.context import PublishFn
from eventwire.runtime.handling import Processor, Timing
from eventwire.runtime.subscriber import SubscriberSpec
from eventwire.runtime.transactional import transactions_of

_log = get_logger("runtime")


@dataclass(frozen=True, slots=True, kw_only=True)
class Services:
    """What every subscriber's ``Processor`` of one app shares."""

    counters: AppCounters
    store: IdempotencyStore
    publish: PublishFn
    failures: FailureLog
    timing: Timing


class Supervisor:
    """The consumers of an app's ``run``: started together, stopped together (the first
    failure stops the rest), ready once every one of them is subscribed."""

    def __init__(self) -> None:
        self._ready = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop _ready belongs to
        self._consumers: list[Consumer] = []

    def rebind(self) -> None:
        """A fresh readiness event when the running event loop is another one (``serve()``
        may run many loops one after the other). Within one loop the event is kept: a
        ``wait_ready()`` begun before ``connect()`` must be woken by this run's readiness."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._ready = asyncio.Event()
            self._loop = loop

    @property
    def ready(self) -> bool:
        """True while every subscription exists on the broker; false while a consumer is
        resubscribing after a broker failure or its circuit breaker is open."""
        return self._ready.is_set() and all(
            c.subscribed.is_set() and (c.processor.gate is None or c.processor.gate.closed)
            for c in self._consumers
        )

    def not_ready_reason(self) -> str:
        """Why ``ready`` is false, naming the first subscriber that holds it back."""
        if not self._consumers or not self._ready.is_set():
            return "subscriptions not established"
        for consumer in self._consumers:
            spec, gate = consumer.spec, consumer.processor.gate
            if not consumer.subscribed.is_set():
                return f"{spec.topic} (group={spec.group}) is not subscribed"
            if gate is not None and not gate.closed:
                return f"the circuit breaker of {spec.name} on {spec.topic} is {gate.breaker.state}"
        return "subscriptions not established"

    async def wait_ready(self) -> None:
        self.rebind()  # the event of this loop, the one connect() will keep
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
        for spec in specs:
            if spec.transactional and (concurrency or 1) != 1:
                raise ConfigurationError(
                    f"transactional=True on {spec.topic!r} needs concurrency=1, "
                    f"run(concurrency={concurrency}) sets more"
                )
        transactions = transactions_of(broker, specs)  # refused before anything is consumed
        in_place = not broker.profile.capabilities.delayed_redelivery
        if in_place:
            _log.info("%s has no delayed redelivery: retries happen in place", broker.profile.name)
        consumers = [
            Consumer(
                Processor(
                    spec,
                    store=services.store,
                    publish=services.publish,
                    failures=services.failures,
                    stopping=stopping,
                    in_place_retries=in_place,
                    timing=services.timing,
                    counters=services.counters.subscriber(spec.topic, spec.group, spec.name),
                    profile=broker.profile.name,
                    transactions=transactions,
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
            asyncio.create_task(self._keep_running(c, stopping, services.timing)) for c in consumers
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

    async def _keep_running(
        self, consumer: Consumer, stopping: asyncio.Event, timing: Timing
    ) -> None:
        """Run ``consumer`` until stopping; restart it whenever it dies unexpectedly."""
        spec = consumer.spec
        deaths = 0
        while True:
            task = asyncio.create_task(consumer.run(), name=f"eventwire:{spec.topic}:{spec.name}")
            try:
                await task  # cancelling this coroutine cancels the consumer too
            except (ClosedError, ConfigurationError):
                raise
            except asyncio.CancelledError as exc:
                me = asyncio.current_task()
                if me is None or me.cancelling():
                    raise
                error: BaseException = exc  # the consumer's own task was cancelled from inside
            except BaseException as exc:
                if isinstance(exc, KeyboardInterrupt | SystemExit):
                    raise
                error = exc
            else:
                return  # stopped, or the broker ended the subscription
            if stopping.is_set():
                return
            consumer.subscribed.clear()  # not ready until it is subscribed again
            consumer.processor.counters.restarts += 1
            deaths += 1
            delay = RESUBSCRIBE.delay_for(deaths, timing.rng)
            _log.error(
                "consumer of %s (group=%s) died (%s: %s); restarting it in %.2f s",
                spec.topic,
                spec.group,
                type(error).__name__,
                error,
                delay,
                exc_info=error,
            )
            await timing.sleep_unless(delay, stopping)
            if stopping.is_set():
                return

    async def _all_subscribed(self, consumers: list[Consumer]) -> None:
        for consumer in consumers:
            await consumer.subscribed.wait()
        self._ready.set()
