"""CLI tests: `health` (broker and worker), `dlq list` leaves dead letters, `dlq replay` moves
them back; `run --http-port` serves the endpoints. Memory (shared names) and SQLite files."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from eventwire import App, Message, PermanentError
from eventwire.brokers.memory.broker import forget_hub
from eventwire.cli.main import app as cli
from eventwire.core import headers as h
from eventwire.testing.app_runs import serving, wait_until
from eventwire.testing.helpers import free_port

runner = CliRunner()
CANARY = "Canary-Pw-5e1d"
COUNT = 8
POISON = {2, 5}


@pytest.fixture(params=["memory", "sqlite"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'dlq.db'}?poll=0.02"
        return
    name = f"cli-dlq-{uuid.uuid4().hex[:10]}"
    yield f"memory://{name}"
    forget_hub(name)


async def make_dead_letters(url: str, topic: str) -> dict[str, Message]:
    """Publish COUNT orders; the handler refuses those in POISON. Returns the refused ones."""
    app = App(url, name="broken")

    @app.subscriber(topic, group="workers")
    async def handle(payload: dict[str, Any]) -> None:
        if payload["n"] in POISON:
            raise PermanentError(f"order {payload['n']} has no customer")

    sent: dict[str, Message] = {}
    async with serving(app):
        for n in range(COUNT):
            message = await app.publish(
                topic, {"n": n}, key=f"k-{n}", correlation_id=f"corr-{n}", headers={"tenant": "a"}
            )
            if n in POISON:
                sent[message.id] = message
        await wait_until(
            lambda: (
                app.stats.dead_lettered == len(POISON)
                and app.stats.processed == COUNT - len(POISON)
            )
        )
    return sent


async def run_fixed(url: str, topic: str, expected: int) -> list[Message]:
    """The handler after the fix: takes everything; returns what it saw."""
    app = App(url, name="fixed")
    seen: list[Message] = []

    @app.subscriber(topic, group="workers")
    async def handle(payload: dict[str, Any], ctx: Any) -> None:
        seen.append(ctx.message)

    async with serving(app):
        await wait_until(lambda: len(seen) >= expected)
    return seen


def invoke(*args: str) -> Any:
    result = runner.invoke(cli, list(args))
    assert CANARY not in result.output + result.stderr
    return result


def test_dlq_list_leaves_them_and_replay_brings_them_back(url: str) -> None:
    topic = "orders.placed"
    refused = asyncio.run(make_dead_letters(url, topic))

    first = invoke("dlq", "list", topic, "-b", url, "--wait", "0.3")
    second = invoke("dlq", "list", topic, "-b", url, "--wait", "0.3")
    assert first.exit_code == 0, first.stderr
    assert first.stdout == second.stdout, "listing consumed dead letters"
    lines = first.stdout.splitlines()
    assert lines[-1] == f"{len(POISON)} dead letter(s) in {topic}.dlq, left in place"
    for message_id in refused:
        (line,) = [x for x in lines if x.startswith(message_id)]
        assert "group=workers" in line
        assert "reason=permanent-error" in line
        assert "attempts=1" in line
        assert "has no customer" in line
        assert 'body=\'{"n":' in line

    replay = invoke("dlq", "replay", topic, "-b", url, "--wait", "0.3")
    assert replay.exit_code == 0, replay.stderr
    assert replay.stdout.splitlines()[-1] == (
        f"replayed {len(POISON)} dead letter(s) from {topic}.dlq to {topic} "
        f"({len(POISON)} to group workers)"
    )
    after = invoke("dlq", "list", topic, "-b", url, "--wait", "0.3")
    assert after.stdout.splitlines()[-1].startswith("0 dead letter(s)")

    seen = asyncio.run(run_fixed(url, topic, len(POISON)))
    assert len(seen) == len(POISON)
    for message in seen:
        before = refused[message.id]  # the id is kept on every broker
        assert message.body == before.body
        assert (message.key, message.correlation_id) == (before.key, before.correlation_id)
        assert message.content_type == before.content_type
        assert message.headers["tenant"] == "a"
        assert not [k for k in message.headers if k.startswith("x-eventwire-dlq-")]
        assert h.DLQ_REASON not in message.headers


def test_replay_on_a_still_failing_worker_replays_the_one_letter_once(tmp_path: Path) -> None:
    """On main: 1 dead letter, a worker that still fails, ``--limit 50``: "replayed 50"."""
    url = f"sqlite:///{tmp_path / 'loop.db'}?poll=0.02"
    topic = "orders.placed"

    async def scenario() -> tuple[Any, int]:
        app = App(url, name="still-broken")

        @app.subscriber(topic, group="workers")
        async def handle(payload: dict[str, Any]) -> None:
            raise PermanentError("still broken")

        async with serving(app):
            await app.publish(topic, {"n": 1})
            await wait_until(lambda: app.stats.dead_lettered == 1)
            replay = await asyncio.to_thread(
                invoke, "dlq", "replay", topic, "-b", url, "--limit", "50", "--wait", "1"
            )
            await wait_until(lambda: app.stats.dead_lettered == 2)
            return replay, app.stats.dead_lettered

    replay, dead = asyncio.run(scenario())
    assert replay.exit_code == 0, replay.stderr
    assert replay.stdout.splitlines()[-1] == (
        f"replayed 1 dead letter(s) from {topic}.dlq to {topic} (1 to group workers)"
    )
    assert dead == 2
    listing = invoke("dlq", "list", topic, "-b", url, "--wait", "0.3")
    assert listing.stdout.splitlines()[-1] == f"1 dead letter(s) in {topic}.dlq, left in place"


def test_health_ok_on_embedded_brokers(url: str) -> None:
    if url.startswith("sqlite"):
        asyncio.run(_touch(url))  # health is a read: the file must exist already
    result = invoke("health", "-b", url)
    assert result.exit_code == 0, result.output
    profile = url.split(":", 1)[0]
    assert result.stdout.startswith(f"{profile} at ")
    assert result.stdout.rstrip().endswith(": ok")


async def _touch(url: str) -> None:
    from eventwire.brokers.catalog import open_broker

    async with open_broker(url) as broker:
        await broker.publish("touch", Message(body=b"x"))


def test_health_on_a_missing_sqlite_file_reports_it_and_creates_nothing(tmp_path: Path) -> None:
    # On main: "ok", and the folder and the file were created.
    where = tmp_path / "missing-dir" / "x.db"
    result = invoke("health", "-b", f"sqlite:///{where}")
    assert result.exit_code == 1, result.output
    assert "no sqlite broker file" in result.stdout
    assert "nothing created" in result.stdout
    assert not (tmp_path / "missing-dir").exists()


def test_dlq_list_of_a_typo_creates_nothing(tmp_path: Path) -> None:
    db = tmp_path / "b.db"
    asyncio.run(_touch(f"sqlite:///{db}"))
    before = db.read_bytes()
    listing = invoke("dlq", "list", "orders.plcaed", "-b", f"sqlite:///{db}", "--wait", "0.2")
    assert listing.exit_code == 0, listing.output
    assert "nothing was created" in listing.stdout.splitlines()[-1]
    assert db.read_bytes() == before
    missing = tmp_path / "nope" / "c.db"
    listing = invoke("dlq", "list", "orders", "-b", f"sqlite:///{missing}")
    assert listing.exit_code == 0, listing.output
    assert not missing.parent.exists()


def test_dlq_list_without_a_url_says_which_file_it_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("EVENTWIRE_BROKER_URL", raising=False)
    listing = invoke("dlq", "list", "orders")
    assert listing.exit_code == 0, listing.output
    assert "reading the embedded SQLite broker sqlite:///.eventwire/broker.db" in listing.stderr
    assert not (tmp_path / ".eventwire").exists()


def test_health_of_an_unreachable_broker_is_one_line_and_exit_1() -> None:
    url = f"amqp://guest:{CANARY}@127.0.0.1:{free_port()}/"
    result = invoke("health", "-b", url, "--timeout", "5")
    assert result.exit_code == 1
    assert len(result.stdout.strip().splitlines()) == 1
    assert result.stdout.startswith("rabbitmq at amqp://guest:***@127.0.0.1")


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("dlq", "list", "t", "-b", f"nope://u:{CANARY}@h/"), "unknown broker URL scheme"),
        (("dlq", "replay", "bad topic!", "-b", "memory://"), "topic name"),
        (("health", "--url", f"ftp://u:{CANARY}@h/"), "not an HTTP address"),
    ],
)
def test_usage_errors_are_one_line_exit_2(args: tuple[str, ...], fragment: str) -> None:
    result = invoke(*args)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("eventwire: error: ")
    assert fragment in lines[0]


def test_run_with_a_taken_http_port_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = invoke("run", "x:app", "-b", "memory://", "--http-port", str(port))
    assert result.exit_code == 2
    (line,) = result.stderr.strip().splitlines()
    assert f"127.0.0.1:{port}" in line
    assert "already in use" in line


WORKER = """
from eventwire import App

app = App(name="http-worker")


@app.subscriber("w.events", group="workers")
async def handle(payload: dict) -> None:
    return None
"""


def test_run_serves_metrics_and_health_reports_ready(tmp_path: Path) -> None:
    (tmp_path / "worker.py").write_text(WORKER)
    port = free_port()
    env = {
        **os.environ,
        "EVENTWIRE_HTTP_PORT": str(port),
        "EVENTWIRE_BROKER_URL": f"sqlite:///{tmp_path / 'w.db'}?poll=0.02",
    }
    command = [sys.executable, "-m", "eventwire.cli", "run", "worker.py:app"]
    worker = subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            result = invoke("health", "--url", f"http://127.0.0.1:{port}", "--timeout", "2")
            if result.exit_code == 0 or time.monotonic() > deadline or worker.poll() is not None:
                break
            time.sleep(0.05)
        assert result.exit_code == 0, result.stdout
        assert result.stdout.strip() == f"http://127.0.0.1:{port}/readyz: ready"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            text = answer.read().decode()
        assert 'eventwire_messages_processed_total{group="workers"' in text
    finally:
        worker.send_signal(signal.SIGTERM)
        output, _ = worker.communicate(timeout=30)
    assert worker.returncode == 0, output.decode()
    down = invoke("health", "--url", f"http://127.0.0.1:{port}", "--timeout", "2")
    assert down.exit_code == 1
    assert "unreachable" in down.stdout


def test_help_of_the_new_commands_loads_no_broker_code() -> None:
    code = (
        "import sys\nfrom eventwire.cli.main import app\n"
        "for argv in (['health', '--help'], ['dlq', '--help'], ['dlq', 'list', '--help'],\n"
        "             ['dlq', 'replay', '--help'], ['run', '--help']):\n"
        "    try:\n        app(argv)\n"
        "    except SystemExit as e:\n        assert e.code == 0, (argv, e.code)\n"
        "heavy = ('eventwire.brokers.memory.', 'eventwire.brokers.sqlite.broker',\n"
        "         'aio_pika', 'redis', 'nats', 'prometheus_client')\n"
        "loaded = [m for m in sys.modules if m.startswith(heavy)]\n"
        "print('LOADED', sorted(loaded))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "LOADED []"
