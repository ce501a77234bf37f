"""Testing layer: deadline-bounded helpers the conformance cases share (no sleep assertions)."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import suppress
from typing import Literal, TypeAlias

from eventwire.core.message import Delivery, Message
from eventwire.testing.helpers import wait_until

Settle: TypeAlias = Literal["ack", "nack", "none"]
_UNSAFE = re.compile(r"[^a-zA-Z0-9_-]+")


def _slug(name: str, limit: int) -> str:
    return _UNSAFE.sub("-", name).strip("-")[:limit] or "case"


# This process's runs of the suite: another worktree or CI clone running the same case on the
# same shared server at the same time has topics of another prefix, so clean-ups by prefix
# (``case_prefix``) never delete what a concurrent run is using.
_RUN = uuid.uuid4().hex[:6]


def case_prefix(case_name: str) -> str:
    """The start of every topic ``topic_for(case_name)`` gives in this process, and of
    nothing else (the run token and the closing dot keep other runs and cases out)."""
    return f"ewc.{_slug(case_name, 60)}.{_RUN}."


def topic_for(case_name: str, label: str | None = None) -> str:
    """A topic no other case (or earlier run against the same server) uses; ``label`` names
    a case's further topics, which keep the case's prefix."""
    middle = f"{_slug(label, 20)}." if label else ""
    return f"{case_prefix(case_name)}{middle}{uuid.uuid4().hex[:10]}"


def group_for(label: str = "g") -> str:
    """A consumer group name unique to this run."""
    return f"ewc-{_slug(label, 30)}-{uuid.uuid4().hex[:10]}"


def make_messages(count: int, *, prefix: str = "m", key: str | None = None) -> list[Message]:
    """``count`` messages with bodies ``prefix-0`` .. and unique ids."""
    return [Message(body=f"{prefix}-{i}".encode(), key=key) for i in range(count)]


def ids(items: Iterable[Delivery | Message]) -> list[str]:
    """Message ids of deliveries or messages, in order."""
    return [i.message.id if isinstance(i, Delivery) else i.id for i in items]


async def next_delivery(
    iterator: AsyncIterator[Delivery],
    timeout: float,  # noqa: ASYNC109 - the deadline turns into a readable AssertionError
) -> Delivery:
    """The next delivery, or an AssertionError naming the wait if none comes within timeout."""
    try:
        async with asyncio.timeout(timeout):
            return await anext(iterator)
    except TimeoutError:
        raise AssertionError(f"no delivery within {timeout:.1f} s") from None
    except StopAsyncIteration:
        raise AssertionError("subscription ended while a delivery was expected") from None


async def collect(
    iterator: AsyncIterator[Delivery],
    count: int,
    timeout: float,  # noqa: ASYNC109 - the deadline turns into a readable AssertionError
    *,
    settle: Settle = "ack",
) -> list[Delivery]:
    """Exactly ``count`` deliveries within ``timeout`` (settled as asked), else AssertionError."""
    return await _gather(
        iterator,
        lambda got: len(got) >= count,
        timeout,
        settle,
        timed_out=lambda n: f"got {n} of {count} deliveries within {timeout:.1f} s",
        ended=lambda n: f"subscription ended after {n} of {count} deliveries",
    )


async def collect_until(
    iterator: AsyncIterator[Delivery],
    done: Callable[[list[Delivery]], bool],
    timeout: float,  # noqa: ASYNC109 - the deadline turns into a readable AssertionError
    *,
    settle: Settle = "ack",
) -> list[Delivery]:
    """Deliveries until ``done(received)`` is true, within ``timeout``, else AssertionError."""
    return await _gather(
        iterator,
        done,
        timeout,
        settle,
        timed_out=lambda n: f"condition not met within {timeout:.1f} s after {n} deliveries",
        ended=lambda n: f"subscription ended after {n} deliveries",
    )


async def _gather(
    iterator: AsyncIterator[Delivery],
    done: Callable[[list[Delivery]], bool],
    timeout: float,  # noqa: ASYNC109 - the deadline turns into a readable AssertionError
    settle: Settle,
    *,
    timed_out: Callable[[int], str],
    ended: Callable[[int], str],
) -> list[Delivery]:
    got: list[Delivery] = []
    try:
        async with asyncio.timeout(timeout):
            while not done(got):
                delivery = await anext(iterator)
                got.append(delivery)
                await _settle(delivery, settle)
    except TimeoutError:
        raise AssertionError(timed_out(len(got))) from None
    except StopAsyncIteration:
        raise AssertionError(ended(len(got))) from None
    return got


async def expect_nothing(iterator: AsyncIterator[Delivery], within: float) -> None:
    """Assert no delivery arrives within ``within`` seconds (an absence can only be watched)."""
    try:
        async with asyncio.timeout(within):
            delivery = await anext(iterator)
    except (TimeoutError, StopAsyncIteration):
        return
    raise AssertionError(f"unexpected delivery {delivery!r}")


async def _settle(delivery: Delivery, settle: Settle) -> None:
    if settle == "ack":
        await delivery.ack()
    elif settle == "nack":
        await delivery.nack()


class Collector:
    """Consumes a subscription in a background task, recording and settling each delivery.

    ``handler`` may settle the delivery itself (anything it leaves open is acked, unless
    ``settle`` says otherwise). Use ``await collector.wait_for_ids(expected, timeout)``.
    """

    def __init__(
        self,
        iterator: AsyncIterator[Delivery],
        *,
        handler: Callable[[Delivery], Awaitable[None]] | None = None,
        settle: Settle = "ack",
        name: str = "collector",
    ) -> None:
        self.received: list[Delivery] = []
        self.name = name
        self._iterator = iterator
        self._handler = handler
        self._settle = settle
        self._task = asyncio.get_running_loop().create_task(self._run(), name=name)
        self.error: Exception | None = None

    @property
    def ended(self) -> bool:
        """True once the subscription's iterator stopped (or the collector was stopped)."""
        return self._task.done()

    def acked_ids(self) -> list[str]:
        return [d.message.id for d in self.received if d.settled == "ack"]

    async def _run(self) -> None:
        try:
            async for delivery in self._iterator:
                self.received.append(delivery)
                if self._handler is not None:
                    await self._handler(delivery)
                if delivery.settled is None:
                    await _settle(delivery, self._settle)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - reported by wait_*/stop(), not lost in the task
            self.error = exc

    async def wait_for_ids(self, expected: Iterable[str], timeout: float) -> None:  # noqa: ASYNC109
        """Until every id in ``expected`` was acked by this collector."""
        wanted = set(expected)
        await wait_until(
            lambda: self._check() and wanted <= set(self.acked_ids()),
            timeout,
            what=f"{self.name}: {len(wanted)} acked messages",
        )

    async def wait_for_count(self, count: int, timeout: float) -> None:  # noqa: ASYNC109
        """Until at least ``count`` deliveries were received."""
        await wait_until(
            lambda: self._check() and len(self.received) >= count,
            timeout,
            what=f"{self.name}: {count} deliveries",
        )

    async def wait_until_union(
        self,
        other: Collector,
        expected: Iterable[str],
        timeout: float,  # noqa: ASYNC109 - polls with a deadline, reported as AssertionError
    ) -> None:
        """Until this and ``other`` together acked every id in ``expected``."""
        wanted = set(expected)
        await wait_until(
            lambda: (
                self._check()
                and other._check()
                and wanted <= {*self.acked_ids(), *other.acked_ids()}
            ),
            timeout,
            what=f"{self.name} + {other.name}: {len(wanted)} acked messages",
        )

    def _check(self) -> bool:
        if self.error is not None:
            raise AssertionError(f"{self.name} failed: {self.error!r}") from self.error
        return True

    async def wait_ended(self, timeout: float) -> None:  # noqa: ASYNC109
        """Until the iterator has stopped by itself (for example after ``aclose()``)."""
        await wait_until(lambda: self.ended, timeout, what=f"{self.name} to end")
        self._check()

    async def stop(self) -> None:
        """Cancel the background task; raise what it failed with, if anything."""
        if not self._task.done():
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
        self._check()


def union_ids(*collectors: Collector) -> list[str]:
    """Acked ids across collectors (with duplicates, so callers can check for them)."""
    return [i for c in collectors for i in c.acked_ids()]
