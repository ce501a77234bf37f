"""CLI tests: `publish` reaches the broker intact, `run` serves an App and stops on SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from eventwire.brokers.catalog import open_broker
from eventwire.cli.main import app
from eventwire.core.message import Message

CANARY = "Canary-Pw-77c1"
runner = CliRunner()


async def read_one(url: str, topic: str) -> tuple[bytes, str | None, dict[str, str], str]:
    async with open_broker(url) as broker, broker.subscribe(topic, group="check") as deliveries:
        async for delivery in deliveries:
            await delivery.ack()
            m = delivery.message
            return m.body, m.key, dict(m.headers), m.content_type
    raise AssertionError("no message")


# Sync tests: the command runs its own event loop (asyncio.run), as it does from a shell.
def test_publish_inline_json_with_key_and_headers(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/b.db"
    data = '{"order_id": "o-1", "n": 2}'
    headers = ["--header", "tenant=acme", "-H", "trace=a=b"]
    result = runner.invoke(
        app, ["publish", "orders.placed", "--data", data, "--key", "c-9", *headers, "-b", url]
    )
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("published ")
    body, key, got, content_type = asyncio.run(read_one(url, "orders.placed"))
    assert json.loads(body) == {"order_id": "o-1", "n": 2}
    assert key == "c-9"
    assert got["tenant"] == "acme"
    assert got["trace"] == "a=b"  # only the first '=' separates name from value
    assert content_type == "application/json"


def test_publish_from_file_and_environment_url(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/env.db"
    data = tmp_path / "order.json"
    data.write_text('{"order_id": "o-2"}\n')
    result = runner.invoke(
        app, ["publish", "t.file", "--data", f"@{data}"], env={"EVENTWIRE_BROKER_URL": url}
    )
    assert result.exit_code == 0, result.stderr
    body, _, _, _ = asyncio.run(read_one(url, "t.file"))
    assert json.loads(body) == {"order_id": "o-2"}


def test_publish_defaults_to_embedded_sqlite_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("EVENTWIRE_BROKER_URL", raising=False)
    done = subprocess.run(
        [sys.executable, "-m", "eventwire.cli", "publish", "t", "--data", "{}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "sqlite:///.eventwire/broker.db" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert (tmp_path / ".eventwire" / "broker.db").exists()


def test_publish_to_bad_topic_is_one_line() -> None:
    result = runner.invoke(app, ["publish", "bad topic!", "--data", "{}", "-b", "memory://"])
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "topic name" in result.stderr


SERVICE = textwrap.dedent(
    """
    from pathlib import Path
    from eventwire.runtime.app import App

    app = App(name="cli-test")
    OUT = Path(__file__).with_name("seen.txt")

    @app.subscriber("cli.test", group="g")
    async def handle(payload: dict) -> None:
        with OUT.open("a") as f:
            f.write(payload["v"] + "\\n")
    """
)


def _wait_for(predicate: Callable[[], object], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_run_serves_a_file_app_and_stops_on_sigterm(tmp_path: Path) -> None:
    (tmp_path / "svc.py").write_text(SERVICE)
    url = f"sqlite:///{tmp_path}/run.db"
    env = {**os.environ, "EVENTWIRE_BROKER_URL": url}
    worker = subprocess.Popen(
        [sys.executable, "-m", "eventwire.cli", "run", f"{tmp_path}/svc.py:app", "-c", "2"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        published = subprocess.run(
            [sys.executable, "-m", "eventwire.cli", "publish", "cli.test", "--data", '{"v":"x1"}'],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert published.returncode == 0, published.stderr
        seen = tmp_path / "seen.txt"
        assert _wait_for(lambda: seen.exists() and seen.read_text() == "x1\n", 30)
    finally:
        worker.send_signal(signal.SIGTERM)
        _, err = worker.communicate(timeout=30)
    assert worker.returncode == 0, err
    assert "Traceback" not in err


def test_run_against_unreachable_broker_keeps_the_password_out(tmp_path: Path) -> None:
    (tmp_path / "svc.py").write_text(SERVICE)
    # A private port nothing listens on; RabbitMQ's URL shape carries a password.
    url = f"amqp://guest:{CANARY}@127.0.0.1:1/"
    done = subprocess.run(
        [
            *(sys.executable, "-m", "eventwire.cli", "run", f"{tmp_path}/svc.py:app"),
            *("-b", url, "--wait-for-broker", "2"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    # One line per failed try while waiting, then one line saying it gave up: exit 1.
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert "not reachable after 2 s" in lines[-1], done.stderr
    assert len(lines) >= 2, done.stderr
    assert all("not ready (try" in line for line in lines[:-1]), done.stderr
    assert "Traceback" not in done.stderr
    assert CANARY not in done.stdout + done.stderr


@pytest.mark.parametrize(
    "url",
    [
        f"redis://user:{CANARY}@127.0.0.1:1/0",
        f"amqp://guest:{CANARY}@127.0.0.1:1/",
        f"nats://user:{CANARY}@127.0.0.1:1",
        f"nats+core://user:{CANARY}@127.0.0.1:1",
    ],
    ids=["redis", "rabbitmq", "nats", "nats-core"],
)
def test_publish_to_unreachable_broker_is_one_redacted_line(url: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "eventwire.cli", "publish", "t", "--data", "{}", "-b", url],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert done.stderr.startswith("eventwire: error: ")
    assert CANARY not in done.stdout + done.stderr


PARALLEL_SERVICE = textwrap.dedent(
    """
    import asyncio
    from pathlib import Path
    from eventwire.runtime.app import App

    app = App(name="cli-concurrency")
    HERE = Path(__file__).parent
    state = {"active": 0, "peak": 0}

    @app.subscriber("cli.par", group="g", concurrency=3)
    async def handle(payload: dict) -> None:
        state["active"] += 1
        state["peak"] = max(state["peak"], state["active"])
        (HERE / "peak.txt").write_text(str(state["peak"]))
        try:
            await asyncio.sleep(0.05)  # long enough for every free slot to fill
        finally:
            state["active"] -= 1
        with (HERE / "done.txt").open("a") as f:
            f.write(payload["v"] + "\\n")
    """
)


async def _publish_many(url: str, topic: str, count: int) -> None:
    messages = [
        Message(body=json.dumps({"v": str(n)}).encode(), content_type="application/json")
        for n in range(count)
    ]
    async with open_broker(url) as broker:
        await broker.publish(topic, *messages)


@pytest.mark.parametrize(
    ("flags", "expected"), [(["--concurrency", "4"], 4), ([], 3)], ids=["flag", "code"]
)
def test_run_concurrency_flag_sets_the_handlers_in_flight(
    tmp_path: Path, flags: list[str], expected: int
) -> None:
    (tmp_path / "par.py").write_text(PARALLEL_SERVICE)
    url = f"sqlite:///{tmp_path}/par.db"
    total = 40
    # Published first: the new group replays the backlog, so every slot has work at once.
    asyncio.run(_publish_many(url, "cli.par", total))
    worker = subprocess.Popen(
        [sys.executable, "-m", "eventwire.cli", "run", f"{tmp_path}/par.py:app", "-b", url, *flags],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    done = tmp_path / "done.txt"
    try:
        finished = _wait_for(
            lambda: done.exists() and len(done.read_text().splitlines()) == total, 60
        )
    finally:
        worker.send_signal(signal.SIGTERM)
        _, err = worker.communicate(timeout=30)
    assert finished, err
    assert worker.returncode == 0, err
    assert sorted(done.read_text().split(), key=int) == [str(n) for n in range(total)]
    assert int((tmp_path / "peak.txt").read_text()) == expected
