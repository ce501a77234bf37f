"""Broker layer: what the RabbitMQ (quorum queues) profile claims (data only, no client)."""

from __future__ import annotations

from eventwire.core.capabilities import BrokerProfile, Capabilities, Guarantee, Support

# RabbitMQ accepts up to 128 MiB by default, but quorum queues keep bodies in memory and
# replicate them through Raft: 16 MiB keeps one message from stalling a queue.
MAX_BODY_BYTES = 16 * 1024 * 1024

RABBITMQ = BrokerProfile(
    name="rabbitmq",
    schemes=("amqp", "amqps"),
    factory="eventwire.brokers.rabbitmq.broker:RabbitMQBroker",
    client_library="aio-pika",
    extra="rabbitmq",
    summary=(
        "RabbitMQ: a topic exchange routes each topic to a durable quorum queue per group, "
        "publisher confirms, x-delivery-limit with at-least-once dead-lettering, delayed "
        "retries through binary-decomposed TTL delay levels"
    ),
    capabilities=Capabilities(
        guarantee=Guarantee.AT_LEAST_ONCE,
        persistent=True,  # durable quorum queue per group, persistent messages
        redelivery=True,
        delayed_redelivery=Support.EMULATED,  # TTL delay levels that dead-letter back
        dead_letter=Support.NATIVE,  # DLX (delivery-limit) + confirmed publish to the DLQ
        consumer_groups=True,
        broadcast=True,  # exclusive auto-delete server-named queue per subscriber
        replay=False,  # a queue only holds what was routed to it after it was declared
        ordered_per_key=True,  # a quorum queue is FIFO towards one consumer
        ordered_across_members=False,
        exclusive_in_flight=True,  # basic.qos(prefetch)
        publish_confirms=True,
        publish_dedup=False,
        survives_restart=True,  # durable quorum queues, delivery_mode=2
        reconnects=True,
        max_body_bytes=MAX_BODY_BYTES,
    ),
)

PROFILES: tuple[BrokerProfile, ...] = (RABBITMQ,)
