"""Broker layer: one Kafka consumer confined to its own thread (poll, pause, commit, rebalance).

Every call on a ``Consumer`` happens on this thread: librdkafka consumers are not safe to
poll and close concurrently (FastStream #1963 crashed the process that way), and nothing here
may block the event loop. The loop talks to the thread through a command queue (settled,
stop) and the thread hands records to the loop with ``call_soon_threadsafe``, both in
batches: the acks of one loop turn travel as one command, and with ``prefetch`` deliveries
open the thread refills only once a quarter of them is settled (one wake-up per batch, not
per message: the per-message hand-off was most of the adapter's cost).

Flow control: each assigned partition has a local queue of records fetched but not yet handed
out. A partition whose queue is not empty is paused (its head is not due yet, or the
subscription has ``prefetch`` deliveries open); polling goes on meanwhile, so the group never
evicts the member for a slow handler (``max.poll.interval.ms``) and rebalances are served.
Commits carry only finished work (``offsets.PartitionProgress``), every ``commit_interval``,
synchronously on revoke and on close; nothing is committed for partitions that were lost.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import math
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka import Message as RawRecord

from eventwire.brokers.kafka import envelope, topics
from eventwire.brokers.kafka.offsets import PartitionProgress, parse_metadata

log = logging.getLogger("eventwire.kafka")

TP = tuple[str, int]
_IDLE_POLL = 0.1  # seconds consume() blocks when there is room for more deliveries
_FULL_WAIT = 0.05  # seconds to wait for a settle when prefetch deliveries are open
_FULL_POLL_EVERY = 0.2  # seconds between polls while prefetch deliveries are open
_FETCH_BATCH = 500  # records taken from librdkafka per consume() call
_QUEUE_LIMIT = 2000  # records waiting in one partition's queue before it is paused
_COMMITTED_TIMEOUT = 10.0
_LEADER_UNKNOWN = frozenset(
    {
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
    }
)


class Fetched(NamedTuple):
    """A record handed to the event loop, with what settling it needs (a tuple: one is made
    per message, and a frozen dataclass's ``__init__`` costs several times more)."""

    tp: TP
    epoch: int
    offset: int
    attempt: int
    decoded: envelope.Decoded


class InFlight:
    """Deliveries open at once across the workers of one subscription (its ``prefetch``)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._used = 0
        self._lock = threading.Lock()

    @property
    def room(self) -> int:
        return self.limit - self._used

    @property
    def full(self) -> bool:
        return self._used >= self.limit

    def take(self, wanted: int) -> int:
        """Reserve up to ``wanted`` deliveries at once (one lock per dispatch, not per record)."""
        with self._lock:
            granted = max(0, min(wanted, self.limit - self._used))
            self._used += granted
            return granted

    def release(self, count: int = 1) -> None:
        if count:
            with self._lock:
                self._used -= count


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerSpec:
    """What a worker consumes and how."""

    config: dict[str, Any]
    topics: list[str]
    group: str | None  # None: manual assignment from the high watermark (broadcast)
    in_flight: InFlight
    commit_interval: float
    timeout: float  # seconds for metadata and watermark requests


class ConsumerWorker:
    """Runs the consumer thread; ``on_records``/``on_event`` are called on the event loop."""

    def __init__(
        self,
        spec: WorkerSpec,
        loop: asyncio.AbstractEventLoop,
        on_records: Callable[[list[Fetched]], None],
        on_event: Callable[[str, BaseException | None], None],
    ) -> None:
        self._spec = spec
        self._loop = loop
        self._on_records = on_records
        self._on_event = on_event
        self._commands: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._progress: dict[TP, PartitionProgress] = {}
        self._waiting: dict[TP, deque[RawRecord]] = {}
        # Retry partitions: offset -> when the queued copy may be handled (``_due_time``).
        self._dues: dict[TP, dict[int, float]] = {}
        self._paused: set[TP] = set()
        self._in_flight = spec.in_flight
        self._refill_at = max(1, spec.in_flight.limit // 4)
        self._retry_topics: dict[str, bool] = {}
        self._epoch = 0
        self.epochs: dict[TP, int] = {}  # read by the loop to drop stale records
        self._stopping = False
        self._last_commit = 0.0
        self._last_poll = 0.0
        self._thread = threading.Thread(
            target=self._run, name="eventwire-kafka-consumer", daemon=True
        )
        self._done: asyncio.Future[None] = loop.create_future()

    # -- called from the event loop ---------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def settled(self, items: list[Fetched]) -> None:
        """Finished deliveries, sent in one command per event-loop turn (not one per ack)."""
        self._commands.put(("settled", items))

    def unhanded(self, items: list[Fetched]) -> None:
        self._commands.put(("unhanded", items))

    async def transaction_point(self, item: Fetched) -> tuple[object, int | None]:
        """The consumer's group metadata and the partition's commit point once ``item`` is
        finished, read on the consumer thread (for ``send_offsets_to_transaction``); the
        point is None when the partition is no longer this member's."""
        if self._done.done():
            return None, None  # the thread has ended: nobody would answer
        answer: concurrent.futures.Future[tuple[object, int | None]] = concurrent.futures.Future()
        self._commands.put(("transaction_point", item.tp, item.epoch, item.offset, answer))
        return await asyncio.wrap_future(answer)

    def is_current(self, item: Fetched) -> bool:
        return self.epochs.get(item.tp) == item.epoch

    async def stop(self) -> None:
        """Commit finished work, leave the group, end the thread."""
        self._commands.put(("stop",))
        if self._thread.is_alive() or not self._done.done():
            await asyncio.shield(self._done)

    # -- the consumer thread ----------------------------------------------------------------

    def _post(self, func: Callable[..., None], *args: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is listening
            self._loop.call_soon_threadsafe(func, *args)

    def _run(self) -> None:
        consumer: Consumer | None = None
        try:
            consumer = Consumer(self._spec.config)
            self._start(consumer)
            while not self._stopping:
                self._step(consumer)
        except Exception as exc:  # noqa: BLE001 - reported to the subscription, not lost
            self._post(self._on_event, "failed", exc)
        finally:
            if consumer is not None:
                self._finish(consumer)
            self._post(self._finished)

    def _finished(self) -> None:
        if not self._done.done():
            self._done.set_result(None)

    def _start(self, consumer: Consumer) -> None:
        spec = self._spec
        if spec.group is not None:
            consumer.subscribe(
                spec.topics, on_assign=self._assigned, on_revoke=self._revoked, on_lost=self._lost
            )
            return
        partitions = []
        for topic in spec.topics:
            metadata = consumer.list_topics(topic, timeout=spec.timeout)
            for partition in sorted(metadata.topics[topic].partitions):
                high = _high_watermark(consumer, TopicPartition(topic, partition), spec.timeout)
                partitions.append(TopicPartition(topic, partition, high))
        consumer.assign(partitions)
        for tp in partitions:
            self._track((tp.topic, tp.partition), {})
        self._post(self._on_event, "assigned", None)

    def _track(self, tp: TP, prior: dict[int, int]) -> None:
        self._epoch += 1
        self._progress[tp] = PartitionProgress(self._epoch, prior)
        self._waiting[tp] = deque()
        if self._is_retry_copy(tp[0]):
            self._dues[tp] = {}
        self.epochs[tp] = self._epoch

    def _assigned(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        priors: dict[TP, dict[int, int]] = {}
        if partitions:
            try:
                committed = consumer.committed(partitions, timeout=_COMMITTED_TIMEOUT)
            except KafkaException as exc:
                log.warning("reading committed offsets failed (%s); attempts restart", exc)
                committed = []
            for tp in committed:
                priors[(tp.topic, tp.partition)] = parse_metadata(tp.metadata)
        for tp in partitions:
            key = (tp.topic, tp.partition)
            self._track(key, priors.get(key, {}))
        if partitions:
            self._post(self._on_event, "assigned", None)

    def _revoked(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        keys = [(tp.topic, tp.partition) for tp in partitions]
        self._commit(consumer, keys, asynchronous=False)
        self._forget(keys)

    def _lost(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Another member may own them already: committing now could overwrite its progress.
        self._forget([(tp.topic, tp.partition) for tp in partitions])

    def _forget(self, keys: list[TP]) -> None:
        for key in keys:
            progress = self._progress.pop(key, None)
            if progress is not None:
                self._in_flight.release(progress.open_count)
            self._waiting.pop(key, None)
            self._dues.pop(key, None)
            self._paused.discard(key)
            self.epochs.pop(key, None)

    def _step(self, consumer: Consumer) -> None:
        low = self._in_flight.room < self._refill_at
        if low:
            self._await_room(consumer)
        self._drain_commands(consumer)
        if self._stopping:
            return
        handed = self._dispatch()
        now = time.monotonic()
        if self._in_flight.room >= self._refill_at:
            # Block for new records only when nothing could be handed out right now.
            records = _fetch(consumer, 0.0 if handed else _IDLE_POLL)
            self._last_poll = now
        elif now - self._last_poll >= _FULL_POLL_EVERY:
            # Still polling while full: serves rebalances and keeps max.poll.interval.ms fed;
            # what arrives waits in the partition queues (paused once they are long).
            records = _fetch(consumer, 0.0)
            self._last_poll = now
        else:
            records = []
        for record in records:
            self._queue(record)
        if records:
            handed += self._dispatch()
        self._flow(consumer)
        self._maybe_commit(consumer)
        if handed:
            self._post(self._on_records, handed)

    def _await_room(self, consumer: Consumer) -> None:
        """Serve commands until a quarter of ``prefetch`` is free again (or ``_FULL_WAIT``).

        Refilling one slot per settle would cost a thread wake-up and a loop wake-up per
        message; waiting for a batch of free slots hands records out in batches while the
        other deliveries keep the handlers busy.
        """
        deadline = time.monotonic() + _FULL_WAIT
        while self._in_flight.room < self._refill_at and not self._stopping:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            try:
                command = self._commands.get(timeout=left)
            except queue.Empty:
                return
            self._command(consumer, command)

    def _drain_commands(self, consumer: Consumer) -> None:
        while True:
            try:
                command = self._commands.get_nowait()
            except queue.Empty:
                return
            self._command(consumer, command)

    def _command(self, consumer: Consumer, command: tuple[Any, ...]) -> None:
        kind = command[0]
        if kind == "transaction_point":
            _, tp, epoch, offset, answer = command
            progress = self._progress.get(tp)
            current = progress is not None and progress.epoch == epoch
            point = progress.point_after(offset) if progress is not None and current else None
            try:
                answer.set_result((consumer.consumer_group_metadata(), point))
            except KafkaException as exc:
                answer.set_exception(exc)
            return
        if kind == "settled":
            finished = 0
            for item in command[1]:
                progress = self._progress.get(item.tp)
                if (
                    progress is not None
                    and progress.epoch == item.epoch
                    and progress.finished(item.offset)
                ):
                    finished += 1
            self._in_flight.release(finished)
        elif kind == "unhanded":
            for item in command[1]:
                progress = self._progress.get(item.tp)
                if progress is not None and progress.epoch == item.epoch:
                    progress.unhanded(item.offset)
        elif kind == "stop":
            self._stopping = True

    def _queue(self, record: RawRecord) -> None:
        error = record.error()
        if error is not None:
            if error.code() != KafkaError._PARTITION_EOF:
                log.warning("Kafka consumer error: %s", error.str())
            return
        topic, partition = record.topic(), record.partition()
        if topic is None or partition is None:
            return
        tp = (topic, partition)
        waiting = self._waiting.get(tp)
        if waiting is None:
            return  # revoked since it was fetched
        waiting.append(record)
        dues = self._dues.get(tp)
        if dues is not None:
            dues[record.offset() or 0] = _due_time(record, time.time(), topics.level_delay(topic))

    def _dispatch(self) -> list[Fetched]:
        """Hand out due heads of the partition queues, round-robin, while there is room."""
        waiting_total = sum(len(w) for w in self._waiting.values())
        budget = self._in_flight.take(waiting_total) if waiting_total else 0
        handed: list[Fetched] = []
        if not budget:
            return handed
        now = time.time()
        moved = True
        while moved and len(handed) < budget:
            moved = False
            for tp, waiting in self._waiting.items():
                if not waiting:
                    continue
                record = waiting[0]
                offset = record.offset() or 0
                dues = self._dues.get(tp)
                retry = dues is not None
                if dues is not None:
                    if dues.get(offset, 0.0) > now:
                        continue
                    dues.pop(offset, None)
                waiting.popleft()
                moved = True
                progress = self._progress[tp]
                decoded = _decode(record, tp, offset, trusted=retry)
                if decoded.group is not None and decoded.group != self._spec.group:
                    progress.skipped(offset)  # another group's retry copy
                    continue
                attempt = progress.attempt_for(offset, decoded.attempt)
                progress.handed(offset, attempt)
                handed.append(Fetched(tp, progress.epoch, offset, attempt, decoded))
                if len(handed) >= budget:
                    break
        self._in_flight.release(budget - len(handed))
        return handed

    def _is_retry_copy(self, topic: str) -> bool:
        known = self._retry_topics.get(topic)
        if known is None:
            known = self._retry_topics[topic] = topics.source_of(topic) != topic
        return known

    def _due(self, tp: TP, record: RawRecord, now: float) -> bool:
        dues = self._dues.get(tp)
        return dues is None or dues.get(record.offset() or 0, 0.0) <= now

    def _flow(self, consumer: Consumer) -> None:
        """Pause partitions whose head is not due yet or whose queue is long; resume others.

        Not paused merely because ``prefetch`` deliveries are open: librdkafka drops what it
        fetched for a paused partition and fetches it again on resume, which costs a round
        trip per ``prefetch`` messages; its own fetch queue bounds memory meanwhile.
        """
        now = time.time()
        want = {
            tp
            for tp, w in self._waiting.items()
            if w and (len(w) >= _QUEUE_LIMIT or not self._due(tp, w[0], now))
        }
        pause = [TopicPartition(t, p) for t, p in want - self._paused]
        resume = [TopicPartition(t, p) for t, p in self._paused - want]
        if pause:
            consumer.pause(pause)
        if resume:
            consumer.resume(resume)
        self._paused = want

    def _maybe_commit(self, consumer: Consumer) -> None:
        now = time.monotonic()
        if now - self._last_commit >= self._spec.commit_interval:
            self._last_commit = now
            self._commit(consumer, list(self._progress), asynchronous=True)

    def _commit(self, consumer: Consumer, keys: list[TP], *, asynchronous: bool) -> None:
        if self._spec.group is None:
            return  # broadcast: no group, nothing to resume from
        offsets = []
        values = []
        for key in keys:
            progress = self._progress.get(key)
            value = None if progress is None else progress.to_commit()
            if progress is not None and value is not None:
                offsets.append(TopicPartition(key[0], key[1], value[0], metadata=value[1]))
                values.append((progress, value))
        if not offsets:
            return
        try:
            if asynchronous:
                consumer.commit(offsets=offsets, asynchronous=True)
            else:
                consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            log.warning("committing offsets failed (%s); retried at the next commit", exc)
            return
        for progress, value in values:
            progress.committed(value)

    def _finish(self, consumer: Consumer) -> None:
        try:
            self._drain_commands(consumer)
            self._commit(consumer, list(self._progress), asynchronous=False)
        except Exception as exc:  # noqa: BLE001 - closing must go on
            log.warning("final commit failed: %s", exc)
        try:
            consumer.close()
        except Exception as exc:  # noqa: BLE001
            log.warning("closing the consumer failed: %s", exc)


def _high_watermark(consumer: Consumer, tp: TopicPartition, timeout: float) -> int:
    """The partition's high watermark; a topic created a moment ago may have no leader known
    yet (NOT_LEADER_FOR_PARTITION, LEADER_NOT_AVAILABLE): retried within ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            _low, high = consumer.get_watermark_offsets(tp, timeout=timeout)
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            retriable = isinstance(error, KafkaError) and (
                error.retriable() or error.code() in _LEADER_UNKNOWN
            )
            if not retriable or time.monotonic() >= deadline:
                raise
            time.sleep(0.05)
        else:
            return int(high)


def _fetch(consumer: Consumer, wait: float) -> list[RawRecord]:
    """What librdkafka has, waiting up to ``wait`` for the first record only.

    ``consume(n, timeout)`` waits until it has n records or the timeout passed, which would
    add up to ``wait`` to the latency of every message on a quiet topic; ``poll`` returns
    with the first one.
    """
    if wait > 0:
        first = consumer.poll(wait)
        if first is None:
            return []
        return [first, *consumer.consume(num_messages=_FETCH_BATCH - 1, timeout=0)]
    return consumer.consume(num_messages=_FETCH_BATCH, timeout=0)


def _decode(record: RawRecord, tp: TP, offset: int, *, trusted: bool) -> envelope.Decoded:
    _kind, stamp = record.timestamp()
    # A due time, a group and an attempt are only trusted on eventwire's own retry topics:
    # on the application topic a producer's forged ones would pause the partition for good
    # (due), skip the record (group) or cut its retries short (attempt).
    return envelope.decode(
        tp[0],
        tp[1],
        offset,
        record.key(),
        record.value(),
        record.headers(),
        stamp,
        trusted=trusted,
    )


def _due_time(record: RawRecord, fetched_at: float, longest: float) -> float:
    """When a retry copy may be handled: its due header, but at most ``longest`` (its retry
    level's delay) after it was fetched. Anyone who can write to a retry topic could
    otherwise pause that partition for years with a far due time; a copy without a readable
    one is due at once (a NaN is never waited on)."""
    headers = record.headers() or ()
    pairs = headers.items() if isinstance(headers, dict) else headers
    for name, value in pairs:
        if name == envelope.DUE and value is not None:
            try:
                due = float(value)
            except ValueError:
                return fetched_at
            if not math.isfinite(due):
                return fetched_at
            return min(due, fetched_at + longest)
    return fetched_at
