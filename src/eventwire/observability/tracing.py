"""Observability layer: OpenTelemetry tracing of publishes and handlings (the ``tracing`` extra).

The only module that imports ``opentelemetry``, and only inside functions, so ``import
eventwire`` never loads it. Tracing is off until ``instrument()`` is called (like an
OpenTelemetry instrumentor): the runtime asks ``active()`` once per publish and once per
subscription, and while it answers ``None`` it keeps its untraced path, with no span, no
header and no context switch per message.

What a ``MessageTracer`` does, after the OpenTelemetry messaging semantic conventions:

* publish: a PRODUCER span ``publish <topic>`` (``messaging.operation.type`` ``send``,
  ``messaging.operation.name`` ``publish``) whose context the global propagator writes into
  the message headers: W3C ``traceparent`` and ``tracestate``, and ``baggage``, by default.
  They are plain ``Message.headers``, so every broker carries them, and dead letters keep them.
* handling: a CONSUMER span ``process <topic>`` per delivery, a child of the context read
  from the headers (a chain of services is one trace) and linked to it, as the conventions
  ask of process spans. That context, baggage included, is current while the handler runs:
  its ``ctx.publish`` is a child span and carries the baggage on. A failed attempt that is
  retried is a ``retry`` event and an error status; a dead letter a ``dead_letter`` event
  (reason, dead-letter topic) and an error status ``dead-lettered: <reason>``.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeAlias

from eventwire.core.errors import ConfigurationError
from eventwire.core.message import Delivery, Message, dead_letter_topic

if TYPE_CHECKING:
    from opentelemetry.trace import Span, Tracer

# (delivery, decoded value) -> settles the delivery: one of the runtime's per-subscriber plans.
Step: TypeAlias = Callable[[Delivery, Any], Awaitable[None]]
# The runtime's untraced publish functions (``runtime.publishing.Publisher``'s).
PublishOne: TypeAlias = Callable[..., Awaitable[Message]]
PublishMany: TypeAlias = Callable[..., Awaitable[list[Message]]]

INSTRUMENTATION_NAME = "eventwire"
# messaging.system: the conventions' well-known names where there is one, else the broker.
_SYSTEM_OF_PROFILE = {
    "nats-jetstream": "nats",
    "nats-core": "nats",
    "redis-streams": "redis",
    "redis-pubsub": "redis",
}

_active: MessageTracer | None = None


def messaging_system(profile_name: str) -> str:
    """The ``messaging.system`` of a catalog profile: rabbitmq, kafka, nats, redis, memory..."""
    return _SYSTEM_OF_PROFILE.get(profile_name, profile_name)


def instrument(tracer_provider: object | None = None) -> MessageTracer:
    """Trace the publishes and handlings of every App in this process from now on (a
    subscription started before keeps running untraced). ``tracer_provider``: an
    OpenTelemetry ``TracerProvider``; by default the global one, also when it is set later.
    ``ConfigurationError`` without the ``tracing`` extra or with something else."""
    global _active  # noqa: PLW0603 - one switch for the process, like OpenTelemetry's own
    try:
        from opentelemetry import trace
    except ImportError as exc:
        raise ConfigurationError(
            "tracing needs OpenTelemetry: pip install 'eventwire[tracing]'"
        ) from exc
    provider = trace.get_tracer_provider() if tracer_provider is None else tracer_provider
    if not isinstance(provider, trace.TracerProvider):
        raise ConfigurationError(
            f"tracer_provider must be an OpenTelemetry TracerProvider, got "
            f"{type(provider).__name__}"
        )
    _active = MessageTracer(provider.get_tracer(INSTRUMENTATION_NAME))
    return _active


def uninstrument() -> None:
    """Tracing off for new publishes and subscriptions."""
    global _active  # noqa: PLW0603 - see instrument
    _active = None


def active() -> MessageTracer | None:
    """The tracer ``instrument()`` set, or None: tracing is off."""
    return _active


class MessageTracer:
    """PRODUCER spans around publishes, CONSUMER spans around handlings."""

    def __init__(self, tracer: Tracer) -> None:
        from opentelemetry import context, propagate, trace

        self._tracer = tracer
        self._trace = trace
        self._context = context
        self._propagate = propagate
        self._error = trace.StatusCode.ERROR

    # -- publishing -----------------------------------------------------------------------

    async def traced_publish(
        self,
        publish: PublishOne,
        topic: str,
        payload: object,
        *,
        profile: str,
        headers: Mapping[str, str] | None,
        **options: Any,
    ) -> Message:
        """``publish(topic, payload, headers=..., **options)`` in a PRODUCER span whose
        context travels in the message headers."""
        with self._producer_span(topic, profile) as span:
            carrier = self._carrier()
            sent = await publish(
                topic,
                self._with_trace_headers(payload, carrier),
                headers={**(headers or {}), **carrier},
                **options,
            )
            span.set_attributes(_message_attributes(sent))
            return sent

    async def traced_publish_batch(
        self,
        publish_batch: PublishMany,
        topic: str,
        payloads: Iterable[object],
        *,
        profile: str,
        **options: Any,
    ) -> list[Message]:
        """``publish_batch`` in one PRODUCER span, its context in every message."""
        with self._producer_span(topic, profile) as span:
            carrier = self._carrier()
            sent = await publish_batch(
                topic,
                [self._with_trace_headers(p, carrier) for p in payloads],
                headers=carrier,
                **options,
            )
            span.set_attribute("messaging.batch.message_count", len(sent))
            return sent

    # -- handling -------------------------------------------------------------------------

    def traced_step(self, step: Step, *, topic: str, group: str | None, profile: str) -> Step:
        """``step`` in a CONSUMER span per delivery, a child of (and linked to) the producer
        context its headers carry; that context, baggage included, is current meanwhile."""
        trace, context, extract = self._trace, self._context, self._propagate.extract
        start_span = self._tracer.start_as_current_span
        name, kind = f"process {topic}", trace.SpanKind.CONSUMER
        base = _destination(messaging_system(profile), topic, "process", "process")
        if group is not None:
            base["messaging.consumer.group.name"] = group

        async def traced(delivery: Delivery, value: Any) -> None:
            message = delivery.message
            parent = extract(message.headers)
            producer = trace.get_current_span(parent).get_span_context()
            token = context.attach(parent)  # baggage too, for the handler's own publishes
            try:
                with start_span(
                    name,
                    kind=kind,
                    attributes={
                        **base,
                        **_message_attributes(message),
                        "eventwire.delivery.attempt": delivery.attempt,
                    },
                    links=[trace.Link(producer)] if producer.is_valid else None,
                ) as span:
                    await step(delivery, value)
                    if delivery.settled is not None:
                        span.set_attribute("eventwire.settlement", delivery.settled)
            finally:
                context.detach(token)

        return traced

    def retried(self, attempt: int, error: BaseException, delay: float, *, in_place: bool) -> None:
        """On the current handling span: attempt ``attempt`` failed; retried after ``delay`` s,
        ``in_place`` (within this handling, whose outcome is still open) or by redelivery
        (this handling ends failed)."""
        span = self._trace.get_current_span()
        span.record_exception(error, attributes={"eventwire.delivery.attempt": attempt})
        span.add_event(
            "retry",
            {
                "eventwire.delivery.attempt": attempt,
                "eventwire.retry.delay_s": delay,
            },
        )
        if not in_place:
            span.set_attribute("error.type", type(error).__name__)
            span.set_status(self._error, f"attempt {attempt} failed: {type(error).__name__}")

    def dead_lettered(
        self, topic: str, reason: str, error: BaseException | None, attempt: int
    ) -> None:
        """On the current handling span: the delivery went to ``topic``'s dead letters."""
        span = self._trace.get_current_span()
        if error is not None:
            span.record_exception(error, attributes={"eventwire.delivery.attempt": attempt})
        span.add_event(
            "dead_letter",
            {
                "eventwire.dead_letter.reason": reason,
                "eventwire.dead_letter.topic": dead_letter_topic(topic),
                "eventwire.delivery.attempt": attempt,
            },
        )
        span.set_attribute("error.type", type(error).__name__ if error is not None else reason)
        span.set_status(self._error, f"dead-lettered: {reason}")

    def failed(self, error: BaseException) -> None:
        """On the current handling span: the handler failed and is not retried (ack=before)."""
        span = self._trace.get_current_span()
        span.record_exception(error)
        span.set_attribute("error.type", type(error).__name__)
        span.set_status(self._error, f"handler failed: {type(error).__name__}")

    # -- helpers --------------------------------------------------------------------------

    def _producer_span(self, topic: str, profile: str) -> AbstractContextManager[Span]:
        return self._tracer.start_as_current_span(
            f"publish {topic}",
            kind=self._trace.SpanKind.PRODUCER,
            attributes=_destination(messaging_system(profile), topic, "send", "publish"),
        )

    def _carrier(self) -> dict[str, str]:
        carrier: dict[str, str] = {}
        self._propagate.inject(carrier)
        return carrier

    def _with_trace_headers(self, payload: object, carrier: Mapping[str, str]) -> object:
        """A ``Message`` payload keeps its own headers over the publish's: its trace headers
        (a re-published delivery carries its producer's) are replaced with this publish's."""
        if not isinstance(payload, Message):
            return payload
        fields = self._propagate.get_global_textmap().fields
        kept = {k: v for k, v in payload.headers.items() if k not in fields}
        return replace(payload, headers={**kept, **carrier})


def _destination(system: str, topic: str, operation_type: str, operation: str) -> dict[str, Any]:
    return {
        "messaging.system": system,
        "messaging.destination.name": topic,
        "messaging.operation.type": operation_type,
        "messaging.operation.name": operation,
    }


def _message_attributes(message: Message) -> dict[str, str | int]:
    attributes: dict[str, str | int] = {
        "messaging.message.id": message.id,
        "messaging.message.body.size": len(message.body),
    }
    if message.correlation_id is not None:
        attributes["messaging.message.conversation_id"] = message.correlation_id
    if message.key is not None:
        attributes["eventwire.message.key"] = message.key
    return attributes


def current_trace_ids() -> tuple[str, str] | None:
    """``(trace_id, span_id)`` in hex of the current span, for log lines; None when no span
    is current or ``opentelemetry`` was never loaded (a log line never imports it)."""
    if "opentelemetry.trace" not in sys.modules:
        return None
    from opentelemetry import trace

    span_context = trace.get_current_span().get_span_context()
    if not span_context.is_valid:
        return None
    return f"{span_context.trace_id:032x}", f"{span_context.span_id:016x}"
