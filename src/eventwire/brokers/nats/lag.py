"""Broker layer: a JetStream group's backlog from its durable consumer's info, on a NATS
connection of its own.

``num_pending`` (stream messages the consumer has not delivered yet) is the waiting count and
``num_ack_pending`` (delivered, not acknowledged, delayed naks included) the unacked one.
``consumer_info`` only reads: a group that never subscribed has no consumer and reads as
"no group yet". Core NATS keeps no backlog (a message nobody is subscribed to is gone), so
it has no reader.
"""

from __future__ import annotations

import nats.js.errors
from nats.aio.client import Client

from eventwire.brokers._support.errors import translate
from eventwire.brokers.nats.connection import open_connection
from eventwire.brokers.nats.errors import NATS
from eventwire.brokers.nats.jetstream import JetStreamBroker
from eventwire.brokers.nats.options import NatsOptions, safe_name
from eventwire.core.contract import Broker
from eventwire.core.lag import Backlog, LagReader
from eventwire.core.url import BrokerURL

_TIMEOUT = 5.0  # seconds a consumer-info request may take


class JetStreamLagReader:
    """One NATS connection (opened on the first read; nats-py reconnects it by itself)."""

    def __init__(self, url: BrokerURL, options: NatsOptions) -> None:
        self._url = url
        self._options = options
        self._nc: Client | None = None

    async def read(self, topic: str, group: str) -> Backlog | None:
        doing = f"reading the lag of {group!r} on {topic!r}"
        try:
            if self._nc is None:
                self._nc = await open_connection(self._url, self._options, name="eventwire-lag")
            js = self._nc.jetstream(timeout=_TIMEOUT)
            try:
                info = await js.consumer_info(self._options.stream(topic), safe_name(group))
            except nats.js.errors.NotFoundError:
                return None
        except Exception as exc:
            raise translate(NATS, exc, self._url, doing) from exc
        return Backlog(waiting=int(info.num_pending or 0), unacked=int(info.num_ack_pending or 0))

    async def aclose(self) -> None:
        nc, self._nc = self._nc, None
        if nc is not None:
            try:
                await nc.close()
            except Exception:  # noqa: BLE001 - closing a broken connection
                return


def open_reader(broker: Broker) -> LagReader | None:
    """A reader for JetStream; None for core NATS (no backlog to read)."""
    if broker.profile.name != "nats-jetstream" or not isinstance(broker, JetStreamBroker):
        return None
    return JetStreamLagReader(broker.url, broker.options)
