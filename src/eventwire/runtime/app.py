"""Runtime layer: ``App``, the entry point a service runs: subscribers, publishing, lifecycle."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import Any, Self

from eventwire.brokers.catalog import open_broker
from eventwire.core.contract import Broker, Health
from eventwire.core.errors import ClosedError, ConfigurationError, EventwireError
from eventwire.core.message import Message
from eventwire.core.url import BrokerURL
from eventwire.observability.http import DEFAULT_HOST, OpsServer, Probes
from eventwire.observability.logs import get_logger
from eventwire.observability.metrics import MetricsRecorder, NoopRecorder, new_recorder
from eventwire.reliability.dead_letter import FailureLog
from eventwire.reliability.idempotency import IdempotencyStore, MemoryIdempotencyStore
from eventwire.reliability.retry import RetryPolicy
from eventwire.runtime.broker_url import resolve_broker_url
from eventwire.runtime.consumer import Consumer
from eventwire.runtime.handling import Processor, Timing
from eventwire.runtime.publishing import build_message
from eventwire.runtime.shutdown import signals_set
from eventwire.runtime.stats import AppStats, StatsCounter
from eventwire.runtime.subscriber import AckMode, Handler, KeyFn, SubscriberSpec, build_spec

_log = get_logger("runtime")


class App:
    """A service's messaging: register handlers with ``@app.subscriber``, then ``run``/``serve``.

    ``async with app:`` connects the broker (nothing is consumed yet); ``await app.run()``
    consumes until ``stop`` is set (or SIGTERM/SIGINT when handlers are installed), then
    shuts down gracefully within ``shutdown_timeout`` seconds.
    """

    def __init__(
        self,
        broker_url: str | None = None,
        *,
        name: str = "eventwire-app",
        shutdown_timeout: float = 10.0,
        idempotency_store: IdempotencyStore | None = None,
        timing: Timing | None = None,
    ) -> None:
        """``idempotency_store`` (default: in memory, 24 h TTL) is closed with the app;
        ``timing`` injects sleep/clock/randomness for tests."""
        if shutdown_timeout < 0:
            raise ConfigurationError(f"shutdown_timeout must be >= 0, got {shutdown_timeout}")
        self.broker_url = broker_url
        self.name = name
        self.shutdown_timeout = shutdown_timeout
        self.idempotency_store: IdempotencyStore = idempotency_store or MemoryIdempotencyStore()
        self._timing = timing or Timing()
        self._specs: list[SubscriberSpec] = []
        self._stats = StatsCounter()
        self._metrics = new_recorder()
        self._failures = FailureLog(clock=self._timing.clock)
        self._broker: Broker | None = None
        self._ready = asyncio.Event()
        self._consumers: list[Consumer] = []
        self._http: OpsServer | None = None

    # -- registration -----------------------------------------------------------------------

    def subscriber(
        self,
        topic: str,
        *,
        group: str | None = None,
        concurrency: int = 1,
        prefetch: int | None = None,
        retry: RetryPolicy | None = None,
        ordered_by: str | KeyFn | None = None,
        idempotent: bool = False,
        ack: AckMode = "after",
    ) -> Callable[[Handler], Handler]:
        """Register ``async def handler(message, ctx)`` for ``topic``; returns it unchanged."""

        def register(handler: Handler) -> Handler:
            self._specs.append(
                build_spec(
                    handler,
                    topic=topic,
                    group=group,
                    concurrency=concurrency,
                    prefetch=prefetch,
                    retry=retry,
                    ordered_by=ordered_by,
                    idempotent=idempotent,
                    ack=ack,
                )
            )
            return handler

        return register

    @property
    def subscribers(self) -> tuple[SubscriberSpec, ...]:
        return tuple(self._specs)

    @property
    def stats(self) -> AppStats:
        return self._stats.snapshot()

    @property
    def metrics(self) -> MetricsRecorder | NoopRecorder:
        """This app's metrics (its own registry: ``app.metrics.registry``); a ``NoopRecorder``
        when the ``metrics`` extra (prometheus_client) is not installed."""
        return self._metrics

    async def health(self) -> Health:
        """The broker connection's health (for ``/healthz``); not ok outside ``async with``."""
        broker = self._broker
        if broker is None:
            return Health(ok=False, detail="not connected")
        return await broker.health()

    @property
    def broker(self) -> Broker:
        """The connected broker; ``ClosedError`` outside ``async with app``."""
        if self._broker is None:
            raise ClosedError(f"{self.name} is not connected: use 'async with app:' first")
        return self._broker

    @property
    def ready(self) -> bool:
        """True while every subscription exists on the broker (for ``/readyz``); false while
        a consumer is resubscribing after a broker failure."""
        return self._ready.is_set() and all(c.subscribed.is_set() for c in self._consumers)

    @property
    def http_port(self) -> int | None:
        """The port ``/metrics``, ``/healthz`` and ``/readyz`` are served on while ``run``
        serves them (the real one when ``http_port=0`` picked a free port), else None."""
        return self._http.port if self._http is not None else None

    async def wait_ready(self) -> None:
        """Wait until ``run`` has subscribed every handler."""
        await self._ready.wait()

    # -- lifecycle --------------------------------------------------------------------------

    async def connect(self, broker_url: str | None = None) -> None:
        """Open the broker (``broker_url`` overrides the app's); idempotent."""
        if self._broker is not None:
            return
        url = BrokerURL.parse(resolve_broker_url(broker_url or self.broker_url))
        broker = open_broker(url)
        await broker.connect()
        self._broker = broker
        self._ready = asyncio.Event()  # bound to this event loop (serve() may run many)
        _log.info("%s connected to %s", self.name, url)

    async def aclose(self) -> None:
        """Close the broker (publishers flush first) and the idempotency store."""
        broker, self._broker = self._broker, None
        try:
            if broker is not None:
                await broker.aclose()
        finally:
            await self.idempotency_store.aclose()

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- publishing -------------------------------------------------------------------------

    async def publish(
        self,
        topic: str,
        payload: object,
        *,
        key: str | None = None,
        headers: Mapping[str, str] | None = None,
        correlation_id: str | None = None,
    ) -> Message:
        """Publish one payload; returns the sent ``Message`` once the broker confirmed it."""
        return await self._publish(
            topic,
            payload,
            key=key,
            headers=headers,
            correlation_id=correlation_id,
            causation_id=None,
        )

    async def publish_batch(
        self,
        topic: str,
        payloads: Iterable[object],
        *,
        key: Callable[[Any], str | None] | None = None,
    ) -> list[Message]:
        """Publish many payloads in one broker call (all confirmed, or treat none as sent)."""
        messages = [
            build_message(
                p, key=key(p) if key else None, headers=None, correlation_id=None, causation_id=None
            )
            for p in payloads
        ]
        started = time.perf_counter()
        await self.broker.publish(topic, *messages)
        self._stats.published += len(messages)
        self._metrics.published(topic, len(messages), time.perf_counter() - started)
        return messages

    async def _publish(
        self,
        topic: str,
        payload: object,
        *,
        key: str | None,
        headers: Mapping[str, str] | None,
        correlation_id: str | None,
        causation_id: str | None,
    ) -> Message:
        message = build_message(
            payload,
            key=key,
            headers=headers,
            correlation_id=correlation_id,
            causation_id=causation_id,
        )
        started = time.perf_counter()
        await self.broker.publish(topic, message)
        self._stats.published += 1
        self._metrics.published(topic, 1, time.perf_counter() - started)
        return message

    # -- consuming --------------------------------------------------------------------------

    async def run(
        self,
        stop: asyncio.Event | None = None,
        *,
        install_signal_handlers: bool = False,
        concurrency: int | None = None,
        http_port: int | None = None,
        http_host: str = DEFAULT_HOST,
    ) -> None:
        """Consume with every subscriber until ``stop`` is set, then shut down gracefully.

        With ``http_port`` (0: any free port) it serves ``/metrics``, ``/healthz`` and
        ``/readyz`` on ``http_host`` meanwhile; a port in use raises ``ConfigurationError``.

        ``concurrency`` overrides every subscriber's own. A consumer whose subscription
        fails (broker outage) logs it and resubscribes with backoff while the others keep
        going; a closed broker or a configuration error stops the app and is raised.
        """
        if not self._specs:
            raise ConfigurationError(f"{self.name} has no subscribers: add @app.subscriber(...)")
        if concurrency is not None and concurrency < 1:
            raise ConfigurationError(f"concurrency must be at least 1, got {concurrency}")
        owns_connection = self._broker is None
        await self.connect()
        stop = stop or asyncio.Event()
        stopping = asyncio.Event()
        try:
            async with contextlib.AsyncExitStack() as stack:
                if http_port is not None:
                    self._http = await stack.enter_async_context(
                        self._ops_server(http_port, http_host)
                    )
                    stack.callback(setattr, self, "_http", None)
                with signals_set(
                    stop, timeout=self.shutdown_timeout, enabled=install_signal_handlers
                ):
                    await self._consume(stop, stopping, concurrency)
        finally:
            self._ready.clear()
            if owns_connection:
                await self.aclose()

    def _ops_server(self, port: int, host: str) -> OpsServer:
        probes = Probes(
            metrics=self._metrics.exposition, health=self.health, ready=lambda: self.ready
        )
        return OpsServer(probes, port=port, host=host)

    async def _consume(
        self, stop: asyncio.Event, stopping: asyncio.Event, concurrency: int | None
    ) -> None:
        broker = self.broker
        in_place = not broker.profile.capabilities.delayed_redelivery
        if in_place:
            _log.info("%s has no delayed redelivery: retries happen in place", broker.profile.name)
        consumers = [
            Consumer(
                Processor(
                    spec,
                    stats=self._stats,
                    store=self.idempotency_store,
                    publish=self._publish,
                    failures=self._failures,
                    stopping=stopping,
                    in_place_retries=in_place,
                    timing=self._timing,
                    metrics=self._metrics.subscriber(spec.topic, spec.group, spec.name),
                ),
                broker=broker,
                concurrency=concurrency or spec.concurrency,
                stopping=stopping,
                shutdown_timeout=self.shutdown_timeout,
                timing=self._timing,
            )
            for spec in self._specs
        ]
        self._consumers = consumers
        tasks = [
            asyncio.create_task(c.run(), name=f"eventwire:{spec.topic}:{spec.name}")
            for c, spec in zip(consumers, self._specs, strict=True)
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
        _log.info("%s stopped gracefully", self.name)

    async def _all_subscribed(self, consumers: list[Consumer]) -> None:
        for consumer in consumers:
            await consumer.subscribed.wait()
        self._ready.set()

    def serve(
        self,
        broker_url: str | None = None,
        concurrency: int | None = None,
        install_signal_handlers: bool = True,
        http_port: int | None = None,
        http_host: str = DEFAULT_HOST,
    ) -> int:
        """Run until SIGTERM/SIGINT (``eventwire run``); 0 after a graceful shutdown, 1 if a
        broker or configuration error stopped it (logged, password redacted). ``http_port``
        serves ``/metrics``, ``/healthz`` and ``/readyz`` meanwhile (see ``run``)."""

        async def main() -> None:
            try:
                await self.connect(broker_url)
                await self.run(
                    install_signal_handlers=install_signal_handlers,
                    concurrency=concurrency,
                    http_port=http_port,
                    http_host=http_host,
                )
            finally:
                await self.aclose()

        try:
            asyncio.run(main())
        except EventwireError as exc:
            _log.error("%s stopped: %s", self.name, exc)
            return 1
        return 0

    def __repr__(self) -> str:
        return f"<App {self.name!r} subscribers={len(self._specs)}>"
