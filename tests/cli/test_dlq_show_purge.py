"""CLI tests: `dlq show` (one letter in full, binary-safe), `dlq purge` (asks, refuses without a
terminal, removes only what matched), `--where` filters and `--dry-run` on list/replay/purge.

On memory, SQLite, RabbitMQ and Redis Streams (JetStream: a known gap of its passive read,
marked below): four dead letters of three
reasons (two permanent errors, a validation error, a binary body that is not JSON); each
read command is checked to have removed nothing, and each removal to have removed exactly
the letters it named.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import pty
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel
from typer.testing import CliRunner

from eventwire import App, Message, PermanentError
from eventwire.brokers.catalog import open_broker
from eventwire.brokers.memory.broker import forget_hub
from eventwire.cli.main import app as cli
from eventwire.testing.services import service_url

runner = CliRunner()
BINARY = b"\x00\xff\xfe\x1b[31mnot json\x07" + bytes(range(256))
WAIT = "0.5"


class Order(BaseModel):
    n: int


async def make_letters(url: str, topic: str) -> dict[str, str]:
    """Four dead letters; returns their ids by name."""
    app = App(url, name="broken")
    handled: list[int] = []

    @app.subscriber(topic, group="workers")
    async def handle(order: Order) -> None:
        handled.append(order.n)
        raise PermanentError(f"order {order.n} has no customer")

    ids: dict[str, str] = {}
    stop = asyncio.Event()
    async with app:
        task = asyncio.create_task(app.run(stop))
        async with asyncio.timeout(30):
            await app.wait_ready()
        for n in (1, 3):
            sent = await app.publish(topic, {"n": n}, headers={"tenant": "a"})
            ids[f"permanent-{n}"] = sent.id
        sent = await app.publish(topic, {"n": "not a number"}, headers={"tenant": "b"})
        ids["validation"] = sent.id
        binary = Message(body=BINARY, content_type="application/octet-stream", key="k\x1bx")
        binary = binary.with_headers(tenant="b")
        await app.broker.publish(topic, binary)
        ids["binary"] = binary.id
        async with asyncio.timeout(30):
            while app.stats.dead_lettered < 4:
                await asyncio.sleep(0.02)
        stop.set()
        await task
    return ids


def invoke(*args: str, stdin: str | None = None) -> Any:
    return runner.invoke(cli, list(args), input=stdin)


def listed(url: str, topic: str, *where: str) -> list[str]:
    """Ids `dlq list` shows (with ``where`` filters), checking its closing line."""
    result = invoke("dlq", "list", topic, "-b", url, "--wait", WAIT, *where)
    assert result.exit_code == 0, result.stderr
    *lines, last = result.stdout.splitlines()
    assert last.startswith(f"{len(lines)} dead letter(s)"), last
    return [line.split()[0] for line in lines]


@pytest.fixture(
    params=[
        "memory",
        "sqlite",
        pytest.param("rabbitmq", marks=[pytest.mark.integration, pytest.mark.rabbitmq]),
        pytest.param("redis", marks=[pytest.mark.integration, pytest.mark.redis]),
        pytest.param(
            "nats",
            marks=[
                pytest.mark.integration,
                pytest.mark.nats,
            ],
        ),
    ]
)
def broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(URL, topic) on each broker; what the test created is deleted afterwards."""
    run = uuid.uuid4().hex[:10]
    topic = f"dlqcli.{run}"
    kind = request.param
    if kind == "memory":
        yield f"memory://dlq-{run}", topic
        forget_hub(f"dlq-{run}")
    elif kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'dlq.db'}?poll=0.02", topic
    elif kind == "rabbitmq":
        exchange = f"ewt-dlq-{run}"
        yield f"{service_url('rabbitmq')}?exchange={exchange}", topic
        asyncio.run(drop_rabbitmq(exchange, topic))
    elif kind == "redis":
        yield service_url("redis"), topic
        drop_redis(topic)
    else:
        yield service_url("nats"), topic
        asyncio.run(drop_nats(topic))


async def drop_rabbitmq(exchange: str, topic: str) -> None:
    import aio_pika

    from eventwire.brokers.rabbitmq.delays import deliver_exchange
    from eventwire.brokers.rabbitmq.options import group_queue
    from eventwire.core.message import DEAD_LETTER_GROUP

    conn = await aio_pika.connect(service_url("rabbitmq"))
    try:
        channel = await (await conn.channel()).get_underlay_channel()
        await channel.queue_delete(group_queue(exchange, topic, "workers"))
        await channel.queue_delete(group_queue(exchange, f"{topic}.dlq", DEAD_LETTER_GROUP))
        await channel.exchange_delete(exchange)
        await channel.exchange_delete(deliver_exchange(exchange))  # declared at connect
    finally:
        await conn.close()


def drop_redis(topic: str) -> None:
    import redis

    client = redis.Redis.from_url(service_url("redis"))
    try:
        keys = list(client.scan_iter(match=f"ew:{topic}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


async def drop_nats(topic: str) -> None:
    import nats

    nc = await nats.connect(service_url("nats"))
    try:
        js = nc.jetstream()
        for info in await js.streams_info():
            name = info.config.name or ""
            if topic.replace(".", "_") in name:
                await js.delete_stream(name)
    finally:
        await nc.close()


def test_show_filters_dry_runs_and_purge_remove_only_what_matched(
    broker: tuple[str, str],
) -> None:
    url, topic = broker
    ids = asyncio.run(make_letters(url, topic))
    everything = sorted(ids.values())
    assert sorted(listed(url, topic)) == everything

    # --where on list: by reason, by header, by pattern, several at once.
    permanent = sorted([ids["permanent-1"], ids["permanent-3"]])
    assert sorted(listed(url, topic, "--where", "reason=permanent-error")) == permanent
    assert sorted(listed(url, topic, "-w", "tenant=b")) == sorted(
        [ids["validation"], ids["binary"]]
    )
    assert listed(url, topic, "-w", "reason=*-error", "-w", "tenant=b", "-w", "key=k*") == [
        ids["binary"]
    ]
    assert listed(url, topic, "--group", "nobody") == []
    assert sorted(listed(url, topic, "--group", "workers")) == everything

    # show: one letter, every header, the binary body as a hex dump, escapes kept inert.
    shown = invoke("dlq", "show", topic, "-b", url, "--wait", WAIT, "--id", ids["binary"])
    assert shown.exit_code == 0, shown.stderr
    text = shown.stdout
    assert f"id: {ids['binary']}" in text
    assert "x-eventwire-dlq-reason: decode-error" in text
    assert "x-eventwire-dlq-group: workers" in text
    assert "tenant: b" in text
    assert f"body ({len(BINARY)} bytes, binary" in text
    assert "00 ff fe 1b 5b 33 31 6d" in text
    assert "\x1b" not in text  # no raw escape reaches the terminal
    assert "\x07" not in text
    assert "key: k\\x1bx" in text
    as_json = invoke(
        "dlq", "show", topic, "-b", url, "--wait", WAIT, "--id", ids["binary"], "--json"
    )
    assert as_json.exit_code == 0, as_json.stderr
    letter = json.loads(as_json.stdout)
    assert base64.b64decode(letter["body_base64"]) == BINARY  # every byte kept
    assert letter["headers"]["x-eventwire-dlq-reason"] == "decode-error"
    second = invoke(
        "dlq", "show", topic, "-b", url, "--wait", WAIT, "-w", "reason=permanent-error", "-i", "2"
    )
    assert second.exit_code == 0, second.stderr
    assert "dead letter 2 of 2" in second.stdout
    assert 'body (7 bytes, UTF-8 text):\n  {"n":3}' in second.stdout
    missing = invoke("dlq", "show", topic, "-b", url, "--wait", WAIT, "--id", "no-such-id")
    assert missing.exit_code == 1
    assert "no dead letter with id 'no-such-id'" in missing.stdout

    # purge without --yes and without a terminal: refused, in one line, nothing removed.
    refused = invoke("dlq", "purge", topic, "-b", url, "--wait", WAIT, stdin="y\n")
    assert refused.exit_code == 2
    assert len(refused.stderr.strip().splitlines()) == 1
    assert "--yes" in refused.stderr

    # dry runs change nothing.
    dry = invoke(
        "dlq", "purge", topic, "-b", url, "--wait", WAIT, "-w", "reason=validation-error",
        "--dry-run",
    )  # fmt: skip
    assert dry.exit_code == 0, dry.stderr
    assert "dry run: would remove 1 dead letter(s) matching reason=validation-error" in dry.stdout
    dry_replay = invoke(
        "dlq", "replay", topic, "-b", url, "--wait", WAIT, "-w", "reason=permanent-error",
        "--dry-run",
    )  # fmt: skip
    assert dry_replay.exit_code == 0, dry_replay.stderr
    assert "would replay 2 dead letter(s)" in dry_replay.stdout
    assert "(2 to group workers)" in dry_replay.stdout
    assert sorted(listed(url, topic)) == everything, "a read command removed letters"

    # purge --yes removes exactly the matching letter.
    purged = invoke(
        "dlq", "purge", topic, "-b", url, "--wait", WAIT, "-w", "reason=validation-error", "--yes"
    )
    assert purged.exit_code == 0, purged.stderr
    assert "removed 1 dead letter(s) matching reason=validation-error" in purged.stdout
    left = sorted([ids["permanent-1"], ids["permanent-3"], ids["binary"]])
    assert sorted(listed(url, topic)) == left

    # replay --where takes only the permanent errors; the binary letter stays.
    replayed = invoke("dlq", "replay", topic, "-b", url, "--wait", WAIT, "-w", "tenant=a")
    assert replayed.exit_code == 0, replayed.stderr
    assert "replayed 2 dead letter(s) matching tenant=a" in replayed.stdout
    assert listed(url, topic) == [ids["binary"]]


def on_terminal(args: list[str], answer: bytes) -> tuple[int, str]:
    """Run ``eventwire ARGS`` on a pseudo-terminal, typing ``answer`` at the prompt."""
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(sys.executable, [sys.executable, "-m", "eventwire.cli", *args])
    output = b""
    answered = False
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        output += chunk
        if not answered and b"[y/N]" in output:
            os.write(fd, answer)
            answered = True
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), output.decode(errors="replace")


def test_purge_asks_on_a_terminal_and_keeps_everything_on_no(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ask.db'}?poll=0.02"
    topic = "orders.ask"
    ids = asyncio.run(make_letters(url, topic))
    code, out = on_terminal(["dlq", "purge", topic, "-b", url, "-w", "tenant=a"], b"n\n")
    assert code == 1, out
    assert "Remove 2 dead letter(s) matching tenant=a from orders.ask.dlq for good?" in out
    assert "nothing removed" in out
    assert sorted(listed(url, topic)) == sorted(ids.values())
    code, out = on_terminal(["dlq", "purge", topic, "-b", url, "-w", "tenant=a"], b"y\n")
    assert code == 0, out
    assert "removed 2 dead letter(s)" in out
    assert sorted(listed(url, topic)) == sorted([ids["validation"], ids["binary"]])


def test_purge_keeps_a_letter_that_arrives_after_the_count(tmp_path: Path) -> None:
    """What is removed is what was counted: a letter arriving later stays (by id)."""
    url = f"sqlite:///{tmp_path / 'late.db'}?poll=0.02"
    topic = "orders.late"
    from eventwire.reliability.dead_letter_filter import LetterFilter
    from eventwire.reliability.replay import purge_dead_letters

    ids = asyncio.run(make_letters(url, topic))
    late = Message(body=b"late").with_headers(**{"x-eventwire-dlq-reason": "late"})

    async def scenario() -> int:
        async with open_broker(url) as b:
            await b.publish(f"{topic}.dlq", late)  # after the four were counted
            counted = LetterFilter().only(ids.values())
            result = await purge_dead_letters(b, topic, limit=10, wait=0.5, matches=counted)
        return result.removed

    assert asyncio.run(scenario()) == 4
    assert listed(url, topic) == [late.id]


def test_where_without_equals_is_one_line() -> None:
    result = invoke("dlq", "list", "t", "-b", "memory://x", "--where", "reason")
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "is not KEY=VALUE" in result.stderr


def test_show_with_id_and_index_is_one_line() -> None:
    result = invoke("dlq", "show", "t", "-b", "memory://x", "--id", "a", "--index", "2")
    assert result.exit_code == 2
    assert "give one of them" in result.stderr


def test_purge_on_closed_stdin_is_refused() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "eventwire.cli", "dlq", "purge", "t", "-b", "memory://x"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1
    assert "--yes" in done.stderr


@pytest.mark.integration
@pytest.mark.kafka
def test_kafka_purge_says_what_it_removed_and_loses_nothing() -> None:
    """Kafka acknowledges by offset: a selected letter behind a kept one in its partition
    cannot go alone. Whatever the partitions hold, the purge's count is what left the DLQ."""
    from confluent_kafka.admin import AdminClient

    url = service_url("kafka")
    topic = f"dlqcli.{uuid.uuid4().hex[:10]}"
    try:
        ids = asyncio.run(make_letters(url, topic))
        wait = ["--wait", "8"]  # a new consumer group's join takes seconds
        purged = invoke("dlq", "purge", topic, "-b", url, *wait, "-w", "tenant=b", "--yes")
        assert purged.exit_code == 0, purged.stderr
        first = purged.stdout.splitlines()[0]
        assert first.startswith("removed ")
        removed = int(first.split()[1])
        still = 2 - removed
        if still:
            assert f"{still} acknowledged letter(s) still show" in purged.stdout
        left = listed(url, topic, *wait)
        assert len(left) == 4 - removed
        assert {ids["permanent-1"], ids["permanent-3"]} <= set(left)  # never touched
    finally:
        admin = AdminClient({"bootstrap.servers": url.removeprefix("kafka://")})
        names = [t for t in admin.list_topics(timeout=10).topics if t.startswith(topic)]
        if names:
            for future in admin.delete_topics(names, operation_timeout=30).values():
                future.result()
