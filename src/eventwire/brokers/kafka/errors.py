"""Broker layer: confluent-kafka (librdkafka) errors -> eventwire's error tree (Kafka adapter).

One message form: "{doing} on kafka at {redacted url} failed: {reason}".
"""

from __future__ import annotations

from typing import Final

from confluent_kafka import KafkaError, KafkaException

from eventwire.core.errors import (
    BrokerError,
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


def reason(error: KafkaError | BaseException, url: BrokerURL) -> str:
    """librdkafka's own description, scrubbed of credentials (``BrokerURL.scrub``)."""
    kafka_error = error if isinstance(error, KafkaError) else error_of(error)
    text = kafka_error.str() if kafka_error is not None else f"{type(error).__name__}: {error}"
    return url.scrub(text)


def is_transient(error: KafkaError | None) -> bool:
    return error is not None and (error.code() in TRANSIENT or bool(error.retriable()))


def translate(
    exc: BaseException,
    doing: str,
    url: BrokerURL,
    *,
    publishing: bool = False,
) -> EventwireError:
    """The eventwire error for ``exc``; raise it ``from exc`` to keep the original."""
    if isinstance(exc, EventwireError):
        return exc
    error = error_of(exc)
    text = f"{doing} on kafka at {url} failed: {reason(exc, url)}"
    code = None if error is None else error.code()
    if code in _CONFIGURATION:
        return ConfigurationError(text)
    if code == KafkaError.MSG_SIZE_TOO_LARGE:
        return MessageTooLargeError(text)
    if publishing:
        return PublishError(text)
    if is_transient(error) or isinstance(exc, TimeoutError | OSError):
        return ConnectionLostError(text)
    return BrokerError(text)
