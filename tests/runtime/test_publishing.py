"""What ``build_message`` and ``Context.publish`` put on the envelope."""

from __future__ import annotations

from collections.abc import Mapping

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
