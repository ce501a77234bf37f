"""Broker layer: nats-py exceptions -> eventwire errors (the table for the shared mapping)."""

from __future__ import annotations

import nats.errors

from eventwire.brokers._support.errors import ErrorRule, ErrorTable
from eventwire.core.errors import ConnectionLostError, MessageTooLargeError

NATS = ErrorTable(
    broker="NATS",
    rules=(
        ErrorRule(match=nats.errors.MaxPayloadError, error=MessageTooLargeError),
        ErrorRule(
            match=(
                nats.errors.ConnectionClosedError,
                nats.errors.NoServersError,
                nats.errors.OutboundBufferLimitError,
                nats.errors.StaleConnectionError,
                OSError,
            ),
            error=ConnectionLostError,
        ),
    ),
)
