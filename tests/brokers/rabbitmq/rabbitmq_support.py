"""Tests: constants and types shared by the RabbitMQ adapter tests."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable

from eventwire.brokers.rabbitmq.broker import RabbitMQBroker

HOST, PORT = "127.0.0.1", 5672
FULL = os.environ.get("EVENTWIRE_TEST_SCALE", "").lower() == "full"

Opener = Callable[..., Awaitable[RabbitMQBroker]]
