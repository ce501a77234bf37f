"""Runtime layer: ``Context``, what a handler gets next to its decoded message."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from eventwire.core.message import Message
from eventwire.observability.logs import BoundLogger


class PublishFn(Protocol):
    """The app's publish, with the envelope fields a context fills in."""

    async def __call__(
        self,
        topic: str,
        payload: object,
        *,
        key: str | None,
        headers: Mapping[str, str] | None,
        correlation_id: str | None,
        causation_id: str | None,
    ) -> Message: ...


class Context:
    """The delivery being handled: raw message, attempt, topic, a bound logger and ``publish``.

    ``ctx.publish`` keeps the causal chain: the new message gets the incoming correlation id
    (or the incoming message id when it had none) and the incoming message id as causation id.
    """

    __slots__ = ("_publish", "attempt", "group", "logger", "message", "topic")

    def __init__(
        self,
        *,
        message: Message,
        topic: str,
        group: str | None,
        attempt: int,
        logger: BoundLogger,
        publish: PublishFn,
    ) -> None:
        self.message = message
        self.topic = topic
        self.group = group
        self.attempt = attempt  # 1-based; counts in-place retries and broker redeliveries
        self.logger = logger
        self._publish = publish

    @property
    def headers(self) -> Mapping[str, str]:
        return self.message.headers

    @property
    def correlation_id(self) -> str:
        return self.message.correlation_id or self.message.id

    async def publish(
        self,
        topic: str,
        payload: object,
        *,
        key: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Message:
        """Publish ``payload`` as a consequence of this message; returns when confirmed."""
        return await self._publish(
            topic,
            payload,
            key=key,
            headers=headers,
            correlation_id=self.correlation_id,
            causation_id=self.message.id,
        )

    def __repr__(self) -> str:
        return f"<Context topic={self.topic!r} id={self.message.id!r} attempt={self.attempt}>"
