"""Broker layer: the NATS profiles, JetStream and core (data only, no client import)."""

from __future__ import annotations

from eventwire.core.capabilities import BrokerProfile, Capabilities, Guarantee, Support

# The server's default max_payload is 1 MiB and counts headers too; keep 64 KiB for them.
# The adapter also checks body + headers against the connected server's own max_payload.
MAX_BODY_BYTES = 1024 * 1024 - 64 * 1024

PROFILES: tuple[BrokerProfile, ...] = (
    BrokerProfile(
        name="nats-jetstream",
        schemes=("nats", "tls"),
        factory="eventwire.brokers.nats.jetstream:JetStreamBroker",
        client_library="nats-py",
        extra="nats",
        summary=(
            "NATS JetStream: a file-backed stream per topic, a durable pull consumer per group "
            "with explicit acks, nak(delay) retries, Nats-Msg-Id publish dedup and a "
            "dead-letter stream per topic; at-least-once."
        ),
        capabilities=Capabilities(
            guarantee=Guarantee.AT_LEAST_ONCE,
            persistent=True,
            redelivery=True,
            delayed_redelivery=Support.NATIVE,  # nak with a delay
            dead_letter=Support.EMULATED,  # confirmed publish to the DLQ stream, then term()
            consumer_groups=True,
            broadcast=True,
            replay=True,  # new groups start at DeliverAll
            ordered_per_key=True,  # one pull subscription sees stream order
            ordered_across_members=False,  # members pull interleaved batches
            exclusive_in_flight=True,  # pulls never exceed prefetch - unsettled
            publish_confirms=True,  # PubAck awaited
            publish_dedup=True,  # Nats-Msg-Id = message id, within the duplicate window
            survives_restart=True,  # file storage
            reconnects=True,
            max_body_bytes=MAX_BODY_BYTES,
        ),
    ),
    BrokerProfile(
        name="nats-core",
        schemes=("nats+core",),
        factory="eventwire.brokers.nats.core:CoreNatsBroker",
        client_library="nats-py",
        extra="nats",
        summary=(
            "Core NATS: fire-and-forget subjects, queue groups for competing consumers; "
            "at-most-once, nothing stored, no redelivery."
        ),
        capabilities=Capabilities(
            guarantee=Guarantee.AT_MOST_ONCE,
            persistent=False,
            redelivery=False,
            delayed_redelivery=Support.NONE,
            dead_letter=Support.NONE,  # best effort publish to the DLQ subject, never kept
            consumer_groups=True,  # queue groups
            broadcast=True,
            replay=False,
            ordered_per_key=True,  # one connection, one subscriber: subject order is kept
            ordered_across_members=False,
            exclusive_in_flight=False,  # the server pushes; nothing holds the next one back
            publish_confirms=False,  # a flush proves the server read them, not delivery
            publish_dedup=False,
            survives_restart=False,
            reconnects=True,  # the client resubscribes; messages during the gap are lost
            max_body_bytes=MAX_BODY_BYTES,
        ),
    ),
)
