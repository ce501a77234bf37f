"""Hostile payloads and hostile wire headers against a typed handler: no crash, no silent drop.

Bodies are tried on the memory broker; headers on the sqlite broker, as raw rows written
with sqlite3 (invalid JSON, invalid UTF-8, non-string values...) no publisher could send.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import tempfile
import time
import uuid
from pathlib import Path
from typing import TypeAlias

import orjson
import pydantic
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventwire.core import headers as h
from eventwire.core.message import DEAD_LETTER_GROUP, Message, dead_letter_topic
from eventwire.reliability.retry import RetryPolicy
from eventwire.runtime.app import App
from eventwire.runtime.context import Context

from .helpers import memory_url, read_dlq, running, scale, wait_until


class Event(pydantic.BaseModel):
    account: str
    seq: int


_valid = st.builds(
    lambda a, s: Event(account=a, seq=s).model_dump_json().encode(),
    st.text(max_size=30),
    st.integers(-(2**63), 2**63 - 1),
)
_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.floats(allow_nan=False)
    | st.integers(-(2**63), 2**63 - 1)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
_hostile = st.one_of(
    st.binary(max_size=300),  # random bytes
    _valid.flatmap(lambda b: st.integers(0, max(len(b) - 1, 0)).map(lambda n: b[:n])),  # truncated
    _json_values.map(orjson.dumps),  # well-formed JSON of the wrong shape
    st.fixed_dictionaries(
        {"account": st.integers(-(2**63), 2**63 - 1), "seq": st.text(max_size=5)}
    ).map(orjson.dumps),
    st.binary(min_size=1, max_size=20).map(lambda b: b'{"account": "\xff' + b + b'", "seq": 1}'),
    st.integers(1_000, 300_000).map(lambda n: b'{"account": "' + b"a" * n + b'", "seq": 1}'),
    st.integers(300, 20_000).map(lambda n: b"[" * n),  # deep nesting
    st.integers(100_000, 1_500_000).map(
        lambda n: b'{"account": "x", "seq": 1' + b" " * n + b"}"
    ),  # huge, valid
    _valid,
)


async def _scenario(bodies: list[bytes]) -> None:
    app = App(memory_url())
    processed: set[str] = set()

    @app.subscriber(
        "hostile", group="g", concurrency=4, retry=RetryPolicy(max_attempts=2, initial_delay=0.001)
    )
    async def handle(event: Event, ctx: Context) -> None:
        assert isinstance(event, Event)
        processed.add(ctx.message.id)

    messages = [Message(body=b, content_type="application/json") for b in bodies]
    async with app, running(app) as task:
        await app.broker.publish("hostile", *messages)
        await wait_until(lambda: app.stats.processed + app.stats.dead_lettered >= len(messages))
        dead = await read_dlq(app.broker, "hostile", app.stats.dead_lettered)
        assert not task.done()  # the consumer survived everything
    dead_ids = {m.id for m in dead}
    assert all(m.headers[h.DLQ_REASON] in {"decode-error", "validation-error"} for m in dead)
    assert processed | dead_ids == {m.id for m in messages}  # nothing dropped silently
    assert not processed & dead_ids
    assert app.stats.processed == len(processed)
    assert app.stats.failed == 0
    by_id = {m.id: m.body for m in messages}
    assert all(m.body == by_id[m.id] for m in dead)


@settings(
    max_examples=scale(12, 100),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.lists(_hostile, min_size=1, max_size=25))
def test_hostile_payloads_never_crash_or_vanish(bodies: list[bytes]) -> None:
    asyncio.run(_scenario(bodies))


# --- Hostile headers at the wire level: raw SQLite rows no eventwire publisher would write.
# Each case is (how the headers column is stored, its raw value, what must happen to it):
# "bad" must reach the DLQ as an envelope error with its body; "good" must be processed with
# its headers intact (when its body is a valid Event); "any" may go either way.
_HeaderCase: TypeAlias = tuple[str, object, str]
_SAFE_NAME = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,19}\Z")
_SAFE_VALUE = st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters="\r\n\x00"), max_size=40
)
_RESERVED = st.sampled_from([v for k, v in vars(h).items() if k.isupper() and "-" in str(v)])
_NOT_UTF8 = st.sampled_from([b"\xff", b"\x80", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf8\x88\x80"])


def _is_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except (ValueError, RecursionError):
        return False


def _stored(headers: st.SearchStrategy[str], tag: str) -> st.SearchStrategy[_HeaderCase]:
    """JSON text stored as TEXT, or as its UTF-8 bytes in a BLOB."""
    return st.tuples(st.sampled_from(["text", "blob"]), headers, st.just(tag)).map(
        lambda c: (c[0], c[1] if c[0] == "text" else c[1].encode(), c[2])
    )


_good_headers = st.dictionaries(_SAFE_NAME, _SAFE_VALUE, max_size=5).flatmap(
    lambda d: st.sampled_from([json.dumps(d), json.dumps(d, ensure_ascii=False)])
)
_bad_names = st.sampled_from(["", " a", "a b", "a:b", "a\r", "a\nb", "a\x00", "é\n"])
_bad_values = st.sampled_from(["a\r\nX-Injected: 1", "\n", "a\x00b", "\ud800", "v" * 16_385])
_non_string_object = st.tuples(
    st.dictionaries(_SAFE_NAME, _SAFE_VALUE, max_size=3),
    _SAFE_NAME,
    _json_values.filter(lambda v: not isinstance(v, str)),
).map(lambda t: json.dumps({**t[0], t[1]: t[2]}))
_bad_headers = st.one_of(
    st.text(max_size=60).filter(lambda t: not _is_object(t)),  # not JSON (or not an object)
    _good_headers.map(lambda t: t[: len(t) // 2]),  # truncated
    st.integers(1_000, 50_000).map(lambda n: "[" * n + "]" * n),  # deep nesting
    _json_values.filter(lambda v: not isinstance(v, dict)).map(json.dumps),  # wrong shape
    _non_string_object,
    st.tuples(_bad_names, _SAFE_VALUE).map(lambda t: json.dumps({t[0]: t[1]})),
    st.tuples(_SAFE_NAME, _bad_values).map(lambda t: json.dumps({t[0]: t[1]})),
)
_header_cases = st.one_of(
    _stored(_good_headers, "good"),
    _stored(_bad_headers, "bad"),
    # Invalid UTF-8 inside otherwise fine JSON, as a BLOB or as TEXT holding the raw bytes.
    st.tuples(st.sampled_from(["blob", "text-bytes"]), _NOT_UTF8, _SAFE_NAME).map(
        lambda c: (c[0], b'{"' + c[2].encode() + b'": "' + c[1] + b'"}', "bad")
    ),
    st.tuples(st.just("text-bytes"), st.binary(max_size=40), st.just("bad")).filter(
        lambda c: not _is_object(c[1].decode("utf-8", "replace"))
    ),
    st.tuples(  # a number in the TEXT column (SQLite stores it as its text: JSON, not an object)
        st.just("number"),
        st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False),
        st.just("bad"),
    ),
    _stored(st.dictionaries(_RESERVED, _SAFE_VALUE, min_size=1, max_size=3).map(json.dumps), "any"),
    _stored(_good_headers.map(lambda t: "\ufeff" + t), "any"),  # a BOM: JSON parsers differ
)
# None: a valid Event body (numbered when inserted); bytes: a hostile body as is.
_header_bodies = st.none() | st.binary(max_size=60)


def _insert_raw(db: Path, topic: str, cases: list[tuple[_HeaderCase, bytes]]) -> list[str]:
    """Insert one raw row per case, as the sqlite broker lays them out; returns their ids."""
    ids = [uuid.uuid4().hex for _ in cases]
    conn = sqlite3.connect(db, timeout=30.0)
    try:
        with conn:
            conn.execute("INSERT OR IGNORE INTO topics (topic) VALUES (?)", (topic,))
            for message_id, ((how, raw, _), body) in zip(ids, cases, strict=True):
                cast = "CAST(? AS TEXT)" if how == "text-bytes" else "?"
                conn.execute(
                    "INSERT INTO messages (topic, msg_id, content_type, created, headers, body, "
                    f"stored_at, dedup) VALUES (?, ?, 'application/json', ?, {cast}, ?, ?, 1)",
                    (topic, message_id, time.time(), raw, body, time.time()),
                )
    finally:
        conn.close()
    return ids


async def _headers_scenario(cases: list[tuple[_HeaderCase, bytes | None]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "broker.db"
        app = App(f"sqlite:///{db}?poll=0.02")
        processed: dict[str, dict[str, str]] = {}

        @app.subscriber("wire", group="g", concurrency=4, retry=RetryPolicy(max_attempts=1))
        async def handle(event: Event, ctx: Context) -> None:
            processed[ctx.message.id] = dict(ctx.message.headers)

        rows = [
            (case, Event(account="a", seq=i).model_dump_json().encode() if b is None else b)
            for i, (case, b) in enumerate(cases)
        ]
        dead: dict[str, Message] = {}

        async def collect() -> None:
            dlq = app.broker.subscribe(dead_letter_topic("wire"), group=DEAD_LETTER_GROUP)
            async with dlq as deliveries:
                async for delivery in deliveries:
                    assert delivery.message.id not in dead, "dead-lettered twice"
                    dead[delivery.message.id] = delivery.message
                    await delivery.ack()

        async with app:
            ids = _insert_raw(db, "wire", rows)
            async with running(app) as task:
                collector = asyncio.create_task(collect())
                later = await app.publish_batch("wire", [Event(account="z", seq=-1)] * 3)
                good = {m.id for m in later}
                # Everything ends up processed or dead-lettered: 0 silent drops.
                expected = good | set(ids)
                try:
                    await wait_until(lambda: expected <= processed.keys() | dead.keys(), 10)
                except TimeoutError:
                    missing = expected - processed.keys() - dead.keys()
                    lost = {i: c[0][1] for i, c in zip(ids, rows, strict=True) if i in missing}
                    raise AssertionError(f"neither processed nor dead-lettered: {lost}") from None
                assert not task.done()  # the consumer survived every row
                assert not collector.done()
                collector.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await collector
    assert not processed.keys() & dead.keys()
    for message_id, ((_, raw, tag), body), (_, hostile_body) in zip(ids, rows, cases, strict=True):
        if message_id in dead:
            letter = dead[message_id]
            assert letter.body == body  # byte-identical
            assert letter.headers[h.DLQ_ORIGINAL_TOPIC] == "wire"
            reason = letter.headers[h.DLQ_REASON]
            unreadable = reason.startswith("unreadable envelope: ")
            assert unreadable or reason in {"decode-error", "validation-error"}
            assert tag != "bad" or unreadable, (raw, dict(letter.headers))
            assert tag != "good" or hostile_body is not None, (raw, dict(letter.headers))
        else:
            assert tag != "bad", f"processed a row with bad headers: {raw!r}"
            if tag == "good":
                assert processed[message_id] == json.loads(raw)  # type: ignore[arg-type]  # the case table's raw rows are typed object; good ones are JSON text


@settings(
    max_examples=scale(50, 300),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.lists(st.tuples(_header_cases, _header_bodies), min_size=1, max_size=12))
def test_hostile_headers_on_the_wire_never_crash_or_vanish(
    cases: list[tuple[_HeaderCase, bytes | None]],
) -> None:
    asyncio.run(_headers_scenario(cases))
