"""CLI tests: ``eventwire bench`` on every broker of this machine, small N, and what it leaves.

Each run prints its JSON figures (``-s`` shows them); the test checks every field is there and
positive, that the network brokers have a raw side and a ratio, that the embedded ones say
they have none, and that the run's topic, group, queues, streams or Kafka topics are gone.
"""

from __future__ import annotations

import json
import os
import pty
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from eventwire.testing.services import service_url

SMALL = ["--messages", "200", "--latency-messages", "50", "--concurrency", "20"]
NETWORK = {
    "rabbitmq": ("rabbitmq", "aio-pika"),
    "redis": ("redis-streams", "redis-py"),
    "nats": ("nats-jetstream", "nats-py"),
    "kafka": ("kafka", "confluent-kafka"),
}


def bench(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "eventwire.cli", "bench", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def run_json(url: str) -> dict[str, Any]:
    done = bench("--broker", url, *SMALL, "--json")
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    print(json.dumps(report))  # the figures of this run, for the record
    return report


def check_side(side: dict[str, Any]) -> None:
    assert side["publish_per_s"] > 0
    assert side["consume_per_s"] > 0
    assert side["publish_cpu_us"] > 0
    assert side["consume_cpu_us"] > 0
    for name in ("publish_latency", "end_to_end"):
        latency = side[name]
        assert 0 < latency["p50_ms"] <= latency["p99_ms"] <= latency["p999_ms"]
    assert side["publish_latency"]["samples"] == 200
    assert side["end_to_end"]["samples"] == 50


def test_bench_memory_has_no_raw_client_and_says_so() -> None:
    report = run_json("memory://")
    assert report["profile"] == "memory"
    assert (report["messages"], report["size"], report["concurrency"]) == (200, 200, 20)
    check_side(report["eventwire"])
    assert report["raw"] is None
    assert report["ratio"] is None
    assert "no raw client" in report["raw_note"]


def test_bench_sqlite_leaves_no_row_of_its_topic(tmp_path: Path) -> None:
    path = tmp_path / "b.db"
    report = run_json(f"sqlite:///{path}")
    check_side(report["eventwire"])
    assert report["raw"] is None
    assert "no raw client" in report["raw_note"]
    with sqlite3.connect(path) as db:
        for table in ("messages", "consumer_groups", "claims", "topics"):
            rows = db.execute(
                f"SELECT count(*) FROM {table} WHERE topic LIKE ?", (f"{report['topic']}%",)
            ).fetchone()
            assert rows == (0,), table


@pytest.mark.integration
@pytest.mark.parametrize(
    "service",
    [
        pytest.param(name, marks=getattr(pytest.mark, name), id=name)
        for name in ("rabbitmq", "redis", "nats", "kafka")
    ],
)
def test_bench_network_broker_against_its_raw_client(service: str) -> None:
    report = run_json(service_url(service))
    profile, client = NETWORK[service]
    assert report["profile"] == profile
    check_side(report["eventwire"])
    check_side(report["raw"])
    assert report["raw_client"].startswith(client)
    assert report["ratio"]["publish"] > 0
    assert report["ratio"]["consume"] > 0
    assert report["raw_note"] is None
    assert "guest:guest" not in json.dumps(report)
    assert LEFTOVERS[service](service_url(service), report["topic"], report["group"]) == []


def rabbitmq_leftovers(url: str, topic: str, group: str) -> list[str]:
    import asyncio

    import aio_pika
    import aiormq

    from eventwire.brokers.rabbitmq.options import group_queue

    names = [
        group_queue("eventwire", topic, group),
        group_queue("eventwire", f"{topic}.dlq", "eventwire-dlq"),
        "raw-" + group_queue("eventwire", topic, "raw"),
    ]

    async def present() -> list[str]:
        found = []
        conn = await aio_pika.connect(url)
        try:
            for name in names:
                channel = await conn.channel()
                try:
                    await channel.declare_queue(name, passive=True)
                    found.append(name)
                except aiormq.exceptions.ChannelNotFoundEntity:
                    pass
        finally:
            await conn.close()
        return found

    return asyncio.run(present())


def redis_leftovers(url: str, topic: str, group: str) -> list[str]:
    import redis

    client = redis.Redis.from_url(url)
    try:
        return [k.decode() for k in client.scan_iter(match=f"*{topic}*", count=1000)]
    finally:
        client.close()


def nats_leftovers(url: str, topic: str, group: str) -> list[str]:
    import asyncio

    import nats

    async def streams() -> list[str]:
        nc = await nats.connect(url)
        try:
            names = [s.config.name or "" for s in await nc.jetstream().streams_info()]
        finally:
            await nc.close()
        return [n for n in names if topic.replace(".", "_") in n]

    return asyncio.run(streams())


def kafka_leftovers(url: str, topic: str, group: str) -> list[str]:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": url.removeprefix("kafka://")})
    topics = [t for t in admin.list_topics(timeout=10).topics if topic in t]
    groups = admin.list_consumer_groups(request_timeout=10).result().valid
    return topics + [g.group_id for g in groups if topic in g.group_id or g.group_id == group]


LEFTOVERS = {
    "rabbitmq": rabbitmq_leftovers,
    "redis": redis_leftovers,
    "nats": nats_leftovers,
    "kafka": kafka_leftovers,
}


@pytest.mark.parametrize(
    ("url", "expect"),
    [
        ("amqp://guest:S3cret-pw@127.0.0.1:1/", "not reachable"),
        ("redis://127.0.0.1:1/0", "not reachable"),
        ("bogus://x", "unknown broker URL scheme"),
        ("redis+pubsub://127.0.0.1:6379/0", "at-most-once"),
    ],
    ids=["rabbitmq-closed-port", "redis-closed-port", "unknown-scheme", "pubsub"],
)
def test_bench_wrong_url_is_one_line(url: str, expect: str) -> None:
    done = bench("--broker", url, *SMALL, timeout=60)
    assert done.returncode in (1, 2)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("eventwire: error: ")
    assert expect in lines[0]
    assert "S3cret-pw" not in done.stderr + done.stdout
    assert "Traceback" not in done.stderr


def run_in_terminal(*args: str) -> str:
    """Output of ``eventwire bench ARGS`` run on a pseudo-terminal (as from a shell)."""
    command = [sys.executable, "-m", "eventwire.cli", "bench", *args]
    pid, fd = pty.fork()
    if pid == 0:  # the child: run the command on the terminal
        os.execv(sys.executable, command)
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return b"".join(chunks).decode(errors="replace")


def test_bench_shows_a_progress_bar_on_a_terminal_and_none_with_json() -> None:
    shown = run_in_terminal("--broker", "memory://", *SMALL)
    assert "eventwire App" in shown  # the bar's label, drawn while it runs
    assert "publish-confirmed msg/s" in shown
    quiet = run_in_terminal("--broker", "memory://", *SMALL, "--json")
    assert "eventwire App" not in quiet
    assert json.loads(quiet[quiet.index("{") :])["profile"] == "memory"
