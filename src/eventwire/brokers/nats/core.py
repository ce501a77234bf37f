"""Broker layer: the core NATS adapter (``nats+core://``): queue groups, at-most-once."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator

from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as NatsSubscription

from eventwire.brokers._support.envelope import EnvelopeError
from eventwire.brokers._support.errors import translate
from eventwire.brokers._support.subscription import Subscription
from eventwire.brokers.nats.broker import NatsBrokerBase
from eventwire.brokers.nats.connection import subscribed
from eventwire.brokers.nats.envelope import from_nats, raw_dead_letter, to_headers
from eventwire.brokers.nats.errors import NATS
from eventwire.core import headers as h
from eventwire.core.errors import BrokerError, MessageError, PublishError
from eventwire.core.message import Delivery, Message, dead_letter_topic

log = logging.getLogger("eventwire.brokers.nats")


class CoreDelivery(Delivery):
    """A core NATS message: nothing to acknowledge; nack and dead-letter cannot bring it back."""

    __slots__ = ("_broker",)

    def __init__(
        self, *, broker: CoreNatsBroker, message: Message, topic: str, group: str | None
    ) -> None:
        super().__init__(message=message, topic=topic, attempt=1, group=group)
        self._broker = broker

    async def _ack(self) -> None:
        return None

    async def _nack(self, delay: float | None) -> None:
        # At-most-once: core NATS keeps nothing to redeliver (capabilities: redelivery=False).
        log.debug(
            "NATS core: nack of %s on %r drops it (no redelivery)", self.message.id, self.topic
        )

    async def _dead_letter(self, dead: Message) -> None:
        # Best effort only (dead_letter=NONE): a live subscriber of the DLQ subject sees it.
        log.warning(
            "NATS core: dead letter %s of %r published to %r without storage",
            self.message.id,
            self.topic,
            dead_letter_topic(self.topic),
        )
        try:
            await self._broker.publish(dead_letter_topic(self.topic), dead)
        except MessageError as exc:
            # It arrived but cannot be sent on as it is (a body over the profile's limit, which
            # leaves room for headers, or a header NATS would strip): its raw form, as JetStream.
            reason = dead.headers.get(h.DLQ_REASON, "dead-letter")
            original = {k: v for k, v in dead.headers.items() if not k.startswith(h.DLQ_PREFIX)}
            await self._broker.send_raw_dead_letter(
                self.topic,
                self.group,
                dead.body,
                original,
                why=f"{reason}; the message could not be sent on as it is: {exc}",
                reason=reason,
                message_id=dead.id,
            )
        except BrokerError:
            pass


class CoreNatsBroker(NatsBrokerBase):
    """``nats+core://``: subject ``<prefix>.<topic>``; ``group`` becomes a NATS queue group."""

    connection_name = "eventwire-core"

    async def _send(
        self, topic: str, subject: str, prepared: list[tuple[Message, dict[str, str]]]
    ) -> None:
        nc = self.client
        try:
            # Into nats-py's bounded outbound buffer (pending_size), written by its flusher and
            # kept across a reconnect; a full buffer raises. No per-publish flush(): core NATS
            # confirms nothing anyway, and nats-py 2.16 orphans flush() futures on reconnect
            # (and chokes on cancelled ones), which stalled publishers for the whole timeout.
            for message, headers in prepared:
                await nc.publish(subject, message.body, headers=headers)
        except Exception as exc:
            raise PublishError(
                f"publishing {len(prepared)} message(s) to {topic!r} on core NATS failed "
                f"({translate(NATS, exc, self.url, 'publishing')}): treat them as not sent"
            ) from exc

    def _subscribe(self, topic: str, group: str | None, prefetch: int) -> Subscription:
        return _CoreSubscription(self, topic, group, prefetch)

    async def _unreadable(self, topic: str, group: str | None, msg: Msg, why: str) -> None:
        # At-most-once and no dead-letter storage: its raw form goes, best effort, to the
        # DLQ subject (a live reader sees it) and the warning names it; nothing else is hurt.
        log.warning(
            "NATS core: unreadable message on %r dropped to its DLQ subject: %s", topic, why
        )
        headers = {str(k): str(v) for k, v in (msg.headers or {}).items()}
        await self.send_raw_dead_letter(topic, group, msg.data or b"", headers, why=why)

    async def send_raw_dead_letter(
        self,
        topic: str,
        group: str | None,
        body: bytes,
        headers: dict[str, str],
        *,
        why: str,
        reason: str | None = None,
        message_id: str | None = None,
    ) -> None:
        """Publish, best effort, the raw dead letter of ``body``/``headers`` to the DLQ subject."""
        with contextlib.suppress(Exception):
            dead, wire = raw_dead_letter(
                body,
                headers,
                why=why,
                topic=topic,
                group=group,
                attempt=1,
                max_payload=self.client.max_payload,
                message_id=message_id,
            )
            if reason is not None:
                dead = dead.with_headers(**{h.DLQ_REASON: reason})
                wire = to_headers(dead)
            await self.client.publish(
                self.options.subject(dead_letter_topic(topic)), dead.body, headers=wire
            )


class _CoreSubscription:
    """The ``Subscription``: a NATS subscription (with its queue group) feeding a ``_Feed``.
    The broker's own part (same module): its deliveries dead-letter through the broker."""

    def __init__(self, broker: CoreNatsBroker, topic: str, group: str | None, prefetch: int):
        self._broker, self._topic, self._group = broker, topic, group
        self._feed = _Feed(limit=prefetch)
        self._sub: NatsSubscription | None = None
        self._closed = False

    async def open(self) -> AsyncIterator[Delivery]:
        broker, topic, group, feed = self._broker, self._topic, self._group, self._feed

        async def on_msg(msg: Msg) -> None:
            try:
                message = from_nats(msg.data, msg.headers)
            except EnvelopeError as exc:
                await broker._unreadable(topic, group, msg, str(exc))
                return
            await feed.put(CoreDelivery(broker=broker, message=message, topic=topic, group=group))

        client = broker.client
        try:
            self._sub = await client.subscribe(
                broker.options.subject(topic), queue=group or "", cb=on_msg
            )
            await subscribed(client)  # the server has the SUB: publishes reach us now
        except Exception as exc:
            raise translate(NATS, exc, broker.url, f"subscribing to {topic!r}") from exc
        return feed

    async def aclose(self) -> int:
        """Stop the feed; at-most-once, so nothing goes back to the broker (returns 0)."""
        if self._closed:
            return 0
        self._closed = True
        self._feed.close()
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
        return 0


class _Feed:
    """Deliveries pushed by the subscription callback; an iterator that survives cancellation.

    Holds at most ``limit`` (the prefetch): a full feed blocks the callback, so a slow consumer
    backs up into nats-py's bounded per-subscription queue, which drops the overflow and
    reports a slow consumer (at-most-once), instead of this deque growing without bound.
    """

    def __init__(self, *, limit: int) -> None:
        self._ready: deque[Delivery] = deque()
        self._limit = max(1, limit)
        self._wakeup = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._closed = False

    async def put(self, delivery: Delivery) -> None:
        while len(self._ready) >= self._limit and not self._closed:
            self._room.clear()
            await self._room.wait()
        if not self._closed:
            self._ready.append(delivery)
            self._wakeup.set()

    def close(self) -> None:
        self._closed = True
        self._wakeup.set()
        self._room.set()

    def __aiter__(self) -> _Feed:
        return self

    async def __anext__(self) -> Delivery:
        while True:
            if self._ready:
                if len(self._ready) == self._limit:
                    self._room.set()
                return self._ready.popleft()
            if self._closed:
                raise StopAsyncIteration
            self._wakeup.clear()
            await self._wakeup.wait()
