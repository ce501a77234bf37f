"""Tests: the services script and the helpers that start and probe Kafka."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from eventwire.testing import kafka_probe
from eventwire.testing.services import SERVICES, service_url, unreachable_reason
from eventwire.testing.spawn import free_port
from eventwire.testing.spawn_kafka import spawn_kafka

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "services.sh"


def test_status_lists_six_services_up() -> None:
    """After `up` (which .ci/run does first), every service answers its real readiness probe."""
    done = subprocess.run(
        ["bash", str(SCRIPT), "status"], capture_output=True, text=True, check=False, timeout=120
    )
    lines = done.stdout.splitlines()
    assert [line.split()[0] for line in lines] == [
        "rabbitmq", "redis", "nats", "postgresql", "kafka", "apicurio",
    ]  # fmt: skip
    assert all(line.split()[1] == "up" for line in lines), done.stdout
    assert done.returncode == 0
    assert "guest:guest" not in done.stdout  # the address line never shows a password


def test_unknown_verb_is_one_line_and_exit_2() -> None:
    done = subprocess.run(
        ["bash", str(SCRIPT), "start"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 2
    assert done.stderr.strip() == "usage: bash scripts/services.sh up|status|down"


def test_service_addresses_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert service_url("kafka") == "kafka://127.0.0.1:9092"
    monkeypatch.setenv("EVENTWIRE_TEST_KAFKA_URL", "kafka://10.1.2.3:19092,10.1.2.4:19092")
    assert SERVICES["kafka"].host_port == ("10.1.2.3", 19092)


def test_a_closed_port_is_named_with_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVENTWIRE_TEST_REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    reason = unreachable_reason("redis")
    assert reason is not None
    assert reason.startswith("redis is not reachable at 127.0.0.1:")
    assert "scripts/services.sh up" in reason


@pytest.mark.kafka
def test_probe_sees_the_shared_kafka() -> None:
    host, port = SERVICES["kafka"].host_port
    assert kafka_probe.broker_count(host, port) == 1
    assert kafka_probe.is_ready(host, port)


def test_probe_is_false_on_a_closed_port() -> None:
    assert not kafka_probe.is_ready("127.0.0.1", free_port(), timeout=0.5)


def test_probe_is_false_on_a_server_that_is_not_kafka() -> None:
    """A port that answers something else (here SSH-like garbage) is not a ready Kafka."""
    import socket
    import threading

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)

        def answer() -> None:
            conn, _ = listener.accept()
            with conn:
                conn.recv(100)
                conn.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")

        thread = threading.Thread(target=answer, daemon=True)
        thread.start()
        assert not kafka_probe.is_ready("127.0.0.1", listener.getsockname()[1], timeout=2.0)
        thread.join(5)


@pytest.mark.slow
async def test_private_kafka_restarts_on_the_same_port() -> None:
    async with spawn_kafka() as server:
        assert server.url == f"kafka://127.0.0.1:{server.port}"
        assert kafka_probe.broker_count(server.host, server.port) == 1
        await server.restart()
        assert kafka_probe.is_ready(server.host, server.port)
        pid = server.process.pid if server.process else None
    assert pid is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_cluster_ids_never_start_with_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    # The storage tool read a leading "-" as an option: one private Kafka in 64 failed to format.
    import uuid

    from eventwire.testing import spawn_kafka

    dash_first = uuid.UUID(bytes=b"\xf8" + bytes(15))  # base64 of 0xf8... starts with "-"
    draws = iter([dash_first, uuid.UUID(int=1)])
    monkeypatch.setattr(uuid, "uuid4", lambda: next(draws))
    cluster_id = spawn_kafka.new_cluster_id()
    assert not cluster_id.startswith("-")
    assert len(cluster_id) == 22
