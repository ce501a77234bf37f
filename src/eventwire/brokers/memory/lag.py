"""Broker layer: the memory broker's backlog per group, read straight from its hub (no I/O)."""

from __future__ import annotations

from eventwire.brokers.memory.broker import MemoryBroker
from eventwire.brokers.memory.state import Group
from eventwire.core.contract import Broker
from eventwire.core.lag import Backlog, LagReader


class MemoryLagReader:
    """Counts what a group of the broker's hub has not acknowledged: unread log entries,
    redeliveries (due or delayed), messages set aside behind a busy key, and what its members
    hold unsettled. The hub is shared memory, so "its own connection" is nothing at all."""

    def __init__(self, broker: MemoryBroker) -> None:
        self._broker = broker

    async def read(self, topic: str, group: str) -> Backlog | None:
        found = self._broker.hub.topics.get(topic)
        state = found.groups.get(group) if found is not None else None
        if found is None or state is None:
            return None
        unread = found.end - max(state._cursor, found.base)
        waiting = unread + len(state.ready) + len(state.delayed)
        waiting += sum(len(queue) for queue in state.blocked.values())
        return Backlog(waiting=waiting, unacked=_held(state))

    async def aclose(self) -> None:
        return None


def _held(group: Group) -> int:
    # A member is a subscription of this package; what it holds is its in-flight set.
    return sum(len(getattr(member, "_in_flight", ())) for member in group.members)


def open_reader(broker: Broker) -> LagReader | None:
    """The reader of a connected ``MemoryBroker``."""
    assert isinstance(broker, MemoryBroker)
    return MemoryLagReader(broker)
