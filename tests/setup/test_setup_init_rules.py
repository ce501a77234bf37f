"""Setup tests: init follows the requirements and the advice, updates keep what was chosen,
names are checked, and the generated tools end in one line (issue 15, items 5-8, 10-14)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from eventwire.cli.main import app
from eventwire.setup.manifest import MANIFEST_NAME
from setup.setup_helpers import assert_one_line_error

runner = CliRunner()


def invoke(*args: str, cwd: Path | None = None) -> tuple[int, str, str]:
    old = Path.cwd()
    if cwd is not None:
        os.chdir(cwd)
    try:
        result = runner.invoke(app, list(args), env={"EVENTWIRE_BROKER_URL": ""})
    finally:
        os.chdir(old)
    return result.exit_code, result.stdout, result.stderr


def manifest(root: Path) -> dict[str, object]:
    data: dict[str, object] = json.loads((root / MANIFEST_NAME).read_text())
    return data


# -- item 5: init scaffolds what advise chose, for the profile it chose -----------------------


def test_at_most_once_transient_requirements_scaffold_the_advised_profile(tmp_path: Path) -> None:
    req = tmp_path / "req.yaml"
    data = {"use_case": "pub-sub", "delivery": "at-most-once", "persistence": False,
            "operated": ["redis"], "peak_rate": 500}  # fmt: skip
    req.write_text(yaml.safe_dump(data))
    code, out, err = invoke("init", "fanout", "--from", str(req), "--dir", str(tmp_path / "f"))
    assert code == 0, err
    assert "Recommended: Redis Pub/Sub" in out
    assert "Broker: Redis Pub/Sub" in out
    assert manifest(tmp_path / "f")["broker"] == "redis-pubsub"
    settings = (tmp_path / "f" / "fanout" / "messaging" / "settings.py").read_text()
    assert 'DEFAULT_BROKER_URL = "redis+pubsub://' in settings


def test_request_reply_is_refused_in_one_line_not_turned_into_a_work_queue(
    tmp_path: Path,
) -> None:
    args = ("init", "rr", "--broker", "nats", "--dir", str(tmp_path / "rr"))
    assert_one_line_error(
        *invoke(*args, "--pattern", "request-reply"), "does not scaffold request-reply"
    )
    assert not (tmp_path / "rr").exists()
    req = tmp_path / "req.yaml"
    req.write_text("use_case: request-reply\n")
    assert_one_line_error(
        *invoke("init", "rr", "--from", str(req), "--dir", str(tmp_path / "rr")),
        "does not scaffold request-reply",
    )


def test_a_work_queue_on_a_profile_without_groups_is_refused(tmp_path: Path) -> None:
    assert_one_line_error(
        *invoke("init", "wq", "--broker", "redis-pubsub", "--pattern", "work-queue",
                "--dir", str(tmp_path / "wq")),
        "has no consumer groups",
    )  # fmt: skip


# -- item 6: pub-sub on redis+pubsub runs (no groups) ----------------------------------------


def test_pub_sub_on_redis_pubsub_subscribes_without_groups(tmp_path: Path) -> None:
    code, _, err = invoke(
        "init", "ps", "--broker", "redis-pubsub", "--pattern", "pub-sub",
        "--dir", str(tmp_path / "ps"),
    )  # fmt: skip
    assert code == 0, err
    consumer = (tmp_path / "ps" / "ps" / "messaging" / "consumer.py").read_text()
    assert "GROUPS: tuple[str | None, ...] = (None, None)" in consumer
    # The generated tests run it on memory://; the e2e runs two workers on real Redis.


@pytest.mark.integration
@pytest.mark.redis
def test_a_grouped_service_on_redis_pubsub_fails_in_one_line(tmp_path: Path) -> None:
    root = tmp_path / "grouped"
    assert invoke("init", "grouped", "--broker", "redis", "--pattern", "pub-sub",
                  "--dir", str(root))[0] == 0  # fmt: skip
    done = _python(
        root, "-m", "grouped.messaging.consumer",
        EVENTWIRE_BROKER_URL="redis+pubsub://127.0.0.1:6379/0", EVENTWIRE_HTTP_PORT="off",
    )  # fmt: skip
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("worker: ")]
    expected = (
        "worker: redis-pubsub has no consumer groups, which this service uses "
        "(grouped-notify): use a broker URL with groups, or generate the service for "
        "redis-pubsub (eventwire init ... --broker redis-pubsub)"
    )
    assert errors == [expected]


# -- item 7: an update keeps the broker and the pattern unless told to switch -----------------


def test_update_never_switches_the_broker_silently(tmp_path: Path) -> None:
    root = tmp_path / "svc"
    assert invoke("init", "svc", "--broker", "rabbitmq", "--pattern", "work-queue",
                  "--dir", str(root))[0] == 0  # fmt: skip
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    assert_one_line_error(
        *invoke("init", "svc", "--update", "--broker", "nats", "--dir", str(root)),
        "add --switch",
    )
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before
    assert_one_line_error(
        *invoke("init", "svc", "--update", "--pattern", "pub-sub", "--dir", str(root)),
        "the pattern from work-queue to pub-sub",
    )


def test_a_switch_changes_everything_that_depends_on_the_broker(tmp_path: Path) -> None:
    root = tmp_path / "svc"
    assert invoke("init", "svc", "--broker", "rabbitmq", "--pattern", "work-queue",
                  "--dir", str(root))[0] == 0  # fmt: skip
    code, out, err = invoke(
        "init", "svc", "--update", "--broker", "nats", "--switch", "--dir", str(root)
    )
    assert code == 0, err
    assert manifest(root)["broker"] == "nats-jetstream"
    assert "nats://" in (root / ".env.example").read_text()
    assert "  nats:" in (root / "docker-compose.yml").read_text()
    assert "eventwire[metrics,nats,postgres]" in (root / "pyproject.toml").read_text()
    assert "NATS JetStream" in (root / "README.md").read_text()
    assert "aio-pika" not in out


def test_update_from_inside_the_project_needs_no_dir_and_says_what_was_recreated(
    tmp_path: Path,
) -> None:
    root = tmp_path / "svc"
    assert invoke("init", "svc", "--broker", "redis", "--pattern", "work-queue",
                  "--dir", str(root))[0] == 0  # fmt: skip
    (root / "Makefile").unlink()
    code, out, err = invoke("init", "svc", "--update", cwd=root)
    assert code == 0, err
    assert "- Makefile (" in out
    assert "[recreated (was deleted)]" in out
    assert (root / "Makefile").is_file()
    assert not (root / "svc" / MANIFEST_NAME).exists(), "no nested copy of the project"


# -- item 8: names -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("My Service!", "is not a valid project name"),
        ("../escape", "is not a valid project name"),
        ("eventwire", "would shadow the module 'eventwire'"),
        ("json", "would shadow the module 'json'"),
        ("import", "a Python keyword"),
        ("match", "a Python keyword"),
        ("9lives", "starts with a digit"),
    ],
)
def test_bad_names_are_refused_in_one_line(name: str, fragment: str, tmp_path: Path) -> None:
    assert_one_line_error(
        *invoke("init", name, "--broker", "redis", "--pattern", "work-queue", cwd=tmp_path),
        fragment,
    )
    assert list(tmp_path.iterdir()) == []


# -- items 10-14: the generated code --------------------------------------------------------


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("svc") / "tools-service"
    code, _, err = invoke(
        "init", "tools-service", "--broker", "redis", "--pattern", "work-queue",
        "--dir", str(root),
    )  # fmt: skip
    assert code == 0, err
    return root


def _python(root: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("EVENTWIRE_")}
    return subprocess.run(
        [sys.executable, *args], cwd=root, env={**clean, **env}, capture_output=True,
        text=True, check=False, timeout=60,
    )  # fmt: skip


def test_generated_code_uses_public_imports_only(service: Path) -> None:
    for path in (service / "tools_service").rglob("*.py"):
        text = path.read_text()
        for private in ("eventwire.runtime", "eventwire.brokers", "eventwire.reliability"):
            assert private not in text, (path, private)
    consumer = (service / "tools_service" / "messaging" / "consumer.py").read_text()
    assert "--exit-after" not in consumer  # the demo harness lives in demo.py


def test_eventwire_run_accepts_the_factory(service: Path) -> None:
    done = _python(
        service, "-m", "eventwire.cli", "run", "tools_service.messaging.consumer:build_app",
        "--broker", "redis://127.0.0.1:1/0", "--concurrency", "0",
    )  # fmt: skip
    # The factory was called and its App checked: the bad --concurrency is what stops it.
    assert done.returncode == 2, done.stderr
    assert "concurrency" in done.stderr
    assert "not an eventwire App" not in done.stderr


@pytest.mark.parametrize(
    ("args", "env", "status", "fragment"),
    [
        (["-m", "tools_service.messaging.consumer"], {"EVENTWIRE_CONCURRENCY": "lots"}, 2,
         "worker: invalid setting EVENTWIRE_CONCURRENCY='lots'"),
        (["-m", "tools_service.messaging.publisher", "--count", "1"],
         {"EVENTWIRE_BROKER_URL": "redis://u:hunter2@127.0.0.1:1/0"}, 1, "publish: "),
        (["-m", "tools_service.messaging.dead_letters"],
         {"EVENTWIRE_BROKER_URL": "redis://u:hunter2@127.0.0.1:1/0"}, 1, "dlq: "),
        (["-m", "tools_service.messaging.publisher"], {"EVENTWIRE_BROKER_URL": "bogus://x"}, 1,
         "publish: "),
    ],
)  # fmt: skip
def test_generated_tools_fail_in_one_line(
    service: Path, args: list[str], env: dict[str, str], status: int, fragment: str
) -> None:
    done = _python(service, *args, **env)
    assert done.returncode == status, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(fragment), lines[0]
    assert "hunter2" not in done.stderr


def test_the_publisher_on_ctrl_c_prints_one_line(service: Path) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("EVENTWIRE_")}
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, never answers
        silent.settimeout(30)
        url = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"
        proc = subprocess.Popen(
            [sys.executable, "-m", "tools_service.messaging.publisher", "--broker-url", url],
            cwd=service, env=clean, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        connection, _ = silent.accept()  # the publisher is inside its run: interrupt it
        with connection:
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert err.strip() == "publish: interrupted"


def test_env_example_binds_the_ops_endpoints_to_loopback(service: Path) -> None:
    lines = (service / ".env.example").read_text().splitlines()
    assert "EVENTWIRE_HTTP_HOST=127.0.0.1" in lines
    assert "# EVENTWIRE_HTTP_HOST=0.0.0.0" in lines  # exposing them is a commented choice
    assert "EVENTWIRE_HTTP_HOST=0.0.0.0" not in lines


def test_dockerfile_worker_service_alerts_and_dashboard(service: Path) -> None:
    assert (
        'CMD ["python", "-m", "tools_service.messaging.consumer"]'
        in (service / "Dockerfile").read_text()
    )
    compose = yaml.safe_load((service / "docker-compose.yml").read_text())
    worker = compose["services"]["worker"]
    assert worker["build"] == "."
    assert "/readyz" in " ".join(worker["healthcheck"]["test"])
    assert worker["depends_on"]["redis"]["condition"] == "service_healthy"
    prometheus = yaml.safe_load((service / "monitoring" / "prometheus.yml").read_text())
    assert prometheus["rule_files"] == ["/etc/prometheus/alerts.yml"]
    alerts = yaml.safe_load((service / "monitoring" / "alerts.yml").read_text())
    names = {rule["alert"] for group in alerts["groups"] for rule in group["rules"]}
    assert {"ConsumerDown", "LagGrowing", "DeadLettersAppearing"} <= names
    dashboard = json.loads(
        (service / "monitoring" / "grafana" / "dashboards" / "service.json").read_text()
    )
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    assert "eventwire_messages_processed_total" in exprs
    assert "eventwire_messages_dead_lettered_total" in exprs


def test_the_integration_test_runs_against_the_real_broker_when_asked(service: Path) -> None:
    test = service / "tests" / "test_tools_service_integration.py"
    assert "EVENTWIRE_TEST_BROKER_URL" in test.read_text()
    assert "test-integration:" in (service / "Makefile").read_text()
    skipped = _python(service, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(test))
    assert skipped.returncode == 0, skipped.stdout + skipped.stderr
    assert "skipped" in skipped.stdout


# -- item 4: the generated service's idempotency is shared between workers -------------------

_REDELIVERY = """
import asyncio, sys, uuid
from eventwire import Message
from tools_service.messaging import consumer, handlers
from tools_service.messaging.messages import TOPIC
from tools_service.messaging.settings import Settings

async def worker(marks, body, message_id):
    state = handlers.State()
    settings = Settings.load(env_file=None, broker_url=f"memory://r-{uuid.uuid4().hex}",
                             idempotency_url=marks, http_port=None)
    app = consumer.build_app(settings, state)
    stop = asyncio.Event()
    async with app:
        task = asyncio.create_task(app.run(stop=stop))
        await app.wait_ready()
        await app.broker.publish(TOPIC, Message(body=body, id=message_id))
        while app.stats.processed + app.stats.duplicates_suppressed < 1:
            await asyncio.sleep(0.01)
        stop.set()
        await task
    return state.done, app.stats.duplicates_suppressed

async def main():
    marks, body, mid = sys.argv[1], b'{"task_id": "t-1"}', uuid.uuid4().hex
    first = await worker(marks, body, mid)   # one worker does the task ...
    second = await worker(marks, body, mid)  # ... the redelivery reaches another worker
    print(sorted(first[0]), first[1], sorted(second[0]), second[1])

asyncio.run(main())
"""


def test_a_redelivery_to_another_worker_is_not_processed_again(service: Path) -> None:
    marks = f"sqlite:///{service}/.eventwire/shared-marks.db"
    done = _python(service, "-c", _REDELIVERY, marks)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["['t-1']", "0", "[]", "1"]
    consumer = (service / "tools_service" / "messaging" / "consumer.py").read_text()
    assert "open_idempotency_store(settings.idempotency_url.get_secret_value())" in consumer
    settings = (service / "tools_service" / "messaging" / "settings.py").read_text()
    assert 'DEFAULT_IDEMPOTENCY_URL = "redis://localhost:6379/0"' in settings


def test_an_update_with_a_new_eventwire_renames_the_wheel_in_pyproject(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from eventwire.setup import wheel

    root = tmp_path / "svc"
    assert invoke("init", "svc", "--broker", "redis", "--pattern", "work-queue",
                  "--dir", str(root))[0] == 0  # fmt: skip
    monkeypatch.setattr(wheel, "wheel_name", lambda: "eventwire-9.9.9-py3-none-any.whl")
    code, out, err = invoke("init", "svc", "--update", "--dir", str(root))
    assert code == 0, err
    assert (root / "wheels" / "eventwire-9.9.9-py3-none-any.whl").is_file()
    assert "/wheels/eventwire-9.9.9-py3-none-any.whl" in (root / "pyproject.toml").read_text()
    assert "- pyproject.toml (" in out
