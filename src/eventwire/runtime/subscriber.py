"""Runtime layer: ``SubscriberSpec``, one ``@app.subscriber`` registration checked up front."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

from eventwire.brokers._support.lifecycle import validate_topic
from eventwire.core.errors import ConfigurationError
from eventwire.core.message import Message
from eventwire.reliability.circuit_breaker import BreakerPolicy
from eventwire.reliability.retry import RetryPolicy
from eventwire.serialization.codec import Decoder, decoder_for

Handler: TypeAlias = Callable[..., Awaitable[None]]
KeyFn: TypeAlias = Callable[[Any], object]
AckMode: TypeAlias = Literal["after", "before"]


@dataclass(frozen=True, slots=True, kw_only=True)
class SubscriberSpec:
    """What to consume, how to decode it, and the policies to apply to each delivery."""

    topic: str
    group: str | None
    handler: Handler = field(repr=False)
    decoder: Decoder = field(repr=False)
    wants_context: bool
    concurrency: int = 1
    prefetch: int | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    ordered_by: str | KeyFn | None = None
    idempotent: bool = False
    ack: AckMode = "after"
    timeout: float | None = None  # seconds a handler call may run before it is cancelled
    breaker: BreakerPolicy | None = None  # pause consuming while the downstream fails
    transactional: bool = False  # each handler call in one broker transaction (Kafka)

    @property
    def name(self) -> str:
        return getattr(self.handler, "__qualname__", repr(self.handler))

    def effective_prefetch(self, concurrency: int) -> int:
        """Unsettled deliveries allowed at once: enough to keep every handler task busy
        (one for a transactional subscriber: its transactions run one at a time anyway)."""
        if self.prefetch is None and self.transactional:
            return 1
        return self.prefetch if self.prefetch is not None else max(2 * concurrency, 10)

    def key_of(self, value: object, message: Message) -> str | None:
        """The ordering key of a decoded message (``None``: no per-key order).

        A field name is looked up as an attribute, then as a mapping key; when the message has
        no such field the envelope key is used, so undecidable messages still share a lane.
        """
        if self.ordered_by is None:
            return None
        if callable(self.ordered_by):
            found = self.ordered_by(value)
        elif isinstance(value, Mapping):
            found = value.get(self.ordered_by, message.key)
        else:
            found = getattr(value, self.ordered_by, message.key)
        return None if found is None else str(found)


def build_spec(
    handler: Handler,
    *,
    topic: str,
    group: str | None,
    concurrency: int,
    prefetch: int | None,
    retry: RetryPolicy | None,
    ordered_by: str | KeyFn | None,
    idempotent: bool,
    ack: AckMode,
    timeout: float | None = None,
    breaker: BreakerPolicy | None = None,
    transactional: bool = False,
) -> SubscriberSpec:
    """Check a registration and pick its decoder; ``ConfigurationError`` says what to fix."""
    validate_topic(topic)
    if group is not None:
        validate_topic(group, what="group")
    if not inspect.iscoroutinefunction(handler):
        raise ConfigurationError(f"handler {handler!r} must be an async function (async def)")
    if concurrency < 1:
        raise ConfigurationError(f"concurrency must be at least 1, got {concurrency}")
    if prefetch is not None and prefetch < 1:
        raise ConfigurationError(f"prefetch must be at least 1, got {prefetch}")
    if timeout is not None and not timeout > 0:
        raise ConfigurationError(f"timeout must be a positive number of seconds, got {timeout}")
    if ack not in ("after", "before"):
        raise ConfigurationError(f"ack must be 'after' or 'before', got {ack!r}")
    if transactional:
        check_transactional(
            topic, group=group, concurrency=concurrency, idempotent=idempotent, ack=ack
        )
    params = list(inspect.signature(handler).parameters.values())
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if not 1 <= len(positional) <= 2:
        raise ConfigurationError(
            f"handler {handler.__qualname__} must take (message) or (message, ctx), "
            f"it takes {len(positional)} positional parameters"
        )
    try:
        # Extras kept: ``Annotated[Model, codec]`` names a schema codec (decoder_for reads it).
        hints = typing.get_type_hints(handler, include_extras=True)
    except Exception as exc:  # any failure here means an unresolvable annotation
        raise ConfigurationError(
            f"cannot resolve the annotations of {handler.__qualname__}: {exc}"
        ) from exc
    first = positional[0].name
    decoder = decoder_for(hints[first]) if first in hints else decoder_for()
    return SubscriberSpec(
        topic=topic,
        group=group,
        handler=handler,
        decoder=decoder,
        wants_context=len(positional) == 2,
        concurrency=concurrency,
        prefetch=prefetch,
        retry=retry or RetryPolicy(),
        ordered_by=ordered_by,
        idempotent=idempotent,
        ack=ack,
        timeout=timeout,
        breaker=breaker,
        transactional=transactional,
    )


def check_transactional(
    topic: str, *, group: str | None, concurrency: int, idempotent: bool, ack: AckMode
) -> None:
    """Refuse a ``transactional=True`` registration that cannot be exactly-once.

    A transaction commits the input's offset for a group, so it needs one; the offset of a
    partition can only be committed past finished lower offsets and a broker runs its
    transactions one at a time, so concurrency must be 1. ``ack="before"`` would commit the
    offset outside the transaction. ``idempotent=True`` would skip a redelivered message the
    store marks done (by ``ctx.effectively_once``) although its transaction aborted or never
    committed: its outputs would be lost.
    """
    where = f"transactional=True on {topic!r}"
    if group is None:
        raise ConfigurationError(f"{where} needs a group (the transaction commits its offset)")
    if concurrency != 1:
        raise ConfigurationError(
            f"{where} needs concurrency=1, got {concurrency} (transactions run one at a time)"
        )
    if ack != "after":
        raise ConfigurationError(
            f"{where} cannot use ack='before' (the offset commits with the outputs)"
        )
    if idempotent:
        raise ConfigurationError(
            f"{where} cannot be idempotent=True "
            "(a done-mark could skip the outputs of an aborted transaction)"
        )
