"""Broker layer: RabbitMQ options read from the URL query, and the names and arguments of queues.

Query options (all optional): ``exchange`` (topic exchange, default "eventwire"),
``heartbeat`` (seconds, default 2: aiormq drops a silent connection after
(heartbeat + 1) * 3 s, so a half-open connection is noticed within about 10 s),
``delivery_limit`` (quorum x-delivery-limit, default 20: a safety net against crash loops.
On 3.10 every return (nack without delay, a dead consumer) counts; a delayed retry is a fresh
copy whose count starts again. So the runtime's max_attempts decides unless immediate returns
exceed the limit first: then the broker dead-letters with reason "delivery-limit"),
``publish_timeout`` (seconds a publish waits for the connection and its confirms, default 15),
``publish_buffer`` (messages that may wait for the connection at once, default 10000: during
an outage a publish finding it full fails at once with ``PublishError``; while connected it
waits for confirms to make room, within ``publish_timeout``),
``confirm_window`` (unconfirmed publishes in flight per call, default 1000),
``channels`` (publisher channel pool size, default 4), ``connect_timeout`` (default 10),
``max_backoff`` (cap of the reconnect backoff in seconds, default 5),
``unroutable`` (``raise``, the default: a publish no queue takes, because no group has
subscribed to the topic yet and no broadcast subscriber listens, fails with
``UnroutableError`` instead of being confirmed and dropped; ``drop``: confirmed and dropped,
plain pub/sub).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Final
from urllib.parse import unquote

from eventwire.brokers._support.options import options_from_query
from eventwire.core.errors import ConfigurationError
from eventwire.core.message import DEAD_LETTER_GROUP, DEAD_LETTER_SUFFIX, dead_letter_topic
from eventwire.core.url import BrokerURL

_MAX_NAME: Final = 255  # AMQP short string
# Versions before the delay levels (``delays``) kept delayed retries in one queue per (group
# queue, bucket); such queues still drain back to their group queue. Named here only so that
# tooling can delete them: nothing declares them any more.
RETRY_BUCKETS: Final = (0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 86400.0)


@dataclass(frozen=True, slots=True, kw_only=True)
class RabbitMQSettings:
    """Options of one RabbitMQ broker object (see the module docstring)."""

    host: str
    port: int
    login: str
    password: str
    virtualhost: str
    ssl: bool
    exchange: str = "eventwire"
    heartbeat: int = 2
    delivery_limit: int = 20
    publish_timeout: float = 15.0
    publish_buffer: int = 10_000
    confirm_window: int = 1000
    channels: int = 4
    connect_timeout: float = 10.0
    max_backoff: float = 5.0
    unroutable: str = "raise"

    def __repr__(self) -> str:
        # The password stays out of reprs, logs and tracebacks.
        return f"RabbitMQSettings(host={self.host!r}, port={self.port}, exchange={self.exchange!r})"

    @classmethod
    def from_url(cls, url: BrokerURL) -> RabbitMQSettings:
        """Settings for ``url``; raise ``ConfigurationError`` naming a bad option."""
        vhost = url.path[1:] if url.path.startswith("/") else url.path
        fixed = {
            "host": url.host or "localhost",
            "port": url.port or (5671 if url.scheme == "amqps" else 5672),
            "login": url.username or "guest",
            "password": url.password if url.password is not None else "guest",
            "virtualhost": unquote(vhost) or "/",
            "ssl": url.scheme == "amqps",
        }
        settings = options_from_query(cls, url, broker="RabbitMQ", fixed=fixed)
        if (
            min(settings.heartbeat, settings.delivery_limit, settings.publish_buffer) < 1
            or min(settings.confirm_window, settings.channels) < 1
        ):
            raise ConfigurationError(f"RabbitMQ URL options in {url} must be positive")
        if settings.unroutable not in ("raise", "drop"):
            raise ConfigurationError(
                f"RabbitMQ URL option unroutable={settings.unroutable!r} in {url}: "
                "use raise or drop"
            )
        return settings


def bounded(name: str) -> str:
    """``name`` if it fits an AMQP short string (255 bytes), else a prefix and its hash."""
    raw = name.encode("utf-8", "surrogatepass")
    if len(raw) <= _MAX_NAME:
        return name
    digest = hashlib.sha256(raw).hexdigest()[:24]
    # Cut by bytes, not characters: 200 four-byte characters would not fit either.
    return f"{raw[:200].decode('utf-8', 'ignore')}~{digest}"


def group_queue(exchange: str, topic: str, group: str) -> str:
    """The durable quorum queue of ``group`` on ``topic``; ':' cannot occur in either name."""
    return bounded(f"{exchange}:{topic}:{group}")


def retry_queue(queue: str, bucket: float) -> str:
    """The retry queue an older version used for ``queue`` and ``bucket`` (RETRY_BUCKETS)."""
    return bounded(f"{queue}:retry-{round(bucket * 1000)}ms")


def is_terminal(topic: str, group: str | None) -> bool:
    """The dead-letter queue itself: no delivery limit and no further dead-lettering."""
    return group == DEAD_LETTER_GROUP and topic.endswith(DEAD_LETTER_SUFFIX)


def group_queue_arguments(settings: RabbitMQSettings, topic: str, group: str) -> dict[str, object]:
    """Arguments of a group queue; identical wherever the queue is declared (else 406)."""
    if is_terminal(topic, group):
        return {"x-queue-type": "quorum"}
    return {
        "x-queue-type": "quorum",
        "x-delivery-limit": settings.delivery_limit,
        "x-dead-letter-exchange": settings.exchange,
        "x-dead-letter-routing-key": dead_letter_topic(topic),
        # at-least-once dead-lettering keeps the message until the DLQ confirmed it; it needs
        # reject-publish overflow (https://www.rabbitmq.com/quorum-queues.html#dead-lettering).
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }
