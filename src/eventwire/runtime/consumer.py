"""Runtime layer: the consumer loop of one subscriber: take deliveries until told to stop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from eventwire.core.contract import Broker
from eventwire.core.errors import DecodeError
from eventwire.core.message import Delivery
from eventwire.observability.logs import get_logger
from eventwire.runtime.handling import Processor
from eventwire.runtime.lanes import Dispatcher, Job

_log = get_logger("runtime")


class Consumer:
    """Subscribes for one ``SubscriberSpec`` and feeds its deliveries to a ``Dispatcher``.

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
    ) -> None:
        self._processor = processor
        self._spec = processor.spec
        self._broker = broker
        self._concurrency = concurrency
        self._stopping = stopping
        self._shutdown_timeout = shutdown_timeout
        self._dispatcher = Dispatcher(concurrency)
        self.subscribed = asyncio.Event()

    async def run(self) -> None:
        spec = self._spec
        prefetch = spec.effective_prefetch(self._concurrency)
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
            try:
                await self._loop(it)
            finally:
                await self._dispatcher.drain(self._shutdown_timeout)

    async def _loop(self, deliveries: AsyncIterator[Delivery]) -> None:
        stop_wait = asyncio.ensure_future(self._stopping.wait())
        try:
            while not self._stopping.is_set():
                receive = asyncio.ensure_future(anext(deliveries))
                await asyncio.wait({receive, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
                if not receive.done():
                    receive.cancel()
                    with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                        await receive
                    return
                try:
                    delivery = receive.result()
                except StopAsyncIteration:  # the broker closed the subscription
                    return
                if self._stopping.is_set():  # arrived together with the stop request
                    await Job(delivery, _noop).abandon()
                    return
                await self._dispatch(delivery)
        finally:
            stop_wait.cancel()

    async def _dispatch(self, delivery: Delivery) -> None:
        try:
            value = self._processor.decode(delivery)
        except DecodeError as exc:
            try:
                await self._processor.reject(delivery, exc)
            except Exception:  # noqa: BLE001 - left unsettled, the broker brings it back
                _log.exception("could not dead-letter message %s", delivery.message.id)
            return
        try:
            key = self._spec.key_of(value, delivery.message)
        except Exception:  # noqa: BLE001 - a faulty key function must not stop the consumer
            _log.exception(
                "ordered_by failed for message %s; using its envelope key", delivery.message.id
            )
            key = delivery.message.key or ""

        async def run() -> None:
            await self._processor.process(delivery, value)

        self._dispatcher.submit(key, Job(delivery, run))


async def _noop() -> None:
    return None
