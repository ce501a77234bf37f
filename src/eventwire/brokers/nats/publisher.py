"""Broker layer: pipelined JetStream publishes, each confirmed by its PubAck on a shared inbox."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from eventwire.core.message import Message

Prepared = list[tuple[Message, dict[str, str]]]  # messages with their NATS headers


class PubAcks:
    """One wildcard reply inbox per connection; ``send`` returns a future of the PubAck.

    Leaner than nats-py's ``publish_async`` (no random token per message, no semaphore task,
    no PubAck dataclass): publishing is the hot path. Futures never time out here; the caller
    waits with a deadline and calls ``forget`` for those it gives up on (their replies, if
    they come late, are ignored). nats-py resubscribes the inbox after a reconnect.
    """

    def __init__(self, nc: Client) -> None:
        self._nc = nc
        self._prefix = nc.new_inbox() + "."
        self._cut = len(self._prefix)
        self._futures: dict[str, asyncio.Future[None]] = {}
        self._next = 0
        self._sub: Subscription | None = None

    async def start(self) -> None:
        self._sub = await self._nc.subscribe(self._prefix + "*", cb=self._on_reply)

    async def send(
        self, subject: str, body: bytes, headers: dict[str, str]
    ) -> tuple[str, asyncio.Future[None]]:
        """Publish with a reply token; the future resolves with the PubAck (or its error)."""
        self._next += 1
        token = str(self._next)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._futures[token] = future
        try:
            await self._nc.publish(subject, body, reply=self._prefix + token, headers=headers)
        except BaseException:
            del self._futures[token]
            raise
        return token, future

    async def send_round(
        self, subject: str, batch: Prepared, deadline: float
    ) -> tuple[Prepared, BaseException | None]:
        """Send ``batch`` once and wait for its PubAcks; the unconfirmed ones and an error."""
        loop = asyncio.get_running_loop()
        sent: list[tuple[str, asyncio.Future[None]]] = []
        failed: Prepared = []
        error: BaseException | None = None
        for index, (message, headers) in enumerate(batch):
            try:
                sent.append(await self.send(subject, message.body, headers))
            except Exception as exc:  # noqa: BLE001  # buffer full or closed: retry later
                failed.extend(batch[index:])
                error = exc
                break
        if isinstance(error, nats.errors.OutboundBufferLimitError):
            # Disconnected and the reconnect buffer is full: no PubAck can come before the
            # reconnect, so the whole batch fails now (the buffered part may still go out).
            for token, _ in sent:
                self.forget(token)
            return batch, error
        if sent:
            # Acks lost in a connection cut never arrive: re-send what is unconfirmed after a
            # while instead of waiting for the whole deadline (Nats-Msg-Id absorbs repeats).
            wait = min(max(0.0, deadline - loop.time()), 5.0 + len(sent) / 5000)
            done, _ = await asyncio.wait([future for _, future in sent], timeout=wait)
            for (token, future), item in zip(sent, batch, strict=False):
                if future not in done or future.cancelled():  # cancelled: aclose() gave up
                    self.forget(token)
                    failed.append(item)
                elif future.exception() is not None:
                    failed.append(item)
                    error = future.exception()
            if error is None and failed:
                error = TimeoutError("no PubAck")
        return failed, error

    def forget(self, token: str) -> None:
        future = self._futures.pop(token, None)
        if future is not None:
            future.cancel()

    async def _on_reply(self, msg: Msg) -> None:
        future = self._futures.pop(msg.subject[self._cut :], None)
        if future is None or future.done():
            return
        headers = msg.headers
        if headers and headers.get("Status") == "503":
            future.set_exception(nats.js.errors.NoStreamResponseError())
            return
        data = msg.data
        if b'"error"' in data:
            response: dict[str, Any] = json.loads(data)
            if "error" in response:
                future.set_exception(nats.js.errors.APIError.from_error(response["error"]))
                return
        future.set_result(None)

    async def aclose(self) -> None:
        for future in self._futures.values():
            future.cancel()
        self._futures.clear()
        if self._sub is not None:
            await self._sub.unsubscribe()
