"""Broker layer: confirmed publishing through the shared idempotent producer (Kafka adapter).

``produce`` only queues a record inside librdkafka; its delivery report arrives later on the
producer's poll thread. One publish call shares one asyncio future: the last report of the
call resolves it through ``call_soon_threadsafe``, so a batch costs one loop wake-up, not one
per message. librdkafka retries on its own (idempotence keeps those retries from
duplicating) until ``message.timeout.ms`` (the ``publish_timeout`` option); a failed report
fails the call with a ``PublishError`` naming the messages that are not sent.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

from confluent_kafka import KafkaError, KafkaException, Message

from eventwire.brokers.kafka.connection import KafkaConnection
from eventwire.brokers.kafka.envelope import Record
from eventwire.brokers.kafka.errors import translate
from eventwire.core.errors import PublishError
from eventwire.core.headers import MESSAGE_ID

_BUFFER_FULL_PAUSE = 0.005


class _Reports:
    """Collects the delivery reports of one publish call (called on the poll thread).

    One bound ``report`` serves every record of the call (no closure per message); a failed
    record is named by the message id its headers carry, looked up only on failure.
    """

    __slots__ = ("_left", "_lock", "_loop", "failed", "future")

    def __init__(self, loop: asyncio.AbstractEventLoop, count: int) -> None:
        self._loop = loop
        self._left = count
        self._lock = threading.Lock()
        self.failed: list[tuple[str | None, KafkaError]] = []  # (message id, error)
        self.future: asyncio.Future[None] = loop.create_future()

    def report(self, error: KafkaError | None, message: Message) -> None:
        self.done(None if error is None else _message_id(message), error)

    def done(self, message_id: str | None, error: KafkaError | None) -> None:
        with self._lock:
            if error is not None:
                self.failed.append((message_id, error))
            self._left -= 1
            last = self._left == 0
        if last:
            self._loop.call_soon_threadsafe(self._resolve)

    def _resolve(self) -> None:
        if not self.future.done():
            self.future.set_result(None)


def _message_id(message: Message) -> str | None:
    headers = message.headers() or []
    pairs = headers.items() if isinstance(headers, dict) else headers
    for name, value in pairs:
        if name == MESSAGE_ID and isinstance(value, bytes):
            return value.decode("utf-8", "replace")
    return None


class KafkaPublisher:
    """Sends records and returns once every delivery report of the call is in."""

    def __init__(self, connection: KafkaConnection) -> None:
        self._conn = connection
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    async def drain(self) -> None:
        """Wait until every publish call in flight has its reports."""
        await self._idle.wait()

    async def publish(
        self,
        topic: str,
        records: Sequence[Record],
        ids: Sequence[str],
        *,
        partition: int | None = None,
    ) -> None:
        """Produce ``records`` to ``topic``; raise ``PublishError`` unless all were confirmed."""
        self._in_flight += 1
        self._idle.clear()
        try:
            await self._conn.ensure_topics([topic])
            await self._publish(topic, records, ids, partition)
        finally:
            self._in_flight -= 1
            if not self._in_flight:
                self._idle.set()

    async def _publish(
        self, topic: str, records: Sequence[Record], ids: Sequence[str], partition: int | None
    ) -> None:
        loop = asyncio.get_running_loop()
        producer = self._conn.producer
        timeout = self._conn.options.publish_timeout
        deadline = loop.time() + timeout
        reports = _Reports(loop, len(records))
        chosen = -1 if partition is None else partition  # -1: by key (librdkafka's hash)
        report = reports.report
        for index, record in enumerate(records):
            while True:
                try:
                    producer.produce(
                        topic,
                        value=record.value,
                        key=record.key,
                        headers=record.headers,
                        timestamp=record.timestamp_ms,
                        on_delivery=report,
                        partition=chosen,
                    )
                    break
                except BufferError:
                    # librdkafka's queue is full (an outage, or a burst): the poll thread
                    # drains it as reports come; wait for room within the deadline.
                    if loop.time() >= deadline:
                        reports.done(ids[index], KafkaError(KafkaError._QUEUE_FULL))
                        break
                    await asyncio.sleep(_BUFFER_FULL_PAUSE)
                except KafkaException as exc:
                    error = exc.args[0] if exc.args else KafkaError(KafkaError._FAIL)
                    reports.done(ids[index], error)
                    break
        try:
            # Reports come by message.timeout.ms at the latest; the margin covers a stalled loop.
            async with asyncio.timeout(timeout + 10):
                await reports.future
        except TimeoutError:
            raise PublishError(
                f"publishing {len(records)} message(s) to {topic!r} on kafka at "
                f"{self._conn.where} failed: no delivery report within {timeout + 10:g} s; "
                "treat them as not sent"
            ) from None
        if reports.failed:
            self._raise_failed(topic, records, ids, reports.failed)

    def _raise_failed(
        self,
        topic: str,
        records: Sequence[Record],
        ids: Sequence[str],
        failed: list[tuple[str | None, KafkaError]],
    ) -> None:
        order = {message_id: index for index, message_id in enumerate(ids)}
        failed.sort(key=lambda item: order.get(item[0] or "", len(ids)))
        missing = [message_id or "(unknown id)" for message_id, _ in failed]
        shown = ", ".join(missing[:5]) + (
            f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        )
        first = failed[0][1]
        doing = f"publishing {len(records)} message(s) to {topic!r}"
        error = translate(KafkaException(first), doing, self._conn.url, publishing=True)
        raise type(error)(
            f"{error}; {len(missing)} of {len(records)} not sent: {shown}"
        ) from KafkaException(first)
