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
    client: str  # the client library under eventwire's adapter
    extra: str  # pip extra of eventwire
    url: str  # for .env.example (container defaults)
    adapter_ready: bool  # False until eventwire ships the adapter (Kafka)
    dlq: str  # how dead letters are kept on this broker
    titles: dict[Pattern, str]


BROKERS: dict[Broker, BrokerChoice] = {
    Broker.RABBITMQ: BrokerChoice(
        key=Broker.RABBITMQ,
        profile="rabbitmq",
        display="RabbitMQ",
        client="aio-pika",
        extra="rabbitmq",
        url="amqp://app:change-me@localhost:5672/",
        adapter_ready=True,
        dlq="dead-letter exchange and queue",
        titles={
            Pattern.WORK_QUEUE: "Work Queue with Dead Letter Exchange",
            Pattern.PUB_SUB: "Publish/Subscribe with a Queue per Group and Dead Letter Exchange",
            Pattern.EVENT_STREAMING: "Ordered Event Processing with Quorum Queues",
        },
    ),
    Broker.KAFKA: BrokerChoice(
        key=Broker.KAFKA,
        profile="kafka",
        display="Kafka",
        client="aiokafka",
        extra="kafka",
        url="kafka://localhost:9092",
        adapter_ready=False,
        dlq="dead-letter topic",
        titles={
            Pattern.WORK_QUEUE: "Work Queue on a Consumer Group with Dead Letter Topic",
            Pattern.PUB_SUB: "Publish/Subscribe with a Consumer Group per Subscriber",
            Pattern.EVENT_STREAMING: "Event Streaming with Keyed Partitions and Replay",
        },
    ),
    Broker.NATS: BrokerChoice(
        key=Broker.NATS,
        profile="nats-jetstream",
        display="NATS JetStream",
        client="nats-py",
        extra="nats",
        url="nats://localhost:4222",
        adapter_ready=True,
        dlq="dead-letter stream",
        titles={
            Pattern.WORK_QUEUE: "Work Queue on JetStream with Dead Letter Stream",
            Pattern.PUB_SUB: "Publish/Subscribe with Durable JetStream Consumers",
            Pattern.EVENT_STREAMING: "Event Streaming on JetStream with Per-Key Ordering",
        },
    ),
    Broker.REDIS: BrokerChoice(
        key=Broker.REDIS,
        profile="redis-streams",
        display="Redis Streams",
        client="redis-py",
        extra="redis",
        url="redis://localhost:6379/0",
        adapter_ready=True,
        dlq="dead-letter stream",
        titles={
            Pattern.WORK_QUEUE: "Work Queue on Redis Streams with Dead Letter Stream",
            Pattern.PUB_SUB: "Publish/Subscribe with a Consumer Group per Subscriber",
            Pattern.EVENT_STREAMING: "Event Streaming on Redis Streams with Per-Key Ordering",
        },
    ),
}

# Advisor candidate (catalog profile name) -> the broker init scaffolds for it.
_CANDIDATE_BROKER = {
    "rabbitmq": Broker.RABBITMQ,
    "kafka": Broker.KAFKA,
    "nats-jetstream": Broker.NATS,
    "nats-core": Broker.NATS,
    "redis-streams": Broker.REDIS,
    "redis-pubsub": Broker.REDIS,
}

_USE_CASE_PATTERN = {
    UseCase.WORK_QUEUE: Pattern.WORK_QUEUE,
    UseCase.REQUEST_REPLY: Pattern.WORK_QUEUE,  # a worker group answering; replies via ctx
    UseCase.PUB_SUB: Pattern.PUB_SUB,
    UseCase.EVENT_SOURCING: Pattern.EVENT_STREAMING,
    UseCase.STREAMING: Pattern.EVENT_STREAMING,
}

FORMATS = ("json",)  # avro and protobuf arrive with the Kafka adapter and schema registry


def broker_named(value: str) -> BrokerChoice:
    """The choice for ``value`` (rabbitmq, kafka, nats, redis or an advisor candidate name)."""
    key = _CANDIDATE_BROKER.get(value.strip().lower())
    if key is None:
        try:
            key = Broker(value.strip().lower())
        except ValueError:
            known = ", ".join(b.value for b in Broker)
            raise ConfigurationError(f"unknown broker {value!r}: use one of {known}") from None
    return BROKERS[key]


def pattern_named(value: str) -> Pattern:
    """The pattern for ``value``; use-case names (event-sourcing, streaming, ...) map too."""
    text = value.strip().lower()
    try:
        return Pattern(text)
    except ValueError:
        pass
    try:
        return _USE_CASE_PATTERN[UseCase(text)]
    except ValueError:
        known = ", ".join(p.value for p in Pattern)
        raise ConfigurationError(f"unknown pattern {value!r}: use one of {known}") from None


def pattern_for(use_case: UseCase) -> Pattern:
    """The pattern scaffolded for a requirements use case."""
    return _USE_CASE_PATTERN[use_case]
