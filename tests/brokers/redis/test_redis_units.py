"""Redis adapter units without a server: URL options, envelopes, backoff, error translation."""

from __future__ import annotations

from typing import cast

import pytest
from redis import exceptions as rex

from eventwire.brokers._support.envelope import EnvelopeError
from eventwire.brokers._support.errors import translate
from eventwire.brokers.redis.connection import retry_streak
from eventwire.brokers.redis.envelope import (
    as_fields,
    from_fields,
    from_payload,
    stream_entries,
    to_fields,
    to_payload,
)
from eventwire.brokers.redis.errors import REDIS, is_transient
from eventwire.brokers.redis.options import RedisOptions
from eventwire.brokers.redis.subscription import RedisDelivery, Subscription
from eventwire.core.errors import BrokerError, ConfigurationError, ConnectionLostError
from eventwire.core.message import Delivery, Message
from eventwire.core.url import BrokerURL

CANARY = "canary-Pw-7f3a91"


def sample() -> Message:
    return Message(
        body=b"\x00\xff body \r\n",
        key="k-1",
        headers={"tenant": "acme", "note": "ünï ✓", "empty": ""},
        content_type="application/json",
        correlation_id="c-1",
        causation_id="c-0",
    )


def test_options_defaults_and_overrides() -> None:
    default = RedisOptions.from_url(BrokerURL.parse("redis://localhost"))
    assert default.claim_idle == 30.0
    assert default.publish_timeout == 30.0
    assert default.socket_timeout + default.block <= 15, "half-open must be noticed in 15 s"
    opts = RedisOptions.from_url(
        BrokerURL.parse("redis://h:1/3?claim_idle=0.5&maxlen=0&prefix=app:&max_buffered=7")
    )
    assert (opts.db, opts.claim_idle, opts.maxlen, opts.prefix, opts.max_buffered) == (
        3,
        0.5,
        0,
        "app:",
        7,
    )


@pytest.mark.parametrize(
    "query",
    ["nope=1", "claim_idle=abc", "claim_idle=0", "maxlen=-1", "block=5&socket_timeout=5"],
)
def test_bad_options_are_configuration_errors(query: str) -> None:
    with pytest.raises(ConfigurationError):
        RedisOptions.from_url(BrokerURL.parse(f"redis://:{CANARY}@h:1/0?{query}"))


def test_stream_fields_round_trip() -> None:
    sent = sample()
    got = from_fields(to_fields(sent))
    assert got == sent
    minimal = Message(body=b"")
    assert from_fields(to_fields(minimal)) == minimal
    assert b"h" not in to_fields(minimal), "no headers field when there are none"


def test_payload_round_trip_keeps_binary_body() -> None:
    sent = sample()
    assert from_payload(to_payload(sent)) == sent


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {b"body": b"x"},
        {b"id": b"1", b"body": b"x", b"h": b"{not json"},
        {b"id": b"1", b"body": b"x", b"h": b'{"a": 1}'},
        {b"id": b"\xff", b"body": b"x"},
    ],
)
def test_foreign_entries_raise_envelope_error(fields: dict[bytes, bytes]) -> None:
    with pytest.raises(EnvelopeError):
        from_fields(fields)


@pytest.mark.parametrize("payload", [b"", b"hello", b"EW1\nno-newline", b"EW1\n[1]\nbody"])
def test_foreign_payloads_raise_envelope_error(payload: bytes) -> None:
    with pytest.raises(EnvelopeError):
        from_payload(payload)


def test_reply_shapes() -> None:
    resp2 = [[b"ew:t", [(b"1-0", {b"a": b"b"}), (b"2-0", None)]]]
    assert list(stream_entries(resp2)) == [(b"1-0", {b"a": b"b"})]
    resp3 = {b"ew:t": [[(b"1-0", {b"a": b"b"})]][0]}
    assert list(stream_entries(resp3)) == [(b"1-0", {b"a": b"b"})]
    assert list(stream_entries(None)) == []
    assert as_fields([b"a", b"b", b"c", b"d"]) == {b"a": b"b", b"c": b"d"}


def test_backoff_is_capped_jittered_and_resets() -> None:
    backoff = retry_streak(2.0)
    delays = [backoff.next_delay() for _ in range(50)]
    assert all(0 < d <= 2.0 for d in delays)
    assert max(delays[-10:]) >= 1.0, "grows up to the cap"
    assert len(set(delays)) > 10, "jittered"
    backoff.reset()
    assert backoff.next_delay() <= 0.2


def test_translate_keeps_passwords_out() -> None:
    url = BrokerURL.parse(f"redis://user:{CANARY}@127.0.0.1:1/0")
    lost = translate(REDIS, rex.ConnectionError(f"boom redis://user:{CANARY}@x"), url, "reading")
    assert isinstance(lost, ConnectionLostError)
    auth = translate(REDIS, rex.AuthenticationError("invalid password"), url, "connecting")
    assert isinstance(auth, ConfigurationError)
    other = translate(REDIS, rex.ResponseError("WRONGTYPE"), url, "publishing")
    assert isinstance(other, BrokerError)
    for err in (lost, auth, other):
        assert CANARY not in str(err)
        assert CANARY not in repr(err)


def test_c_packing_sends_the_same_bytes_as_redis_py() -> None:
    import redis.asyncio as aioredis

    from eventwire.brokers.redis.connection import HIREDIS, FastConnection

    assert HIREDIS, "the redis extra installs hiredis"
    args = ("XADD", "ew:t", "MAXLEN", "~", 1000, "*", b"id", b"\x00\xff", "ünï", 1.25, -3)
    stock = b"".join(aioredis.Connection().pack_command(*args))
    assert b"".join(FastConnection().pack_command(*args)) == stock
    assert b"".join(FastConnection().pack_command("CONFIG GET", "maxmemory")) == b"".join(
        aioredis.Connection().pack_command("CONFIG GET", "maxmemory")
    )


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (rex.ResponseError("BUSY Redis is busy running a script."), True),
        (rex.ReadOnlyError("You can't write against a read only replica."), True),
        (rex.MasterDownError("Link with MASTER is down"), True),
        (rex.BusyLoadingError("Redis is loading the dataset in memory"), True),
        (rex.TryAgainError("Multiple keys request during rehashing of slot"), True),
        (rex.ConnectionError("Connection refused"), True),
        (rex.ResponseError("BUSYGROUP Consumer Group name already exists"), False),
        (rex.ResponseError("WRONGTYPE Operation against a key"), False),
        (rex.NoPermissionError("no permissions"), False),
    ],
)
def test_failover_replies_are_transient(error: Exception, transient: bool) -> None:
    assert is_transient(error) is transient


class _Settles:
    """What a RedisDelivery uses of its subscription, recorded."""

    group = "g"

    def __init__(self) -> None:
        self.acked: list[RedisDelivery] = []
        self.nacked: list[RedisDelivery] = []

    def ack_now(self, delivery: RedisDelivery) -> None:
        self.acked.append(delivery)

    async def settle_nack(self, delivery: RedisDelivery, delay: float | None) -> None:
        self.nacked.append(delivery)


def _delivery(sub: _Settles) -> RedisDelivery:
    return RedisDelivery(cast("Subscription", sub), b"1-0", Message(body=b"x"), "t", 2)


def test_inlined_init_sets_exactly_what_the_base_init_sets() -> None:
    # RedisDelivery skips Delivery.__init__ (one per message): a slot the base adds must
    # be added there too, or deliveries would miss it.
    made = _delivery(_Settles())
    expected = {"message": made.message, "topic": "t", "attempt": 2, "group": "g"}
    expected |= {"_settled": None, "_settling": False}
    assert set(Delivery.__slots__) == set(expected)
    assert {slot: getattr(made, slot) for slot in Delivery.__slots__} == expected


async def test_ack_settles_synchronously_once_and_wins() -> None:
    sub = _Settles()
    delivery = _delivery(sub)
    await delivery.ack()
    await delivery.ack()
    await delivery.nack()
    assert sub.acked == [delivery]
    assert sub.nacked == []
    assert delivery.settled == "ack"
    nacked = _delivery(sub)
    await nacked.nack()
    await nacked.ack()
    assert sub.acked == [delivery]
    assert nacked.settled == "nack"
