"""Runtime layer: builds the ``Message`` an app publishes from a payload, and publishes it
(coalescing concurrent calls into batched broker calls)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from types import MappingProxyType
from typing import Any, TypeAlias

from eventwire.core.contract import Broker
from eventwire.core.errors import MessageError
from eventwire.core.message import Message, new_message_id
from eventwire.observability import tracing
from eventwire.observability.counters import AppCounters
from eventwire.serialization.codec import encode_payload

_NO_HEADERS: Mapping[str, str] = MappingProxyType({})
# What a queued caller awaits: its message, once confirmed.
_Confirm: TypeAlias = "asyncio.Future[Message]"


def build_message(
    payload: object,
    *,
    key: str | None,
    headers: Mapping[str, str] | None,
    correlation_id: str | None,
    causation_id: str | None,
) -> Message:
    """Encode ``payload`` by type; a ``Message`` payload keeps its body and id.

    Without a correlation id the message starts a new causal chain: its own id is used, so
    every follow-up published through ``ctx.publish`` shares it. A ``Message`` payload gets
    the options it does not set itself (key, extra headers, and the correlation/causation ids
    ``ctx.publish`` passes), so re-publishing a raw message from a handler keeps the chain.
    """
    if isinstance(payload, Message):
        if headers or (key is not None and payload.key is None):
            payload = replace(
                payload,
                key=payload.key if payload.key is not None else key,
                headers={**(headers or {}), **payload.headers},
            )
        if correlation_id and payload.correlation_id is None:
            payload = replace(payload, correlation_id=correlation_id)
        if causation_id and payload.causation_id is None:
            payload = replace(payload, causation_id=causation_id)
        return payload
    body, content_type = encode_payload(payload)
    message_id = new_message_id()
    # ``trusted``: ``encode_payload`` returns ``bytes``, and the headers are frozen here (a
    # copy of the caller's, so changing them afterwards cannot change the message).
    return Message.trusted(
        body,
        message_id,
        key,
        MappingProxyType(dict(headers)) if headers else _NO_HEADERS,
        content_type,
        correlation_id or message_id,
        causation_id,
        time.time(),
    )


class Publisher:
    """An app's publishing: build the messages, publish them on the app's broker (looked up
    on every call: connecting or closing the app swaps it), count them once in ``counters``.

    Concurrent ``publish()`` calls to one topic are coalesced (group commit): the first
    caller lets the loop run once (``sleep(0)``, no timer), so that callers already
    scheduled join it, and while one broker call is under way further calls queue; each
    queue goes out as one batched ``broker.publish(topic, *messages)`` (the adapter's
    pipelined or batched path). A lone caller is delayed by that one turn of the loop only.
    Every caller still returns only once its own message is confirmed, and gets its own
    error: when the broker refuses a batch for one message (a ``MessageError``: too large,
    a bad header; checked before anything is sent), the batch is sent again message by
    message, so an invalid one fails only its caller; a broker failure fails every caller of
    that batch (all of it is then unconfirmed, as with ``publish_batch``).
    """

    def __init__(self, broker: Callable[[], Broker], *, counters: AppCounters) -> None:
        self._broker = broker
        self._counters = counters
        self._topics: dict[str, _TopicQueue] = {}

    async def publish(
        self,
        topic: str,
        payload: object,
        *,
        key: str | None,
        headers: Mapping[str, str] | None,
        correlation_id: str | None,
        causation_id: str | None,
    ) -> Message:
        """One payload (a ``PublishFn``: what ``ctx.publish`` calls), once confirmed."""
        return await self.send(
            topic,
            payload,
            key=key,
            headers=headers,
            correlation_id=correlation_id,
            causation_id=causation_id,
        )

    def send(
        self,
        topic: str,
        payload: object,
        *,
        key: str | None,
        headers: Mapping[str, str] | None,
        correlation_id: str | None,
        causation_id: str | None,
    ) -> Awaitable[Message]:
        """``publish`` as an awaitable made at once (what ``App.publish`` awaits: no
        coroutine of its own per call); in a PRODUCER span while tracing is on
        (``observability.tracing``)."""
        tracer = tracing.active()
        if tracer is not None:
            return tracer.traced_publish(
                self._publish,
                topic,
                payload,
                profile=self._broker().profile.name,
                key=key,
                headers=headers,
                correlation_id=correlation_id,
                causation_id=causation_id,
            )
        return self._publish(
            topic,
            payload,
            key=key,
            headers=headers,
            correlation_id=correlation_id,
            causation_id=causation_id,
        )

    def _publish(
        self,
        topic: str,
        payload: object,
        *,
        key: str | None,
        headers: Mapping[str, str] | None,
        correlation_id: str | None,
        causation_id: str | None,
    ) -> Awaitable[Message]:
        """``publish`` without tracing: build the message and send it coalesced; awaiting
        what this returns gives the message once confirmed.

        Not a coroutine itself: a caller joining a queue awaits its own future directly,
        one coroutine object fewer per call (with a thousand callers alive at once, every
        object more is also more for the garbage collector to walk)."""
        message = build_message(
            payload,
            key=key,
            headers=headers,
            correlation_id=correlation_id,
            causation_id=causation_id,
        )
        queue = self._topics.get(topic)
        if queue is not None:  # a call of this topic is forming or under way: join its queue
            confirmed: _Confirm = asyncio.get_running_loop().create_future()
            queue.messages.append(message)
            queue.confirms.append(confirmed)
            return confirmed
        queue = self._topics[topic] = _TopicQueue()
        return self._lead(topic, queue, message)

    async def _lead(self, topic: str, queue: _TopicQueue, message: Message) -> Message:
        """The first caller of ``topic`` with nothing in flight: sends its message alone, or
        with the callers that joined meanwhile."""
        try:
            # One turn of the loop (no timer): callers already scheduled, such as the rest
            # of a gather() or other handlers' ctx.publish, join the queue meanwhile.
            await asyncio.sleep(0)
        except BaseException:  # cancelled before sending: the queue still goes out
            self._next_batch(topic, queue)
            raise
        if not queue.messages:  # alone: straight to the broker from this task
            try:
                await self._send(topic, (message,))
            finally:
                self._next_batch(topic, queue)
            return message
        # Others joined: all of them in one broker call, this one first, sent by a task of
        # its own so that cancelling this caller cannot cancel theirs.
        mine: _Confirm = asyncio.get_running_loop().create_future()
        queue.messages.insert(0, message)
        queue.confirms.insert(0, mine)
        self._next_batch(topic, queue)
        return await mine

    async def publish_batch(
        self, topic: str, payloads: Iterable[object], *, key: Callable[[Any], str | None] | None
    ) -> list[Message]:
        """Many payloads in one broker call (one PRODUCER span while tracing is on)."""
        tracer = tracing.active()
        if tracer is not None:
            return await tracer.traced_publish_batch(
                self._publish_batch, topic, payloads, profile=self._broker().profile.name, key=key
            )
        return await self._publish_batch(topic, payloads, key=key, headers=None)

    async def _publish_batch(
        self,
        topic: str,
        payloads: Iterable[object],
        *,
        key: Callable[[Any], str | None] | None,
        headers: Mapping[str, str] | None,
    ) -> list[Message]:
        """``publish_batch`` without tracing; ``headers`` (the trace context) on every one."""
        messages = [
            build_message(
                p,
                key=key(p) if key else None,
                headers=headers,
                correlation_id=None,
                causation_id=None,
            )
            for p in payloads
        ]
        await self._send(topic, messages)
        return messages

    async def _send(self, topic: str, messages: Sequence[Message]) -> None:
        started = time.perf_counter()
        await self._broker().publish(topic, *messages)
        self._counters.record_published(topic, len(messages), time.perf_counter() - started)

    def _next_batch(self, topic: str, queue: _TopicQueue) -> None:
        """After a broker call of ``topic``: send what queued meanwhile, or go idle."""
        if not queue.messages:
            del self._topics[topic]
            return
        messages, confirms = queue.messages[:MAX_COALESCED], queue.confirms[:MAX_COALESCED]
        del queue.messages[:MAX_COALESCED], queue.confirms[:MAX_COALESCED]
        task = asyncio.get_running_loop().create_task(self._flush(topic, queue, messages, confirms))
        queue.flushing = task  # a strong reference until it ends

    async def _flush(
        self, topic: str, queue: _TopicQueue, messages: list[Message], confirms: list[_Confirm]
    ) -> None:
        try:
            await self._deliver(topic, messages, confirms)
        except BaseException:  # cancelled (the loop is closing): so are its callers
            for confirmed in confirms:
                confirmed.cancel()
            raise
        finally:
            queue.flushing = None
            self._next_batch(topic, queue)

    async def _deliver(self, topic: str, messages: list[Message], confirms: list[_Confirm]) -> None:
        """Send ``messages`` in one broker call and settle each caller's future (the
        ``confirms`` of the same index)."""
        try:
            await self._send(topic, messages)
        except MessageError as exc:
            if len(messages) > 1:
                await self._deliver_without_refused(topic, messages, confirms)
            else:
                _settle(messages, confirms, exc)
        except Exception as exc:  # noqa: BLE001 - handed to every caller of the batch
            _settle(messages, confirms, exc)
        else:
            _settle(messages, confirms, None)

    async def _deliver_without_refused(
        self, topic: str, messages: list[Message], confirms: list[_Confirm]
    ) -> None:
        """The broker refused the batch for one of its messages (refusals are checked before
        anything is sent): fail only the callers of invalid ones, send the others again."""
        limit = self._broker().profile.capabilities.max_body_bytes
        valid: list[Message] = []
        valid_confirms: list[_Confirm] = []
        for message, confirmed in zip(messages, confirms, strict=True):
            try:
                message.validate(max_body_bytes=limit)
            except MessageError as exc:
                _settle([message], [confirmed], exc)
            else:
                valid.append(message)
                valid_confirms.append(confirmed)
        if len(valid) < len(messages):
            if valid:
                await self._deliver(topic, valid, valid_confirms)
            return
        # Refused for a reason this check does not see: one at a time.
        for message, confirmed in zip(messages, confirms, strict=True):
            await self._deliver(topic, [message], [confirmed])


def _settle(messages: list[Message], confirms: list[_Confirm], error: Exception | None) -> None:
    for message, confirmed in zip(messages, confirms, strict=True):
        if confirmed.done():  # a cancelled caller stopped waiting
            continue
        if error is None:
            confirmed.set_result(message)
        else:
            confirmed.set_exception(error)


MAX_COALESCED = 1_000  # messages per coalesced broker call


class _TopicQueue:
    """The callers of one topic waiting for the broker call under way to return."""

    __slots__ = ("confirms", "flushing", "messages")

    def __init__(self) -> None:
        # Two lists, not one of pairs: a tuple per waiting caller is one object more for
        # the garbage collector to walk while a thousand of them wait.
        self.messages: list[Message] = []
        self.confirms: list[_Confirm] = []
        self.flushing: asyncio.Task[None] | None = None
