"""Runtime layer: ``App``, the entry point a service runs: subscribers, publishing, lifecycle."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Self

from eventwire.brokers.catalog import open_broker
from eventwire.core.contract import Broker, Health
from eventwire.core.errors import ClosedError, ConfigurationError
from eventwire.core.lifetime import ClosesOnExit
from eventwire.core.message import Message
from eventwire.core.url import BrokerURL
from eventwire.observability.counters import AppCounters, SubscriberMetrics
from eventwire.observability.http import DEFAULT_HOST, ASGIApp, OpsServer, asgi_endpoints
from eventwire.observability.lag import LagWatch
from eventwire.observability.logs import get_logger
from eventwire.observability.metrics import MetricsRecorder, NoopRecorder, new_recorder
from eventwire.reliability.circuit_breaker import BreakerPolicy
from eventwire.reliability.dead_letter import FailureLog
from eventwire.reliability.idempotency import IdempotencyStore, MemoryIdempotencyStore
from eventwire.reliability.retry import RetryPolicy
from eventwire.runtime import serving
from eventwire.runtime.broker_url import resolve_broker_url
from eventwire.runtime.handling import Timing
from eventwire.runtime.loops import LoopName
from eventwire.runtime.publishing import Publisher
from eventwire.runtime.shutdown import signals_set
from eventwire.runtime.stats import AppStats
from eventwire.runtime.subscriber import AckMode, Handler, KeyFn, SubscriberSpec, build_spec
from eventwire.runtime.supervisor import Services, Supervisor
from eventwire.runtime.watching import HealthWatch, WatchPolicy, watch_lag

_log = get_logger("runtime")


class App(ClosesOnExit):
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
        watch: WatchPolicy | None = None,
    ) -> None:
        """``idempotency_store`` (default: in memory, 24 h TTL) is closed with the app;
        ``timing`` injects sleep/clock/randomness for tests; ``watch`` sets how often the
        broker's health (readiness) and the groups' backlog (lag metrics) are read."""
        if shutdown_timeout < 0:
            raise ConfigurationError(f"shutdown_timeout must be >= 0, got {shutdown_timeout}")
        self.broker_url = broker_url
        self.name = name
        self.shutdown_timeout = shutdown_timeout
        self.idempotency_store: IdempotencyStore = idempotency_store or MemoryIdempotencyStore()
        self._timing = timing or Timing()
        self._specs: list[SubscriberSpec] = []
        # Every outcome is counted once, here; stats and /metrics both read these counters.
        self._counters = AppCounters()
        self._metrics = new_recorder(self._counters)
        self._failures = FailureLog(clock=self._timing.clock)
        self._broker: Broker | None = None
        self._publisher = Publisher(lambda: self.broker, counters=self._counters)
        self._supervisor = Supervisor()
        self._http: OpsServer | None = None
        self._watch = watch or WatchPolicy()
        self._health: HealthWatch | None = None  # while run() runs
        self._lag: LagWatch | None = None  # while connected

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
        timeout: float | None = None,
        breaker: BreakerPolicy | None = None,
        transactional: bool = False,
    ) -> Callable[[Handler], Handler]:
        """Register ``async def handler(message, ctx)`` for ``topic``; returns it unchanged.

        ``timeout`` (seconds): a handler call running longer is cancelled and counts as a
        failed attempt (``HandlerTimeoutError``, reason ``timeout``), retried like any other.
        ``breaker``: after ``failure_threshold`` handler failures in a row the subscriber
        stops consuming (no handler call, no fetch, readiness false) and probes with one
        message every ``open_for`` seconds (doubling) until one succeeds.
        ``transactional`` (Kafka; needs a group, concurrency 1): each handler call runs in
        one broker transaction; its ``ctx.publish`` outputs and the input's offset commit
        together when it returns, and are aborted when it raises (then retried as usual).
        """

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
                    timeout=timeout,
                    breaker=breaker,
                    transactional=transactional,
                )
            )
            return handler

        return register

    @property
    def subscribers(self) -> tuple[SubscriberSpec, ...]:
        return tuple(self._specs)

    @property
    def stats(self) -> AppStats:
        return AppStats.of(self._counters)

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
        """True while every subscription exists on the broker, the broker answers its
        health checks and no circuit breaker is open (for ``/readyz``); false while a
        consumer is resubscribing after a broker failure."""
        health = self._health
        return self._supervisor.ready and (health is None or health.healthy)

    def not_ready_reason(self) -> str:
        """Why ``ready`` is false, in a few words (the ``/readyz`` body)."""
        health = self._health
        if health is not None and not health.healthy:
            return f"broker unhealthy: {health.detail}"
        return self._supervisor.not_ready_reason()

    def asgi(self) -> ASGIApp:
        """``/metrics``, ``/healthz`` and ``/readyz`` as an ASGI application, to mount in a
        FastAPI or Starlette service (``api.mount("/ops", app.asgi())``); it answers from
        this app whether or not ``run`` serves them on a port of its own too."""
        return asgi_endpoints(serving.probes_of(self))

    @property
    def http_port(self) -> int | None:
        """The port ``/metrics``, ``/healthz`` and ``/readyz`` are served on while ``run``
        serves them (the real one when ``http_port=0`` picked a free port), else None."""
        return self._http.port if self._http is not None else None

    async def wait_ready(self) -> None:
        """Wait until ``run`` has subscribed every handler."""
        await self._supervisor.wait_ready()

    # -- lifecycle --------------------------------------------------------------------------

    async def connect(self, broker_url: str | None = None) -> None:
        """Open the broker (``broker_url`` overrides the app's); idempotent."""
        if self._broker is not None:
            return
        url = BrokerURL.parse(resolve_broker_url(broker_url or self.broker_url))
        broker = open_broker(url)
        await broker.connect()
        self._broker = broker
        self._supervisor.rebind()  # bound to this event loop (serve() may run many)
        self._lag = await watch_lag(broker, self._subscriber_counters, self._watch)
        _log.info("%s connected to %s", self.name, url)
        self._warn_if_store_is_per_process(url)

    async def aclose(self) -> None:
        """Close the broker (publishers flush first) and the idempotency store."""
        broker, self._broker = self._broker, None
        lag, self._lag = self._lag, None
        try:
            if lag is not None:
                await lag.aclose()
            if broker is not None:
                await broker.aclose()
        finally:
            await self.idempotency_store.aclose()

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

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
        return await self._publisher.send(
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
        return await self._publisher.publish_batch(topic, payloads, key=key)

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
        try:
            async with (
                serving.ops_endpoints(self, http_port, http_host) as self._http,
                HealthWatch(self.broker, self._watch) as self._health,
            ):
                with signals_set(
                    stop, timeout=self.shutdown_timeout, enabled=install_signal_handlers
                ):
                    await self._supervisor.consume(
                        self.broker,
                        self._specs,
                        self._services(),
                        stop=stop,
                        stopping=asyncio.Event(),
                        concurrency=concurrency,
                        shutdown_timeout=self.shutdown_timeout,
                        name=self.name,
                    )
        finally:
            self._http = self._health = None
            self._supervisor.not_ready()
            if owns_connection:
                await self.aclose()

    def _warn_if_store_is_per_process(self, url: BrokerURL) -> None:
        """Say once per connect that an in-memory store cannot suppress what it never saw.

        Its done-marks live in this process only, so a second worker of the group, or this
        one after a restart, handles a redelivered message again. Only ``memory://`` keeps
        every consumer inside the process, so it alone needs no shared store.
        """
        if url.scheme == "memory" or not isinstance(self.idempotency_store, MemoryIdempotencyStore):
            return
        names = sorted({s.name for s in self._specs if s.idempotent})
        if names:
            _log.warning(
                "%s: idempotent=True on %s uses the per-process in-memory store: duplicates"
                " across workers of a group or after a restart are not suppressed; pass"
                " App(idempotency_store=...) a shared store (Redis, PostgreSQL or a SQLite file)",
                self.name,
                ", ".join(names),
            )

    def _subscriber_counters(self) -> list[SubscriberMetrics]:
        counters = self._counters
        return [counters.subscriber(s.topic, s.group, s.name) for s in self._specs]

    def _services(self) -> Services:
        return Services(
            counters=self._counters,
            store=self.idempotency_store,
            publish=self._publisher.publish,
            failures=self._failures,
            timing=self._timing,
        )

    def serve(
        self,
        broker_url: str | None = None,
        concurrency: int | None = None,
        install_signal_handlers: bool = True,
        http_port: int | None = None,
        http_host: str = DEFAULT_HOST,
        *,
        loop: LoopName = "asyncio",
    ) -> int:
        """Run until SIGTERM/SIGINT (``eventwire run``); 0 after a graceful shutdown, 1 if a
        broker or configuration error stopped it (logged, password redacted). ``http_port``
        serves ``/metrics``, ``/healthz`` and ``/readyz`` meanwhile (see ``run``); ``loop``
        picks the event loop: "asyncio" (the default) or "uvloop" (the ``uvloop`` extra)."""

        return serving.serve(
            self,
            broker_url=broker_url,
            concurrency=concurrency,
            install_signal_handlers=install_signal_handlers,
            http_port=http_port,
            http_host=http_host,
            loop=loop,
        )

    def __repr__(self) -> str:
        return f"<App {self.name!r} subscribers={len(self._specs)}>"
