"""``eventwire monitor --broker``: groups' backlogs read from the broker itself (no worker),
through the same lag readers as ``/metrics``; one-line errors for what cannot be watched."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from eventwire import App
from eventwire.cli.main import app as cli
from eventwire.testing.app_runs import running, wait_until

runner = CliRunner()


async def leave_backlog(url: str, topic: str, group: str, count: int) -> None:
    """Subscribe ``group`` once (the broker then keeps its backlog), stop, publish ``count``."""
    seen: list[int] = []
    app = App(url, name="monitor-test", shutdown_timeout=1.0)

    @app.subscriber(topic, group=group)
    async def handle(body: dict[str, Any]) -> None:
        seen.append(int(body["n"]))

    async with app:
        async with running(app):
            await app.wait_ready()
            await app.publish(topic, {"n": -1})
            await wait_until(lambda: seen == [-1], deadline=30)
        await app.publish_batch(topic, ({"n": n} for n in range(count)))


def redis_cleanup(topic: str) -> None:
    import redis

    client = redis.Redis()
    keys = list(client.scan_iter(match=f"ew:{topic}*"))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.mark.parametrize(
    "kind", ["sqlite", pytest.param("redis", marks=[pytest.mark.integration, pytest.mark.redis])]
)
def test_backlog_per_group_from_the_broker(kind: str, tmp_path: Path) -> None:
    topic, group = f"mon.t{uuid.uuid4().hex[:8]}", "billing"
    url = f"sqlite:///{tmp_path / 'b.db'}" if kind == "sqlite" else "redis://127.0.0.1:6379/0"
    try:
        asyncio.run(leave_backlog(url, topic, group, 30))
        args = ["monitor", "--broker", url, "--topic", topic, "-g", group, "-g", "nobody"]
        snap = runner.invoke(cli, [*args, "--json"])
        assert snap.exit_code == 0, snap.output
        got = json.loads(snap.stdout)
        assert got["topic"] == topic
        billing, nobody = got["groups"]
        assert billing["group"] == group
        assert billing["backlog"]["total"] == 30
        assert nobody == {"group": "nobody", "backlog": None}  # reading created nothing
        again = json.loads(runner.invoke(cli, [*args, "--json"]).stdout)
        assert again["groups"][1]["backlog"] is None
        table = runner.invoke(cli, [*args, "--once"])
        assert table.exit_code == 0, table.output
        assert "30" in table.stdout
        assert "no such group yet" in table.stdout
    finally:
        if kind == "redis":
            redis_cleanup(topic)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        ([], "give one of --worker URL"),
        (["--worker", "http://127.0.0.1:9", "--broker", "memory://"], "give one of --worker"),
        (["--broker", "memory://"], "--broker needs --topic TOPIC and at least one --group"),
        (["--broker", "redis+pubsub://127.0.0.1:6379/0", "--topic", "t", "-g", "g"], "no backlog"),
        (["--broker", "nope://x", "--topic", "t", "-g", "g"], "nope"),
    ],
)
def test_what_cannot_be_watched_is_one_line(args: list[str], fragment: str) -> None:
    result = runner.invoke(cli, ["monitor", *args])
    assert result.exit_code != 0
    assert fragment in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
