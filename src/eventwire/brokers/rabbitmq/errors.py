"""Broker layer: aio-pika/aiormq exceptions -> eventwire's error tree (RabbitMQ adapter)."""

from __future__ import annotations

import asyncio

import aiormq.exceptions as amqp

from eventwire.core.errors import (
    BrokerError,
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


def translate(  # noqa: PLR0911 - one return per family of client errors
    exc: BaseException, action: str, where: str, secret: str | None = None
) -> EventwireError:
    """The eventwire error for ``exc`` raised while doing ``action`` against ``where``.

    Raise the result ``from exc`` so the original stays reachable as ``__cause__``.
    """
    if isinstance(exc, EventwireError):
        return exc
    detail = describe(exc, secret)
    if isinstance(exc, amqp.ProbableAuthenticationError | amqp.AuthenticationError):
        return ConfigurationError(
            f"{action} at {where}: the broker refused the credentials ({detail}); "
            "check user, password and virtual host"
        )
    if isinstance(exc, amqp.ChannelAccessRefused | amqp.ConnectionNotAllowed):
        return ConfigurationError(f"{action} at {where}: access refused ({detail})")
    if isinstance(exc, amqp.ChannelPreconditionFailed):
        return ConfigurationError(
            f"{action} at {where}: the broker has an incompatible queue or exchange "
            f"({detail}); delete it or use another exchange= name"
        )
    if isinstance(exc, amqp.DeliveryError):
        return PublishError(f"{action} at {where}: the broker refused the message ({detail})")
    if isinstance(exc, TimeoutError):
        return ConnectionLostError(f"{action} at {where}: timed out ({detail})")
    if isinstance(exc, TRANSIENT):
        return ConnectionLostError(f"{action} at {where}: connection failed ({detail})")
    return BrokerError(f"{action} at {where}: {detail}")
