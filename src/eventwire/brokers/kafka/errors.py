"""Broker layer: confluent-kafka (librdkafka) errors -> eventwire's error tree (the tables for
the shared mapping, ``brokers/_support/errors.py``).

librdkafka raises one exception class for everything, so the rules match on its error code.
Publishing has its own table: a failed publish is a ``PublishError`` whatever the cause,
unless the user must fix something (configuration, a message too large).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from confluent_kafka import KafkaError, KafkaException

from eventwire.brokers._support import errors as shared
from eventwire.brokers._support.errors import ErrorRule, ErrorTable
from eventwire.core.errors import (
    ConfigurationError,
    ConnectionLostError,
    EventwireError,
    MessageTooLargeError,
    PublishError,
)
from eventwire.core.url import BrokerURL

# librdkafka codes after which the same call can succeed once the cluster is reachable again.
TRANSIENT: Final = frozenset(
    {
        KafkaError._TRANSPORT,
        KafkaError._ALL_BROKERS_DOWN,
        KafkaError._TIMED_OUT,
        KafkaError._MSG_TIMED_OUT,
        KafkaError._RESOLVE,
        KafkaError.REQUEST_TIMED_OUT,
        KafkaError.NOT_COORDINATOR,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.NETWORK_EXCEPTION,
    }
)
# Codes the user fixes in the URL, the credentials or the broker's configuration.
_CONFIGURATION: Final = frozenset(
    {
        KafkaError._AUTHENTICATION,
        KafkaError.SASL_AUTHENTICATION_FAILED,
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.GROUP_AUTHORIZATION_FAILED,
        KafkaError.CLUSTER_AUTHORIZATION_FAILED,
        KafkaError.INVALID_REPLICATION_FACTOR,
        KafkaError.INVALID_PARTITIONS,
        KafkaError.POLICY_VIOLATION,
        KafkaError._INVALID_ARG,
        KafkaError._SSL,
    }
)


def error_of(exc: BaseException) -> KafkaError | None:
    """The ``KafkaError`` inside ``exc`` (a ``KafkaException`` or a bare ``KafkaError``)."""
    if isinstance(exc, KafkaError):
        return exc
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        return exc.args[0]
    return None


def describe(exc: BaseException) -> str:
    """librdkafka's own description (not the ``KafkaError{code=...}`` repr), else the type
    and message of any other exception."""
    error = error_of(exc)
    return error.str() if error is not None else shared.reason_of(exc)


def reason(exc: BaseException, url: BrokerURL) -> str:
    """``describe`` scrubbed of credentials (``BrokerURL.scrub``), for log lines."""
    return url.scrub(describe(exc))


def is_transient(error: KafkaError | None) -> bool:
    return error is not None and (error.code() in TRANSIENT or bool(error.retriable()))


def _code_in(codes: frozenset[int]) -> Callable[[BaseException], bool]:
    def matches(exc: BaseException) -> bool:
        error = error_of(exc)
        return error is not None and error.code() in codes

    return matches


def _lost(exc: BaseException) -> bool:
    return is_transient(error_of(exc)) or isinstance(exc, OSError)  # TimeoutError is one


_USER_FIXES = (
    ErrorRule(match=_code_in(_CONFIGURATION), error=ConfigurationError),
    ErrorRule(
        match=_code_in(frozenset({KafkaError.MSG_SIZE_TOO_LARGE})), error=MessageTooLargeError
    ),
)
KAFKA = ErrorTable(
    broker="kafka",
    rules=(*_USER_FIXES, ErrorRule(match=_lost, error=ConnectionLostError)),
    describe=describe,
)
KAFKA_PUBLISHING = ErrorTable(
    broker="kafka", rules=_USER_FIXES, default=PublishError, describe=describe
)


def translate(
    exc: BaseException,
    doing: str,
    url: BrokerURL,
    *,
    publishing: bool = False,
) -> EventwireError:
    """The shared mapping with this adapter's table (``KAFKA_PUBLISHING`` for a publish or
    a transaction's commit); raise the result ``from exc`` to keep the original."""
    return shared.translate(KAFKA_PUBLISHING if publishing else KAFKA, exc, url, doing)
