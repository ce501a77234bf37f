"""Broker layer: redis-py exceptions -> eventwire errors (the table for the shared mapping)."""

from __future__ import annotations

import asyncio

from redis import exceptions as rex

from eventwire.brokers._support.errors import ErrorRule, ErrorTable
from eventwire.core.errors import ConfigurationError, ConnectionLostError
from eventwire.core.url import BrokerURL

# Errors after which the same command may succeed once the connection is back.
TRANSIENT: tuple[type[BaseException], ...] = (
    rex.ConnectionError,
    rex.TimeoutError,
    rex.BusyLoadingError,
    OSError,
    asyncio.TimeoutError,
)

# Failover replies: the server is loading, running a long script, a demoted master
# (READONLY), a replica cut off from its master, a cluster moving slots. The same command
# succeeds once the failover is over, so publish and ``retry_until`` ride them out like a
# lost connection (until ``publish_timeout``). BUSY has no redis-py class: matched by code.
FAILOVER: tuple[type[BaseException], ...] = (
    rex.ReadOnlyError,
    rex.MasterDownError,
    rex.TryAgainError,
    rex.ClusterDownError,
)
_RETRYABLE = TRANSIENT + FAILOVER
# What a command can raise: sorted by ``is_transient`` into retry or fail.
REDIS_ERRORS: tuple[type[BaseException], ...] = (*TRANSIENT, rex.RedisError)
_FAILOVER_CODES = frozenset(
    {"BUSY", "LOADING", "READONLY", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN"}
)


def is_transient(exc: BaseException) -> bool:
    """True if the same command may succeed later: a lost connection or a failover reply."""
    if isinstance(exc, _RETRYABLE):
        return True
    return isinstance(exc, rex.ResponseError) and str(exc).split(" ", 1)[0] in _FAILOVER_CODES


def describe(exc: BaseException, url: BrokerURL) -> str:
    """The client's message with anything URL-like redacted (never shows a password)."""
    return url.scrub(str(exc)) or type(exc).__name__


REDIS = ErrorTable(
    broker="Redis",
    rules=(
        ErrorRule(
            match=(rex.AuthenticationError, rex.AuthorizationError),
            error=ConfigurationError,
            hint="Redis refused the credentials: check the user and password in the URL",
        ),
        ErrorRule(match=is_transient, error=ConnectionLostError),
    ),
)
