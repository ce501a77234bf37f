"""Reliability layer: reading a topic's dead letters and replaying each one, once, to its group.

A replay reads the dead-letter topic with the ``eventwire-dlq`` group and, for each letter,
publishes the original message back (same id, key, envelope and headers, the
``x-eventwire-dlq-*`` ones removed), confirmed before the letter is acked: a crash in between
replays a letter twice, never zero times.

* **Once per run.** Every message a run sends carries that run's id
  (``x-eventwire-replay-run``). If the handler fails it again while the replay is still
  reading, its new dead letter carries the same run id: the run leaves it in the DLQ instead
  of replaying it again (without this, one letter on a still-broken worker went round up to
  ``--limit`` times). Such letters stay unsettled until the run ends, then stay in the DLQ.
* **Only the group that failed it.** A dead letter names its group (``x-eventwire-dlq-group``);
  the replay is addressed to that group through ``BrokerBase.republish``: the other groups of
  the topic, which had processed the message, ack it unseen. A message that failed in two
  groups has two dead letters and goes back once to each.
* **Same id.** Idempotent handlers recognise the replay; adapters that drop repeated ids on
  publish (SQLite, JetStream) store the replay regardless (see their ``_republish``).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from eventwire.core import headers as h
from eventwire.core.message import DEAD_LETTER_GROUP, dead_letter_topic, new_message_id

if TYPE_CHECKING:
    from eventwire.core.contract import Broker
    from eventwire.core.message import Delivery, Message

READ_AHEAD = 1000  # letters a filtered replay or a purge may hold unsettled while reading
_REPLAY_MARKS = (h.REPLAY_GROUP, h.REPLAY_RUN)


@runtime_checkable
class GroupRepublisher(Protocol):
    """A broker that can address one message to one group of a topic (``BrokerBase`` does)."""

    async def republish(self, topic: str, message: Message, *, group: str | None) -> None: ...


@runtime_checkable
class DeadLetterBrowser(Protocol):
    """A broker that reads a DLQ without changing anything (no group, consumer, stream or
    file is created; nothing is delivered): SQLite, Redis and JetStream do."""

    async def browse_dead_letters(self, topic: str, limit: int) -> list[Message] | None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplayResult:
    """What one replay did."""

    replayed: int = 0
    # Replays per group ("" for letters of broadcast subscribers, sent to every subscriber).
    by_group: Mapping[str, int] = field(default_factory=dict)
    # Letters this run's own replays produced again (the handler still fails): left in place.
    failed_again: int = 0
    # Letters read that the filter did not select: left in place.
    skipped: int = 0


def original(message: Message) -> Message:
    """``message`` as first published: the ``x-eventwire-dlq-*`` headers and the marks of an
    earlier replay removed; id, key, content type, correlation id and other headers kept."""
    kept = {
        k: v
        for k, v in message.headers.items()
        if not k.startswith(h.DLQ_PREFIX) and k not in _REPLAY_MARKS
    }
    return replace(message, headers=kept)


def group_of(message: Message) -> str | None:
    """The group a dead letter came from, or None (a broadcast subscriber, or not recorded)."""
    return message.headers.get(h.DLQ_GROUP) or None


async def next_within(deliveries: AsyncIterator[Delivery], wait: float) -> Delivery | None:
    """The next delivery, or None once none came for ``wait`` seconds (or the stream ended)."""
    try:
        async with asyncio.timeout(wait):
            return await anext(deliveries)
    except (TimeoutError, StopAsyncIteration):
        return None


@asynccontextmanager
async def dead_letter_deliveries(
    broker: Broker, topic: str, *, prefetch: int, wait: float
) -> AsyncIterator[AsyncIterator[Delivery]]:
    """The deliveries of ``topic``'s DLQ to the ``eventwire-dlq`` group, ending once none came
    for ``wait`` seconds; leaving the ``async with`` hands back every unsettled one."""
    async with broker.subscribe(
        dead_letter_topic(topic), group=DEAD_LETTER_GROUP, prefetch=prefetch
    ) as deliveries:

        async def until_quiet() -> AsyncIterator[Delivery]:
            while (delivery := await next_within(deliveries, wait)) is not None:
                yield delivery

        yield until_quiet()


async def read_dead_letters(
    broker: Broker,
    topic: str,
    *,
    limit: int,
    wait: float,
    each: Callable[[Message], Awaitable[None] | None],
) -> int:
    """Call ``each`` on up to ``limit`` dead letters of ``topic`` as they arrive, settling none
    (leaving the subscription hands them back); returns how many were read."""
    read = 0
    async with dead_letter_deliveries(
        broker, topic, prefetch=min(limit, 1000), wait=wait
    ) as deliveries:
        async for delivery in deliveries:
            read += 1
            outcome = each(delivery.message)
            if outcome is not None:
                await outcome
            if read == limit:
                break
    return read


async def list_dead_letters(
    broker: Broker,
    topic: str,
    *,
    limit: int,
    wait: float,
    each: Callable[[Message], Awaitable[None] | None],
) -> int | None:
    """Call ``each`` on up to ``limit`` dead letters of ``topic``, changing nothing: a passive
    read where the broker offers one (None: the topic has no DLQ there), else a subscription
    of the DLQ group that settles nothing. The broker is closed afterwards."""
    try:
        if isinstance(broker, DeadLetterBrowser):
            letters = await broker.browse_dead_letters(topic, limit)
            if letters is None:
                return None
            for letter in letters:
                outcome = each(letter)
                if outcome is not None:
                    await outcome
            return len(letters)
        await broker.connect()
        return await read_dead_letters(broker, topic, limit=limit, wait=wait, each=each)
    finally:
        await broker.aclose()


async def replay_dead_letters(
    broker: Broker,
    topic: str,
    *,
    limit: int,
    wait: float,
    matches: Callable[[Message], bool] | None = None,
) -> ReplayResult:
    """Replay up to ``limit`` dead letters of ``topic`` (those ``matches`` selects; the others
    stay), each once, each to its own group; ends when none arrived for ``wait`` seconds."""
    run = new_message_id()
    replayed = 0
    failed_again = 0
    skipped = 0
    by_group: Counter[str] = Counter()
    send = _sender(broker)
    # Letters the filter leaves unsettled hold their prefetch slot: read further ahead then.
    prefetch = min(limit, 100) if matches is None else READ_AHEAD
    async with dead_letter_deliveries(broker, topic, prefetch=prefetch, wait=wait) as deliveries:
        async for delivery in deliveries:
            letter = delivery.message
            if letter.headers.get(h.REPLAY_RUN) == run:
                # Left unsettled: it returns to the DLQ when the subscription closes.
                failed_again += 1
                continue
            if matches is not None and not matches(letter):
                skipped += 1  # left unsettled: it returns to the DLQ when the subscription closes
                continue
            group = group_of(letter)
            again = original(letter).with_headers(**{h.REPLAY_RUN: run})
            await send(topic, again, group)
            await delivery.ack()
            replayed += 1
            by_group[group or ""] += 1
            if replayed == limit:
                break
    return ReplayResult(
        replayed=replayed, by_group=dict(by_group), failed_again=failed_again, skipped=skipped
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class PurgeResult:
    """What one purge did: letters removed, and letters read but left (not selected)."""

    removed: int = 0
    kept: int = 0


async def purge_dead_letters(
    broker: Broker,
    topic: str,
    *,
    limit: int,
    wait: float,
    matches: Callable[[Message], bool],
) -> PurgeResult:
    """Acknowledge (remove for good) up to ``limit`` dead letters of ``topic`` that
    ``matches`` selects; every other letter read is left unsettled and returns to the DLQ
    when the subscription closes. Ends when none arrived for ``wait`` seconds.

    On a broker that commits offsets rather than single messages (Kafka), a selected letter
    behind a kept one cannot be removed alone: it stays, it is never lost."""
    removed = 0
    kept = 0
    # Letters left unsettled hold their prefetch slot: read far enough ahead to pass them.
    async with dead_letter_deliveries(broker, topic, prefetch=READ_AHEAD, wait=wait) as deliveries:
        async for delivery in deliveries:
            if not matches(delivery.message):
                kept += 1
                continue
            await delivery.ack()
            removed += 1
            if removed == limit:
                break
    return PurgeResult(removed=removed, kept=kept)


def _sender(broker: Broker) -> Callable[[str, Message, str | None], Awaitable[None]]:
    if isinstance(broker, GroupRepublisher):
        target: GroupRepublisher = broker

        async def to_group(topic: str, message: Message, group: str | None) -> None:
            await target.republish(topic, message, group=group)

        return to_group

    async def to_topic(topic: str, message: Message, group: str | None) -> None:
        # A broker outside BrokerBase cannot address a group: every group gets the replay.
        await broker.publish(topic, message)

    return to_topic
