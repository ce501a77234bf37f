"""Broker layer: the one shape of a subscription, and the context manager that runs it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, MutableSet
from typing import Protocol

from eventwire.core.errors import ClosedError
from eventwire.core.message import Delivery

log = logging.getLogger("eventwire.brokers")


class Subscription(Protocol):
    """One ``subscribe()`` of an adapter, opened and closed by ``BrokerBase``.

    ``open()`` joins the topic (or group) on the broker and returns the iterator of
    deliveries (usually the subscription itself). ``aclose()`` ends that iterator
    (``StopAsyncIteration``, never an error) and gives every unsettled delivery back to the
    broker; it returns how many it gave back, and a second call does nothing and returns 0.
    The broker calls ``aclose()`` on every live subscription when it closes, so it may run
    while a handler still holds a delivery: settling that delivery afterwards is a no-op.
    """

    async def open(self) -> AsyncIterator[Delivery]: ...

    async def aclose(self) -> int: ...


class Opened:
    """``subscribe()``'s context manager for a ``Subscription``: refuses a closed broker,
    connects lazily, and keeps the subscription in ``live`` (the broker's set) while open,
    so that closing the broker closes it; leaving ``async with`` closes it."""

    __slots__ = ("_closed", "_connect", "_live", "_sub", "_topic")

    def __init__(
        self,
        sub: Subscription,
        *,
        topic: str,
        live: MutableSet[Subscription],
        closed: Callable[[], bool],
        connect: Callable[[], Awaitable[None]],
    ) -> None:
        self._sub, self._topic, self._live = sub, topic, live
        self._closed, self._connect = closed, connect

    async def __aenter__(self) -> AsyncIterator[Delivery]:
        if self._closed():
            raise ClosedError(
                f"cannot subscribe to {self._topic!r}: the broker connection is closed"
            )
        await self._connect()
        self._live.add(self._sub)  # before open(): a broker closing meanwhile closes it too
        try:
            return await self._sub.open()
        except BaseException:
            self._live.discard(self._sub)
            await self._sub.aclose()
            raise

    async def __aexit__(self, *exc_info: object) -> None:
        self._live.discard(self._sub)
        await self._sub.aclose()


async def close_all(live: MutableSet[Subscription]) -> int:
    """Close every subscription in ``live`` at once (each may wait for its broker; one
    failing does not keep the others open); returns how many deliveries they gave back."""
    subs = list(live)
    live.clear()
    results = await asyncio.gather(*(sub.aclose() for sub in subs), return_exceptions=True)
    returned = 0
    for result in results:
        if isinstance(result, BaseException):
            log.warning("closing a subscription while closing the broker failed: %s", result)
        else:
            returned += result
    return returned
