"""Broker layer: raw nats-py JetStream doing what ``eventwire bench`` measures, and clean-up.

A file-backed stream with a duplicate window (as the adapter makes), ``js.publish`` with a
``Nats-Msg-Id`` per message (the PubAck is the confirmation), ``json.loads`` of each body and
an explicit ack per message: a backlog is read by a durable pull consumer 100 at a time; the
latency phase by a push consumer (nats-py's lowest-latency way: a pull of 100 would hold
each trickling message until its batch fills).
Loaded by the bench command through its module name, so the CLI never imports nats itself.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Callable
from importlib.metadata import version
from typing import Any

import nats
import nats.errors
import nats.js.errors
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StreamConfig

from eventwire.brokers.nats.options import NatsOptions
from eventwire.core.contract import Broker
from eventwire.core.message import dead_letter_topic
from eventwire.core.url import BrokerURL

CLIENT = f"nats-py {version('nats-py')}"
PREFETCH = 100


def _connect_url(url: BrokerURL) -> str:
    return url.secret().partition("?")[0]


class RawDriver:
    """nats-py on its own stream and durable pull consumer."""

    def __init__(self, url: BrokerURL, topic: str) -> None:
        self._url = url
        self._live: Any = None
        options = NatsOptions.from_url(url)
        self._subject = f"raw-{options.subject(topic)}"
        self._stream = f"RAW_{options.stream(topic)}"

    async def open(self) -> None:
        self._nc = await nats.connect(_connect_url(self._url), max_reconnect_attempts=1)
        self._js = self._nc.jetstream()
        await self._js.add_stream(
            StreamConfig(name=self._stream, subjects=[self._subject], duplicate_window=120)
        )
        config = ConsumerConfig(
            ack_policy=AckPolicy.EXPLICIT, deliver_policy=DeliverPolicy.ALL, max_ack_pending=20_000
        )
        self._sub = await self._js.pull_subscribe(
            self._subject, "raw", stream=self._stream, config=config
        )

    async def publish(self, body: bytes) -> None:
        await self._js.publish(self._subject, body, headers={"Nats-Msg-Id": uuid.uuid4().hex})

    async def start_live(self) -> None:
        """Before the latency phase: a push consumer from the next stream sequence on."""
        info = await self._js.stream_info(self._stream)
        config = ConsumerConfig(
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=int(info.state.last_seq or 0) + 1,
            max_ack_pending=20_000,
        )
        self._live = await self._js.subscribe(
            self._subject, durable="raw-live", stream=self._stream, manual_ack=True, config=config
        )

    async def consume(
        self, count: int, each: Callable[[object], None], *, live: bool = False
    ) -> None:
        if live:
            for _ in range(count):
                msg = await self._live.next_msg(timeout=30)
                each(json.loads(msg.data))
                await msg.ack()
            return
        done = 0
        while done < count:
            try:
                msgs = await self._sub.fetch(min(PREFETCH, count - done), timeout=5)
            except nats.errors.TimeoutError:
                continue
            for msg in msgs:
                each(json.loads(msg.data))
                await msg.ack()
                done += 1
        await self._nc.flush()

    async def aclose(self) -> None:
        try:
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await self._js.delete_stream(self._stream)
        finally:
            await self._nc.close()


async def remove_run(url: BrokerURL, topic: str, group: str, brokers: list[Broker]) -> None:
    """Delete the streams the adapter made for ``topic`` and its dead letters."""
    options = NatsOptions.from_url(url)
    nc = await nats.connect(_connect_url(url), max_reconnect_attempts=1)
    try:
        js = nc.jetstream()
        for name in (options.stream(topic), options.stream(dead_letter_topic(topic))):
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await js.delete_stream(name)
    finally:
        await nc.close()
