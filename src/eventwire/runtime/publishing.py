"""Runtime layer: payload + envelope options -> the ``Message`` an app publishes."""

from __future__ import annotations

from collections.abc import Mapping

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
    """Encode ``payload`` by type; a ``Message`` payload is sent exactly as given.

    Without a correlation id the message starts a new causal chain: its own id is used, so
    every follow-up published through ``ctx.publish`` shares it.
    """
    if isinstance(payload, Message):
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
