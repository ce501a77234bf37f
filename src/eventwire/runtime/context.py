"""Runtime layer: ``Context``, what a handler gets next to its decoded message."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from eventwire.core.errors import ConfigurationError, PermanentError
from eventwire.core.message import Message
from eventwire.observability.logs import BoundLogger, bind_message, get_logger
from eventwire.reliability.idempotency import (
    Duplicate,
    IdempotencyStore,
    TransactionalIdempotencyStore,
)

_T = TypeVar("_T")
_log = get_logger("runtime")


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


class EffectivelyOnceUnavailableError(ConfigurationError, PermanentError):
    """``ctx.effectively_once`` on a subscriber or store that cannot support it.

    Also a ``PermanentError``: every retry would fail the same way, so the runtime dead-letters
    the message at once (with this error in its headers) instead of retrying it.
    """


@dataclass(frozen=True, slots=True, kw_only=True)
class Completion:
    """What ``ctx.effectively_once`` needs from the runtime: the subscriber's store and scope."""

    store: IdempotencyStore
    scope: str  # the runtime's dedupe scope: the group, or topic#handler for broadcast
    idempotent: bool  # the subscriber's ``idempotent=``: the runtime checks the store first


class Context:
    """The delivery being handled: raw message, attempt, topic, a bound logger and ``publish``.

    ``ctx.publish`` keeps the causal chain: the new message gets the incoming correlation id
    (or the incoming message id when it had none) and the incoming message id as causation id.
    ``ctx.effectively_once(effect)`` commits a database side effect together with this
    message's done-mark (see ``reliability.idempotency``).
    """

    __slots__ = ("_completion", "_logger", "_publish", "attempt", "group", "message", "topic")

    def __init__(
        self,
        *,
        message: Message,
        topic: str,
        group: str | None,
        attempt: int,
        publish: PublishFn,
        completion: Completion | None = None,
        logger: BoundLogger | None = None,
    ) -> None:
        self.message = message
        self.topic = topic
        self.group = group
        self.attempt = attempt  # 1-based; counts in-place retries and broker redeliveries
        self._logger = logger
        self._publish = publish
        self._completion = completion

    @property
    def logger(self) -> BoundLogger:
        """A logger bound to this message's correlation, causation and message ids and its
        topic; made on first use (most handlers never log, and binding costs more than the
        rest of a context)."""
        if self._logger is None:
            self._logger = bind_message(_log, self.message, self.topic)
        return self._logger

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

    async def effectively_once(self, effect: Callable[[Any], _T]) -> _T | Duplicate:
        """Run ``effect(connection)`` and record this message as done in one transaction.

        ``effect`` is a synchronous function of the idempotency store's connection (a
        ``sqlite3.Connection`` for ``SQLiteIdempotencyStore``: its tables live in the store's
        file); it must not commit. After a crash at any moment either the effect and the mark
        were committed together (the redelivery is acked without calling the handler) or
        neither was (the redelivery runs it again, once). Returns the effect's result, or
        ``Duplicate`` when another delivery of this message already completed (the effect did
        not run). Needs ``idempotent=True`` and a ``TransactionalIdempotencyStore``, else
        ``EffectivelyOnceUnavailableError`` (a ``ConfigurationError``, raised before anything
        runs; the message is dead-lettered at once).
        """
        completion = self._completion
        if completion is None or not completion.idempotent:
            raise EffectivelyOnceUnavailableError(
                "ctx.effectively_once needs the subscriber registered with idempotent=True"
            )
        store = completion.store
        if not isinstance(store, TransactionalIdempotencyStore):
            raise EffectivelyOnceUnavailableError(
                f"ctx.effectively_once needs a TransactionalIdempotencyStore (such as "
                f"SQLiteIdempotencyStore) as App(idempotency_store=...); "
                f"{type(store).__name__} cannot commit an effect with its done-mark"
            )
        result: _T | Duplicate = await store.complete_with(
            completion.scope, self.message.id, effect
        )
        if isinstance(result, Duplicate):
            self.logger.info("already completed by another delivery: effect not run again")
        return result

    def __repr__(self) -> str:
        return f"<Context topic={self.topic!r} id={self.message.id!r} attempt={self.attempt}>"
