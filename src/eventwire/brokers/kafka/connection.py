"""Broker layer: the Kafka clients one broker object shares (producer, admin) and the topology.

librdkafka reconnects by itself; this module keeps every blocking call off the event loop: the
producer is served by a poll thread that runs delivery callbacks, and admin calls return
futures that are awaited through ``asyncio.wrap_future``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterable
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from eventwire.brokers.kafka import envelope
from eventwire.brokers.kafka.browse import browse
from eventwire.brokers.kafka.errors import error_of, reason, translate
from eventwire.brokers.kafka.options import KafkaOptions
from eventwire.core.errors import ConfigurationError
from eventwire.core.message import Message
from eventwire.core.url import BrokerURL

log = logging.getLogger("eventwire.kafka")
_POLL_SECONDS = 0.1


class _LibrdkafkaLog:
    """librdkafka's own log lines at DEBUG: it logs every failed reconnect try at ERROR, and
    eventwire reports what matters (a publish or subscribe that failed) as errors itself."""

    def log(self, level: int, message: str, *args: object) -> None:
        librdkafka_log.log(min(level, logging.DEBUG), message, *args)


librdkafka_log = logging.getLogger("eventwire.kafka.librdkafka")
_LIBRDKAFKA_LOG = _LibrdkafkaLog()
_TOPIC_VISIBLE_WITHIN = 10.0


class KafkaConnection:
    """Producer + admin client of one broker object; ``where`` is the redacted URL."""

    def __init__(self, options: KafkaOptions, url: BrokerURL) -> None:
        self.options = options
        self.url = url
        self.where = str(url)
        self._producer: Producer | None = None
        self._admin: AdminClient | None = None
        self._poller: threading.Thread | None = None
        self._stop = threading.Event()
        self._known: set[str] = set()
        self._ensuring: dict[str, asyncio.Future[None]] = {}
        self.created_topics: list[str] = []  # what this object created (tests delete them)

    def client_config(self, config: dict[str, Any]) -> dict[str, Any]:
        """``config`` with librdkafka's log lines routed to the ``eventwire.kafka`` logger."""
        return {**config, "logger": _LIBRDKAFKA_LOG}

    @property
    def producer(self) -> Producer:
        if self._producer is None:
            raise RuntimeError("KafkaConnection.open() was not called")
        return self._producer

    async def open(self) -> None:
        """Create the clients and check the cluster answers (a clear error when it does not)."""
        try:
            self._admin = AdminClient(self.client_config(self.options.admin_config()))
            self._producer = Producer(self.client_config(self.options.producer_config()))
        except KafkaException as exc:
            raise translate(exc, "configuring the client", self.url) from exc
        self._poller = threading.Thread(
            target=self._poll_producer, name="eventwire-kafka-producer", daemon=True
        )
        self._poller.start()
        await self.check_reachable(self.options.socket_timeout)

    def _poll_producer(self) -> None:
        producer = self.producer
        while not self._stop.is_set():
            producer.poll(_POLL_SECONDS)  # runs delivery callbacks in this thread

    async def check_reachable(self, timeout: float) -> None:  # noqa: ASYNC109 - librdkafka's own
        """Raise ``ConnectionLostError`` unless a metadata request is answered within timeout."""
        admin = self._admin_client()
        try:
            await asyncio.to_thread(admin.list_topics, timeout=timeout)
        except KafkaException as exc:
            raise translate(exc, "connecting", self.url) from exc

    def _admin_client(self) -> AdminClient:
        if self._admin is None:
            raise RuntimeError("KafkaConnection.open() was not called")
        return self._admin

    async def ensure_topics(self, topics: Iterable[str]) -> None:
        """Create (or with create_topics=false check) each topic not seen yet; concurrent-safe."""
        wanted = [t for t in dict.fromkeys(topics) if t not in self._known]
        if not wanted:
            return
        waits = [self._ensuring[t] for t in wanted if t in self._ensuring]
        fresh = [t for t in wanted if t not in self._ensuring]
        if fresh:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            for topic in fresh:
                self._ensuring[topic] = future
            try:
                await self._ensure(fresh)
                future.set_result(None)
            except BaseException as exc:
                future.set_exception(exc)
                future.exception()  # retrieved: the waiters re-raise it themselves
                raise
            finally:
                for topic in fresh:
                    self._ensuring.pop(topic, None)
        for wait in waits:
            await asyncio.shield(wait)

    async def _ensure(self, topics: list[str]) -> None:
        admin = self._admin_client()
        if self.options.create_topics:
            new = [NewTopic(t, self.options.partitions, self.options.replication) for t in topics]
            futures = admin.create_topics(new, operation_timeout=self.options.socket_timeout)
            for topic, future in futures.items():
                try:
                    await asyncio.wrap_future(future)
                    self.created_topics.append(topic)
                except KafkaException as exc:
                    error = error_of(exc)
                    if error is None or error.code() != KafkaError.TOPIC_ALREADY_EXISTS:
                        raise translate(exc, f"creating topic {topic!r}", self.url) from exc
        await self._wait_visible(topics)
        self._known.update(topics)

    async def _wait_visible(self, topics: list[str]) -> None:
        """Until metadata lists every topic: a consumer subscribing earlier would miss it."""
        admin = self._admin_client()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _TOPIC_VISIBLE_WITHIN
        while True:
            try:
                metadata = await asyncio.to_thread(
                    admin.list_topics, timeout=self.options.socket_timeout
                )
            except KafkaException as exc:
                raise translate(exc, "reading topic metadata", self.url) from exc
            missing = [
                t
                for t in topics
                if t not in metadata.topics or metadata.topics[t].error is not None
            ]
            if not missing:
                return
            if not self.options.create_topics:
                raise ConfigurationError(
                    f"topic(s) {missing} do not exist on kafka at {self.where} and "
                    "create_topics=false: create them (partitions, replication) or drop "
                    "create_topics=false from the URL"
                )
            if loop.time() >= deadline:
                raise ConfigurationError(
                    f"topic(s) {missing} on kafka at {self.where} were created but are not "
                    f"visible in the metadata after {_TOPIC_VISIBLE_WITHIN:g} s"
                )
            await asyncio.sleep(0.05)

    async def delete_topics(self, topics: Iterable[str]) -> None:
        """Delete ``topics`` (missing ones are fine); for tests and tooling."""
        names = list(dict.fromkeys(topics))
        if not names:
            return
        futures = self._admin_client().delete_topics(names, operation_timeout=30)
        for topic, future in futures.items():
            try:
                await asyncio.wrap_future(future)
            except KafkaException as exc:
                error = error_of(exc)
                if error is None or error.code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                    log.warning("deleting topic %r failed: %s", topic, reason(exc, self.url))
            self._known.discard(topic)

    async def browse(self, topic: str, group: str, limit: int) -> list[Message] | None:
        """Up to ``limit`` messages of ``topic`` after ``group``'s committed offsets, read
        passively (``browse.py``); None when the topic does not exist."""
        config = self.client_config(self.options.consumer_config(group, from_earliest=True))
        timeout = self.options.socket_timeout
        try:
            records = await asyncio.to_thread(browse, config, topic, limit, timeout)
        except (KafkaException, TimeoutError) as exc:
            raise translate(exc, f"reading {topic!r}", self.url) from exc
        if records is None:
            return None
        return [
            envelope.decode(
                r.topic, r.partition, r.offset, r.key, r.value, r.headers, r.timestamp_ms
            ).message
            for r in records
        ]

    async def aclose(self) -> None:
        """Flush what the producer still holds (bounded by publish_timeout), stop the thread."""
        producer = self._producer
        if producer is not None:
            await asyncio.to_thread(producer.flush, self.options.publish_timeout)
        self._stop.set()
        if self._poller is not None:
            await asyncio.to_thread(self._poller.join, 5)
