"""Runtime layer: builds the ``Message`` an app publishes from a payload, and publishes it."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any

from eventwire.core.contract import Broker
from eventwire.core.message import Message, new_message_id
from eventwire.observability.metrics import Recorder
from eventwire.runtime.stats import StatsCounter
from eventwire.serialization.codec import encode_payload


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
    return Message(
        body=body,
        id=message_id,
        key=key,
        headers=dict(headers or {}),
        content_type=content_type,
        correlation_id=correlation_id or message_id,
        causation_id=causation_id,
    )


class Publisher:
    """An app's publishing: build the messages, publish them on the app's broker (looked up
    on every call: connecting or closing the app swaps it), count them in stats and metrics."""

    def __init__(
        self, broker: Callable[[], Broker], *, stats: StatsCounter, metrics: Recorder
    ) -> None:
        self._broker = broker
        self._stats = stats
        self._metrics = metrics

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
        message = build_message(
            payload,
            key=key,
            headers=headers,
            correlation_id=correlation_id,
            causation_id=causation_id,
        )
        started = time.perf_counter()
        await self._broker().publish(topic, message)
        self._stats.published += 1
        self._metrics.published(topic, 1, time.perf_counter() - started)
        return message

    async def publish_batch(
        self, topic: str, payloads: Iterable[object], *, key: Callable[[Any], str | None] | None
    ) -> list[Message]:
        """Many payloads in one broker call."""
        messages = [
            build_message(
                p, key=key(p) if key else None, headers=None, correlation_id=None, causation_id=None
            )
            for p in payloads
        ]
        started = time.perf_counter()
        await self._broker().publish(topic, *messages)
        self._stats.published += len(messages)
        self._metrics.published(topic, len(messages), time.perf_counter() - started)
        return messages
