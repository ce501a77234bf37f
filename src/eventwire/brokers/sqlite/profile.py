"""Broker layer: the sqlite profile (durable embedded broker in one file); data only."""

from __future__ import annotations

from eventwire.core.capabilities import BrokerProfile, Capabilities, Guarantee, Support

MAX_BODY_BYTES = 16 * 1024 * 1024

SQLITE = BrokerProfile(
    name="sqlite",
    schemes=("sqlite",),
    factory="eventwire.brokers.sqlite.broker:SQLiteBroker",
    client_library=None,  # stdlib sqlite3
    extra=None,
    summary=(
        "Durable embedded broker in one SQLite file (WAL), shared by processes on one machine: "
        "sqlite:///relative.db or sqlite:////absolute/path.db"
    ),
    capabilities=Capabilities(
        guarantee=Guarantee.AT_LEAST_ONCE,
        persistent=True,
        redelivery=True,
        delayed_redelivery=Support.NATIVE,  # claims.due_at: no timer, no extra topic
        dead_letter=Support.NATIVE,  # same transaction moves the message to <topic>.dlq
        consumer_groups=True,
        broadcast=True,
        replay=True,
        ordered_per_key=True,
        ordered_across_members=False,  # members claim batches concurrently
        exclusive_in_flight=True,
        publish_confirms=True,  # publish returns after COMMIT
        publish_dedup=True,  # partial unique index on (topic, message id) within retention
        survives_restart=True,
        reconnects=False,  # nothing to reconnect to: the file is opened locally
        max_body_bytes=MAX_BODY_BYTES,
    ),
)

PROFILES: tuple[BrokerProfile, ...] = (SQLITE,)
