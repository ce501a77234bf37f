"""Setup layer: what the advisor knows of each broker: catalog claims plus documented facts.

Claims the conformance suite proves (guarantee, persistence, replay, ordering, dead letters,
deduplication, body limit) come from the catalog profile when one exists; the rest are
documented broker facts kept here as data so that every advisor rule reads one table.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from eventwire.core.capabilities import BrokerProfile, Guarantee, Support
from eventwire.setup.requirements import Broker, UseCase

_MB = 1024 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class BrokerFacts:
    """One candidate the advisor ranks (a broker used one way, like Redis Streams)."""

    name: str  # catalog profile name
    display: str
    broker: Broker
    schemes: tuple[str, ...]
    client: str  # the Python client the eventwire adapter uses
    # Proven claims (overridden from the catalog profile when it exists).
    guarantee: Guarantee
    persistent: bool
    replay: bool
    ordered_per_key: bool
    ordered_across_members: bool
    dead_letter: Support
    delayed_redelivery: Support
    publish_dedup: bool
    max_body_bytes: int
    # Documented broker facts.
    long_retention: bool  # retention measured in days to forever, on disk
    routing_patterns: bool  # wildcard / topic routing on the broker
    priorities: bool  # per-message priority
    per_message_ttl: bool
    request_reply: bool  # native request/reply (reply inboxes, direct reply-to)
    typical_p99_ms: float  # end-to-end on one node, persistent where applicable
    comfortable_rate: float  # msgs/s one modest node or cluster handles without special tuning
    data_in_ram: bool  # the whole retained data set must fit in memory
    transactions: bool  # producer transactions / exactly-once within the broker
    ops_weight: int  # 1 = a single small process, 3 = a cluster with its own expertise
    source: str = "documented facts"


DOCUMENTED: tuple[BrokerFacts, ...] = (
    BrokerFacts(
        name="rabbitmq",
        display="RabbitMQ",
        broker=Broker.RABBITMQ,
        schemes=("amqp", "amqps"),
        client="aio-pika",
        guarantee=Guarantee.AT_LEAST_ONCE,
        persistent=True,
        replay=False,  # quorum queues delete on ack; streams are a separate model
        ordered_per_key=True,
        ordered_across_members=False,
        dead_letter=Support.NATIVE,  # dead-letter exchanges
        delayed_redelivery=Support.EMULATED,  # TTL retry queue + DLX
        publish_dedup=False,
        max_body_bytes=128 * _MB,  # max_message_size default
        long_retention=False,
        routing_patterns=True,  # topic and headers exchanges
        priorities=True,
        per_message_ttl=True,
        request_reply=True,  # direct reply-to
        typical_p99_ms=10.0,
        comfortable_rate=30_000.0,
        data_in_ram=False,
        transactions=False,
        ops_weight=2,
    ),
    BrokerFacts(
        name="kafka",
        display="Kafka",
        broker=Broker.KAFKA,
        schemes=("kafka",),
        client="aiokafka",
        guarantee=Guarantee.AT_LEAST_ONCE,
        persistent=True,
        replay=True,
        ordered_per_key=True,
        ordered_across_members=True,  # a key maps to one partition, one member
        dead_letter=Support.EMULATED,  # dead-letter topic written by the consumer
        delayed_redelivery=Support.EMULATED,  # retry topics
        publish_dedup=True,  # idempotent producer
        max_body_bytes=1 * _MB,  # message.max.bytes default
        long_retention=True,
        routing_patterns=False,
        priorities=False,
        per_message_ttl=False,
        request_reply=False,
        typical_p99_ms=25.0,  # linger and fetch batching
        comfortable_rate=500_000.0,
        data_in_ram=False,
        transactions=True,
        ops_weight=3,
    ),
    BrokerFacts(
        name="nats-jetstream",
        display="NATS JetStream",
        broker=Broker.NATS,
        schemes=("nats", "tls"),
        client="nats-py",
        guarantee=Guarantee.AT_LEAST_ONCE,
        persistent=True,
        replay=True,
        ordered_per_key=True,
        ordered_across_members=False,
        dead_letter=Support.EMULATED,  # max_deliver advisory + DLQ stream
        delayed_redelivery=Support.NATIVE,  # nak(delay)
        publish_dedup=True,  # Nats-Msg-Id duplicate window
        max_body_bytes=1 * _MB,  # max_payload default
        long_retention=True,
        routing_patterns=True,  # subject wildcards
        priorities=False,
        per_message_ttl=True,  # per-message TTL since 2.11
        request_reply=True,
        typical_p99_ms=5.0,
        comfortable_rate=200_000.0,
        data_in_ram=False,
        transactions=False,
        ops_weight=1,
    ),
    BrokerFacts(
        name="nats-core",
        display="NATS Core",
        broker=Broker.NATS,
        schemes=("nats+core",),
        client="nats-py",
        guarantee=Guarantee.AT_MOST_ONCE,
        persistent=False,
        replay=False,
        ordered_per_key=True,
        ordered_across_members=False,
        dead_letter=Support.NONE,
        delayed_redelivery=Support.NONE,
        publish_dedup=False,
        max_body_bytes=1 * _MB,
        long_retention=False,
        routing_patterns=True,
        priorities=False,
        per_message_ttl=False,
        request_reply=True,  # request/reply with inboxes is NATS's native idiom
        typical_p99_ms=1.0,
        comfortable_rate=1_000_000.0,
        data_in_ram=True,
        transactions=False,
        ops_weight=1,
    ),
    BrokerFacts(
        name="redis-streams",
        display="Redis Streams",
        broker=Broker.REDIS,
        schemes=("redis", "rediss"),
        client="redis-py",
        guarantee=Guarantee.AT_LEAST_ONCE,
        persistent=True,  # with AOF
        replay=True,
        ordered_per_key=True,
        ordered_across_members=False,
        dead_letter=Support.EMULATED,
        delayed_redelivery=Support.EMULATED,  # sorted-set schedule
        publish_dedup=False,
        max_body_bytes=512 * _MB,
        long_retention=False,  # bounded by RAM
        routing_patterns=False,
        priorities=False,
        per_message_ttl=False,
        request_reply=False,
        typical_p99_ms=2.0,
        comfortable_rate=100_000.0,
        data_in_ram=True,
        transactions=False,
        ops_weight=1,
    ),
    BrokerFacts(
        name="redis-pubsub",
        display="Redis Pub/Sub",
        broker=Broker.REDIS,
        schemes=("redis+pubsub",),
        client="redis-py",
        guarantee=Guarantee.AT_MOST_ONCE,
        persistent=False,
        replay=False,
        ordered_per_key=True,
        ordered_across_members=False,
        dead_letter=Support.NONE,
        delayed_redelivery=Support.NONE,
        publish_dedup=False,
        max_body_bytes=512 * _MB,
        long_retention=False,
        routing_patterns=True,  # PSUBSCRIBE patterns
        priorities=False,
        per_message_ttl=False,
        request_reply=False,
        typical_p99_ms=1.0,
        comfortable_rate=500_000.0,
        data_in_ram=True,
        transactions=False,
        ops_weight=1,
    ),
)


# (points, reason) per use case and candidate; documented strengths, not benchmarks.
USE_CASE_FIT: Mapping[UseCase, Mapping[str, tuple[int, str]]] = {
    UseCase.WORK_QUEUE: {
        "rabbitmq": (4, "competing consumers, per-message ack, retry queues and DLX are its core"),
        "nats-jetstream": (2, "work-queue streams with per-message ack and nak(delay)"),
        "redis-streams": (1, "consumer groups with XACK and reclaim of stuck messages"),
        "kafka": (
            -2,
            "parallelism is bound to partitions and one slow message blocks its partition",
        ),
        "nats-core": (-1, "no acknowledgement: a crashed worker loses its message"),
        "redis-pubsub": (-2, "no acknowledgement and no queue: idle workers miss messages"),
    },
    UseCase.PUB_SUB: {
        "rabbitmq": (2, "fanout and topic exchanges give each subscriber group its own queue"),
        "nats-jetstream": (2, "subject fan-out with durable consumers per group"),
        "nats-core": (2, "subject fan-out with no storage at all"),
        "redis-pubsub": (2, "lightweight fan-out to every connected subscriber"),
        "redis-streams": (1, "each consumer group reads the whole stream"),
        "kafka": (1, "each consumer group reads every event"),
    },
    UseCase.EVENT_SOURCING: {
        "kafka": (
            4,
            "an append-only log with per-key partitions, compaction and unlimited retention",
        ),
        "nats-jetstream": (2, "streams with per-subject replay"),
        "rabbitmq": (-2, "queues delete messages once consumed"),
    },
    UseCase.STREAMING: {
        "kafka": (4, "high-throughput partitioned log and the stream-processing ecosystem"),
        "nats-jetstream": (2, "streams with replay and pull consumers"),
        "redis-streams": (1, "streams held in memory, fast but bounded by RAM"),
        "rabbitmq": (-1, "queues are not a log: no offsets to rewind"),
    },
    UseCase.REQUEST_REPLY: {
        "nats-core": (4, "request/reply with inboxes is built in, sub-millisecond"),
        "nats-jetstream": (3, "NATS request/reply, with persistence where needed"),
        "rabbitmq": (1, "direct reply-to works, with one more hop"),
        "redis-streams": (-1, "no reply mechanism: correlate replies by hand"),
        "redis-pubsub": (-1, "no reply mechanism: correlate replies by hand"),
        "kafka": (-3, "reply topics and correlation on a log add latency and moving parts"),
    },
}


def merge(
    documented: Iterable[BrokerFacts], profiles: Iterable[BrokerProfile]
) -> tuple[BrokerFacts, ...]:
    """``documented`` with each proven claim replaced by its catalog profile's, where one exists."""
    by_name = {p.name: p for p in profiles}
    by_scheme = {scheme: p for p in by_name.values() for scheme in p.schemes}
    merged: list[BrokerFacts] = []
    for facts in documented:
        profile = by_name.get(facts.name) or next(
            (by_scheme[s] for s in facts.schemes if s in by_scheme), None
        )
        if profile is None:
            merged.append(facts)
            continue
        caps = profile.capabilities
        merged.append(
            replace(
                facts,
                guarantee=caps.guarantee,
                persistent=caps.persistent,
                replay=caps.replay,
                ordered_per_key=caps.ordered_per_key,
                ordered_across_members=caps.ordered_across_members,
                dead_letter=caps.dead_letter,
                delayed_redelivery=caps.delayed_redelivery,
                publish_dedup=caps.publish_dedup,
                max_body_bytes=caps.max_body_bytes,
                source=f"catalog profile {profile.name!r} + documented facts",
            )
        )
    return tuple(merged)


def current() -> tuple[BrokerFacts, ...]:
    """The documented table overlaid with every catalog profile present in this install."""
    from eventwire.brokers.catalog import profiles  # data-only modules; no client library

    return merge(DOCUMENTED, profiles())
