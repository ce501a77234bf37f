"""Setup tests: a generated service runs its worker and publisher for real, by URL only.

1,000 messages plus one poison message: all processed, the poison one in the dead-letter
destination. On the embedded SQLite broker always; on RabbitMQ, Redis and NATS (the machine's
services) under the integration markers, where an unreachable broker is a failure.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from setup_helpers import purge, rabbitmq_queue_names

from eventwire.setup import scaffold

COUNT = 1000
URLS = {
    "rabbitmq": os.environ.get("EVENTWIRE_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/"),
    "redis": os.environ.get("EVENTWIRE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
    "nats": os.environ.get("EVENTWIRE_TEST_NATS_URL", "nats://127.0.0.1:4222"),
}
PATTERNS = ["work-queue", "pub-sub", "event-streaming"]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTWIRE_")}
    env["EVENTWIRE_RETRY_INITIAL_DELAY"] = "0.05"
    return env


def run_service(root: Path, package: str, url: str, groups: int) -> dict[str, Any]:
    """Start the worker, publish COUNT + 1 poison once it is ready, return its figures."""
    expected = (COUNT + 1) * groups
    worker = subprocess.Popen(
        [sys.executable, "-m", f"{package}.messaging.consumer", "--broker-url", url,
         "--exit-after", str(expected), "--timeout", "120"],
        cwd=root, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert worker.stdout is not None
        first = worker.stdout.readline().strip()
        assert first == "ready", first + (worker.stderr.read() if worker.stderr else "")
        started = time.perf_counter()
        published = subprocess.run(
            [sys.executable, "-m", f"{package}.messaging.publisher", "--broker-url", url,
             "--count", str(COUNT), "--poison", "1"],
            cwd=root, env=_env(), capture_output=True, text=True, check=True, timeout=120,
        )  # fmt: skip
        assert json.loads(published.stdout)["published"] == COUNT + 1
        out, err = worker.communicate(timeout=150)
        elapsed = time.perf_counter() - started
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    assert worker.returncode == 0, out + err
    figures: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    figures["seconds"] = round(elapsed, 2)
    letters = subprocess.run(
        [sys.executable, "-m", f"{package}.messaging.dead_letters", "--broker-url", url,
         "--idle", "2"],
        cwd=root, env=_env(), capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    lines = [json.loads(line) for line in letters.stdout.splitlines()]
    figures["dead_letters"] = lines[-1]["dead_letters"]
    figures["dead_letter_reasons"] = sorted(
        {d.get("x-eventwire-dlq-reason", "") for d in lines[:-1]}
    )
    return figures


@dataclass(frozen=True, slots=True, kw_only=True)
class Made:
    """A generated service run against a shared broker, whose objects must be deleted."""

    broker: str
    url: str
    root: Path
    package: str


Cleanup = list[Made]


@pytest.fixture
def cleanup() -> Iterator[Cleanup]:
    """Delete every queue, key and stream the test's services made, pass or fail."""
    made: Cleanup = []
    yield made
    for service in made:
        # The package name holds the test's unique hex token, and every broker object the
        # service made carries it (topics "<package>.<suffix>", groups "<package>-<role>").
        match = re.compile(re.escape(service.package))
        queues: set[str] = set()
        if service.broker == "rabbitmq":
            queues = rabbitmq_queue_names(service.root, service.package)
        asyncio.run(purge(service.broker, service.url, match, queues))


def check(broker: str, pattern: str, url: str, tmp_path: Path, cleanup: Cleanup) -> None:
    name = f"e2e-{broker}-{pattern}-{uuid.uuid4().hex[:6]}"  # fresh topics on shared brokers
    plan = scaffold.plan_service(
        name=name, broker=broker, pattern=pattern, directory=tmp_path / name
    )
    scaffold.write_service(plan)
    if not url.startswith("sqlite"):  # registered before the service can make anything
        cleanup.append(Made(broker=broker, url=url, root=tmp_path / name, package=plan.package))
    groups = 2 if pattern == "pub-sub" else 1
    figures = run_service(tmp_path / name, plan.package, url, groups)
    print(f"{broker} {pattern} on {url.split('://', maxsplit=1)[0]}: {figures}")
    assert figures["processed"] == COUNT * groups
    assert figures["dead_lettered"] == groups
    assert figures["failed"] == 0
    assert figures["dead_letters"] == groups  # each group dead-letters its copy of the poison
    assert figures["dead_letter_reasons"] == ["validation-error"]


@pytest.mark.parametrize("pattern", PATTERNS)
def test_generated_service_on_embedded_sqlite(
    pattern: str, tmp_path: Path, cleanup: Cleanup
) -> None:
    check("rabbitmq", pattern, "sqlite:///.eventwire/broker.db", tmp_path, cleanup)


@pytest.mark.integration
@pytest.mark.rabbitmq
@pytest.mark.parametrize("pattern", PATTERNS)
def test_generated_service_on_rabbitmq(pattern: str, tmp_path: Path, cleanup: Cleanup) -> None:
    check("rabbitmq", pattern, URLS["rabbitmq"], tmp_path, cleanup)


@pytest.mark.integration
@pytest.mark.redis
@pytest.mark.parametrize("pattern", PATTERNS)
def test_generated_service_on_redis(pattern: str, tmp_path: Path, cleanup: Cleanup) -> None:
    check("redis", pattern, URLS["redis"], tmp_path, cleanup)


NATS_PATTERNS = PATTERNS  # pub-sub: each group's dead letter is kept (distinct dedup ids)


@pytest.mark.integration
@pytest.mark.nats
@pytest.mark.parametrize("pattern", NATS_PATTERNS)
def test_generated_service_on_nats(pattern: str, tmp_path: Path, cleanup: Cleanup) -> None:
    check("nats", pattern, URLS["nats"], tmp_path, cleanup)


def test_readme_flow_script(tmp_path: Path) -> None:
    script = Path(__file__).resolve().parents[2] / "examples" / "setup_flow.py"
    done = subprocess.run(
        [sys.executable, str(script), "--dir", str(tmp_path), "--count", "200"],
        capture_output=True, text=True, check=False, timeout=180, env=_env(),
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    out = done.stdout
    assert "Recommended: RabbitMQ" in out
    assert "✅ Message Broker Setup Complete" in out
    assert "  processed: 200" in out
    assert "  dead_letters_in_dlq: 1" in out
    assert (tmp_path / "orders-service" / "orders_service" / "messaging" / "consumer.py").exists()
