"""Broker layer: a JetStream pull consumer feeding one subscription with deliveries."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from eventwire.brokers._support.envelope import EnvelopeError
from eventwire.brokers._support.errors import translate
from eventwire.brokers.nats.delivery import (
    DeadLetterSink,
    Forget,
    JetStreamDelivery,
    attempt_and_seq,
)
from eventwire.brokers.nats.envelope import from_nats, raw_dead_letter
from eventwire.brokers.nats.errors import NATS
from eventwire.brokers.nats.options import NatsOptions
from eventwire.core import headers as h
from eventwire.core.message import DEAD_LETTER_SUFFIX, Delivery
from eventwire.core.url import BrokerURL

log = logging.getLogger("eventwire.brokers.nats")

# Makes sure the durable/ephemeral consumer exists; returns the pull subject to ask on.
EnsureConsumer = Callable[[int | None], Awaitable[str]]
MAX_DELIVERIES = "max-deliveries"


class PullConsumer:
    """Keeps pull requests open for ``prefetch - unsettled`` messages and hands them out.

    Messages are handed out as they arrive (no waiting for a batch to fill). A new request
    goes out as soon as half the window is free, while the previous one still runs, so a
    steady stream never waits for a request round trip. Requests are short
    (``pull_expires``): when nothing (message or 408) is heard for a second longer, the open
    requests are presumed lost (reconnect, restart) and the consumer is checked, recreated
    if gone.
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
        forget: Forget | None = None,
    ) -> None:
        self.topic = topic
        self.group = group
        self.dead_letter_sink = dead_letter_sink
        self.forget = forget
        self._nc = nc
        self._url = url
        self._options = options
        self._prefetch = prefetch
        self._threshold = max(1, prefetch // 2)
        # Dead letters are never dead-lettered again for being delivered often: every
        # `eventwire dlq list` delivers them once more, and after max_deliver listings they
        # would move to "<topic>.dlq.dlq", out of the operator's sight.
        unlimited = topic.endswith(DEAD_LETTER_SUFFIX)
        self._max_deliver = sys.maxsize if unlimited else options.max_deliver
        self._ensure = ensure_consumer
        self._ready: deque[JetStreamDelivery] = deque()
        self._wakeup = asyncio.Event()  # the iterator: something is ready (or closed)
        self._unsettled: set[JetStreamDelivery] = set()
        self._owed = 0  # messages the open pull requests may still deliver
        self._room = asyncio.Event()  # the pump: enough of the window is free to pull
        self._room.set()
        self._drained = asyncio.Event()  # no pull request is open
        self._drained.set()
        self._heard = 0.0  # last message or status from the server
        self._lost = False
        self._throttle = False  # the server refused a pull (409): pause before the next one
        self._last_stream_seq: int | None = None
        self._closed = False  # the iterator has ended
        self._closing = False  # no new pull requests
        self._inbox = nc.new_inbox()
        self._sub: Subscription | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._side_tasks: set[asyncio.Task[None]] = set()
        self._loop = asyncio.get_running_loop()

    async def start(self) -> None:
        self._pull_subject = await self._ensure(None)
        self._sub = await self._nc.subscribe(self._inbox, cb=self._on_msg)
        self._tasks = [
            asyncio.create_task(self._pump(), name=f"eventwire-nats-pull-{self.topic}"),
            asyncio.create_task(self._watch(), name=f"eventwire-nats-watch-{self.topic}"),
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
            raise translate(NATS, exc, self._url, f"settling a message of {self.topic!r}") from exc
        self._unsettled.discard(delivery)
        self._check_room()

    def _free(self) -> int:
        return self._prefetch - len(self._unsettled) - self._owed

    def _check_room(self) -> None:
        free = self._free()
        if free >= self._threshold or (free > 0 and self._owed == 0):
            self._room.set()

    def _owe_less(self, count: int) -> None:
        self._owed = max(0, self._owed - count)
        if not self._owed:
            self._drained.set()
        self._check_room()

    # -- the broker side ---------------------------------------------------------------
    async def _on_msg(self, msg: Msg) -> None:
        self._heard = self._loop.time()
        headers = msg.headers
        if headers and "Status" in headers and not msg.reply:
            self._on_status(headers)
            return
        self._owed -= 1
        if self._owed <= 0:
            self._owe_less(0)  # the request is fulfilled: maybe room for the next one
        attempt, stream_seq = attempt_and_seq(msg.reply)
        if stream_seq is not None and (self._last_stream_seq or 0) < stream_seq:
            self._last_stream_seq = stream_seq  # redeliveries of older ones must not rewind it
        # Without an id of its own a message is named by its stream sequence: the same on
        # every redelivery, so idempotency holds for foreign producers too.
        fallback = None if stream_seq is None else f"{self.topic}#{stream_seq}"
        try:
            message = from_nats(msg.data, headers, fallback_id=fallback)
        except EnvelopeError as exc:
            self._side(self._dead_letter_unreadable(msg, attempt, stream_seq, str(exc)))
            return
        delivery = JetStreamDelivery(
            msg=msg,
            pull=self,
            message=message,
            attempt=attempt,
            now=self._heard,
        )
        self._unsettled.add(delivery)
        if self._closing:
            return  # arrived while leaving: returned with the others once the pulls are over
        if attempt > self._max_deliver:
            # The broker-level delivery limit: a message that keeps coming back (for example
            # because it crashes its consumer) goes to the DLQ instead of being stranded.
            self._side(self._limit_reached(delivery))
            return
        self._ready.append(delivery)
        self._wakeup.set()

    def _on_status(self, headers: dict[str, str]) -> None:
        status = headers.get("Status")
        if status not in {"404", "408", "409", "503"}:
            return  # 100: heartbeat / flow control, nothing to account
        if status == "503" or "Consumer Deleted" in headers.get("Description", ""):
            # 503 "no responders": the server has no such consumer (or stream) any more.
            self._lost = True  # make the pump check and recreate the consumer
        elif status == "409":
            self._throttle = True  # e.g. "Exceeded MaxWaiting": do not spin
        pending = headers.get("Nats-Pending-Messages")
        # A request ended; it says how much of its batch it did not deliver.
        self._owe_less(int(pending) if pending and pending.isdigit() else self._owed)

    def _side(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)

    async def _dead_letter_unreadable(
        self, msg: Msg, attempt: int, stream_seq: int | None, why: str
    ) -> None:
        """A message eventwire cannot read: its raw form (body unchanged, original headers
        packed when they fit) to the DLQ, then term(); a failure naks it for later."""
        log.warning(
            "NATS %s: unreadable message on %r; dead-lettering it: %s", self._url, self.topic, why
        )
        try:
            dead, _ = raw_dead_letter(
                msg.data or b"",
                _plain_headers(msg.headers),
                why=why,
                topic=self.topic,
                group=self.group,
                attempt=attempt,
                max_payload=self._nc.max_payload,
            )
            await self.dead_letter_sink(dead, stream_seq)
            await msg.term()
        except Exception as exc:  # noqa: BLE001 - DLQ unreachable: try again on redelivery
            log.warning("NATS %s: could not dead-letter an unreadable message: %s", self._url, exc)
            with contextlib.suppress(Exception):
                await msg.nak(delay=self._options.reconnect_max)

    async def _limit_reached(self, delivery: JetStreamDelivery) -> None:
        detail = f"delivered more than {self._options.max_deliver} times"
        try:
            await delivery.dead_letter(MAX_DELIVERIES, headers={h.DLQ_DETAIL: detail})
        except Exception as exc:  # noqa: BLE001  # DLQ unreachable: try again on redelivery
            log.warning(
                "NATS %s: could not dead-letter an over-delivered message: %s", self._url, exc
            )
            with contextlib.suppress(Exception):
                await delivery.nack(delay=self._options.reconnect_max)

    async def _pump(self) -> None:
        opts = self._options
        expires = int(opts.pull_expires * 1e9)
        while not self._closing:
            try:
                await self._room.wait()
                self._room.clear()
                free = self._free()
                if free <= 0 or (free < self._threshold and self._owed > 0):
                    continue
                if not self._nc.is_connected:
                    # Requests buffered during an outage would all land at once afterwards.
                    await asyncio.sleep(opts.reconnect_min)
                    self._room.set()
                    continue
                if self._lost:
                    await self._recover()
                if self._throttle:
                    self._throttle = False
                    await asyncio.sleep(opts.reconnect_min)
                if not self._owed:
                    self._heard = self._loop.time()  # the silence clock starts with a request
                self._owed += free
                self._drained.clear()
                request = json.dumps({"batch": free, "expires": expires}).encode()
                await self._nc.publish(self._pull_subject, request, reply=self._inbox)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001  # keep pulling through outages
                log.warning(
                    "NATS %s: pulling %r failed (%s); retrying",
                    self._url,
                    self.topic,
                    translate(NATS, exc, self._url, "pulling"),
                )
                self._owe_less(self._owed)
                await asyncio.sleep(opts.reconnect_max)

    async def _watch(self) -> None:
        """Presume requests lost after silence; keep held messages leased (in_progress)."""
        opts = self._options
        lease_every = opts.ack_wait / 3
        tick = min(lease_every, opts.pull_expires / 2)
        silence = opts.pull_expires + 1.0  # every request ends with a 408 by then
        last_lease = self._loop.time()
        while not self._closed:
            await asyncio.sleep(tick)
            now = self._loop.time()
            if self._owed and now - self._heard > silence:
                self._lost = True
                self._owe_less(self._owed)
            if now - last_lease >= lease_every:
                last_lease = now
                await self._keep_leases(now - lease_every)

    async def _keep_leases(self, cutoff: float) -> None:
        for delivery in list(self._unsettled):
            if delivery._since <= cutoff and delivery.settled is None:
                try:
                    await delivery._msg.in_progress()
                except Exception:  # noqa: BLE001  # reconnecting; redelivery covers it
                    return
                delivery._since = self._loop.time()

    async def _recover(self) -> None:
        """Requests went unanswered: make sure the consumer exists (recreating it) first."""
        if not self._nc.is_connected:
            await asyncio.sleep(self._options.reconnect_min)
            return
        resume = None if self._last_stream_seq is None else self._last_stream_seq + 1
        self._pull_subject = await self._ensure(resume)
        self._lost = False

    async def aclose(self, *, give_back: bool = True) -> int:
        """Stop, let the open pull requests end, then return every unsettled delivery (nak);
        how many it returned.

        ``give_back=False`` is for a broadcast consumer about to be deleted: nobody else
        could receive what it returns, so leaving does not wait for the requests to end.
        """
        if self._closing:
            return 0
        self._closing = self._closed = True
        self._wakeup.set()
        for task in (*self._tasks, *self._side_tasks):
            task.cancel()
        for task in (*self._tasks, *self._side_tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if give_back and self._owed and self._nc.is_connected:
            # A nak now would hand the message straight back to our still-open request.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drained.wait(), self._options.pull_expires + 1)
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
        returned = list(self._unsettled)
        self._unsettled.clear()
        self._ready.clear()
        if not give_back:
            return 0
        for delivery in returned:
            with contextlib.suppress(Exception):
                await delivery._msg.nak()
        return len(returned)


def _plain_headers(headers: object) -> Mapping[str, str] | None:
    # Whatever nats-py parsed, as text pairs (a hostile block may hold anything).
    if not isinstance(headers, dict):
        return None
    return {str(k): str(v) for k, v in headers.items()}
