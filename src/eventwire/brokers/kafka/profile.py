"""Broker layer: what the Kafka profile claims (data only, no client library imported)."""

from __future__ import annotations

from eventwire.core.capabilities import BrokerProfile, Capabilities, Guarantee, Support

# The broker's default message.max.bytes is 1 MiB including the record overhead and headers;
# 900 KiB of body leaves room for eventwire's headers and a dead letter's extra ones.
MAX_BODY_BYTES = 900 * 1024

KAFKA = BrokerProfile(
    name="kafka",
    schemes=("kafka", "kafka+ssl"),
    factory="eventwire.brokers.kafka.broker:KafkaBroker",
    client_library="confluent-kafka",
    extra="kafka",
    summary=(
        "Apache Kafka: one consumer group per eventwire group, key -> partition order, "
        "idempotent acks=all producer, offsets committed only up to the lowest unfinished "
        "message, retry topics with due times and a .dlq topic"
    ),
    capabilities=Capabilities(
        guarantee=Guarantee.AT_LEAST_ONCE,
        persistent=True,  # the log keeps records; a group resumes from its committed offset
        redelivery=True,  # nack() -> <topic>.retry.0 (attempt + 1), read by the same group
        delayed_redelivery=Support.EMULATED,  # retry topics, partition paused until due
        dead_letter=Support.EMULATED,  # confirmed produce to <topic>.dlq, then commit
        consumer_groups=True,
        broadcast=True,  # group=None: a manual assignment from the high watermark
        replay=True,  # a new group starts at the earliest retained offset
        ordered_per_key=True,  # key -> partition, one partition -> one member at a time
        ordered_across_members=True,
        exclusive_in_flight=True,  # nothing polled while prefetch deliveries are open
        publish_confirms=True,  # acks=all delivery reports
        publish_dedup=False,  # idempotence removes producer retries, not a second publish
        survives_restart=True,
        reconnects=True,
        max_body_bytes=MAX_BODY_BYTES,
    ),
)

PROFILES: tuple[BrokerProfile, ...] = (KAFKA,)
