"""Broker layer: a ``Delivery`` whose ack settles synchronously (queued for a batched ack)."""

from __future__ import annotations

from abc import abstractmethod

from eventwire.core.message import Delivery


class QueuedAckDelivery(Delivery):
    """For adapters whose ack only queues an id for a batched acknowledgement (Redis XACK).

    Such an ack has nothing to await, so ``ack()`` settles in place when nobody else is
    settling this delivery: no coroutine per ack on the hot path. The first settle still
    wins, and a settle already in flight makes this one a no-op, as ``Delivery`` promises.
    """

    __slots__ = ()

    async def ack(self) -> None:
        if self._settled is None and not self._settling:
            self._settled = "ack"
            self._ack_now()
            return
        await super().ack()

    async def _ack(self) -> None:
        self._ack_now()

    @abstractmethod
    def _ack_now(self) -> None:
        """Settle as acked without waiting (queue the id; the batch is sent in the background)."""
