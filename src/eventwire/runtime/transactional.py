"""Runtime layer: ``transactional=True`` subscribers: each handler call inside one broker
transaction (``broker.transaction(delivery)``, Kafka's consume-transform-produce).

The handler's ``ctx.publish`` goes straight to the transaction (never through the app's
coalescing ``Publisher``, whose batch may be sent by another task outside it). The
transaction commits the outputs and the input's offset together when the handler returns,
and settles the delivery (acked); when the handler raises it is aborted, its outputs never
become visible to ``read_committed`` readers, and the delivery stays open for the normal
retry / dead-letter policy.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Protocol, TypeAlias

from eventwire.core.contract import Broker
from eventwire.core.errors import ConfigurationError
from eventwire.core.message import Delivery, Message
from eventwire.runtime.context import PublishFn
from eventwire.runtime.publishing import build_message
from eventwire.runtime.subscriber import SubscriberSpec


class TransactionPublisher(Protocol):
    """What a broker's transaction offers the runtime (``brokers.kafka.Transaction``)."""

    async def publish(self, topic: str, *messages: Message) -> None: ...


Transactions: TypeAlias = Callable[[Delivery], AbstractAsyncContextManager[TransactionPublisher]]


def transactions_of(broker: Broker, specs: Sequence[SubscriberSpec]) -> Transactions | None:
    """The broker's ``transaction`` when a spec is transactional; ``ConfigurationError``
    before anything is consumed when the broker has none."""
    wanted = [s for s in specs if s.transactional]
    if not wanted:
        return None
    transaction = getattr(broker, "transaction", None)
    if not callable(transaction):
        raise ConfigurationError(
            f"transactional=True on {wanted[0].topic!r} needs a broker with transactions "
            f"(Kafka); {broker.profile.name} has none"
        )
    found: Transactions = transaction
    return found


def publishing_into(tx: TransactionPublisher) -> PublishFn:
    """A ``PublishFn`` (what ``ctx.publish`` calls) that produces inside ``tx``."""

    async def publish(
        topic: str,
        payload: object,
        *,
        key: str | None,
        headers: Mapping[str, str] | None,
        correlation_id: str | None,
        causation_id: str | None,
    ) -> Message:
        message = build_message(
            payload,
            key=key,
            headers=headers,
            correlation_id=correlation_id,
            causation_id=causation_id,
        )
        await tx.publish(topic, message)
        return message

    return publish
