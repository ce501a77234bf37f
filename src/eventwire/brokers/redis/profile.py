"""Broker layer: what the Redis Streams and Redis Pub/Sub profiles claim (data only, no client)."""

from __future__ import annotations

from eventwire.core.capabilities import BrokerProfile, Capabilities, Guarantee, Support

# Redis accepts values up to 512 MB, but one huge entry stalls every reader of the stream;
# 8 MiB keeps a message a message (send a reference for anything larger).
MAX_BODY_BYTES = 8 * 1024 * 1024

STREAMS = BrokerProfile(
    name="redis-streams",
    schemes=("redis", "rediss"),
    factory="eventwire.brokers.redis.streams:RedisStreamsBroker",
    client_library="redis",
    extra="redis",
    summary=(
        "Redis Streams: one stream per topic, consumer groups with XREADGROUP, XACK and "
        "XAUTOCLAIM, delayed retries through a sorted set, a dead-letter stream per topic"
    ),
    capabilities=Capabilities(
        guarantee=Guarantee.AT_LEAST_ONCE,
        persistent=True,
        redelivery=True,
        delayed_redelivery=Support.EMULATED,  # sorted set of due times, moved back by consumers
        dead_letter=Support.EMULATED,  # XADD to the dead-letter stream, then XACK: one script
        consumer_groups=True,
        broadcast=True,
        replay=True,  # groups are created at id 0 and read the retained stream
        ordered_per_key=True,  # one reader sees stream order; retries come back later
        ordered_across_members=False,
        exclusive_in_flight=True,  # XREADGROUP COUNT never exceeds the free prefetch slots
        publish_confirms=True,  # publish returns once XADD replied with the entry id
        publish_dedup=False,
        survives_restart=False,  # only with appendonly + appendfsync always on the server
        reconnects=True,
        max_body_bytes=MAX_BODY_BYTES,
    ),
)

PUBSUB = BrokerProfile(
    name="redis-pubsub",
    schemes=("redis+pubsub", "rediss+pubsub"),
    factory="eventwire.brokers.redis.pubsub:RedisPubSubBroker",
    client_library="redis",
    extra="redis",
    summary=(
        "Redis Pub/Sub: fire-and-forget fan-out to whoever is subscribed right now; "
        "at-most-once, no groups, no redelivery, no persistence"
    ),
    capabilities=Capabilities(
        guarantee=Guarantee.AT_MOST_ONCE,
        persistent=False,
        redelivery=False,
        delayed_redelivery=Support.NONE,
        dead_letter=Support.EMULATED,  # dead letters go to a Redis stream, read like Streams
        consumer_groups=False,
        broadcast=True,
        replay=False,
        ordered_per_key=True,  # one connection per subscriber, Redis keeps publish order
        ordered_across_members=False,
        exclusive_in_flight=False,
        publish_confirms=False,  # PUBLISH only says how many received it, which may be 0
        publish_dedup=False,
        survives_restart=False,
        reconnects=True,  # subscribers re-subscribe; messages sent meanwhile are lost
        max_body_bytes=MAX_BODY_BYTES,
    ),
)

PROFILES: tuple[BrokerProfile, ...] = (STREAMS, PUBSUB)
