"""Runtime layer: the consumer loop of one subscriber: take deliveries until told to stop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from eventwire.core.contract import Broker
from eventwire.core.errors import ClosedError, ConfigurationError
from eventwire.core.message import Delivery
from eventwire.observability.logs import bind_message, get_logger
from eventwire.reliability.retry import RetryPolicy
from eventwire.runtime.handling import Processor, Step, Timing
from eventwire.runtime.lanes import Dispatcher, abandon
from eventwire.runtime.subscriber import SubscriberSpec
from eventwire.serialization.registry import RegistryUnavailableError

_log = get_logger("runtime")

# Resubscribing after a broker failure: quick at first, then every ~30 s; never gives up.
RESUBSCRIBE = RetryPolicy(max_attempts=1, initial_delay=0.1, max_delay=30.0, jitter=0.2)


class Consumer:
    """Subscribes for one ``SubscriberSpec`` and feeds its deliveries, each admitted by the
    ``Processor`` (decoded, keyed, or marked for the dead-letter queue), to a ``Dispatcher``.

    The loop races every ``anext`` against ``stopping`` so that a stop request is noticed
    even while the topic is idle; on stop it takes no further delivery, drains the dispatcher
    within ``shutdown_timeout`` and only then leaves the subscription, which hands anything
    still unsettled back to the broker.
    """

    def __init__(
        self,
        processor: Processor,
        *,
        broker: Broker,
        concurrency: int,
        stopping: asyncio.Event,
        shutdown_timeout: float,
        resubscribe: RetryPolicy = RESUBSCRIBE,
        timing: Timing | None = None,
    ) -> None:
        self._processor = processor
        self._spec = processor.spec
        self._broker = broker
        self._concurrency = concurrency
        self._stopping = stopping
        self._shutdown_timeout = shutdown_timeout
        self._resubscribe = resubscribe
        self._timing = timing or Timing()
        self._dispatcher = self._new_dispatcher()
        self._received = False
        self.subscribed = asyncio.Event()
        self.failures = 0  # subscription failures in a row (for logs and tests)

    @property
    def spec(self) -> SubscriberSpec:
        return self._spec

    @property
    def processor(self) -> Processor:
        return self._processor

    async def run(self) -> None:
        """Consume until stopped; a failing subscription is logged and opened again with
        backoff, so a broker outage costs throughput, not the process. A closed broker or a
        configuration error ends the loop (raised): retrying cannot fix those."""
        while not self._stopping.is_set():
            self._received = False
            try:
                await self._run_once()
                return  # stopped, or the broker ended the subscription (closed)
            except (ClosedError, ConfigurationError):
                raise
            except Exception as exc:  # noqa: BLE001 - any other failure is a broker outage
                self.subscribed.clear()
                self.failures = 1 if self._received else self.failures + 1
                delay = self._resubscribe.delay_for(self.failures, self._timing.rng)
                _log.error(
                    "subscription to %s (group=%s) failed (%s: %s); resubscribing in %.2f s",
                    self._spec.topic,
                    self._spec.group,
                    type(exc).__name__,
                    exc,
                    delay,
                    exc_info=exc,
                )
                await self._timing.sleep_unless(delay, self._stopping)

    async def _run_once(self) -> None:
        spec = self._spec
        prefetch = spec.effective_prefetch(self._concurrency)
        # A drained dispatcher refuses new jobs: every subscription gets a fresh one.
        self._dispatcher = self._new_dispatcher()
        async with self._broker.subscribe(spec.topic, group=spec.group, prefetch=prefetch) as it:
            self.subscribed.set()
            _log.info(
                "consuming %s (group=%s, concurrency=%d, prefetch=%d) with %s",
                spec.topic,
                spec.group,
                self._concurrency,
                prefetch,
                spec.name,
            )
            counters = self._processor.counters
            counters.oldest = self._dispatcher.oldest_ages  # what /metrics reads of the lanes
            try:
                await self._loop(it)
            finally:
                await self._dispatcher.drain(self._shutdown_timeout)
                counters.oldest = None

    def _new_dispatcher(self) -> Dispatcher:
        counters = self._processor.counters

        def restarted() -> None:
            counters.restarts += 1

        return Dispatcher(self._concurrency, on_restart=restarted)

    async def _loop(self, deliveries: AsyncIterator[Delivery]) -> None:
        # Hot path: await ``anext`` directly (no task and no asyncio.wait per delivery); a
        # watcher cancels this task only while it waits inside ``anext`` when the stop request
        # comes, and that one cancellation is taken back (``uncancel``), never swallowing a
        # cancellation from outside.
        me = asyncio.current_task()
        assert me is not None
        state = {"waiting": False, "interrupted": False}

        async def watch() -> None:
            await self._stopping.wait()
            if state["waiting"]:
                state["interrupted"] = True
                me.cancel()

        watcher = asyncio.ensure_future(watch())
        admit, submit = self._processor.admit, self._dispatcher.submit
        gate, dispatcher = self._processor.gate, self._dispatcher
        try:
            while not self._stopping.is_set():
                if gate is not None and not gate.closed:
                    # Breaker open: take nothing more while a held delivery can be the probe
                    # (with none held, take one: it becomes the probe).
                    await gate.hold_consumer(lambda: dispatcher.in_flight, self._stopping)
                    if self._stopping.is_set():
                        return
                state["waiting"] = True
                try:
                    delivery = await anext(deliveries)
                except StopAsyncIteration:  # the broker closed the subscription
                    return
                except asyncio.CancelledError:
                    if state["interrupted"] and me.uncancel() == 0:
                        return  # our own stop request; the subscription's exit cleans up
                    raise
                finally:
                    state["waiting"] = False
                self._received = True
                if self._stopping.is_set():  # arrived together with the stop request
                    await abandon(delivery)
                    return
                if self._processor.decodes_async:
                    admitted = await self._admit_waiting(delivery)
                    if admitted is None:
                        return  # stopping while the registry was down: it went back
                    key, step, value = admitted
                else:
                    key, step, value = admit(delivery)
                submit(key, step, delivery, value)
        finally:
            watcher.cancel()

    async def _admit_waiting(self, delivery: Delivery) -> tuple[str | None, Step, Any] | None:
        """An async (schema codec) admission. While the schema registry is unreachable this
        consumer holds the delivery, reports not ready and tries again with backoff: an
        outage is never a dead letter. Stopping meanwhile returns the delivery (None)."""
        failures = 0
        while True:
            try:
                admitted = await self._processor.admit_async(delivery)
            except RegistryUnavailableError as exc:
                failures += 1
                self.subscribed.clear()  # /readyz says not ready while decoding is blocked
                delay = self._resubscribe.delay_for(failures, self._timing.rng)
                bind_message(_log, delivery.message, delivery.topic).warning(
                    "cannot decode the message: %s; trying again in %.2f s", exc, delay
                )
                await self._timing.sleep_unless(delay, self._stopping)
                if self._stopping.is_set():
                    await abandon(delivery)
                    return None
                continue
            if failures:
                self.subscribed.set()
            return admitted
