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

__version__ = "0.1.0"

__all__ = [
    "DEAD_LETTER_GROUP",
    "Broker",
    "BrokerError",
    "BrokerProfile",
    "Capabilities",
    "ConfigurationError",
    "DecodeError",
    "Delivery",
    "EventwireError",
    "Guarantee",
    "Health",
    "Message",
    "MessageError",
    "PermanentError",
    "Publisher",
    "Subscriber",
    "Support",
    "ValidationError",
    "__version__",
    "dead_letter_topic",
]
