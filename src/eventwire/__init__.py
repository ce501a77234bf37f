"""eventwire: production-ready messaging for event-driven Python services."""

from __future__ import annotations

from eventwire.core.capabilities import BrokerProfile, Capabilities, Guarantee, Support
from eventwire.core.contract import Broker, Health, Publisher, Subscriber
from eventwire.core.errors import (
    BrokerError,
    ConfigurationError,
    DecodeError,
    EventwireError,
    MessageError,
    PermanentError,
    ValidationError,
)
from eventwire.core.message import DEAD_LETTER_GROUP, Delivery, Message, dead_letter_topic
from eventwire.reliability.circuit_breaker import BreakerPolicy
from eventwire.reliability.idempotency import (
    Duplicate,
    IdempotencyStore,
    MemoryIdempotencyStore,
    SQLiteIdempotencyStore,
    TransactionalIdempotencyStore,
)
from eventwire.reliability.idempotency_urls import open_idempotency_store
from eventwire.reliability.retry import RetryPolicy
from eventwire.runtime.app import App
from eventwire.runtime.context import Context
from eventwire.runtime.stats import AppStats

__version__ = "0.1.0"

__all__ = [
    "DEAD_LETTER_GROUP",
    "App",
    "AppStats",
    "BreakerPolicy",
    "Broker",
    "BrokerError",
    "BrokerProfile",
    "Capabilities",
    "ConfigurationError",
    "Context",
    "DecodeError",
    "Delivery",
    "Duplicate",
    "EventwireError",
    "Guarantee",
    "Health",
    "IdempotencyStore",
    "MemoryIdempotencyStore",
    "Message",
    "MessageError",
    "PermanentError",
    "Publisher",
    "RetryPolicy",
    "SQLiteIdempotencyStore",
    "Subscriber",
    "Support",
    "TransactionalIdempotencyStore",
    "ValidationError",
    "__version__",
    "dead_letter_topic",
    "open_idempotency_store",
]
