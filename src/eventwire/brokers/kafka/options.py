"""Broker layer: Kafka options read from the URL, and the librdkafka configs built from them.

URLs: ``kafka://host:9092`` (plaintext) and ``kafka+ssl://host:9093`` (TLS). More bootstrap
servers go in ``bootstrap=host2:9092,host3:9092``. A user name in the URL turns on SASL
(``sasl_mechanism=PLAIN`` by default, or ``SCRAM-SHA-256`` / ``SCRAM-SHA-512``).

Query options (all optional):

* ``partitions`` (default 4) and ``replication`` (default 1): used when eventwire creates a
  topic; never the broker's defaults. ``create_topics`` (default true): with false a missing
  topic is a ``ConfigurationError`` naming it.
* ``publish_timeout`` (seconds, default 15): librdkafka's ``message.timeout.ms``; a publish
  not confirmed by then raises ``PublishError`` naming the messages not sent.
* ``publish_buffer`` (messages, default 100000): librdkafka's local queue; a publish waits for
  room up to ``publish_timeout``.
* ``linger_ms`` (default 5), ``compression`` (none, gzip, snappy, lz4, zstd; default lz4).
* ``group_protocol`` (classic or consumer, default classic): classic uses cooperative-sticky
  assignment; consumer is KIP-848 (server-side assignment, Kafka 4.x).
* ``session_timeout`` (seconds, default 6, the broker's lowest by default) and ``heartbeat``
  (seconds, default 1): a dead member loses its partitions after ``session_timeout`` (also how
  long a group waits for its old members after a broker restart); live members learn of a
  rebalance within ``heartbeat``.
* ``commit_interval`` (seconds, default 1): how often finished work is committed; on revoke and
  on close it is committed at once.
* ``socket_timeout`` (seconds, default 10): a request without an answer for that long tears
  the connection down (notices a half-open connection).
* ``join_timeout`` (seconds, default 10): how long ``subscribe`` waits for the group to hand
  this member its first partitions before it returns anyway.
* ``transactional_id`` (default: a random one per broker object) and ``transaction_timeout``
  (seconds, default 60) for ``KafkaBroker.transaction`` (``transactions.py``): a stable id
  lets a restarted process fence its killed predecessor and abort its open transaction.
* ``sasl_mechanism``, ``ssl_cafile``, ``ssl_certfile``, ``ssl_keyfile``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Final

from eventwire.core.errors import ConfigurationError
from eventwire.core.url import BrokerURL

_COMPRESSION: Final = frozenset({"none", "gzip", "snappy", "lz4", "zstd"})
_SASL: Final = frozenset({"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"})
_PROTOCOLS: Final = frozenset({"classic", "consumer"})
_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off"})


@dataclass(frozen=True, slots=True, kw_only=True)
class KafkaOptions:
    """Options of one Kafka broker object (see the module docstring); no secret in its repr."""

    bootstrap: str
    tls: bool = False
    username: str | None = None
    password: str | None = None
    sasl_mechanism: str = "PLAIN"
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    partitions: int = 4
    replication: int = 1
    create_topics: bool = True
    publish_timeout: float = 15.0
    publish_buffer: int = 100_000
    linger_ms: int = 5
    compression: str = "lz4"
    group_protocol: str = "classic"
    session_timeout: float = 6.0
    heartbeat: float = 1.0
    commit_interval: float = 1.0
    socket_timeout: float = 10.0
    join_timeout: float = 10.0
    transactional_id: str | None = None
    transaction_timeout: float = 60.0

    def __repr__(self) -> str:
        return f"KafkaOptions(bootstrap={self.bootstrap!r}, tls={self.tls})"

    @classmethod
    def from_url(cls, url: BrokerURL) -> KafkaOptions:
        """Options for ``url``; a ``ConfigurationError`` names a bad or unknown option."""
        query = dict(url.query)
        settable = {
            f.name: f
            for f in fields(cls)
            if f.name not in {"bootstrap", "tls", "username", "password"}
        }
        unknown = set(query) - set(settable) - {"bootstrap"}
        if unknown:
            raise ConfigurationError(
                f"unknown Kafka URL option(s) {sorted(unknown)} in {url}: use "
                f"{sorted({*settable, 'bootstrap'})}"
            )
        servers = [f"{url.host or '127.0.0.1'}:{url.port or 9092}"]
        servers += [s.strip() for s in query.pop("bootstrap", "").split(",") if s.strip()]
        values: dict[str, Any] = {}
        for name, raw in query.items():
            values[name] = _convert(name, raw, cls.__dataclass_fields__[name].type, url)
        options = cls(
            bootstrap=",".join(servers),
            tls=url.scheme == "kafka+ssl",
            username=url.username,
            password=url.password,
            **values,
        )
        options._check(url)
        return options

    def _check(self, url: BrokerURL) -> None:
        if self.compression not in _COMPRESSION:
            raise ConfigurationError(
                f"Kafka compression={self.compression!r} in {url}: use {sorted(_COMPRESSION)}"
            )
        if self.sasl_mechanism not in _SASL:
            raise ConfigurationError(
                f"Kafka sasl_mechanism={self.sasl_mechanism!r} in {url}: use {sorted(_SASL)}"
            )
        if self.group_protocol not in _PROTOCOLS:
            raise ConfigurationError(
                f"Kafka group_protocol={self.group_protocol!r} in {url}: use classic or consumer"
            )
        numbers = (
            self.partitions, self.replication, self.publish_buffer, self.publish_timeout,
            self.session_timeout, self.heartbeat, self.commit_interval, self.socket_timeout,
            self.transaction_timeout,
        )  # fmt: skip
        if min(numbers) <= 0 or self.linger_ms < 0 or self.join_timeout < 0:
            raise ConfigurationError(f"Kafka URL options in {url} must be positive")

    def common_config(self) -> dict[str, Any]:
        """librdkafka settings every client of this broker object shares."""
        config: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap,
            "client.id": "eventwire",
            "socket.timeout.ms": int(self.socket_timeout * 1000),
            "socket.keepalive.enable": True,
            # Reconnect quickly after a cut or a restart (librdkafka's default backs off to 10 s).
            "reconnect.backoff.ms": 100,
            "reconnect.backoff.max.ms": 1000,
            "topic.metadata.refresh.interval.ms": 30_000,
            # librdkafka logs through Python's logging only when given a logger; keep it quiet
            # by default and report failures through errors instead.
            "log_level": 3,
        }
        sasl = self.username is not None
        config["security.protocol"] = {
            (False, False): "PLAINTEXT",
            (True, False): "SSL",
            (False, True): "SASL_PLAINTEXT",
            (True, True): "SASL_SSL",
        }[(self.tls, sasl)]
        if sasl:
            config["sasl.mechanism"] = self.sasl_mechanism
            config["sasl.username"] = self.username
            config["sasl.password"] = self.password or ""
        tls_files = {
            "ssl.ca.location": self.ssl_cafile,
            "ssl.certificate.location": self.ssl_certfile,
            "ssl.key.location": self.ssl_keyfile,
        }
        config.update({key: path for key, path in tls_files.items() if path})
        return config

    def producer_config(self, *, transactional_id: str | None = None) -> dict[str, Any]:
        config = self.common_config()
        config.update(
            {
                "acks": "all",
                "enable.idempotence": True,
                "linger.ms": self.linger_ms,
                "compression.type": self.compression,
                "message.timeout.ms": int(self.publish_timeout * 1000),
                "queue.buffering.max.messages": self.publish_buffer,
                # Keyless records go to a random partition each, not to one "sticky"
                # partition per linger window: with the sticky default a burst landed on one
                # partition (194 of 200), so one member of a competing group did all the
                # work. Batching per partition still happens within linger.ms.
                "sticky.partitioning.linger.ms": 0,
            }
        )
        if transactional_id is not None:
            config["transactional.id"] = transactional_id
        return config

    def consumer_config(self, group: str, *, from_earliest: bool) -> dict[str, Any]:
        config = self.common_config()
        config.update(
            {
                "group.id": group,
                # Offsets move only when eventwire says a message is finished.
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest" if from_earliest else "latest",
                "isolation.level": "read_committed",
                "fetch.wait.max.ms": 100,
                "max.poll.interval.ms": 300_000,
            }
        )
        if self.group_protocol == "consumer":
            config["group.protocol"] = "consumer"
        else:
            config["partition.assignment.strategy"] = "cooperative-sticky"
            config["session.timeout.ms"] = int(self.session_timeout * 1000)
            config["heartbeat.interval.ms"] = int(self.heartbeat * 1000)
        return config

    def admin_config(self) -> dict[str, Any]:
        return self.common_config()


def _convert(name: str, raw: str, kind: object, url: BrokerURL) -> object:
    text = str(kind)
    try:
        if text == "bool":
            lowered = raw.strip().lower()
            if lowered in _TRUE:
                return True
            if lowered in _FALSE:
                return False
            raise ValueError(raw)
        if text == "int":
            return int(raw)
        if text == "float":
            return float(raw)
    except ValueError:
        raise ConfigurationError(
            f"Kafka URL option {name}={raw!r} in {url} is not a {text}"
        ) from None
    return raw
