"""Tests: RabbitMQ adapter pieces without a server: URL options, names, envelope, backoff."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest
from pamqp.commands import Basic
from pamqp.common import FieldTable

from eventwire.brokers.rabbitmq import delays, envelope
from eventwire.brokers.rabbitmq.connection import RabbitMQConnection
from eventwire.brokers.rabbitmq.options import (
    RabbitMQSettings,
    group_queue,
    group_queue_arguments,
    retry_queue,
)
from eventwire.core import headers as h
from eventwire.core.errors import ConfigurationError
from eventwire.core.message import DEAD_LETTER_GROUP, Message
from eventwire.core.url import BrokerURL

CANARY = "canary-Pw-7f3a91"


def test_settings_from_url_keep_password_out_of_repr() -> None:
    url = BrokerURL.parse(f"amqps://app:{CANARY}@rmq.example:5671/prod?heartbeat=5&channels=2")
    settings = RabbitMQSettings.from_url(url)
    assert (settings.host, settings.port, settings.virtualhost) == ("rmq.example", 5671, "prod")
    assert settings.ssl
    assert settings.heartbeat == 5
    assert settings.channels == 2
    assert settings.password == CANARY
    assert CANARY not in repr(settings)
    assert CANARY not in str(url)


@pytest.mark.parametrize("query", ["bogus=1", "heartbeat=x", "channels=0"])
def test_bad_url_options_are_configuration_errors(query: str) -> None:
    url = BrokerURL.parse(f"amqp://u:{CANARY}@localhost/?{query}")
    with pytest.raises(ConfigurationError) as info:
        RabbitMQSettings.from_url(url)
    assert CANARY not in str(info.value)


def test_queue_names_are_unambiguous_and_bounded() -> None:
    assert group_queue("ew", "a.b", "c") != group_queue("ew", "a", "b.c")
    long = group_queue("ew", "t" * 200, "g" * 200)
    assert len(long.encode()) <= 255
    assert long != group_queue("ew", "t" * 200, "g" * 199 + "h")
    assert len(group_queue("ew", "é" * 200, "g").encode()) <= 255


@pytest.mark.parametrize(
    "delay", [0.1, 0.3, 0.519, 1.0, 2.7, 7.3, 30.0, 301.0, 3601.0, 86_400.0, 10**6, 6e6]
)
def test_delay_steps_never_early_and_within_bound(delay: float) -> None:
    waited = delays.steps(delay) * delays.UNIT
    assert waited >= delay - 1e-6
    # 6 significant bits, rounded up: at most 2**-5 late (or one 0.1 s step)
    assert waited - delay <= max(delays.UNIT, delay / 32) + 1e-6
    assert len(delays.levels_of(delays.steps(delay))) <= delays.SIGNIFICANT_BITS


def test_delay_levels_are_within_rabbitmq_ttl_limit_and_capped() -> None:
    top = delays.level_queue_arguments("ew", delays.LEVELS - 1)["x-message-ttl"]
    assert isinstance(top, int)
    assert top <= 2**32 - 1
    assert delays.steps(10**12) == delays.MAX_STEPS
    assert delays.steps(0) == delays.steps(-1) == delays.steps(float("nan")) == 0


def test_delay_routing_key_spells_the_levels() -> None:
    key = delays.routing_key(0b101, "ew:t:g")
    words = key.split(".")
    assert len(words) == delays.LEVELS + 1
    assert words[-4:-1] == ["1", "0", "1"]
    assert words[-1] == delays.target_token("ew:t:g")
    assert len(key) <= 255


def test_dead_letter_queue_is_terminal() -> None:
    settings = RabbitMQSettings.from_url(BrokerURL.parse("amqp://localhost/"))
    source = group_queue_arguments(settings, "orders", "billing")
    assert source["x-dead-letter-routing-key"] == "orders.dlq"
    assert source["x-dead-letter-strategy"] == "at-least-once"
    assert source["x-overflow"] == "reject-publish"
    assert group_queue_arguments(settings, "orders.dlq", DEAD_LETTER_GROUP) == {
        "x-queue-type": "quorum"
    }


def test_envelope_round_trip_keeps_every_field() -> None:
    message = Message(
        body=b"\x00\xffbody",
        key="k1",
        headers={"tenant": "acme", "note": "é"},
        content_type="application/json",
        correlation_id="corr",
        causation_id="cause",
        timestamp=1_700_000_000.123456,
    )
    props = envelope.encode(message, attempt=3)
    props.headers = dict(props.headers or {}, **{"x-delivery-count": 1})
    decoded, attempt = envelope.decode(message.body, props, redelivered=True, via_retry=True)
    assert decoded == message
    assert attempt == 4  # our attempt header 3 + one broker redelivery
    # The same headers from a producer (not through the retry path): the header is ignored.
    assert envelope.decode(message.body, props, redelivered=True)[1] == 2


def test_broadcast_redelivery_counts_the_redelivered_flag() -> None:
    props = envelope.encode(Message(body=b"x"))
    assert envelope.decode(b"x", props, redelivered=False)[1] == 1
    assert envelope.decode(b"x", props, redelivered=True)[1] == 2


def test_broker_dead_letter_gets_a_reason_but_retry_expiry_does_not() -> None:
    death: FieldTable = {
        "reason": "delivery_limit",
        "queue": "q",
        "routing-keys": ["orders"],
        "count": 1,
    }
    expired: FieldTable = {"reason": "expired", "queue": "q:retry-500ms", "routing-keys": ["q:r"]}
    props = Basic.Properties(
        message_id="m1",
        timestamp=datetime.now(tz=UTC),
        headers={"x-death": [death, expired], "x-first-death-reason": "expired"},
    )
    message, _ = envelope.decode(b"x", props, redelivered=False, dead_letters=True)
    assert message.headers[h.DLQ_REASON] == "delivery-limit"
    assert message.headers[h.DLQ_ORIGINAL_TOPIC] == "orders"
    retried, _ = envelope.decode(
        b"x",
        Basic.Properties(message_id="m2", headers={"x-death": [expired]}),
        redelivered=False,
        dead_letters=True,
    )
    assert h.DLQ_REASON not in retried.headers


def test_backoff_is_capped_exponential_with_jitter() -> None:
    settings = RabbitMQSettings.from_url(BrokerURL.parse("amqp://localhost/?max_backoff=5"))
    high = RabbitMQConnection(settings, "x", rng=_Fixed(0.0))  # no jitter taken off
    low = RabbitMQConnection(settings, "x", rng=_Fixed(0.999999999))
    assert low.backoff(0) == pytest.approx(0.05)
    assert high.backoff(0) == pytest.approx(0.1)
    assert high.backoff(3) == pytest.approx(0.8)
    assert high.backoff(100) == pytest.approx(5.0)
    assert low.backoff(100) == pytest.approx(2.5)


class _Fixed(random.Random):
    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def random(self) -> float:
        return self.value


def test_a_producer_ttl_running_out_is_a_death_a_delay_level_is_not() -> None:
    def reason(queue: str) -> str | None:
        death: FieldTable = {"reason": "expired", "queue": queue, "routing-keys": ["orders"]}
        props = Basic.Properties(message_id="m", headers={"x-death": [death]})
        message, _ = envelope.decode(b"x", props, redelivered=False, dead_letters=True)
        return message.headers.get(h.DLQ_REASON)

    assert reason("ew:orders:billing") == "expired"
    assert reason(delays.level_queue("ew", 3)) is None
    assert reason(retry_queue("ew:orders:billing", 0.5)) is None  # drained from an old version
