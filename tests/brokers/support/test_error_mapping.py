"""Tests: one exception mapping for every adapter: a table each, one message form, no secrets."""

from __future__ import annotations

from collections.abc import Callable

import aiormq.exceptions as amqp
import nats.errors
import pytest
from confluent_kafka import KafkaError, KafkaException
from redis import exceptions as rex

from eventwire.brokers._support.errors import ErrorRule, ErrorTable, map_error, translate
from eventwire.brokers.kafka.errors import translate as kafka_translate
from eventwire.brokers.nats.errors import NATS
from eventwire.brokers.rabbitmq.errors import translate as rabbitmq_translate
from eventwire.brokers.redis.errors import REDIS
from eventwire.core.errors import (
    BrokerError,
    ClosedError,
    ConfigurationError,
    ConnectionLostError,
    EventwireError,
    MessageTooLargeError,
    PublishError,
)
from eventwire.core.url import BrokerURL

CANARY = "Canary-5150"
_TABLE = ErrorTable(
    broker="Demo",
    rules=(
        ErrorRule(match=KeyError, error=ConfigurationError, hint="fix the key"),
        ErrorRule(match=lambda exc: "again" in str(exc), error=ConnectionLostError),
        ErrorRule(match=LookupError, error=ClosedError),
    ),
)


def test_first_matching_rule_wins_in_the_one_message_form() -> None:
    url = BrokerURL.parse(f"demo://user:{CANARY}@host:1")
    err = translate(_TABLE, KeyError("k"), url, "reading")
    assert type(err) is ConfigurationError
    assert (
        str(err) == "reading on Demo at demo://user:***@host:1 failed: KeyError: 'k'; fix the key"
    )
    assert type(translate(_TABLE, IndexError("i"), url, "x")) is ClosedError  # after KeyError
    assert type(translate(_TABLE, RuntimeError("try again"), url, "x")) is ConnectionLostError
    other = translate(_TABLE, RuntimeError(), url, "pinging")
    assert type(other) is BrokerError
    assert str(other) == "pinging on Demo at demo://user:***@host:1 failed: RuntimeError"


def test_eventwire_errors_pass_through_and_secrets_never_show() -> None:
    url = BrokerURL.parse(f"demo://user:{CANARY}@host:1")
    mine = ClosedError("closed")
    assert translate(_TABLE, mine, url, "x") is mine
    leaky = RuntimeError(f"cannot reach demo://user:{CANARY}@host:1 with {CANARY}")
    err = translate(_TABLE, leaky, url, "connecting")
    assert CANARY not in str(err) + repr(err)
    masked = map_error(leaky, _TABLE, doing="x", where="h", redact=lambda t: t.replace(CANARY, "*"))
    assert CANARY not in str(masked)


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (
            lambda url: translate(REDIS, rex.AuthenticationError("bad"), url, "connecting"),
            (ConfigurationError, "connecting on Redis at "),
        ),
        (
            lambda url: translate(REDIS, rex.ConnectionError("down"), url, "publishing"),
            (ConnectionLostError, "publishing on Redis at "),
        ),
        (
            lambda url: translate(NATS, nats.errors.MaxPayloadError(), url, "publishing"),
            (MessageTooLargeError, "publishing on NATS at "),
        ),
        (
            lambda url: translate(NATS, nats.errors.NoServersError(), url, "connecting"),
            (ConnectionLostError, "connecting on NATS at "),
        ),
        (
            lambda url: rabbitmq_translate(
                amqp.ChannelPreconditionFailed(), "declaring", str(url), CANARY
            ),
            (ConfigurationError, "declaring on RabbitMQ at "),
        ),
        (
            lambda url: rabbitmq_translate(ConnectionError(CANARY), "publishing", str(url), CANARY),
            (ConnectionLostError, "publishing on RabbitMQ at "),
        ),
        (
            lambda url: kafka_translate(_kafka(KafkaError._AUTHENTICATION), "connecting", url),
            (ConfigurationError, "connecting on kafka at "),
        ),
        (
            lambda url: kafka_translate(_kafka(KafkaError._TRANSPORT), "reading", url),
            (ConnectionLostError, "reading on kafka at "),
        ),
    ],
)
def test_every_adapter_table_speaks_the_one_form(
    make: Callable[[BrokerURL], EventwireError], expected: tuple[type, str]
) -> None:
    url = BrokerURL.parse(f"x://user:{CANARY}@host:1")
    err = make(url)
    kind, start = expected
    assert type(err) is kind
    assert str(err).startswith(f"{start}x://user:***@host:1 failed: ")
    assert CANARY not in str(err)


def _kafka(code: int, text: str = f"broker said {CANARY}") -> KafkaException:
    return KafkaException(KafkaError(code, text))


@pytest.mark.parametrize(
    ("code", "reading", "publishing"),
    [
        (KafkaError._AUTHENTICATION, ConfigurationError, ConfigurationError),
        (KafkaError.MSG_SIZE_TOO_LARGE, MessageTooLargeError, MessageTooLargeError),
        (KafkaError._TRANSPORT, ConnectionLostError, PublishError),
        (KafkaError._FAIL, BrokerError, PublishError),
    ],
)
def test_kafka_matches_librdkafka_codes_and_a_publish_fails_as_a_publish(
    code: int, reading: type[EventwireError], publishing: type[EventwireError]
) -> None:
    url = BrokerURL.parse(f"kafka://user:{CANARY}@host:1")
    read = kafka_translate(_kafka(code), "reading", url)
    sent = kafka_translate(_kafka(code), "publishing", url, publishing=True)
    assert (type(read), type(sent)) == (reading, publishing)
    # librdkafka's own words, not the KafkaError{code=...} repr, with the password scrubbed.
    assert str(read) == "reading on kafka at kafka://user:***@host:1 failed: broker said ***"
    assert type(kafka_translate(TimeoutError(), "reading", url)) is ConnectionLostError
