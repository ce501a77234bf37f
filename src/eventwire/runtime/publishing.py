"""Runtime layer: payload + envelope options -> the ``Message`` an app publishes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from eventwire.core.message import Message, new_message_id
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
