"""Helpers for the setup tests: tools, compose, and generating every broker x pattern."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from eventwire import DEAD_LETTER_GROUP, dead_letter_topic
from eventwire.setup import scaffold
from eventwire.setup.choices import Pattern

VENV_BIN = Path(__file__).resolve().parents[2] / ".venv" / "bin"
# Every broker profile init offers x every pattern, except what init refuses (a work queue
# without consumer groups).
PROFILES = ["rabbitmq", "kafka", "nats", "nats-core", "redis", "redis-pubsub"]
COMBINATIONS = [
    (b, p.value)
    for b in PROFILES
    for p in Pattern
    if (b, p.value) != ("redis-pubsub", "work-queue")
]
ALL_GENERATED = [*COMBINATIONS, ("long", "name")]  # + the longest name init accepts


@dataclass(frozen=True, slots=True, kw_only=True)
class Generated:
    """One generated service."""

    broker: str
    pattern: str
    root: Path
    package: str


def tool(name: str) -> str:
    """A dev tool from the project's virtualenv, else from PATH."""
    candidate = VENV_BIN / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is needed for this test and was not found")
    return found


def docker_compose() -> str | None:
    """Debian's docker-compose; missing is a failure in CI and a skip elsewhere."""
    found = shutil.which("docker-compose")
    if found is None and os.environ.get("CI", "").lower() == "true":
        pytest.fail("docker-compose is not installed (apt-get install -y docker-compose)")
    return found


def generate_all(base: Path) -> dict[tuple[str, str], Generated]:
    """Every combination init offers, each in its own folder under one session root."""
    services: dict[tuple[str, str], Generated] = {}
    for broker, pattern in COMBINATIONS:
        name = f"svc-{broker}-{pattern}"
        plan = scaffold.plan_service(
            name=name, broker=broker, pattern=pattern, directory=base / name
        )
        scaffold.write_service(plan)
        services[broker, pattern] = Generated(
            broker=broker, pattern=pattern, root=base / name, package=plan.package
        )
    # The longest allowed name, so that line lengths hold for every name init accepts.
    long_name = "a-service-name-that-is-forty-chars-long1"
    assert len(long_name) == 40
    plan = scaffold.plan_service(
        name=long_name, broker="kafka", pattern="event-streaming", directory=base / long_name
    )
    scaffold.write_service(plan)
    services["long", "name"] = Generated(
        broker="kafka", pattern="event-streaming", root=base / long_name, package=plan.package
    )
    return services


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """How one command ended."""

    returncode: int
    output: str


def _run(args: list[str], cwd: Path, env: dict[str, str] | None, timeout: float) -> Outcome:
    try:
        done = subprocess.run(
            args, cwd=cwd, env=env, capture_output=True, text=True, check=False, timeout=timeout
        )
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
        return Outcome(returncode=-1, output=f"timed out after {timeout} s\n{out[-4000:]}")
    return Outcome(returncode=done.returncode, output=done.stdout[-4000:] + done.stderr[-4000:])


def run_parallel(
    commands: dict[tuple[str, str], tuple[list[str], Path]],
    *,
    env: dict[str, str] | None = None,
    timeout: float = 180.0,
    workers: int = 4,
) -> dict[tuple[str, str], Outcome]:
    """Run independent commands a few at a time (each is mostly interpreter start-up)."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {
            key: pool.submit(_run, args, cwd, env, timeout) for key, (args, cwd) in commands.items()
        }
        return {key: future.result() for key, future in futures.items()}


def assert_one_line_error(code: int, out: str, err: str, fragment: str) -> None:
    """A CLI refusal: exit 2, one line on stderr holding ``fragment``, no traceback."""
    assert code == 2, (code, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert fragment in lines[0], lines[0]
    assert "Traceback" not in out + err


def clean_env() -> dict[str, str]:
    """The environment without eventwire settings, so generated code uses its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTWIRE_")}
    env.pop("PYTHONPATH", None)
    return env


# --- Cleanup of what the e2e tests leave on the machine's shared brokers ----------------------
# Every name a generated e2e service makes on a broker contains its package name (topics are
# "<package>.<suffix>", groups "<package>-<role>"), which holds a fresh hex token per test, so
# matching on that token deletes exactly one test's objects and nobody else's.
LEFTOVER = re.compile(r"e2e_(?:rabbitmq|redis|nats|kafka)_")  # any e2e service, past or present


def _generated_names(root: Path, package: str) -> tuple[list[str], list[str]]:
    """The topics and groups the generated service uses, read from its own modules."""
    messaging = root / package / "messaging"
    text = (messaging / "messages.py").read_text()
    topic = re.findall(r'^TOPIC = "([^"]+)"', text, re.M)
    base = topic[0] if topic else f"{package}.tasks"
    partitions = re.findall(r"^PARTITIONS = (\d+)", text, re.M)
    topics = [f"{base}.p{p}" for p in range(int(partitions[0]))] if partitions else [base]
    groups = re.findall(rf'"({re.escape(package)}[^"]*)"', (messaging / "consumer.py").read_text())
    return topics, sorted(set(groups))


def rabbitmq_queue_names(root: Path, package: str) -> set[str]:
    """The adapter's queues of one service: its group queues and the DLQ queues."""
    from eventwire.brokers.rabbitmq import options as names

    topics, groups = _generated_names(root, package)
    sources = [(topic, group) for topic in topics for group in groups]
    sources += [(dead_letter_topic(topic), DEAD_LETTER_GROUP) for topic in topics]
    # Retries wait in the adapter's shared delay-level queues, which hold nothing per service.
    return {names.group_queue("eventwire", topic, group) for topic, group in sources}


def rabbitmq_listed_queues(match: re.Pattern[str]) -> set[str]:
    """Queues on the server whose name matches, when rabbitmqctl can list them (else none)."""
    ctl = shutil.which("rabbitmqctl")
    if ctl is None:
        return set()  # the derived names above still cover what the adapter declares
    try:
        done = subprocess.run(
            [ctl, "list_queues", "name", "--quiet", "--no-table-headers"],
            capture_output=True, text=True, check=False, timeout=30,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return set()
    return {q for q in done.stdout.split() if match.search(q)} if done.returncode == 0 else set()


async def purge_rabbitmq(url: str, queues: set[str]) -> int:
    """Delete these queues (their bindings go with them); a missing queue is not an error."""
    import aio_pika

    connection = await aio_pika.connect(url, timeout=10)
    async with connection:
        channel = await connection.channel()
        for queue in sorted(queues):
            await channel.queue_delete(queue)
    return len(queues)


async def purge_redis(url: str, match: re.Pattern[str]) -> int:
    """Delete matching keys: streams (with their consumer groups), retry and delayed sets."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    try:
        keys = [k async for k in client.scan_iter(match="*e2e_*", count=500)]
        keys = [k for k in keys if match.search(k.decode(errors="replace"))]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()
    return len(keys)


async def purge_nats(url: str, match: re.Pattern[str]) -> int:
    """Delete JetStream streams (and so their consumers) whose name or subjects match."""
    import nats

    client = await nats.connect(url, connect_timeout=5, max_reconnect_attempts=1)
    try:
        jsm = client.jsm()
        doomed = [
            info.config.name
            for info in await jsm.streams_info()
            if info.config.name is not None
            and (
                match.search(info.config.name)
                or any(match.search(subject) for subject in info.config.subjects or [])
            )
        ]
        for name in doomed:
            await jsm.delete_stream(name)
    finally:
        await client.close()
    return len(doomed)


def purge_kafka(url: str, match: re.Pattern[str]) -> int:
    """Delete matching topics (retry and dead-letter topics included) and consumer groups."""
    from confluent_kafka.admin import AdminClient

    bootstrap = url.split("://", 1)[1].split("/", 1)[0].split("?", 1)[0]
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 3})
    topics = [t for t in admin.list_topics(timeout=10).topics if match.search(t)]
    if topics:
        for future in admin.delete_topics(topics, operation_timeout=30).values():
            future.result()
    listed = admin.list_consumer_groups(request_timeout=10).result()
    groups = [g.group_id for g in listed.valid if match.search(g.group_id)]
    if groups:
        for future in admin.delete_consumer_groups(groups, request_timeout=10).values():
            future.result()
    return len(topics) + len(groups)


def kafka_groups_settled(url: str, root: Path, package: str, members: int) -> bool:
    """Whether each of the service's consumer groups is stable with ``members`` members that
    all hold partitions: publishing earlier would run into the workers' first rebalance,
    whose in-flight messages are redelivered (Kafka's at-least-once window, not a loss)."""
    from confluent_kafka import ConsumerGroupState
    from confluent_kafka.admin import AdminClient

    _topics, names = _generated_names(root, package)
    groups = [n for n in names if n.startswith(f"{package}-")]  # not the "<package>.worker" log
    assert groups, f"no consumer group names found for {package}"
    bootstrap = url.split("://", 1)[1].split("/", 1)[0].split("?", 1)[0]
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 3})
    described = admin.describe_consumer_groups(groups, request_timeout=10)
    for future in described.values():
        group = future.result()
        if group.state != ConsumerGroupState.STABLE or len(group.members) != members:
            return False
        if not all(m.assignment.topic_partitions for m in group.members):
            return False
    return True


def purge_postgres_marks(url: str, package: str) -> int:
    """Delete the idempotency marks of one service's groups (they carry its package name)."""
    import psycopg

    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
            done = conn.execute(
                "DELETE FROM eventwire_idempotency WHERE grp LIKE %s", (f"%{package}%",)
            )
            return done.rowcount
    except psycopg.errors.UndefinedTable:
        return 0


async def purge(broker: str, url: str, match: re.Pattern[str], queues: set[str]) -> int:
    """Delete what matches on one broker; ``queues`` are RabbitMQ names known without listing."""
    if broker == "rabbitmq":
        return await purge_rabbitmq(url, queues | rabbitmq_listed_queues(match))
    if broker == "redis":
        return await purge_redis(url, match)
    if broker == "nats":
        return await purge_nats(url, match)
    if broker == "kafka":
        return purge_kafka(url, match)
    return 0  # the embedded brokers live in the test's tmp_path
