"""Broker layer: one supervised AMQP connection: backoff reconnects, channel pool, topology replay.

aio-pika's robust connection is not used: its issue tracker reports consumers that are not
restored after a lost (not closed) connection or a stuck one (mosquito/aio-pika#231, #563,
#626) and consumer cancellations never recovered (#334); publishes in flight fail without a
hook to wait and resend.
This supervisor owns the whole cycle instead: dial with credentials passed separately, declare
the recorded topology, reopen the publisher channel pool, then let every live subscription
re-consume, and only then mark the connection ready for publishers waiting on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any, cast

import aio_pika
import aiormq
import aiormq.abc

from eventwire.brokers.rabbitmq import delays, frames
from eventwire.brokers.rabbitmq.errors import describe, translate
from eventwire.brokers.rabbitmq.options import RabbitMQSettings
from eventwire.core.backoff import Backoff

log = logging.getLogger("eventwire.rabbitmq")
frames.install()  # before any connection reads a frame: a hostile header must not kill it


class _ClientNoise(logging.Filter):
    """aiormq logs every failed dial at ERROR and every lost connection with a traceback; this
    adapter already logs one line for each (broker, attempt, next delay, cause). Those records
    are demoted to DEBUG, and dropped unless DEBUG is enabled for their logger."""

    def filter(self, record: logging.LogRecord) -> bool:
        noisy = record.exc_info is not None or record.msg == "error when creating transport: %r"
        if not noisy or record.levelno <= logging.DEBUG:
            return True
        if not logging.getLogger(record.name).isEnabledFor(logging.DEBUG):
            return False
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return True


_NOISE = _ClientNoise()
for _name in ("aiormq.connection", "aio_pika.connection", "aio_pika.robust_connection"):
    if _NOISE not in logging.getLogger(_name).filters:
        logging.getLogger(_name).addFilter(_NOISE)

Restorer = Callable[[aio_pika.abc.AbstractConnection], Awaitable[None]]


class Topology:
    """Exchanges, queues and bindings declared so far; declared again after every reconnect."""

    def __init__(self) -> None:
        self.exchanges: dict[str, str] = {}
        self.queues: dict[str, dict[str, Any]] = {}
        self.bindings: dict[tuple[str, str, str], None] = {}
        # (destination exchange, source exchange, routing key): exchange-to-exchange
        self.exchange_bindings: dict[tuple[str, str, str], None] = {}

    def queue_names(self) -> list[str]:
        return list(self.queues)

    async def declare_exchange(
        self, channel: aiormq.abc.AbstractChannel, name: str, *, force: bool = False
    ) -> None:
        if force or name not in self.exchanges:
            await channel.exchange_declare(exchange=name, exchange_type="topic", durable=True)
            self.exchanges[name] = "topic"

    async def declare_queue(
        self,
        channel: aiormq.abc.AbstractChannel,
        name: str,
        arguments: dict[str, Any],
        bindings: tuple[tuple[str, str], ...] = (),
        *,
        force: bool = False,
    ) -> None:
        """Declare a durable queue bound to (exchange, routing key) pairs and record it.

        Already recorded ones are skipped unless ``force``: a queue can be deleted on the
        broker behind our back, and only a fresh declare brings it back.
        """
        if force or self.queues.get(name) != arguments:
            await channel.queue_declare(queue=name, durable=True, arguments=arguments)
            self.queues[name] = arguments
        for exchange, key in bindings:
            if force or (name, exchange, key) not in self.bindings:
                await channel.queue_bind(queue=name, exchange=exchange, routing_key=key)
                self.bindings[(name, exchange, key)] = None

    async def bind_exchange(
        self,
        channel: aiormq.abc.AbstractChannel,
        destination: str,
        source: str,
        key: str,
        *,
        force: bool = False,
    ) -> None:
        if force or (destination, source, key) not in self.exchange_bindings:
            await channel.exchange_bind(destination=destination, source=source, routing_key=key)
            self.exchange_bindings[(destination, source, key)] = None

    async def declare_delay_levels(
        self, channel: aiormq.abc.AbstractChannel, exchange: str, top: int, *, force: bool
    ) -> None:
        """The delay levels 0..``top`` of ``exchange`` (``delays``), declared once each."""
        deliver = delays.deliver_exchange(exchange)
        await self.declare_exchange(channel, deliver, force=force)
        for level in range(top + 1):
            name = delays.level_exchange(exchange, level)
            below = delays.level_exchange(exchange, level - 1) if level else deliver
            await self.declare_exchange(channel, name, force=force)
            await self.declare_queue(
                channel,
                delays.level_queue(exchange, level),
                delays.level_queue_arguments(exchange, level),
                ((name, delays.bit_pattern(level, "1")),),
                force=force,
            )
            await self.bind_exchange(
                channel, below, name, delays.bit_pattern(level, "0"), force=force
            )

    async def replay(self, channel: aiormq.abc.AbstractChannel) -> None:
        """Declare everything recorded (idempotent on the broker)."""
        for name in self.exchanges:
            await channel.exchange_declare(exchange=name, exchange_type="topic", durable=True)
        for name, arguments in self.queues.items():
            await channel.queue_declare(queue=name, durable=True, arguments=arguments)
        for queue, exchange, key in self.bindings:
            await channel.queue_bind(queue=queue, exchange=exchange, routing_key=key)
        for destination, source, key in self.exchange_bindings:
            await channel.exchange_bind(destination=destination, source=source, routing_key=key)


class RabbitMQConnection:
    """The one connection of a broker object, kept alive until ``aclose``."""

    def __init__(
        self,
        settings: RabbitMQSettings,
        where: str,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.where = where
        self.topology = Topology()
        self.reconnects = 0
        self._sleep = sleep
        self._rng = rng
        cap = settings.max_backoff
        self._backoff = Backoff(initial=min(0.1, cap), cap=cap, jitter=0.5)
        self._conn: aio_pika.abc.AbstractConnection | None = None
        self._pool: list[aiormq.Channel] = []
        self._turn = 0
        self._ready = asyncio.Event()
        self._lost = asyncio.Event()
        self._closing = False
        self._restorers: dict[object, Restorer] = {}
        self._task: asyncio.Task[None] | None = None

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    async def open(self) -> None:
        """First connection: fail fast (translated) when the broker is unreachable."""
        try:
            await self._setup(await self._dial())
        except Exception as exc:
            raise translate(exc, "connecting", self.where, self.settings.password) from exc
        self._task = asyncio.create_task(self._supervise(), name="eventwire-rabbitmq-supervisor")

    async def _dial(self) -> aio_pika.abc.AbstractConnection:
        s = self.settings
        # Credentials go as arguments, never inside a URL string that could reach a log line.
        return await aio_pika.connect(
            host=s.host,
            port=s.port,
            login=s.login,
            password=s.password,
            virtualhost=s.virtualhost,
            ssl=s.ssl,
            timeout=s.connect_timeout,
            client_properties={"connection_name": "eventwire"},
            heartbeat=s.heartbeat,
        )

    async def _setup(self, conn: aio_pika.abc.AbstractConnection) -> None:
        try:
            pool = []
            for _ in range(self.settings.channels):
                channel = await conn.channel(publisher_confirms=True, on_return_raises=True)
                pool.append(cast("aiormq.Channel", await channel.get_underlay_channel()))
            await self.topology.declare_exchange(pool[0], self.settings.exchange)
            await self.topology.replay(pool[0])
            for restore in list(self._restorers.values()):
                await restore(conn)
        except BaseException:
            with contextlib.suppress(Exception):
                await conn.close()
            raise
        self._conn, self._pool = conn, pool
        conn.close_callbacks.add(self._on_close)
        if conn.is_closed:
            # Lost while the last restorer returned: the callback above will never fire.
            self._on_close(conn, None)
            return
        self._ready.set()

    def _on_close(self, _sender: object, exc: BaseException | None = None) -> None:
        if self._closing:
            return
        self._ready.clear()
        self._lost.set()
        log.warning(
            "RabbitMQ connection to %s lost (%s); reconnecting",
            self.where,
            describe(exc, self.settings.password) if exc else "closed",
        )

    def backoff(self, attempt: int) -> float:
        """Seconds before try ``attempt + 1`` (0-based): 0.1 s doubling up to max_backoff,
        x0.5-1 (``core.backoff``)."""
        return self._backoff.delay(attempt + 1, self._rng)

    async def _supervise(self) -> None:
        while not self._closing:
            await self._lost.wait()
            self._lost.clear()
            attempt = 0
            while not self._closing:  # never gives up while the broker object is open
                try:
                    await self._setup(await self._dial())
                except Exception as exc:  # noqa: BLE001 - every failure means "try again later"
                    delay = self.backoff(attempt)
                    log.warning(
                        "RabbitMQ reconnect attempt %d to %s failed (%s); next try in %.2f s",
                        attempt + 1,
                        self.where,
                        describe(exc, self.settings.password),
                        delay,
                    )
                    await self._sleep(delay)
                    attempt += 1
                    continue
                self.reconnects += 1
                log.info("RabbitMQ connection to %s restored", self.where)
                break

    async def wait_ready(self, patience: float) -> aio_pika.abc.AbstractConnection:
        """The live connection, waiting up to ``patience`` s for a reconnect."""
        if not self._ready.is_set():
            async with asyncio.timeout(patience):
                await self._ready.wait()
        assert self._conn is not None
        return self._conn

    async def publish_channel(self, patience: float) -> aiormq.Channel:
        """A confirm-mode channel from the pool (replaced if a channel error closed it)."""
        conn = await self.wait_ready(patience)
        self._turn = (self._turn + 1) % len(self._pool)
        channel = self._pool[self._turn]
        if channel.is_closed:
            fresh = await conn.channel(publisher_confirms=True, on_return_raises=True)
            underlay = await fresh.get_underlay_channel()
            channel = self._pool[self._turn] = cast("aiormq.Channel", underlay)
        return channel

    def add_restorer(self, owner: object, restore: Restorer) -> None:
        self._restorers[owner] = restore

    def remove_restorer(self, owner: object) -> None:
        self._restorers.pop(owner, None)

    async def aclose(self) -> None:
        self._closing = True
        self._ready.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close()
