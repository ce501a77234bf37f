"""Broker layer: NATS adapter options read from the URL query, and subject/stream naming."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Final

from eventwire.brokers._support.options import options_from_query
from eventwire.core.errors import ConfigurationError
from eventwire.core.url import BrokerURL

MIN_RECONNECT_DELAY: Final = 0.01  # the smallest reconnect_min allowed, seconds


@dataclass(frozen=True, slots=True, kw_only=True)
class NatsOptions:
    """Tunables, each settable as a URL query parameter (``nats://h:4222?ack_wait=10``).

    Durations are seconds. ``max_deliver`` is enforced by the adapter, not the server: the
    server's MaxDeliver silently strands a message, whereas the adapter dead-letters a message
    delivered more than ``max_deliver`` times (reason "max-deliveries"), so nothing is lost.
    """

    prefix: str = "ew"  # subject = "<prefix>.<topic>"
    stream_prefix: str = "EW_"  # stream = "<stream_prefix><topic>_<hash>"
    ack_wait: float = 30.0
    max_deliver: int = 100
    max_ack_pending: int = 20_000
    # User limits per topic stream, 0 = none (the default: a stream keeps every message a
    # group has not acknowledged, and the adapter purges what every group acknowledged).
    # A limit drops the oldest messages even if a group has not read them: logged, counted.
    max_age: float = 0.0
    max_bytes: int = 0
    max_msgs: int = 0
    dlq_max_age: float = 0.0  # dead letters are kept until replayed, unless this is set
    trim_interval: float = 30.0  # how often group members purge what every group acked
    dup_window: float = 120.0  # Nats-Msg-Id duplicate window
    storage: str = "file"
    replicas: int = 1
    publish_timeout: float = 30.0  # a publish that cannot be confirmed by then raises
    # Bytes of publishes buffered while reconnecting; a publish that does not fit fails at
    # once (0 = no buffer: publishing during an outage fails at once).
    pending_size: int = 8 * 1024 * 1024
    ping_interval: int = 3  # with max_pings=2 a dead connection is noticed in <= ~12 s
    max_pings: int = 2
    reconnect_min: float = 0.1  # reconnect backoff: the first delay, doubling up to max
    reconnect_max: float = 2.0
    connect_timeout: float = 5.0
    # A pull request lives this long; short, because leaving a subscription waits for its
    # request to end (else the server hands returned messages to a request nobody reads).
    pull_expires: float = 1.0
    broadcast_inactive: float = 60.0  # a broadcast consumer left behind is removed after this

    @classmethod
    def from_url(cls, url: BrokerURL) -> NatsOptions:
        options = options_from_query(cls, url, broker="NATS")
        options.check()
        return options

    def check(self) -> None:
        if self.storage not in {"file", "memory"}:
            raise ConfigurationError(f"storage must be 'file' or 'memory', got {self.storage!r}")
        if self.ack_wait <= 0 or self.publish_timeout <= 0 or self.pull_expires < 0.1:
            raise ConfigurationError("ack_wait, publish_timeout > 0 and pull_expires >= 0.1")
        if not 0 < self.publish_timeout < self.dup_window:
            # Re-sends are deduplicated only within the window: a re-send after it would store
            # the message twice.
            raise ConfigurationError(
                f"publish_timeout ({self.publish_timeout:g}s) must be shorter than dup_window "
                f"({self.dup_window:g}s), or a re-sent publish could be stored twice"
            )
        if min(self.max_age, self.max_bytes, self.max_msgs, self.dlq_max_age) < 0:
            raise ConfigurationError(
                "max_age, max_bytes, max_msgs and dlq_max_age must be >= 0 (0 = unlimited)"
            )
        if self.trim_interval <= 0:
            raise ConfigurationError("trim_interval must be > 0")
        if self.pending_size < 0:
            raise ConfigurationError("pending_size must be >= 0 (0 = no reconnect buffer)")
        if not MIN_RECONNECT_DELAY <= self.reconnect_min <= self.reconnect_max:
            # Below the floor a dead server is retried in a hot loop.
            raise ConfigurationError(
                f"reconnect_min ({self.reconnect_min:g}s) must be >= {MIN_RECONNECT_DELAY:g}s "
                f"and <= reconnect_max ({self.reconnect_max:g}s)"
            )
        if self.max_deliver < 1 or self.ping_interval < 1 or self.max_pings < 1:
            raise ConfigurationError("max_deliver, ping_interval and max_pings must be >= 1")
        if not self.prefix or not _is_token(self.prefix) or not self.stream_prefix:
            raise ConfigurationError("prefix and stream_prefix must be non-empty names")

    def subject(self, topic: str) -> str:
        """The NATS subject of ``topic``; topics with empty tokens ('a..b') are refused."""
        if not all(topic.split(".")):
            raise ConfigurationError(
                f"topic {topic!r} has an empty '.'-separated part, which NATS cannot route"
            )
        return f"{self.prefix}.{topic}"

    def stream(self, topic: str) -> str:
        return self.stream_prefix + safe_name(topic)


def safe_name(name: str) -> str:
    """A stream/consumer name for ``name``: readable, no '.', and injective thanks to a hash."""
    digest = hashlib.sha256(name.encode()).hexdigest()[:10]
    return f"{name.replace('.', '_')[:80]}_{digest}"


def _is_token(text: str) -> bool:
    return all(text.split(".")) and not set(text) & set(" \t*>")
