"""Tests: NATS adapter pieces that need no server (options, naming, envelope, backoff)."""

from __future__ import annotations

import random
from types import SimpleNamespace

import pytest

from eventwire.brokers._support.errors import translate
from eventwire.brokers.catalog import profile_named
from eventwire.brokers.nats.connection import backoff_handler, scrub
from eventwire.brokers.nats.delivery import attempt_and_seq
from eventwire.brokers.nats.envelope import MSG_ID, check_size, from_nats, to_headers
from eventwire.brokers.nats.errors import NATS
from eventwire.brokers.nats.options import NatsOptions, safe_name
from eventwire.core.capabilities import Guarantee, Support
from eventwire.core.errors import (
    BrokerError,
    ConfigurationError,
    ConnectionLostError,
    InvalidHeaderError,
    MessageTooLargeError,
)
from eventwire.core.message import Message
from eventwire.core.url import BrokerURL


def test_profiles_claim_what_the_adapters_do() -> None:
    js = profile_named("nats-jetstream").capabilities
    core = profile_named("nats-core").capabilities
    assert js.guarantee is Guarantee.AT_LEAST_ONCE
    assert js.publish_dedup
    assert js.replay
    assert js.delayed_redelivery is Support.NATIVE
    assert core.guarantee is Guarantee.AT_MOST_ONCE
    assert not (core.persistent)
    assert not (core.redelivery)
    assert not (core.replay)
    assert not (core.publish_confirms)
    assert core.dead_letter is Support.NONE


def test_options_from_url_and_errors() -> None:
    opts = NatsOptions.from_url(BrokerURL.parse("nats://h:1?ack_wait=2.5&max_deliver=7"))
    assert opts.ack_wait == 2.5
    assert opts.max_deliver == 7
    with pytest.raises(ConfigurationError, match="unknown NATS URL option"):
        NatsOptions.from_url(BrokerURL.parse("nats://h:1?nope=1"))
    with pytest.raises(ConfigurationError, match="must be a float"):
        NatsOptions.from_url(BrokerURL.parse("nats://h:1?ack_wait=soon"))
    with pytest.raises(ConfigurationError):
        NatsOptions.from_url(BrokerURL.parse("nats://h:1?storage=tape"))


def test_subjects_and_names() -> None:
    opts = NatsOptions()
    assert opts.subject("orders.created") == "ew.orders.created"
    with pytest.raises(ConfigurationError, match="empty"):
        opts.subject("a..b")
    # '.' and '_' spellings of a topic must not share a stream.
    assert safe_name("a.b") != safe_name("a_b")
    assert "." not in opts.stream("a.b.c")
    assert safe_name("x") == safe_name("x")


def test_envelope_round_trip_keeps_every_field() -> None:
    message = Message(
        body=b"\x00\xffbody",
        key="k1",
        headers={"trace": "t-1", "Mixed-Case": "v"},
        content_type="application/json",
        correlation_id="c1",
        causation_id="c0",
    )
    headers = to_headers(message)
    assert headers[MSG_ID] == message.id
    back = from_nats(message.body, headers)
    assert back == message


def test_envelope_refuses_nats_reserved_headers_and_foreign_defaults() -> None:
    with pytest.raises(InvalidHeaderError, match="reserved"):
        to_headers(Message(body=b"", headers={"Nats-Expected-Stream": "X"}))
    plain = from_nats(b"raw", None)
    assert plain.body == b"raw"
    assert plain.headers == {}
    server_added = from_nats(b"x", {"Nats-Sequence": "3", "a": "b"})
    assert dict(server_added.headers) == {"a": "b"}


def test_check_size_counts_headers_against_max_payload() -> None:
    message = Message(body=b"x" * 900, headers={"h": "v" * 200})
    check_size(message, to_headers(message), 2000)
    with pytest.raises(MessageTooLargeError, match="max_payload"):
        check_size(message, to_headers(message), 1000)


def test_attempt_and_sequence_from_reply_subjects() -> None:
    assert attempt_and_seq("$JS.ACK.S.C.3.17.9.1700000000.0") == (3, 17)
    assert attempt_and_seq("$JS.ACK.dom.hash.S.C.2.5.5.1700000000.0.tok") == (2, 5)
    assert attempt_and_seq(None) == (1, None)


def test_backoff_is_capped_exponential_with_jitter() -> None:
    opts = NatsOptions(reconnect_min=0.1, reconnect_max=2.0)
    choose = backoff_handler(opts)
    random.seed(1)
    delays = []
    for attempts in range(12):
        server = SimpleNamespace(reconnects=attempts)
        chosen, delay = choose([server], {})
        assert chosen is server
        delays.append(delay)
    assert all(0.05 <= d <= 2.0 for d in delays)
    assert max(delays[8:]) > 0.4  # grows towards the cap ...
    assert max(delays) <= opts.reconnect_max  # ... and never beyond it


def test_backoff_stays_capped_after_thousands_of_failed_tries() -> None:
    # 0.1 * 2**1024 overflows a float; a raising hook made nats-py spin without yielding.
    opts = NatsOptions(reconnect_min=0.1, reconnect_max=2.0)
    choose = backoff_handler(opts)
    for attempts in (1023, 1024, 1100, 10**6):
        _, delay = choose([SimpleNamespace(reconnects=attempts)], {})
        assert 0.05 <= delay <= 2.0


def test_reconnect_and_buffer_options_are_checked() -> None:
    fastest = NatsOptions.from_url(
        BrokerURL.parse("nats://h:1?reconnect_min=0.01&reconnect_max=0.01")
    )
    assert fastest.reconnect_min == fastest.reconnect_max == 0.01
    for query in ("reconnect_min=0", "reconnect_min=0.001", "reconnect_min=3&reconnect_max=2"):
        with pytest.raises(ConfigurationError, match="reconnect_min"):
            NatsOptions.from_url(BrokerURL.parse(f"nats://h:1?{query}"))
    assert NatsOptions.from_url(BrokerURL.parse("nats://h:1?pending_size=0")).pending_size == 0
    with pytest.raises(ConfigurationError, match="pending_size"):
        NatsOptions.from_url(BrokerURL.parse("nats://h:1?pending_size=-1"))


def test_errors_are_translated_and_scrubbed() -> None:
    import nats.errors

    url = BrokerURL.parse("nats://user:Canary-77@h:4222")
    err = translate(NATS, nats.errors.ConnectionClosedError(), url, "publishing")
    assert isinstance(err, ConnectionLostError)
    other = translate(NATS, RuntimeError("boom nats://user:Canary-77@h:4222"), url, "x")
    assert isinstance(other, BrokerError)
    assert "Canary-77" not in str(other) + repr(other)
    assert scrub("pw Canary-77 here", url) == "pw *** here"


def test_publish_timeout_must_stay_inside_the_duplicate_window() -> None:
    # A re-send after the window would be stored twice: refuse the combination up front.
    with pytest.raises(ConfigurationError, match="dup_window"):
        NatsOptions.from_url(BrokerURL.parse("nats://h:1?publish_timeout=180"))
    with pytest.raises(ConfigurationError, match="dup_window"):
        NatsOptions.from_url(BrokerURL.parse("nats://h:1?publish_timeout=30&dup_window=30"))
    ok = NatsOptions.from_url(BrokerURL.parse("nats://h:1?publish_timeout=180&dup_window=600"))
    assert ok.publish_timeout < ok.dup_window


def test_stream_limits_are_configurable() -> None:
    opts = NatsOptions.from_url(BrokerURL.parse("nats://h:1?max_bytes=1048576&max_age=60"))
    assert (opts.max_bytes, opts.max_age) == (1048576, 60)
    assert NatsOptions().max_bytes == 0  # unlimited unless asked
    with pytest.raises(ConfigurationError, match="max_bytes"):
        NatsOptions.from_url(BrokerURL.parse("nats://h:1?max_bytes=-1"))


async def test_pubacks_given_up_by_aclose_are_unconfirmed_not_a_cancellation() -> None:
    import asyncio

    from eventwire.brokers.nats.publisher import PubAcks

    class Silent:  # a connection whose PubAcks never come
        def new_inbox(self) -> str:
            return "_INBOX.t"

        async def publish(self, *args: object, **kwargs: object) -> None:
            return None

    acks = PubAcks(Silent())  # type: ignore[arg-type]  # a stand-in with the two Client methods PubAcks uses
    loop = asyncio.get_running_loop()
    batch = [(Message(body=b"x"), {"Nats-Msg-Id": "1"})]
    round_ = asyncio.create_task(acks.send_round("s", batch, loop.time() + 30))
    await asyncio.sleep(0)  # the round has sent and is waiting for its PubAck
    await acks.aclose()  # the broker closing gives up on unconfirmed publishes
    failed, error = await asyncio.wait_for(round_, 5)
    assert failed == batch
    assert isinstance(error, TimeoutError)
