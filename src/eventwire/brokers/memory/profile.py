"""Broker layer: the in-process memory broker's profile (data only, no imports of the adapter)."""

from __future__ import annotations

from eventwire.core.capabilities import BrokerProfile, Capabilities, Guarantee, Support

PROFILES: tuple[BrokerProfile, ...] = (
    BrokerProfile(
        name="memory",
        schemes=("memory",),
        factory="eventwire.brokers.memory.broker:MemoryBroker",
        client_library=None,
        extra=None,
        summary=(
            "In-process broker for tests and single-process apps: memory://NAME is shared by "
            "every client in the process, memory:// is private; nothing survives the process."
        ),
        capabilities=Capabilities(
            guarantee=Guarantee.AT_LEAST_ONCE,
            persistent=True,  # within the process: groups keep their backlog while away
            redelivery=True,
            delayed_redelivery=Support.NATIVE,
            dead_letter=Support.NATIVE,
            consumer_groups=True,
            broadcast=True,
            replay=True,
            ordered_per_key=True,
            ordered_across_members=True,  # a key stays with one member while it has any in flight
            exclusive_in_flight=True,
            publish_confirms=True,  # publish returns once the message is in the topic's log
            publish_dedup=False,
            survives_restart=False,
            reconnects=False,  # nothing to reconnect to
            max_body_bytes=64 * 1024 * 1024,
        ),
    ),
)
