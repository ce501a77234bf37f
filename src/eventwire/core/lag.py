"""Core layer: what a broker says a consumer group has not acknowledged yet (``LagReader``).

A ``LagReader`` is opened next to a connected broker (``brokers/<name>/lag.py``), with a
connection of its own, and read periodically by ``observability.lag``: it only reads (no
queue, consumer, group or topic is ever created by reading) and never touches the consume
path. Brokers that keep no backlog (core NATS, Redis Pub/Sub) have no reader.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True, kw_only=True)
class Backlog:
    """One group's backlog on one topic, as the broker reports it.

    ``waiting``: messages the group has not been handed yet (or was handed and got back);
    ``unacked``: handed to a consumer and not acknowledged yet, None where the broker does
    not tell them apart (Kafka: a committed offset covers both) or cannot see them
    (RabbitMQ over AMQP: only the ready count). ``partitions``: the backlog per partition
    where the broker has partitions (Kafka), else empty.
    """

    waiting: int
    unacked: int | None = None
    partitions: Mapping[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        """Messages the group has not acknowledged yet, as far as the broker can tell."""
        return self.waiting + (self.unacked or 0)


class LagReader(Protocol):
    """Reads groups' backlogs from one broker, over its own connection, creating nothing."""

    async def read(self, topic: str, group: str) -> Backlog | None:
        """The backlog of ``group`` on ``topic``; None when the broker has no such group yet
        (nothing subscribed so far). Raises an ``EventwireError`` when the broker cannot be
        read (the caller counts it and tries again later)."""
        ...

    async def aclose(self) -> None: ...
