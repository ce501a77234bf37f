"""Setup tests: a generated Avro / Protobuf / JSON Schema service on a real broker and the real
Apicurio registry, through the service's own integration tests and its production worker.

Per format: `eventwire init --format X` for RabbitMQ (and Redis Streams, Kafka), `make proto` for
Protobuf, then the generated `tests/*_integration.py` against the machine's broker with
EVENTWIRE_TEST_SCHEMA_REGISTRY_URL at Apicurio (messages round-trip; the suite checks the
subject too); then the worker process and the publisher command with
EVENTWIRE_SCHEMA_REGISTRY_URL at Apicurio: every message processed, the poison body
dead-lettered, and the subject registered in Apicurio with the service's schema file as its
latest version. The service's queues/streams and its subject are deleted afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from eventwire.setup import scaffold
from eventwire.testing.services import service_url
from eventwire.testing.spawn import free_port
from setup.setup_helpers import clean_env, purge, rabbitmq_queue_names

pytestmark = [pytest.mark.integration, pytest.mark.registry, pytest.mark.timeout(300)]

COUNT = 40
SCHEMA_TYPES = {"avro": "AVRO", "protobuf": "PROTOBUF", "json-schema": "JSON"}
SUFFIX = {"avro": ".avsc", "protobuf": ".proto", "json-schema": ".schema.json"}


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return json.loads(answer.read())


def _delete_subject(registry: str, subject: str) -> None:
    for suffix in ("", "?permanent=true"):  # soft delete first: Confluent's API insists
        request = urllib.request.Request(f"{registry}/subjects/{subject}{suffix}", method="DELETE")
        with contextlib.suppress(urllib.error.HTTPError):  # already gone
            urllib.request.urlopen(request, timeout=10).close()


@dataclass(frozen=True, slots=True, kw_only=True)
class Service:
    fmt: str
    root: Path
    package: str
    url: str  # the broker's


@pytest.fixture
def service(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Service]:
    """A fresh generated work-queue service; its broker objects and subject deleted after."""
    fmt, broker = request.param
    name = f"e2e-{broker}-{fmt}-{uuid.uuid4().hex[:8]}"
    plan = scaffold.plan_service(
        name=name, broker=broker, pattern="work-queue", directory=tmp_path / name,
        message_format=fmt,
    )  # fmt: skip
    scaffold.write_service(plan)
    if fmt == "protobuf":
        done = subprocess.run(
            ["make", "-s", "proto", f"PYTHON={sys.executable}"],
            cwd=plan.target, capture_output=True, text=True, check=False, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
    url = service_url(broker)
    yield Service(fmt=fmt, root=plan.target, package=plan.package, url=url)
    registry = service_url("registry")
    _delete_subject(registry, f"{plan.package}.tasks-value")
    if broker == "kafka":
        _purge_kafka(url, plan.package)
        return
    queues = rabbitmq_queue_names(plan.target, plan.package) if broker == "rabbitmq" else set()
    asyncio.run(purge(broker, url, re.compile(re.escape(plan.package)), queues))


def _purge_kafka(url: str, package: str) -> None:
    """Delete the service's topics (its retry and dead-letter ones too) and its groups."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": url.removeprefix("kafka://")})
    topics = [t for t in admin.list_topics(timeout=10).topics if package in t]
    listed = admin.list_consumer_groups(request_timeout=10).result(timeout=30).valid
    groups = [g.group_id for g in listed if package in g.group_id]
    for future in admin.delete_topics(topics).values() if topics else ():
        future.result(timeout=30)
    for future in admin.delete_consumer_groups(groups).values() if groups else ():
        with contextlib.suppress(Exception):  # a group still settling is removed by Kafka later
            future.result(timeout=30)


def _env(url: str, **extra: str) -> dict[str, str]:
    env = clean_env()
    env.update(extra)
    env["EVENTWIRE_BROKER_URL"] = url
    env["EVENTWIRE_IDEMPOTENCY_URL"] = "memory://"
    env["EVENTWIRE_SCHEMA_REGISTRY_URL"] = service_url("registry")
    return env


def _metric(port: int, name: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


CASES = [
    pytest.param(("avro", "rabbitmq"), marks=pytest.mark.rabbitmq, id="avro-rabbitmq"),
    pytest.param(("protobuf", "rabbitmq"), marks=pytest.mark.rabbitmq, id="protobuf-rabbitmq"),
    pytest.param(
        ("json-schema", "rabbitmq"), marks=pytest.mark.rabbitmq, id="json-schema-rabbitmq"
    ),
    pytest.param(("avro", "redis"), marks=pytest.mark.redis, id="avro-redis"),
    pytest.param(("protobuf", "kafka"), marks=pytest.mark.kafka, id="protobuf-kafka"),
]


@pytest.mark.parametrize("service", CASES, indirect=True)
def test_the_generated_service_round_trips_through_apicurio(service: Service) -> None:
    fmt, root, package, url = service.fmt, service.root, service.package, service.url
    registry = service_url("registry")
    subject = f"{package}.tasks-value"

    # 1. The service's own integration tests, against the broker and Apicurio.
    env = _env(url, EVENTWIRE_TEST_BROKER_URL=url, EVENTWIRE_TEST_SCHEMA_REGISTRY_URL=registry)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "integration"],
        cwd=root, env=env, capture_output=True, text=True, check=False, timeout=240,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "2 passed" in done.stdout

    # 2. The production worker and the publisher command, configured by the environment.
    port = free_port()
    env = _env(url, EVENTWIRE_HTTP_PORT=str(port))
    worker = subprocess.Popen(
        [sys.executable, "-m", f"{package}.messaging.consumer"],
        cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        _wait_ready(port, worker)
        before = _metric(port, "eventwire_messages_processed_total")
        published = subprocess.run(
            [sys.executable, "-m", f"{package}.messaging.publisher", "--count", str(COUNT),
             "--poison", "1"],
            cwd=root, env=env, capture_output=True, text=True, check=False, timeout=120,
        )  # fmt: skip
        assert published.returncode == 0, published.stdout + published.stderr
        assert json.loads(published.stdout)["published"] == COUNT + 1
        _wait_until(
            lambda: (
                _metric(port, "eventwire_messages_processed_total") >= before + COUNT
                and _metric(port, "eventwire_messages_dead_lettered_total") >= 1
            ),
            worker,
        )
        assert _metric(port, "eventwire_messages_processed_total") == before + COUNT
    finally:
        worker.send_signal(signal.SIGTERM)
        output = worker.communicate(timeout=60)[0]
    assert worker.returncode == 0, output[-4000:]

    # 3. Apicurio holds the subject, its latest version the service's schema file.
    assert subject in _get(f"{registry}/subjects")
    latest = _get(f"{registry}/subjects/{subject}/versions/latest")
    assert latest.get("schemaType", "AVRO") == SCHEMA_TYPES[fmt]
    schema_file = root / package / "messaging" / "schemas" / f"task{SUFFIX[fmt]}"
    text = schema_file.read_text()
    if fmt == "protobuf":
        assert "message Task" in latest["schema"]
    else:
        assert json.loads(latest["schema"]) == json.loads(text)


def _wait_ready(port: int, worker: subprocess.Popen[str], within: float = 60.0) -> None:
    def ready() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2):
                return True
        except (urllib.error.URLError, OSError):
            return False

    _wait_until(ready, worker, within)


def _wait_until(check: Any, worker: subprocess.Popen[str], within: float = 90.0) -> None:
    """Poll ``check`` with a bounded deadline; a worker that exits meanwhile fails at once."""
    deadline = time.monotonic() + within
    while not check():
        if worker.poll() is not None:
            pytest.fail(f"the worker exited: {worker.communicate()[0][-4000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"not reached within {within} s")
        time.sleep(0.1)
