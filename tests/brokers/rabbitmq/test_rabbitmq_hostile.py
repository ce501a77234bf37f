"""Tests: hostile producers against a RabbitMQ worker (issue 11): nothing a message holds can
kill a consumer, stall the group or harm another message.

Hostile messages are written with the raw client, some with property bytes pamqp cannot
decode (``RawProperties`` hands aiormq the bytes to send), between good ones, into an
``App`` with a typed handler (concurrency 4, max_attempts 3, idempotent).
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import signal
import struct
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aio_pika
import aiormq
import pydantic
import pytest
from pamqp.commands import Basic

from brokers.rabbitmq.rabbitmq_support import HOST, PORT, Opener, delete_topology
from eventwire.brokers.rabbitmq import delays, envelope, frames
from eventwire.brokers.rabbitmq import options as names
from eventwire.core import headers as h
from eventwire.core.message import DEAD_LETTER_GROUP, Delivery, Message, dead_letter_topic
from eventwire.reliability.retry import RetryPolicy
from eventwire.runtime.app import App

pytestmark = [pytest.mark.integration, pytest.mark.rabbitmq]

MAX_ATTEMPTS = 3
GOOD_BEFORE, GOOD_AFTER = 40, 20


class Order(pydantic.BaseModel):
    n: int
    fail: bool = False


def _short(raw: bytes) -> bytes:
    return bytes([len(raw)]) + raw


def _long(raw: bytes) -> bytes:
    return b"S" + struct.pack(">I", len(raw)) + raw


def _table(entries: list[tuple[bytes, bytes]]) -> bytes:
    body = b"".join(_short(name) + value for name, value in entries)
    return struct.pack(">I", len(body)) + body


def _nested(depth: int) -> bytes:
    value = _long(b"bottom")
    for _ in range(depth):
        value = b"F" + _table([(b"n", value)])
    return value


class RawProperties(Basic.Properties):
    """Properties aiormq sends as the given bytes, bypassing pamqp's encoder."""

    def __init__(self, raw: bytes) -> None:
        super().__init__()
        self.raw = raw

    def marshal(self) -> bytes:
        return self.raw


def raw_properties(
    *,
    content_type: bytes = b"application/json",
    headers: list[tuple[bytes, bytes]] | None = None,
    message_id: bytes | None = None,
    timestamp: int | None = None,
) -> RawProperties:
    """AMQP basic properties in wire order: content-type, headers, delivery-mode, id, stamp."""
    flags, parts = 0x8000 | 0x1000, [_short(content_type)]
    if headers is not None:
        flags |= 0x2000
        parts.append(_table(headers))
    parts.append(b"\x02")  # persistent
    if message_id is not None:
        flags |= 0x0080
        parts.append(_short(message_id))
    if timestamp is not None:
        flags |= 0x0040
        parts.append(struct.pack(">Q", timestamp))
    return RawProperties(struct.pack(">H", flags) + b"".join(parts))


@dataclass(frozen=True)
class Hostile:
    name: str
    body: bytes
    properties: Basic.Properties
    expect: str  # "dead:<reason prefix>" or "processed"


def _body(n: int, *, fail: bool = False) -> bytes:
    return json.dumps({"n": n, "fail": fail}).encode()


def hostile_cases() -> Iterator[Hostile]:
    bad = b"\xff\xfe not json"
    for stamp in ("inf", "nan", "1e300", "-inf", "9" * 400):
        yield Hostile(
            f"timestamp header {stamp[:8]} + bad body",
            bad + stamp[:8].encode(),
            Basic.Properties(message_id=f"ts-{stamp[:8]}", headers={h.TIMESTAMP: stamp}),
            "dead:",
        )
    for n, attempt in ((9001, "-1000"), (9002, "9" * 40), (9003, "0"), (9004, "x")):
        yield Hostile(
            f"forged attempt {attempt[:6]} (always fails)",
            _body(n, fail=True),
            Basic.Properties(
                message_id=f"att-{n}",
                content_type="application/json",
                headers={h.ATTEMPT: attempt, "x-delivery-count": 10**9},
            ),
            "dead:max-attempts",
        )
    for n in (9101, 9102):  # no message_id: distinct ids, both handled despite idempotency
        yield Hostile(
            f"no message_id #{n}",
            _body(n),
            Basic.Properties(content_type="application/json"),
            "processed",
        )
    frame_level = {
        "non-UTF-8 message_id": raw_properties(message_id=b"id-\xff\xfe"),
        "non-UTF-8 content_type": raw_properties(content_type=b"application/\xffjson"),
        "non-UTF-8 header name": raw_properties(headers=[(b"k\xff", _long(b"v"))]),
        "AMQP timestamp 3e14": raw_properties(message_id=b"ts-big", timestamp=3 * 10**14),
        "AMQP timestamp 2**64-1": raw_properties(message_id=b"ts-max", timestamp=2**64 - 1),
        "headers nested 2000 deep": raw_properties(headers=[(b"deep", _nested(2000))]),
        "header timestamp value 3e14": raw_properties(
            headers=[(b"when", b"T" + struct.pack(">Q", 3 * 10**14))]
        ),
    }
    for i, (name, properties) in enumerate(frame_level.items()):
        yield Hostile(name, _body(9200 + i), properties, f"dead:{envelope.UNREADABLE}")


async def _publish_raw(exchange: str, topic: str, cases: list[Hostile]) -> None:
    connection = await aio_pika.connect(host=HOST, port=PORT)
    try:
        channel = await (await connection.channel()).get_underlay_channel()
        await channel.confirm_delivery()
        for case in cases:
            await channel.basic_publish(
                case.body, exchange=exchange, routing_key=topic, properties=case.properties
            )
    finally:
        await connection.close()


async def _read_dlq(broker: Any, topic: str, count: int, patience: float) -> list[Delivery]:
    letters: list[Delivery] = []
    async with broker.subscribe(dead_letter_topic(topic), group=DEAD_LETTER_GROUP) as dlq:
        async with asyncio.timeout(patience):
            while len(letters) < count:
                letters.append(await anext(dlq))
        for letter in letters:
            await letter.ack()
    return letters


async def _queued(queue: str) -> int:
    connection = await aio_pika.connect(host=HOST, port=PORT)
    try:
        channel = await (await connection.channel()).get_underlay_channel()
        ok = await channel.queue_declare(queue, passive=True)
        return ok.message_count or 0
    finally:
        await connection.close()


def test_tolerant_decoder_is_what_aiormq_reaches() -> None:
    import pamqp.frame

    assert pamqp.frame._unmarshal_header_frame is frames.tolerant_unmarshal_header_frame


async def test_hostile_messages_never_harm_the_worker(open_rmq: Opener, exchange: str) -> None:
    topic = f"hostile.{uuid.uuid4().hex[:8]}"
    url = f"amqp://guest:guest@{HOST}:{PORT}/?exchange={exchange}"
    calls: collections.Counter[int] = collections.Counter()
    app = App(url, shutdown_timeout=5)

    @app.subscriber(
        topic,
        group="svc",
        concurrency=4,
        idempotent=True,
        retry=RetryPolicy(max_attempts=MAX_ATTEMPTS, initial_delay=0.1, max_delay=0.2),
    )
    async def handle(order: Order) -> None:
        calls[order.n] += 1
        if order.fail:
            raise RuntimeError(f"order {order.n} always fails")

    cases = list(hostile_cases())
    dead_expected = [c for c in cases if c.expect.startswith("dead:")]
    good = list(range(GOOD_BEFORE + GOOD_AFTER))
    stop = asyncio.Event()
    reader = await open_rmq()  # also cleans up the queues the app declared (same exchange)
    async with app:
        worker = asyncio.create_task(app.run(stop))
        await asyncio.wait_for(app.wait_ready(), 30)
        for n in good[:GOOD_BEFORE]:
            await app.publish(topic, Order(n=n))
        await _publish_raw(exchange, topic, cases)
        for n in good[GOOD_BEFORE:]:
            await app.publish(topic, Order(n=n))
        letters = await _read_dlq(reader, topic, len(dead_expected), patience=60)
        async with asyncio.timeout(30):  # no stall: the good ones all come through
            while any(calls[n] == 0 for n in good) or any(
                calls[int(json.loads(c.body)["n"])] == 0 for c in cases if c.expect == "processed"
            ):
                await asyncio.sleep(0.05)
        assert app.ready  # no consumer task died
        stop.set()
        await asyncio.wait_for(worker, 30)  # returns normally: what exit 0 means for serve()
        conn_broker = app.broker
    reconnects = getattr(conn_broker, "reconnects", None)
    unsettled = await _queued(names.group_queue(exchange, topic, "svc"))
    by_body = {letter.message.body: letter.message for letter in letters}
    unhandled_good = [m for m in by_body if m in {_body(n) for n in good}]
    over = {n: c for n, c in calls.items() if c > MAX_ATTEMPTS}
    handled = {n for n in good if calls[n]} | {
        int(json.loads(c.body)["n"])
        for c in cases
        if c.expect == "processed" and calls[int(json.loads(c.body)["n"])]
    }
    lost = len(good) + len(cases) - len(handled) - len(letters)
    figures = {
        "hostile cases injected": len(cases),
        "good processed/sent": f"{sum(1 for n in good if calls[n] == 1)}/{len(good)}",
        "good dead-lettered unhandled": len(unhandled_good),
        "dead letters": f"{len(letters)}/{len(dead_expected)}",
        "unsettled": unsettled,
        "lost": lost,
        "connection reconnects": reconnects,
        "calls above max_attempts": len(over),
    }
    print("\nRabbitMQ hostile figures:", figures)
    assert all(calls[n] == 1 for n in good), {n: calls[n] for n in good if calls[n] != 1}
    assert not unhandled_good
    assert not over
    assert reconnects == 0  # no frame closed the connection
    assert unsettled == 0
    assert lost == 0
    for case in cases:
        if case.expect == "processed":
            assert calls[int(json.loads(case.body)["n"])] == 1, case.name
            continue
        dead = by_body.get(case.body)
        assert dead is not None, f"{case.name}: not dead-lettered"
        reason = dead.headers.get(h.DLQ_REASON, "")
        assert reason.startswith(case.expect[5:]), (case.name, reason)
        if case.body.startswith(b"{"):
            n = int(json.loads(case.body)["n"])
            expected_calls = MAX_ATTEMPTS if "attempt" in case.name else 0
            assert calls[n] == expected_calls, (case.name, calls[n])
    assert len(letters) == len(dead_expected)  # each one exactly once


async def test_dead_letter_reader_lists_unreadable_letters_with_their_reason(
    open_rmq: Opener, exchange: str
) -> None:
    """`dlq list` showed 0 letters on a DLQ holding an unreadable message: now it is read."""
    topic = f"hostdlq.{uuid.uuid4().hex[:8]}"
    broker = await open_rmq()
    async with broker.subscribe(topic, group="g") as sub:
        cases = [c for c in hostile_cases() if c.expect.endswith(envelope.UNREADABLE)]
        await _publish_raw(exchange, topic, cases)
        await broker.publish(topic, _good_message())
        async with asyncio.timeout(30):
            good = await anext(sub)  # the unreadable ones never reach the iterator
        assert good.message.body == b'{"n": 1}'
        await good.ack()
    letters = await _read_dlq(broker, topic, len(cases), patience=30)
    assert sorted(m.message.body for m in letters) == sorted(c.body for c in cases)
    for letter in letters:
        assert letter.message.headers[h.DLQ_REASON].startswith(envelope.UNREADABLE + ": ")
        assert letter.message.id  # never the shared ""
    assert broker.reconnects == 0


def _good_message() -> Message:
    return Message(body=b'{"n": 1}', content_type="application/json")


async def test_raw_client_sees_the_same_bytes_the_producer_sent(exchange: str) -> None:
    """Guard for the injection helper: RawProperties really reaches the broker as written."""
    connection = await aiormq.connect(f"amqp://guest:guest@{HOST}:{PORT}/")
    try:
        channel = await connection.channel()
        queue = (await channel.queue_declare(exclusive=True, auto_delete=True)).queue
        assert queue
        await channel.basic_publish(
            b"x", routing_key=queue, properties=raw_properties(message_id=b"\xff")
        )
        got = await channel.basic_get(queue, no_ack=True)
        assert frames.problems_of(got.header) == ("message_id is not valid UTF-8",)
        assert got.header.properties.message_id == "\\xff"
    finally:
        await connection.close()


async def test_broadcast_subscriber_dead_letters_unreadable_and_counts_its_own_retries(
    open_rmq: Opener, exchange: str
) -> None:
    """Broadcast queues got the same dead-letter exchange; their retries (sent straight to the
    queue) are the only place their attempt header is trusted."""
    topic = f"hostbc.{uuid.uuid4().hex[:8]}"
    broker = await open_rmq()
    async with broker.subscribe(topic) as sub:
        bad = Hostile("non-UTF-8 id", b"bc-bad", raw_properties(message_id=b"\xff"), "dead:")
        forged = Hostile(
            "forged attempt", b"bc-forged", Basic.Properties(headers={h.ATTEMPT: "-1000"}), ""
        )
        await _publish_raw(exchange, topic, [bad, forged])
        async with asyncio.timeout(30):
            first = await anext(sub)
            assert (first.message.body, first.attempt) == (b"bc-forged", 1)
            await first.nack(delay=0.05)
            second = await anext(sub)
            assert (second.message.body, second.attempt) == (b"bc-forged", 2)
            await second.ack()
    letters = await _read_dlq(broker, topic, 1, patience=30)
    assert letters[0].message.body == b"bc-bad"
    assert letters[0].message.headers[h.DLQ_REASON].startswith(envelope.UNREADABLE)


_SERVICE = """
import os, pydantic
from eventwire.reliability.retry import RetryPolicy
from eventwire.runtime.app import App

app = App(shutdown_timeout=5)
CALLS = os.environ["HOSTILE_CALLS"]

class Order(pydantic.BaseModel):
    n: int
    fail: bool = False

@app.subscriber(
    os.environ["HOSTILE_TOPIC"], group="svc", concurrency=4, idempotent=True,
    retry=RetryPolicy(max_attempts=3, initial_delay=0.1, max_delay=0.2),
)
async def handle(order: Order) -> None:
    with open(CALLS, "a") as out:
        out.write(f"{order.n}\\n")
    if order.fail:
        raise RuntimeError("always fails")
"""


async def test_worker_process_survives_hostile_messages_and_exits_0_on_sigterm(
    open_rmq: Opener, exchange: str, tmp_path: Path
) -> None:
    topic = f"hostproc.{uuid.uuid4().hex[:8]}"
    url = f"amqp://guest:guest@{HOST}:{PORT}/?exchange={exchange}"
    (tmp_path / "svc.py").write_text(_SERVICE)
    calls_file = tmp_path / "calls.txt"
    calls_file.touch()
    env = {**os.environ, "HOSTILE_CALLS": str(calls_file), "HOSTILE_TOPIC": topic}
    broker = await open_rmq()
    worker = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "eventwire.cli", "run", "svc.py:app", "--broker", url,
        cwd=tmp_path, env=env, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        queue = names.group_queue(exchange, topic, "svc")
        async with asyncio.timeout(60):
            while await _consumers(queue) < 1:
                assert worker.returncode is None, "the worker exited before it consumed"
                await asyncio.sleep(0.1)
        cases = list(hostile_cases())
        good = [Message(body=_body(n), content_type="application/json") for n in range(30)]
        await broker.publish(topic, *good[:15])
        await _publish_raw(exchange, topic, cases)
        await broker.publish(topic, *good[15:])
        dead = [c for c in cases if c.expect.startswith("dead:")]
        letters = await _read_dlq(broker, topic, len(dead), patience=60)

        def calls() -> collections.Counter[int]:
            return collections.Counter(int(x) for x in calls_file.read_text().split())

        async with asyncio.timeout(30):
            while any(calls()[n] == 0 for n in range(30)):
                await asyncio.sleep(0.05)
        worker.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            _, err = await worker.communicate()
    finally:
        if worker.returncode is None:
            worker.kill()
            await worker.wait()
    assert worker.returncode == 0, err.decode()[-2000:]
    assert "Traceback" not in err.decode()
    counted = calls()
    assert all(counted[n] == 1 for n in range(30)), counted
    assert max(counted.values()) <= MAX_ATTEMPTS
    assert sorted(m.message.body for m in letters) == sorted(c.body for c in dead)
    assert await _queued(queue) == 0
    await delete_topology({queue}, set())  # the worker process's queue: no broker here knew it


async def _consumers(queue: str) -> int:
    connection = await aio_pika.connect(host=HOST, port=PORT)
    try:
        channel = await (await connection.channel()).get_underlay_channel()
        try:
            ok = await channel.queue_declare(queue, passive=True)
        except aiormq.exceptions.ChannelNotFoundEntity:
            return 0
        return ok.consumer_count or 0
    finally:
        await connection.close()


async def test_dlq_list_command_shows_every_unreadable_letter_with_its_reason(
    open_rmq: Opener, exchange: str
) -> None:
    topic = f"hostcli.{uuid.uuid4().hex[:8]}"
    url = f"amqp://guest:guest@{HOST}:{PORT}/?exchange={exchange}"
    broker = await open_rmq()
    cases = [c for c in hostile_cases() if c.expect.endswith(envelope.UNREADABLE)]
    dlq = names.group_queue(exchange, dead_letter_topic(topic), DEAD_LETTER_GROUP)
    async with broker.subscribe(topic, group="g") as sub:
        pulling = asyncio.ensure_future(anext(sub))  # never returns: none of them is readable
        await _publish_raw(exchange, topic, cases)
        async with asyncio.timeout(30):
            while await _queued(dlq) < len(cases):
                await asyncio.sleep(0.05)  # each one rejected into the DLQ
        pulling.cancel()
    listing = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "eventwire.cli", "dlq", "list", topic, "-b", url, "--wait", "1",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(listing.communicate(), 60)
    assert listing.returncode == 0, err.decode()
    lines = out.decode().splitlines()
    assert lines[-1].startswith(f"{len(cases)} dead letter(s)"), lines
    reasons = [line for line in lines if f"reason={envelope.UNREADABLE}: " in line]
    assert len(reasons) == len(cases), lines
    assert any("message_id is not valid UTF-8" in line for line in reasons)
    assert "Traceback" not in err.decode()


async def test_non_utf8_routing_key_does_not_close_the_connection(
    open_rmq: Opener, exchange: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A producer publishing into the delay deliver exchange (bound "#.<token>" to each group
    queue) with a non-UTF-8 routing key: basic.deliver itself used to fail in pamqp."""
    topic = f"hostrk.{uuid.uuid4().hex[:8]}"
    broker = await open_rmq()
    marker = b"ZZMARK"
    original = Basic.Publish.marshal

    def raw_key(self: Basic.Publish) -> bytes:
        return original(self).replace(marker, b"\xff\xfe\xfd\xfc\xfb\xfa")

    async with broker.subscribe(topic, group="g") as sub:
        queue = names.group_queue(exchange, topic, "g")
        monkeypatch.setattr(Basic.Publish, "marshal", raw_key)
        connection = await aio_pika.connect(host=HOST, port=PORT)
        try:
            channel = await (await connection.channel()).get_underlay_channel()
            await channel.confirm_delivery()
            await channel.basic_publish(
                b'{"n": 1}',
                exchange=delays.deliver_exchange(exchange),
                routing_key=f"{marker.decode()}.{delays.target_token(queue)}",
                properties=Basic.Properties(message_id="rk", headers={h.ATTEMPT: "1"}),
            )
        finally:
            monkeypatch.undo()
            await connection.close()
        await broker.publish(topic, _good_message())
        async with asyncio.timeout(30):
            got = [await anext(sub), await anext(sub)]
        for delivery in got:
            await delivery.ack()
    assert got[0].message.id == "rk"
    assert got[0].attempt == 1
    assert got[1].message.body == b'{"n": 1}'
    assert broker.reconnects == 0
