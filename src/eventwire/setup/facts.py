"""Setup layer: what the advisor knows of each broker: catalog claims plus documented facts.

Claims the conformance suite proves (guarantee, persistence, replay, ordering, dead letters,
deduplication, body limit) are read from the catalog profile and never restated here; this
module keeps only what the catalog cannot know (retention, routing, latency, rate, operations
weight, ...). Every candidate has a catalog profile; one without (an adapter missing from
this install) is left out of the ranking rather than ranked on claims nobody proved.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields

from eventwire.core.capabilities import BrokerProfile, Guarantee, Support
from eventwire.setup.requirements import Broker, UseCase


# No slots on the two halves: BrokerFacts inherits both, and two slotted bases cannot mix.
@dataclass(frozen=True, kw_only=True)
class Claims:
    """The proven claims the advisor reads (a subset of the catalog's ``Capabilities``)."""

    guarantee: Guarantee
    persistent: bool
    replay: bool
    ordered_per_key: bool
    ordered_across_members: bool
    dead_letter: Support
    delayed_redelivery: Support
    publish_dedup: bool
    max_body_bytes: int


@dataclass(frozen=True, kw_only=True)
class Documented:
    """Documented broker facts for one candidate (a broker used one way, like Redis Streams)."""

    name: str  # catalog profile name
    display: str
    broker: Broker
    schemes: tuple[str, ...]
    client: str  # the Python client the eventwire adapter uses
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
    replay_via_streams: bool = False  # replay through a second model (RabbitMQ Streams)


@dataclass(frozen=True, slots=True, kw_only=True)
class BrokerFacts(Documented, Claims):
    """One candidate the advisor ranks: documented facts plus the claims."""

    source: str = "documented facts"


DOCUMENTED: tuple[Documented, ...] = (
    Documented(
        name="rabbitmq",
        display="RabbitMQ",
        broker=Broker.RABBITMQ,
        schemes=("amqp", "amqps"),
        client="aio-pika",
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
        replay_via_streams=True,  # RabbitMQ Streams (3.9+): an append-only, replayable log
    ),
    Documented(
        name="kafka",
        display="Kafka",
        broker=Broker.KAFKA,
        schemes=("kafka",),
        client="confluent-kafka",  # what eventwire's Kafka adapter is built on
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
    Documented(
        name="nats-jetstream",
        display="NATS JetStream",
        broker=Broker.NATS,
        schemes=("nats", "tls"),
        client="nats-py",
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
    Documented(
        name="nats-core",
        display="NATS Core",
        broker=Broker.NATS,
        schemes=("nats+core",),
        client="nats-py",
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
    Documented(
        name="redis-streams",
        display="Redis Streams",
        broker=Broker.REDIS,
        schemes=("redis", "rediss"),
        client="redis-py",
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
    Documented(
        name="redis-pubsub",
        display="Redis Pub/Sub",
        broker=Broker.REDIS,
        schemes=("redis+pubsub",),
        client="redis-py",
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


# Claims of candidates with no adapter in this install, from the broker's documentation.
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
    documented: Iterable[Documented], profiles: Iterable[BrokerProfile]
) -> tuple[BrokerFacts, ...]:
    """Each documented candidate with its catalog profile's claims (none: left out)."""
    by_name = {p.name: p for p in profiles}
    by_scheme = {scheme: p for p in by_name.values() for scheme in p.schemes}
    claim_names = [f.name for f in fields(Claims)]
    merged: list[BrokerFacts] = []
    for facts in documented:
        base = {f.name: getattr(facts, f.name) for f in fields(Documented)}
        profile = by_name.get(facts.name) or next(
            (by_scheme[s] for s in facts.schemes if s in by_scheme), None
        )
        if profile is not None:
            caps = profile.capabilities
            claims = {name: getattr(caps, name) for name in claim_names}
            source = f"catalog profile {profile.name!r} + documented facts"
        else:
            continue  # no adapter in this install: no proven claims to rank it on
        merged.append(BrokerFacts(**base, **claims, source=source))
    return tuple(merged)


def current() -> tuple[BrokerFacts, ...]:
    """Every candidate, with the claims of the catalog profiles present in this install."""
    from eventwire.brokers.catalog import profiles  # data-only modules; no client library

    return merge(DOCUMENTED, profiles())


def by_name(name: str) -> BrokerFacts:
    """One candidate of ``current()`` by its profile name."""
    for facts in current():
        if facts.name == name:
            return facts
    raise KeyError(name)
