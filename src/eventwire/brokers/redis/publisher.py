"""Broker layer: the Redis publish path: concurrent publish calls share pipelines (group commit)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio.client import Pipeline

from eventwire.brokers._support.errors import translate
from eventwire.brokers.redis.connection import log, retry_streak
from eventwire.brokers.redis.errors import REDIS, REDIS_ERRORS, describe, is_transient
from eventwire.brokers.redis.link import RedisLink
from eventwire.core.errors import ClosedError, PublishError
from eventwire.core.message import Message

_MAX_COMMANDS = 1000  # per pipeline; one publish call is never split


def _new_future() -> asyncio.Future[None]:
    return asyncio.get_running_loop().create_future()


@dataclass(eq=False, slots=True)
class _Call:
    """One publish() call waiting for Redis: its encoded messages and its caller's future."""

    topic: str
    encoded: list[Any]
    deadline: float
    future: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class PublishQueue:
    """Every publish call joins a FIFO queue; one sender task writes whatever is waiting as
    one pipeline (up to 1,000 commands) and resolves each call with its own replies.

    Concurrent single-message publishes thus cost one round trip per batch, not per
    message, and never open a connection each. A call returns only once Redis replied to
    every one of its commands. During an outage the sender retries with capped backoff;
    calls whose ``publish_timeout`` passes fail with ``PublishError`` (at most
    ``max_buffered`` messages wait; more fail at once). A batch that reached Redis just
    before the connection dropped is sent again: duplicates, never losses (at-least-once).
    """

    def __init__(
        self,
        link: RedisLink,
        *,
        encode: Callable[[tuple[Message, ...]], list[Any]],
        queue_publish: Callable[[Pipeline, str, list[Any]], None],
    ) -> None:
        # ``encode`` turns messages into wire form once (a retried publish is not encoded
        # again); ``queue_publish`` adds one call's commands to a pipeline (XADD on Streams,
        # PUBLISH on Pub/Sub).
        self._link = link
        self._encode = encode
        self._queue_publish = queue_publish
        self._queue: list[_Call] = []
        self._waiting = 0  # messages in calls not yet answered
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._sender: asyncio.Task[None] | None = None
        self._inflight: list[_Call] = []

    async def publish(self, topic: str, messages: tuple[Message, ...]) -> None:
        opts = self._link.options
        if self._waiting and self._waiting + len(messages) > opts.max_buffered:
            raise PublishError(
                f"publish to {topic!r} refused: {self._waiting} messages already wait for "
                f"Redis at {self._link.url} (max_buffered={opts.max_buffered})"
            )
        call = _Call(topic, self._encode(messages), time.monotonic() + opts.publish_timeout)
        self._queue.append(call)
        self._waiting += len(call.encoded)
        self._idle.clear()
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send_loop(), name="eventwire-redis-publish")
        self._wake.set()
        try:
            await call.future  # cancelling the caller cancels the call if not yet sent
        finally:
            self._waiting -= len(call.encoded)
            if not self._waiting:
                self._idle.set()

    async def drain(self, timeout: float) -> None:  # noqa: ASYNC109 - a flush deadline
        """Until every call already made has its answer (or ``timeout`` passed)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout)

    async def aclose(self) -> None:
        for call in self._queue:
            if not call.future.done():
                call.future.set_exception(ClosedError(f"publish to {call.topic!r}: broker closed"))
        self._queue.clear()
        if self._sender is not None:
            self._sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sender

    async def _send_loop(self) -> None:
        try:
            await self._send_forever()
        except Exception as exc:  # noqa: BLE001 - a bug: fail waiting calls, never hang them
            log.exception("redis publisher stopped")
            for call in [*self._inflight, *self._queue]:
                _fail(call, PublishError(f"publishing to {call.topic!r} failed: {exc!r}"), exc)
            self._queue.clear()

    async def _send_forever(self) -> None:
        backoff = retry_streak(self._link.options.backoff_cap)
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                batch = self._inflight = self._take()
                try:
                    replies = await self._send(batch)
                except REDIS_ERRORS as exc:
                    if is_transient(exc):
                        self._queue[:0] = [c for c in batch if not self._expired(c, exc)]
                        await backoff.wait()
                        continue
                    # Not transient: these calls fail, others go on.
                    error = translate(REDIS, exc, self._link.url, "publishing")
                    for call in batch:
                        _fail(call, PublishError(str(error)), exc)
                    continue
                if self._resolve(batch, replies):
                    await backoff.wait()  # a failover reply: those calls wait and go again
                else:
                    backoff.reset()

    def _take(self) -> list[_Call]:
        batch: list[_Call] = []
        size = 0
        while self._queue and (not batch or size + len(self._queue[0].encoded) <= _MAX_COMMANDS):
            call = self._queue.pop(0)
            if not call.future.done():  # a caller gone (cancelled) is not sent any more
                batch.append(call)
                size += len(call.encoded)
        return batch

    async def _send(self, batch: list[_Call]) -> list[Any]:
        pipe = self._link.client.pipeline(transaction=False)
        size = 0
        for call in batch:
            self._queue_publish(pipe, call.topic, call.encoded)
            size += len(call.encoded)
        # Big batches take longer: 1 s per 10,000 commands on top of the reply timeout. Never
        # past the soonest caller's deadline, or a dead connection would keep that caller
        # waiting up to socket_timeout beyond its publish_timeout.
        limit = self._link.options.socket_timeout + size / 10_000
        soonest = min(call.deadline for call in batch) - time.monotonic()
        limit = min(limit, max(soonest, 0.05))
        return await self._link.bounded(pipe.execute(raise_on_error=False), limit)

    def _expired(self, call: _Call, exc: BaseException) -> bool:
        if time.monotonic() < call.deadline:
            return False
        _fail(
            call,
            PublishError(
                f"Redis at {self._link.url} did not come back within "
                f"{self._link.options.publish_timeout} s while publishing to {call.topic!r}: "
                f"{describe(exc, self._link.url)}"
            ),
            exc,
        )
        return True

    def _resolve(self, batch: list[_Call], replies: list[Any]) -> bool:
        """Answer each call from its replies; True if failover replies (READONLY, BUSY...)
        put calls back at the head of the queue to be sent again (whole calls: a call's
        messages that did get in are sent twice, duplicates never losses)."""
        at = 0
        again: list[_Call] = []
        for call in batch:
            mine = replies[at : at + len(call.encoded)]
            at += len(call.encoded)
            failed = next((r for r in mine if isinstance(r, Exception)), None)
            if failed is None:
                if not call.future.done():
                    call.future.set_result(None)
            elif is_transient(failed):
                if not self._expired(call, failed):
                    again.append(call)
            else:
                error = translate(REDIS, failed, self._link.url, f"publishing to {call.topic!r}")
                _fail(call, PublishError(str(error)), failed)
        self._queue[:0] = again
        return bool(again)


def _fail(call: _Call, error: PublishError, cause: BaseException) -> None:
    error.__cause__ = cause
    if not call.future.done():
        call.future.set_exception(error)
