"""Tests: Message immutability and validation, Delivery settle-once and dead-letter headers."""

from __future__ import annotations

import asyncio
import dataclasses
from types import MappingProxyType

import pytest

from eventwire.core import headers as h
from eventwire.core.errors import InvalidHeaderError, MessageTooLargeError
from eventwire.core.message import (
    DEAD_LETTER_GROUP,
    DEFAULT_CONTENT_TYPE,
    Delivery,
    Message,
    dead_letter_topic,
    new_message_id,
)


class RecordingDelivery(Delivery):
    """Records what the base asks the adapter to do; can be told to fail once."""

    __slots__ = ("actions", "fail_next")

    def __init__(self, message: Message | None = None, *, group: str | None = "g") -> None:
        super().__init__(
            message=message or Message(body=b"x"), topic="orders", attempt=3, group=group
        )
        self.actions: list[tuple[str, object]] = []
        self.fail_next = False

    async def _record(self, action: str, arg: object) -> None:
        await asyncio.sleep(0)  # a real adapter awaits I/O: let concurrent settles interleave
        if self.fail_next:
            self.fail_next = False
            raise ConnectionError("broker gone")
        self.actions.append((action, arg))

    async def _ack(self) -> None:
        await self._record("ack", None)

    async def _nack(self, delay: float | None) -> None:
        await self._record("nack", delay)

    async def _dead_letter(self, dead: Message) -> None:
        await self._record("dead-letter", dead)


def test_message_defaults_and_unique_ids() -> None:
    a, b = Message(body=b"a"), Message(body=b"b")
    assert a.id != b.id
    assert len(new_message_id()) == 32
    assert a.content_type == DEFAULT_CONTENT_TYPE
    assert a.key is None
    assert a.correlation_id is None
    assert dict(a.headers) == {}


def test_message_copies_mutable_inputs() -> None:
    body = bytearray(b"abc")
    headers = {"a": "1"}
    message = Message(body=body, headers=headers)  # type: ignore[arg-type]  # a bytearray body on purpose: Message must copy it to bytes
    body[0] = ord("z")
    headers["a"] = "2"
    assert message.body == b"abc"
    assert isinstance(message.body, bytes)
    assert message.headers["a"] == "1"
    with pytest.raises(TypeError):
        message.headers["b"] = "x"  # type: ignore[index]  # the headers are read-only: the TypeError is the test


def test_with_headers_merges_and_keeps_everything_else() -> None:
    message = Message(body=b"\xff", key="k", headers={"a": "1"}, correlation_id="c")
    copy = message.with_headers(b="2", a="3")
    assert dict(copy.headers) == {"a": "3", "b": "2"}
    assert (copy.id, copy.body, copy.key, copy.correlation_id) == (
        message.id,
        message.body,
        message.key,
        message.correlation_id,
    )
    assert dict(message.headers) == {"a": "1"}


@pytest.mark.parametrize(
    "message",
    [
        Message(body=b"", headers={"bad": "a\nb"}),
        Message(body=b"", key="line\r\nbreak"),
        Message(body=b"", correlation_id="nul\x00"),
        Message(body=b"", causation_id="x\ny"),
        Message(body=b"", content_type="text/plain\r\nX-Injected: 1"),
        Message(body=b"", id="id\n"),
    ],
)
def test_validate_refuses_control_characters_in_every_field(message: Message) -> None:
    with pytest.raises(InvalidHeaderError):
        message.validate()


def test_validate_body_limit() -> None:
    Message(body=bytes(10)).validate(max_body_bytes=10)
    with pytest.raises(MessageTooLargeError, match="at most 10"):
        Message(body=bytes(11)).validate(max_body_bytes=10)


async def test_settles_once_first_call_wins() -> None:
    delivery = RecordingDelivery()
    assert delivery.settled is None
    await delivery.ack()
    await delivery.ack()
    await delivery.nack(delay=1.0)
    await delivery.dead_letter("late")
    assert delivery.actions == [("ack", None)]
    assert delivery.settled == "ack"


async def test_concurrent_settles_run_exactly_one_action() -> None:
    delivery = RecordingDelivery()
    await asyncio.gather(delivery.nack(), delivery.ack(), delivery.dead_letter("x"))
    assert len(delivery.actions) == 1
    assert delivery.settled == delivery.actions[0][0]


async def test_failed_settle_can_be_retried() -> None:
    delivery = RecordingDelivery()
    delivery.fail_next = True
    with pytest.raises(ConnectionError):
        await delivery.ack()
    assert delivery.settled is None
    await delivery.nack()
    assert delivery.settled == "nack"
    assert delivery.actions == [("nack", None)]


async def test_negative_delay_becomes_zero() -> None:
    delivery = RecordingDelivery()
    await delivery.nack(delay=-5)
    assert delivery.actions == [("nack", 0.0)]


async def test_dead_letter_keeps_body_and_adds_reason_headers() -> None:
    original = Message(body=b"\x00\xffpoison", key="k", headers={"tenant": "acme"})
    delivery = RecordingDelivery(original)
    await delivery.dead_letter("bad-input", headers={h.DLQ_DETAIL: "field x"})
    ((action, dead),) = delivery.actions
    assert action == "dead-letter"
    assert isinstance(dead, Message)
    assert dead.body == original.body
    assert dead.id == original.id
    assert dead.key == "k"
    assert dict(dead.headers) == {
        "tenant": "acme",
        h.DLQ_REASON: "bad-input",
        h.DLQ_ORIGINAL_TOPIC: "orders",
        h.DLQ_ATTEMPTS: "3",
        h.DLQ_GROUP: "g",
        h.DLQ_DETAIL: "field x",
    }
    assert delivery.settled == "dead-letter"


async def test_dead_letter_without_group_has_no_group_header() -> None:
    delivery = RecordingDelivery(group=None)
    await delivery.dead_letter("r")
    ((_, dead),) = delivery.actions
    assert isinstance(dead, Message)
    assert h.DLQ_GROUP not in dead.headers


def test_repr_and_dead_letter_naming() -> None:
    delivery = RecordingDelivery(Message(body=b"", id="abc"))
    assert repr(delivery) == ("<RecordingDelivery topic='orders' id='abc' attempt=3 settled=None>")
    assert dead_letter_topic("orders") == "orders.dlq"
    assert DEAD_LETTER_GROUP == "eventwire-dlq"


def test_trusted_builds_the_same_message_as_the_constructor_and_sets_every_field() -> None:
    headers = MappingProxyType({"a": "1"})
    values = ("id-1", "k", headers, "text/plain", "c-1", "ca-1", 12.5)
    built = Message(
        body=b"x",
        id=values[0],
        key=values[1],
        headers=headers,
        content_type=values[3],
        correlation_id=values[4],
        causation_id=values[5],
        timestamp=values[6],
    )
    assert Message.trusted(b"x", *values) == built
    # A field added to Message must be added to trusted() too, or it is left unset.
    trusted = Message.trusted(b"x", *values)
    for f in dataclasses.fields(Message):
        assert getattr(trusted, f.name) == getattr(built, f.name)
