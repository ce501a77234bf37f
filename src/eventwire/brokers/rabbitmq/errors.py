"""Broker layer: aio-pika/aiormq exceptions -> eventwire's error tree (RabbitMQ adapter)."""

from __future__ import annotations

import asyncio
from functools import partial

import aiormq.exceptions as amqp

from eventwire.brokers._support.errors import ErrorRule, ErrorTable, map_error
from eventwire.core.errors import (
    ConfigurationError,
    ConnectionLostError,
    EventwireError,
    PublishError,
)
from eventwire.core.url import mask

# Failures after which the same operation can succeed once the connection is back.
TRANSIENT: tuple[type[BaseException], ...] = (
    amqp.AMQPConnectionError,
    amqp.ChannelInvalidStateError,
    amqp.ChannelClosed,
    ConnectionError,
    OSError,
    asyncio.IncompleteReadError,
)


def describe(exc: BaseException, secret: str | None) -> str:
    """A one-line description of ``exc`` with the password (if any) masked."""
    return mask(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__, secret)


RABBITMQ = ErrorTable(
    broker="RabbitMQ",
    rules=(
        ErrorRule(
            match=(amqp.ProbableAuthenticationError, amqp.AuthenticationError),
            error=ConfigurationError,
            hint="the broker refused the credentials: check user, password and virtual host",
        ),
        ErrorRule(
            match=(amqp.ChannelAccessRefused, amqp.ConnectionNotAllowed),
            error=ConfigurationError,
            hint="access refused: check the user's permissions on the virtual host",
        ),
        ErrorRule(
            match=amqp.ChannelPreconditionFailed,
            error=ConfigurationError,
            hint="the broker has an incompatible queue or exchange: delete it or use another "
            "exchange= name",
        ),
        ErrorRule(match=amqp.DeliveryError, error=PublishError, hint="the broker refused it"),
        ErrorRule(match=(*TRANSIENT, TimeoutError), error=ConnectionLostError),
    ),
)


def translate(exc: BaseException, doing: str, where: str, secret: str | None) -> EventwireError:
    """``map_error`` with this adapter's table; ``where`` is the redacted URL and ``secret``
    the password masked in the client's message. Raise the result ``from exc``."""
    return map_error(exc, RABBITMQ, doing=doing, where=where, redact=partial(mask, secret=secret))
