"""Setup layer: the brokers and patterns `init` offers, as data the templates and summary read."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from eventwire.core.errors import ConfigurationError
from eventwire.setup.requirements import Broker, UseCase


class Pattern(StrEnum):
    """Service shapes `init` scaffolds."""

    WORK_QUEUE = "work-queue"
    PUB_SUB = "pub-sub"
    EVENT_STREAMING = "event-streaming"


@dataclass(frozen=True, slots=True, kw_only=True)
class BrokerChoice:
    """How a generated service talks to one broker."""

    key: Broker
    profile: str  # the catalog profile the generated service's URL selects
    display: str
    url: str  # for .env.example: the compose service as seen from the host
    container_url: str  # the same service as seen from the worker container
    dlq: str  # how dead letters are kept on this broker
    titles: dict[Pattern, str]

    @property
    def extra(self) -> str:
        """The pip extra of eventwire that installs this broker's client: named after the server."""
        return self.key.value

    @property
    def server(self) -> str:
        """The server's name (RabbitMQ, Kafka, NATS, Redis), also its compose service."""
        return self.display.split()[0]


_CHOICES = (
    BrokerChoice(
        key=Broker.RABBITMQ,
        profile="rabbitmq",
        display="RabbitMQ",
        url="amqp://app:change-me@localhost:5672/",
        container_url="amqp://${RABBITMQ_USER:-app}:${RABBITMQ_PASSWORD:-change-me}@rabbitmq:5672/",
        dlq="dead-letter exchange and queue",
        titles={
            Pattern.WORK_QUEUE: "Work Queue with Dead Letter Exchange",
            Pattern.PUB_SUB: "Publish/Subscribe with a Queue per Group and Dead Letter Exchange",
            Pattern.EVENT_STREAMING: "Ordered Event Processing with Quorum Queues",
        },
    ),
    BrokerChoice(
        key=Broker.KAFKA,
        profile="kafka",
        display="Kafka",
        url="kafka://localhost:9092",
        container_url="kafka://kafka:19092",
        dlq="dead-letter topic",
        titles={
            Pattern.WORK_QUEUE: "Work Queue on a Consumer Group with Dead Letter Topic",
            Pattern.PUB_SUB: "Publish/Subscribe with a Consumer Group per Subscriber",
            Pattern.EVENT_STREAMING: "Event Streaming with Keyed Partitions and Replay",
        },
    ),
    BrokerChoice(
        key=Broker.NATS,
        profile="nats-jetstream",
        display="NATS JetStream",
        url="nats://localhost:4222",
        container_url="nats://nats:4222",
        dlq="dead-letter stream",
        titles={
            Pattern.WORK_QUEUE: "Work Queue on JetStream with Dead Letter Stream",
            Pattern.PUB_SUB: "Publish/Subscribe with Durable JetStream Consumers",
            Pattern.EVENT_STREAMING: "Event Streaming on JetStream with Per-Key Ordering",
        },
    ),
    BrokerChoice(
        key=Broker.REDIS,
        profile="redis-streams",
        display="Redis Streams",
        url="redis://localhost:6379/0",
        container_url="redis://redis:6379/0",
        dlq="dead-letter stream",
        titles={
            Pattern.WORK_QUEUE: "Work Queue on Redis Streams with Dead Letter Stream",
            Pattern.PUB_SUB: "Publish/Subscribe with a Consumer Group per Subscriber",
            Pattern.EVENT_STREAMING: "Event Streaming on Redis Streams with Per-Key Ordering",
        },
    ),
    BrokerChoice(
        key=Broker.NATS,
        profile="nats-core",
        display="NATS Core",
        url="nats+core://localhost:4222",
        container_url="nats+core://nats:4222",
        dlq="dead-letter subject (published once, not stored: nothing keeps it)",
        titles={
            Pattern.WORK_QUEUE: "At-Most-Once Work Queue on NATS Core Queue Groups",
            Pattern.PUB_SUB: "Fire-and-Forget Fan-Out on NATS Core Subjects",
            Pattern.EVENT_STREAMING: "Transient Event Stream on NATS Core with Per-Key Ordering",
        },
    ),
    BrokerChoice(
        key=Broker.REDIS,
        profile="redis-pubsub",
        display="Redis Pub/Sub",
        url="redis+pubsub://localhost:6379/0",
        container_url="redis+pubsub://redis:6379/0",
        dlq="dead-letter stream",
        titles={
            Pattern.WORK_QUEUE: "Work Queue on Redis Pub/Sub",  # refused: no consumer groups
            Pattern.PUB_SUB: "Fire-and-Forget Fan-Out on Redis Pub/Sub",
            Pattern.EVENT_STREAMING: "Transient Event Stream on Redis Pub/Sub",
        },
    ),
)
BROKERS: dict[str, BrokerChoice] = {choice.profile: choice for choice in _CHOICES}

# What `--broker` accepts besides profile names: the server names pick its default profile.
_ALIASES = {
    "rabbitmq": "rabbitmq",
    "kafka": "kafka",
    "nats": "nats-jetstream",
    "jetstream": "nats-jetstream",
    "redis": "redis-streams",
    "redis-streams": "redis-streams",
    "redis+pubsub": "redis-pubsub",
    "nats+core": "nats-core",
}

# Request-reply has no scaffold yet: init says so rather than generating something else.
_USE_CASE_PATTERN = {
    UseCase.WORK_QUEUE: Pattern.WORK_QUEUE,
    UseCase.PUB_SUB: Pattern.PUB_SUB,
    UseCase.EVENT_SOURCING: Pattern.EVENT_STREAMING,
    UseCase.STREAMING: Pattern.EVENT_STREAMING,
}


def broker_named(value: str) -> BrokerChoice:
    """The choice for ``value``: a profile name (redis-pubsub, nats-core, ...) or a server
    name (rabbitmq, kafka, nats, redis), which picks that server's default profile."""
    text = value.strip().lower()
    choice = BROKERS.get(_ALIASES.get(text, text))
    if choice is None:
        known = ", ".join(["rabbitmq", "kafka", "nats", "nats-core", "redis", "redis-pubsub"])
        raise ConfigurationError(f"unknown broker {value!r}: use one of {known}")
    return choice


_NOT_SCAFFOLDED = (
    "init does not scaffold request-reply services yet: it makes work-queue, pub-sub or "
    "event-streaming ones (pass --pattern to choose one of them)"
)


def pattern_named(value: str) -> Pattern:
    """The pattern for ``value``; use-case names (event-sourcing, streaming, ...) map too."""
    text = value.strip().lower()
    try:
        return Pattern(text)
    except ValueError:
        pass
    if text == UseCase.REQUEST_REPLY.value:
        raise ConfigurationError(_NOT_SCAFFOLDED)
    try:
        return _USE_CASE_PATTERN[UseCase(text)]
    except (ValueError, KeyError):
        known = ", ".join(p.value for p in Pattern)
        raise ConfigurationError(f"unknown pattern {value!r}: use one of {known}") from None


def pattern_for(use_case: UseCase) -> Pattern:
    """The pattern scaffolded for a requirements use case (one line if there is none)."""
    pattern = _USE_CASE_PATTERN.get(use_case)
    if pattern is None:
        raise ConfigurationError(_NOT_SCAFFOLDED)
    return pattern
