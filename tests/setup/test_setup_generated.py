"""Setup tests: every generated service lints, type-checks, passes its own tests, composes."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from setup.setup_helpers import ALL_GENERATED, Generated, Outcome, tool

pytestmark = pytest.mark.timeout(240)


def test_ruff_passes_on_every_generated_service(
    generated: dict[tuple[str, str], Generated],
) -> None:
    roots = [str(g.root) for g in generated.values()]
    for args in (["check", "--no-cache"], ["format", "--check", "--no-cache"]):
        done = subprocess.run(
            [tool("ruff"), *args, *roots], capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, done.stdout + done.stderr


def test_mypy_strict_passes_on_every_generated_service(
    generated: dict[tuple[str, str], Generated], tmp_path_factory: pytest.TempPathFactory
) -> None:
    cache = tmp_path_factory.mktemp("mypy-cache")
    targets = []
    for g in generated.values():
        targets += [str(g.root / g.package), str(g.root / "tests")]
    done = subprocess.run(
        [tool("mypy"), "--strict", "--cache-dir", str(cache), *targets],
        capture_output=True,
        text=True,
        check=False,
        cwd=cache,  # away from the project's own mypy configuration
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(("broker", "pattern"), ALL_GENERATED)
def test_generated_tests_pass_on_the_memory_broker(
    own_test_results: dict[tuple[str, str], Outcome], broker: str, pattern: str
) -> None:
    outcome = own_test_results[broker, pattern]
    assert outcome.returncode == 0, outcome.output
    assert " passed" in outcome.output


@pytest.mark.parametrize(("broker", "pattern"), ALL_GENERATED)
def test_docker_compose_accepts_the_file(
    compose_results: dict[tuple[str, str], Outcome], broker: str, pattern: str
) -> None:
    outcome = compose_results[broker, pattern]
    assert outcome.returncode == 0, outcome.output


@pytest.mark.parametrize("broker", ["rabbitmq", "kafka", "nats", "redis"])
def test_compose_follows_current_practice(
    generated: dict[tuple[str, str], Generated], broker: str
) -> None:
    root = generated[broker, "work-queue"].root
    spec = yaml.safe_load((root / "docker-compose.yml").read_text())
    services = spec["services"]
    assert "version" not in spec
    assert all("healthcheck" in s for s in services.values()), "every service has a healthcheck"
    monitoring = {n for n, s in services.items() if s.get("profiles") == ["monitoring"]}
    assert {"prometheus", "grafana"} <= monitoring
    if broker == "kafka":
        kafka = services["kafka"]
        env = kafka["environment"]
        assert kafka["image"].startswith("apache/kafka:4.")
        assert not any("zookeeper" in n for n in services)
        assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
        assert len(env["KAFKA_ADVERTISED_LISTENERS"].split(",")) == 2
        assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == 1
        assert env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == 1
        assert "schema-registry" not in services  # JSON: no registry that nothing would use
        assert "kafka-exporter" in monitoring
        readme = (root / "README.md").read_text()
        assert "memory://" in readme
        assert "adapter pending" not in readme
        assert "confluent-kafka underneath" in readme
        env_example = (root / ".env.example").read_text()
        assert "EVENTWIRE_BROKER_URL=kafka://localhost:9092" in env_example.splitlines()
    elif broker == "rabbitmq":
        rabbit = services["rabbitmq"]
        assert rabbit["image"].startswith("rabbitmq:4.")
        assert rabbit["image"].endswith("-management")
        assert {"RABBITMQ_DEFAULT_USER", "RABBITMQ_DEFAULT_PASS"} <= set(rabbit["environment"])
    elif broker == "nats":
        nats = services["nats"]
        assert nats["image"].startswith("nats:2.")
        assert nats["image"].endswith("-alpine")
        assert nats["command"] == ["-js", "-sd", "/data", "-m", "8222"]
        assert "healthz" in " ".join(nats["healthcheck"]["test"])
        assert "nats-exporter" in monitoring
    else:
        redis = services["redis"]
        assert redis["image"] == "redis:8-alpine"
        assert "--appendonly" in redis["command"]
        assert "redis-exporter" in monitoring


@pytest.mark.parametrize("broker", ["rabbitmq", "kafka", "nats", "redis"])
def test_prometheus_accepts_the_config_and_alert_rules(
    generated: dict[tuple[str, str], Generated], broker: str, tmp_path: Path
) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("promtool is not installed (apt-get install -y prometheus)")
        pytest.skip("promtool is not installed (outside CI)")
    monitoring = generated[broker, "event-streaming"].root / "monitoring"
    # The config names the rules where the container mounts them; check them side by side.
    config = (monitoring / "prometheus.yml").read_text()
    (tmp_path / "prometheus.yml").write_text(config.replace("/etc/prometheus/", ""))
    shutil.copy(monitoring / "alerts.yml", tmp_path / "alerts.yml")
    for args in (["check", "rules", "alerts.yml"], ["check", "config", "prometheus.yml"]):
        done = subprocess.run(
            [promtool, *args], cwd=tmp_path, capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert "SUCCESS" in done.stdout + done.stderr
