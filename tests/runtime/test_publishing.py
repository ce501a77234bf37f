"""What ``build_message`` and ``Context.publish`` put on the envelope."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from eventwire.core.message import Message
from eventwire.runtime.context import Context
from eventwire.runtime.publishing import build_message


async def test_ctx_publish_of_a_raw_message_keeps_the_causal_chain() -> None:
    sent: list[Message] = []

    async def publish(
        topic: str,
        payload: object,
        *,
        key: str | None,
        headers: Mapping[str, str] | None,
        correlation_id: str | None,
        causation_id: str | None,
    ) -> Message:
        message = build_message(
            payload,
            key=key,
            headers=headers,
            correlation_id=correlation_id,
            causation_id=causation_id,
        )
        sent.append(message)
        return message

    incoming = Message(body=b"{}", id="in-1", correlation_id="corr-1")
    ctx = Context(
        message=incoming,
        topic="t",
        group="g",
        attempt=1,
        publish=publish,
    )
    raw = Message(body=b"raw", id="out-1", headers={"a": "1"})
    await ctx.publish("next", raw, key="k", headers={"tenant": "t1", "a": "ignored"})
    (out,) = sent
    assert (out.id, out.body, out.key) == ("out-1", b"raw", "k")
    assert (out.correlation_id, out.causation_id) == ("corr-1", "in-1")
    assert dict(out.headers) == {"tenant": "t1", "a": "1"}


def test_a_raw_message_keeps_what_it_sets_itself() -> None:
    raw = Message(body=b"x", key="own", correlation_id="c0", causation_id="p0")
    out = build_message(raw, key="other", headers=None, correlation_id="c1", causation_id="p1")
    assert out is raw


def test_built_messages_have_uuid4_ids_and_frozen_copied_headers() -> None:
    import uuid

    headers = {"a": "1"}
    ids = set()
    for _ in range(200):
        message = build_message(
            {"n": 1}, key=None, headers=headers, correlation_id=None, causation_id=None
        )
        parsed = uuid.UUID(hex=message.id)
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
        assert parsed.hex == message.id
        ids.add(message.id)
    assert len(ids) == 200
    headers["a"] = "2"
    assert message.headers["a"] == "1"
    assert isinstance(message.body, bytes)
    assert message.correlation_id == message.id


@pytest.mark.parametrize(
    ("field", "value", "ok"),
    [
        ("key", "tab\tinside", True),  # not printable, but allowed: the full check says so
        ("key", "naïve-ключ", True),  # non-ASCII UTF-8 text is allowed
        ("key", "a\nb", False),
        ("correlation_id", "c\rd", False),
        ("causation_id", "x\x00", False),
        ("content_type", "text/plain\n", False),
        ("key", "x" * 20_000, False),
        ("key", "lone \udc80 surrogate", False),
    ],
)
def test_envelope_fields_are_checked_like_headers(field: str, value: str, ok: bool) -> None:
    from dataclasses import replace

    from eventwire.core.errors import InvalidHeaderError

    changed: dict[str, Any] = {field: value}  # Any: the field is a parameter, not a literal
    message = replace(Message(body=b"x"), **changed)
    if ok:
        message.validate()
    else:
        with pytest.raises(InvalidHeaderError):
            message.validate()


async def test_gathered_publishes_share_one_call_even_when_the_broker_never_waits() -> None:
    """memory:// returns from publish without suspending: without letting the loop turn once
    first, each caller of a gather() found nothing in flight and went alone."""
    import asyncio

    from eventwire.runtime.app import App

    async with App("memory://coalesce-sync", name="t") as app:
        calls: list[int] = []
        real = app.broker.publish

        async def counting(topic: str, *messages: Message) -> None:
            calls.append(len(messages))
            await real(topic, *messages)

        app.broker.publish = counting  # type: ignore[method-assign]  # patched on the instance to count the app's publishes
        sent = await asyncio.gather(*(app.publish("t", {"n": i}) for i in range(500)))
        alone = await app.publish("t", {"n": "alone"})
    assert calls == [500, 1]
    assert [m.body for m in sent] == [b'{"n":%d}' % i for i in range(500)]
    assert alone.body == b'{"n":"alone"}'
