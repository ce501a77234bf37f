"""Broker layer: a JetStream pull consumer feeding one subscription, and its deliveries."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from eventwire.brokers.nats._connection import translate
from eventwire.brokers.nats._envelope import from_nats
from eventwire.brokers.nats._options import NatsOptions
from eventwire.core.message import Delivery, Message
from eventwire.core.url import BrokerURL

log = logging.getLogger("eventwire.brokers.nats")

# Makes sure the durable/ephemeral consumer exists; returns the pull subject to ask on.
EnsureConsumer = Callable[[int | None], Awaitable[str]]
DeadLetterSink = Callable[[Message], Awaitable[None]]
MAX_DELIVERIES = "max-deliveries"


class JetStreamDelivery(Delivery):
    """A JetStream message; ack/nak/term go to its reply subject, progress keeps it leased."""

    __slots__ = ("_msg", "_pull", "_since")

    def __init__(
        self, *, msg: Msg, pull: PullConsumer, message: Message, attempt: int, now: float
    ) -> None:
        super().__init__(message=message, topic=pull.topic, attempt=attempt, group=pull.group)
        self._msg = msg
        self._pull = pull
        self._since = now

    async def _ack(self) -> None:
        await self._pull.settle(self, self._msg.ack)

    async def _nack(self, delay: float | None) -> None:
        await self._pull.settle(self, lambda: self._msg.nak(delay=delay))

    async def _dead_letter(self, dead: Message) -> None:
        async def store_then_term() -> None:
            await self._pull.dead_letter_sink(dead)  # confirmed before the original goes
            await self._msg.term()

        await self._pull.settle(self, store_then_term)


class PullConsumer:
    """Keeps one pull request open for ``prefetch - unsettled`` messages and hands them out.

    Messages are handed out as they arrive (no waiting for a batch to fill), so latency stays
    low at low rates while large batches keep throughput high. Requests are short
    (``pull_expires``); one not ended by the server a second after it should have is presumed
    lost (reconnect, server restart) and the consumer is checked, recreated if gone.
    """

    def __init__(
        self,
        *,
        nc: Client,
        url: BrokerURL,
        options: NatsOptions,
        topic: str,
        group: str | None,
        prefetch: int,
        ensure_consumer: EnsureConsumer,
        dead_letter_sink: DeadLetterSink,
    ) -> None:
        self.topic = topic
        self.group = group
        self.dead_letter_sink = dead_letter_sink
        self._nc = nc
        self._url = url
        self._options = options
        self._prefetch = prefetch
        self._ensure = ensure_consumer
        self._ready: deque[JetStreamDelivery] = deque()
        self._wakeup = asyncio.Event()
        self._unsettled: set[JetStreamDelivery] = set()
        self._capacity = asyncio.Event()
        self._capacity.set()
        self._owed = 0  # messages the open pull request may still deliver
        self._request_over = asyncio.Event()
        self._lost = False
        self._last_stream_seq: int | None = None
        self._closed = False  # the iterator has ended
        self._closing = False  # no new pull requests
        self._inbox = nc.new_inbox()
        self._sub: Subscription | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._loop = asyncio.get_running_loop()

    async def start(self) -> None:
        self._pull_subject = await self._ensure(None)
        self._sub = await self._nc.subscribe(self._inbox, cb=self._on_msg)
        self._tasks = [
            asyncio.create_task(self._pump(), name=f"eventwire-nats-pull-{self.topic}"),
            asyncio.create_task(self._keep_leases(), name=f"eventwire-nats-progress-{self.topic}"),
        ]

    # -- the iterator side -------------------------------------------------------------
    def __aiter__(self) -> PullConsumer:
        return self

    async def __anext__(self) -> Delivery:
        while True:
            if self._ready:
                return self._ready.popleft()
            if self._closed:
                raise StopAsyncIteration
            self._wakeup.clear()
            await self._wakeup.wait()

    async def settle(
        self, delivery: JetStreamDelivery, send: Callable[[], Awaitable[None]]
    ) -> None:
        if delivery not in self._unsettled:
            return  # already returned to the broker when the subscription closed
        try:
            await send()
        except Exception as exc:
            raise translate(exc, self._url, f"settling a message of {self.topic!r}") from exc
        self._release(delivery)

    def _release(self, delivery: JetStreamDelivery) -> None:
        self._unsettled.discard(delivery)
        if len(self._unsettled) < self._prefetch:
            self._capacity.set()

    # -- the broker side ---------------------------------------------------------------
    async def _on_msg(self, msg: Msg) -> None:
        headers = msg.headers
        if headers and "Status" in headers and not msg.reply:
            self._on_status(headers)
            return
        self._owed -= 1
        if self._owed <= 0:
            self._request_over.set()
        attempt, stream_seq = _attempt_and_seq(msg.reply)
        self._last_stream_seq = stream_seq
        delivery = JetStreamDelivery(
            msg=msg,
            pull=self,
            message=from_nats(msg.data, headers),
            attempt=attempt,
            now=self._loop.time(),
        )
        self._unsettled.add(delivery)
        if self._closing:
            return  # arrived while leaving: returned with the others once the pull is over
        if len(self._unsettled) >= self._prefetch:
            self._capacity.clear()
        if attempt > self._options.max_deliver:
            # The broker-level delivery limit: a message that keeps coming back (for example
            # because it crashes its consumer) goes to the DLQ instead of being stranded.
            asyncio.create_task(self._limit_reached(delivery))  # noqa: RUF006
            return
        self._ready.append(delivery)
        self._wakeup.set()

    def _on_status(self, headers: dict[str, str]) -> None:
        if headers.get("Status") in {"404", "408", "409"}:
            if "Consumer Deleted" in headers.get("Description", ""):
                self._lost = True  # make the pump check and recreate the consumer
            self._request_over.set()

    async def _limit_reached(self, delivery: JetStreamDelivery) -> None:
        try:
            await delivery.dead_letter(
                MAX_DELIVERIES,
                headers={
                    "x-eventwire-dlq-detail": f"delivered more than "
                    f"{self._options.max_deliver} times"
                },
            )
        except Exception:
            log.exception("NATS %s: could not dead-letter an over-delivered message", self._url)

    async def _pump(self) -> None:
        opts = self._options
        grace = opts.pull_expires + 1.0  # no 408 by then: the request died with a connection
        while not self._closing:
            try:
                await self._capacity.wait()
                want = self._prefetch - len(self._unsettled)
                if want <= 0:
                    self._capacity.clear()
                    continue
                if self._lost:
                    await self._recover()
                self._owed = want
                self._request_over.clear()
                request = {"batch": want, "expires": int(opts.pull_expires * 1e9)}
                await self._nc.publish(
                    self._pull_subject, json.dumps(request).encode(), reply=self._inbox
                )
                try:
                    await asyncio.wait_for(self._request_over.wait(), grace)
                except TimeoutError:
                    self._lost = True
                    self._request_over.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001  # keep pulling through outages
                self._request_over.set()
                log.warning(
                    "NATS %s: pulling %r failed (%s); retrying",
                    self._url,
                    self.topic,
                    translate(exc, self._url, "pulling"),
                )
                await asyncio.sleep(opts.reconnect_max)

    async def _recover(self) -> None:
        """A pull went unanswered: make sure the consumer exists (recreating it) first."""
        if not self._nc.is_connected:
            await asyncio.sleep(self._options.reconnect_min)
            return
        resume = None if self._last_stream_seq is None else self._last_stream_seq + 1
        self._pull_subject = await self._ensure(resume)
        self._lost = False

    async def _keep_leases(self) -> None:
        """Send in_progress for deliveries held longer than a third of AckWait."""
        period = self._options.ack_wait / 3
        while not self._closed:
            await asyncio.sleep(period)
            cutoff = self._loop.time() - period
            for delivery in list(self._unsettled):
                if delivery._since <= cutoff and delivery.settled is None:
                    try:
                        await delivery._msg.in_progress()
                    except Exception:  # noqa: BLE001  # reconnecting; redelivery covers it
                        break
                    delivery._since = self._loop.time()

    async def aclose(self, *, give_back: bool = True) -> None:
        """Stop, let the open pull request end, then return every unsettled delivery (nak).

        ``give_back=False`` is for a broadcast consumer about to be deleted: nobody else
        could receive what it returns, so leaving does not wait for the request to end.
        """
        if self._closing:
            return
        self._closing = self._closed = True
        self._wakeup.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        waiting = self._owed > 0 and not self._request_over.is_set()
        if give_back and waiting and self._nc.is_connected:
            # A nak now would hand the message straight back to our still-open request.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._request_over.wait(), self._options.pull_expires + 1)
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
        returned = list(self._unsettled)
        self._unsettled.clear()
        self._ready.clear()
        for delivery in returned if give_back else ():
            with contextlib.suppress(Exception):
                await delivery._msg.nak()


def _attempt_and_seq(reply: str | None) -> tuple[int, int | None]:
    """num_delivered and stream sequence from a ``$JS.ACK...`` reply subject (v1 or v2)."""
    if not reply:
        return 1, None
    tokens: list[Any] = reply.split(".")
    if len(tokens) == 9:  # $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>
        return int(tokens[4]), int(tokens[5])
    if len(tokens) >= 12:  # $JS.ACK.<domain>.<hash>.<stream>.<consumer>.<delivered>.<sseq>...
        return int(tokens[6]), int(tokens[7])
    return 1, None
