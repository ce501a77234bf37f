"""Broker layer: a Redis Streams consumer-group subscription (XREADGROUP, XACK, XAUTOCLAIM)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from logging import ERROR
from typing import Any

from redis import exceptions as rex

from eventwire.brokers._support.envelope import EnvelopeError
from eventwire.brokers.redis.acks import AckBatcher
from eventwire.brokers.redis.connection import log, retry_streak
from eventwire.brokers.redis.envelope import as_fields, from_fields
from eventwire.brokers.redis.errors import TRANSIENT, describe
from eventwire.brokers.redis.link import RedisLink
from eventwire.brokers.redis.pending import PendingWork, consumer_name
from eventwire.brokers.redis.subscription import RedisDelivery, Subscription
from eventwire.core.backoff import BackoffStreak
from eventwire.core.errors import EventwireError
from eventwire.core.message import DEAD_LETTER_GROUP, Message, dead_letter_topic

RECOVERABLE: tuple[type[BaseException], ...] = (rex.ResponseError, *TRANSIENT)


class GroupSubscription(Subscription):
    """One member of a consumer group on one topic's stream.

    * new entries: XREADGROUP ``>`` with COUNT = free prefetch slots (attempt 1);
    * ack: batched into one XACK per round trip by a flusher task (``acks.AckBatcher``;
      ``ack()`` returns once queued; if the process dies first the entry is simply
      redelivered: at-least-once);
    * nack(delay): the entry stays pending and its id goes into a sorted set scored by due
      time; members XCLAIM due ids back (delivery count + 1), see ``scripts.MOVE_DUE``;
    * entries of dead members are reclaimed with XAUTOCLAIM after ``claim_idle``; entries
      this member holds are touched (XCLAIM JUSTID) so slow handlers keep them;
    * dead_letter: XADD to the dead-letter stream, then XACK, in one script (XACK only if
      the XADD succeeded).
    """

    def __init__(self, link: RedisLink, topic: str, group: str, prefetch: int) -> None:
        super().__init__(link, topic=topic, group=group, prefetch=prefetch)
        self._group = group
        self._consumer = consumer_name()
        self._pel = PendingWork(
            link,
            key=self._key,
            schedule=link.schedule_key(topic, group),
            group=group,
            consumer=self._consumer,
        )
        self._acks = AckBatcher(link, key=self._key, group=group, topic=topic)
        # Unreadable entries waiting for the dead-letter stream, by id (taken back twice by a
        # reclaim or recovery while waiting, they are still dead-lettered once).
        self._foreign: dict[bytes, tuple[dict[bytes, bytes], str]] = {}
        self._scheduling: set[bytes] = set()  # nacked, ZADD on the wire right now
        self._replies_lost = False  # a call failed: its reply may have carried entries
        self._poll_wake = asyncio.Event()
        opts = link.options
        self._block_ms = int(opts.block * 1000)
        self._limit = opts.socket_timeout

    async def start(self) -> None:
        await self._link.call(self.ensure_groups, "creating the consumer group")
        self.spawn(self._read_loop, "read")
        self.spawn(self._poll_loop, "poll")
        self.spawn(lambda: self._acks.run(lambda: self.closed), "ack")

    async def ensure_groups(self) -> None:
        """Create the group at id 0 (reads retained history) and the dead-letter group."""
        client = self._link.client
        dlq = self._link.stream_key(dead_letter_topic(self.topic))
        for key, group in ((self._key, self._group), (dlq, DEAD_LETTER_GROUP)):
            try:
                await self._link.bounded(
                    client.xgroup_create(key, group, id="0", mkstream=True), self._limit
                )
            except rex.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    # -- background loops -----------------------------------------------------------------

    async def _read_loop(self) -> None:
        client = self._link.client
        backoff = retry_streak(self._link.options.backoff_cap)
        while not self.closed:
            await self.wait_room()
            if self.closed:
                return
            try:
                if self._replies_lost:
                    await self._recover_own()
                reply = await self._link.bounded(
                    client.xreadgroup(
                        self._group,
                        self._consumer,
                        {self._key: ">"},
                        count=self.room,
                        block=self._block_ms,
                    ),
                    self._link.read_limit,
                )
                backoff.reset()
            except rex.ResponseError as exc:
                await self._on_refusal(exc, backoff, "read")
                continue
            except TRANSIENT as exc:
                self._replies_lost = True
                await self.back_off(backoff, exc, "redis read on %r failed (%s); reconnecting")
                continue
            self._admit_new(reply)
            if self._foreign:
                await self._dead_letter_foreign()

    async def _recover_own(self) -> None:
        busy = self.held.keys() | self._acks.unsent() | self._scheduling
        busy |= self._foreign.keys()
        for entry_id, fields, count in await self._pel.recover_own(busy, self.room):
            self._admit(entry_id, fields, count)
        await self._dead_letter_foreign()
        self._replies_lost = False

    async def _on_refusal(self, exc: rex.ResponseError, backoff: BackoffStreak, doing: str) -> None:
        """Redis refused a command. NOGROUP: the server lost the group (a restart without
        persistence), so create it again. Anything else is logged loudly and retried after
        a backoff: the loops never give up while the app runs."""
        if "NOGROUP" in str(exc):
            log.warning("redis group %r on %r vanished; re-creating it", self._group, self.topic)
            await self._recover(backoff)
            return
        await self.back_off(backoff, exc, f"redis refused the {doing} on %r: %s", ERROR)

    async def _recover(self, backoff: BackoffStreak) -> None:
        try:
            await self.ensure_groups()
        except RECOVERABLE as exc:
            await self.back_off(backoff, exc, "redis group re-creation on %r failed: %s")

    def _admit_new(self, reply: object) -> None:
        """First deliveries of an XREADGROUP reply: ``stream_entries``, ``_admit`` and
        ``admit`` inlined, one wake per reply (the per-message hot path)."""
        held, ready, topic = self.held, self._ready, self.topic
        streams: Any = reply.items() if isinstance(reply, dict) else (reply or ())
        for _name, entries in streams:
            for entry_id, raw in entries:
                if raw is None:  # trimmed while pending (only on re-reads)
                    continue
                fields = raw if type(raw) is dict else as_fields(raw)
                try:
                    message = from_fields(fields)
                except EnvelopeError as exc:
                    self._foreign[entry_id] = (fields, str(exc))
                    continue
                if entry_id not in held and not self.closed:
                    held[entry_id] = delivery = RedisDelivery(self, entry_id, message, topic, 1)
                    ready.append(delivery)
        if ready:
            self._wake()

    def _admit(self, entry_id: bytes, raw: object, attempt: int) -> None:
        """Hand the entry out (synchronous: this runs for every message)."""
        fields = as_fields(raw)
        try:
            message = from_fields(fields)
        except EnvelopeError as exc:
            self._foreign[entry_id] = (fields, str(exc))
            return
        self.admit(RedisDelivery(self, entry_id, message, self.topic, int(attempt)))

    async def _dead_letter_foreign(self) -> None:
        """Entries eventwire cannot read go to the dead-letter stream, bytes kept. A failure
        (Redis gone past ``publish_timeout``, the dead-letter key refused) is logged and the
        entry kept for the next round: raising would stop the calling loop for good."""
        while self._foreign:
            entry_id, (fields, why) = next(iter(self._foreign.items()))
            try:
                await self._link.dead_letter_raw(self.topic, self._group, entry_id, fields, why)
            except EventwireError as exc:
                log.error("redis entry %r on %r not dead-lettered: %s", entry_id, self.topic, exc)
                return
            self._foreign.pop(entry_id, None)

    async def _poll_loop(self) -> None:
        """Move due retries back, reclaim dead members' entries, keep ours alive."""
        link = self._link
        backoff = retry_streak(link.options.backoff_cap)
        every = link.options.poll_interval
        maintain_every = max(every, link.options.claim_idle / 3)
        next_maintain = 0.0
        while not self.closed:
            try:
                if self.room > 0:
                    await self._move_due()
                if time.monotonic() >= next_maintain:
                    await self._maintain()
                    next_maintain = time.monotonic() + maintain_every
                backoff.reset()
            except rex.ResponseError as exc:
                await self._on_refusal(exc, backoff, "poll")
            except TRANSIENT as exc:
                log.debug("redis poll on %r failed: %s", self.topic, describe(exc, link.url))
                self._replies_lost = True
                await backoff.wait()
                continue
            self._poll_wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poll_wake.wait(), every)

    async def _move_due(self) -> None:
        for entry_id, fields, count in await self._pel.move_due(self.room):
            self._admit(entry_id, fields, count)
        await self._dead_letter_foreign()

    async def _maintain(self) -> None:
        await self._pel.touch(self.held.keys() | self._foreign.keys())
        if self.room > 0:
            for entry_id, fields, count in await self._pel.reclaim(self.room):
                self._admit(entry_id, fields, count)
            await self._dead_letter_foreign()
        await self._pel.sweep()
        await self._link.trim(self.topic)

    # -- settling -------------------------------------------------------------------------

    def ack_now(self, delivery: RedisDelivery) -> None:
        # ``forget`` inlined: this runs for every message.
        if self.held.pop(delivery.entry_id, None) is not None:
            self._room.set()
        if not self.closed:
            self._acks.add(delivery.entry_id)

    async def settle_nack(self, delivery: RedisDelivery, delay: float | None) -> None:
        if self.closed or delivery.entry_id not in self.held:
            return

        async def schedule() -> None:
            await self._pel.schedule(delivery.entry_id, delay)

        # Out of the window before the schedule can hand it back, or admit() would see it as
        # still held and skip it. If scheduling fails the entry stays pending under this
        # consumer and is reclaimed after claim_idle: nothing is lost.
        self.forget(delivery)
        self._scheduling.add(delivery.entry_id)
        try:
            await self._link.call(schedule, f"scheduling a retry on {self.topic!r}")
        finally:
            self._scheduling.discard(delivery.entry_id)
        if not delay:
            self._poll_wake.set()

    async def settle_dead_letter(self, delivery: RedisDelivery, dead: Message) -> None:
        if self.closed or delivery.entry_id not in self.held:
            return
        await self._link.move_to_dead_letter(self.topic, self._group, delivery.entry_id, dead)
        self.forget(delivery)

    async def release(self) -> None:
        """Flush acks, then hand every entry this consumer still holds back to the group."""
        link = self._link
        deadline = time.monotonic() + min(5.0, link.options.publish_timeout)
        backoff = retry_streak(0.5)
        while time.monotonic() < deadline:
            try:
                await self._acks.flush()
                await self._pel.release()
                return
            except rex.ResponseError as exc:
                if "NOGROUP" in str(exc):
                    return  # the group is gone, and with it everything it held
                raise
            except TRANSIENT as exc:
                log.debug("redis release on %r failed: %s", self.topic, describe(exc, link.url))
                await backoff.wait()
        log.warning(
            "redis unreachable while closing %r: %d unsettled entries return after claim_idle",
            self.topic,
            len(self.held),
        )
