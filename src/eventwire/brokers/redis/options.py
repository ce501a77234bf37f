"""Broker layer: Redis adapter options read from the URL query, with their defaults."""

from __future__ import annotations

import math
from dataclasses import dataclass

from eventwire.brokers._support.options import options_from_query
from eventwire.core.errors import ConfigurationError
from eventwire.core.url import BrokerURL


@dataclass(frozen=True, slots=True, kw_only=True)
class RedisOptions:
    """Tuning knobs, all settable as ``redis://host/0?claim_idle=5&maxlen=100000``.

    Defaults aim at production: a dead connection (half-open) is noticed within
    ``socket_timeout + block`` seconds (about 6 s), well inside the 15 s the issue allows.
    """

    db: int = 0
    prefix: str = "ew:"  # key prefix of every stream and schedule eventwire writes
    # Entries per stream beyond which the oldest go even if a group has not read them (logged
    # and counted when it happens); 0 (default) keeps every entry a group still needs.
    maxlen: int = 0
    claim_idle: float = 30.0  # seconds a pending entry sits idle before live members reclaim it
    publish_timeout: float = 30.0  # how long publish waits for a lost connection to come back
    max_buffered: int = 10_000  # messages allowed to wait for the connection during an outage
    block: float = 1.0  # XREADGROUP BLOCK seconds; also how often delays are checked at worst
    poll_interval: float = 0.2  # how often due retries (sorted set) are moved back
    socket_timeout: float = 5.0  # a reply later than this means the connection is dead
    connect_timeout: float = 5.0
    health_check_interval: int = 5  # PING a pooled connection idle for longer than this
    backoff_cap: float = 2.0  # reconnect backoff ceiling (seconds), jittered
    ssl_cert_reqs: str = "required"
    ssl_ca_certs: str | None = None

    @classmethod
    def from_url(cls, url: BrokerURL) -> RedisOptions:
        """Options from ``url``; unknown or malformed parameters raise ``ConfigurationError``."""
        db_text = url.path.strip("/")
        fixed = {"db": _number(int, "database number in the path", db_text)} if db_text else {}
        options = options_from_query(cls, url, broker="Redis", fixed=fixed, reserved=("db",))
        options.check()
        return options

    def check(self) -> None:
        positive = {
            "claim_idle": self.claim_idle,
            "publish_timeout": self.publish_timeout,
            "max_buffered": self.max_buffered,
            "block": self.block,
            "poll_interval": self.poll_interval,
            "socket_timeout": self.socket_timeout,
            "connect_timeout": self.connect_timeout,
            "backoff_cap": self.backoff_cap,
        }
        for name, value in positive.items():
            if value <= 0:
                raise ConfigurationError(f"Redis URL option {name} must be positive, got {value}")
        if not math.isfinite(self.backoff_cap):
            raise ConfigurationError("Redis URL option backoff_cap must be finite")
        if self.maxlen < 0 or self.db < 0:
            raise ConfigurationError("Redis maxlen and database number must not be negative")
        if self.socket_timeout <= self.block:
            raise ConfigurationError(
                f"socket_timeout ({self.socket_timeout}) must exceed block ({self.block}): "
                "a blocking read would otherwise look like a dead connection"
            )


def _number(kind: type[int] | type[float], name: str, text: str) -> int | float:
    try:
        return kind(text)
    except ValueError:
        raise ConfigurationError(
            f"Redis URL option {name} must be a {kind.__name__}, got {text!r}"
        ) from None
