"""Setup tests: `eventwire advise` and `eventwire init` from the command line."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from eventwire.cli.main import app
from eventwire.setup.manifest import MANIFEST_NAME
from setup.setup_helpers import assert_one_line_error

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "requirements"
runner = CliRunner()


def invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args), env={"EVENTWIRE_BROKER_URL": ""})
    return result.exit_code, result.stdout, result.stderr


def test_advise_text_names_winner_rules_and_exclusions() -> None:
    code, out, _ = invoke("advise", "--from", str(EXAMPLES / "orders-work-queue.yaml"))
    assert code == 0
    assert "Recommended: RabbitMQ" in out
    assert "+4  work-queue:" in out
    assert "Excluded by hard filters:" in out
    assert "NATS Core: messages must survive a restart" in out


def test_advise_json_with_flags() -> None:
    code, out, _ = invoke(
        "advise", "--use-case", "request-reply", "--latency-ms", "2", "--no-persistence",
        "--delivery", "at-most-once", "--json",
    )  # fmt: skip
    assert code == 0
    data = json.loads(out)
    assert data["winner"] in {"nats-core", "nats-jetstream"}
    assert data["requirements"]["use_case"] == "request-reply"
    first = data["ranking"][0]
    assert {"name", "score", "margin", "rules", "excluded_by", "source"} <= set(first)


def test_advise_flags_override_the_file() -> None:
    code, out, _ = invoke(
        "advise", "--from", str(EXAMPLES / "orders-work-queue.yaml"), "--operated", "redis",
        "--json",
    )  # fmt: skip
    assert code == 0
    assert json.loads(out)["requirements"]["operated"] == ["redis"]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("--use-case", "telepathy"), "unknown value 'telepathy'"),
        (("--rate", "-3"), "peak_rate"),
        (("--operated", "oracle"), "operated"),
    ],
)
def test_advise_bad_input_is_one_line(args: tuple[str, ...], fragment: str) -> None:
    assert_one_line_error(*invoke("advise", *args), fragment)


def test_advise_malformed_yaml(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("use_case: [oops\n")
    assert_one_line_error(*invoke("advise", "--from", str(bad)), "not valid YAML")


def _summary_files(out: str) -> dict[str, int]:
    return {m[1]: int(m[2]) for m in re.finditer(r"^- (\S+) \((\d+) lines?\)", out, re.M)}


def test_init_prints_the_summary_with_real_files(tmp_path: Path) -> None:
    target = tmp_path / "orders-service"
    code, out, err = invoke(
        "init", "orders-service", "--broker", "rabbitmq", "--pattern", "work-queue",
        "--dir", str(target),
    )  # fmt: skip
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "✅ Message Broker Setup Complete"
    assert lines[2:5] == [
        "Broker: RabbitMQ",
        "Pattern: Work Queue with Dead Letter Exchange",
        "Client: Python + eventwire (aio-pika)",
    ]
    for heading in ("Files Created:", "Features:", "Next Steps:"):
        assert heading in lines
    files = _summary_files(out)
    assert "orders_service/messaging/consumer.py" in files
    for rel, count in files.items():
        assert len((target / rel).read_text().splitlines()) == count, rel
    assert "✓ Automatic reconnection with exponential backoff (aio-pika adapter)" in out
    assert "1. cd " in out
    assert "make demo" in out
    assert "Start RabbitMQ and PostgreSQL: make up" in out


def test_init_from_requirements_runs_the_advisor(tmp_path: Path) -> None:
    code, out, _ = invoke(
        "init", "ledger", "--from", str(EXAMPLES / "event-sourcing.yaml"),
        "--dir", str(tmp_path / "ledger"),
    )  # fmt: skip
    assert code == 0
    assert "Recommended: Kafka" in out
    assert "Broker: Kafka" in out
    assert "Pattern: Event Streaming with Keyed Partitions and Replay" in out
    assert "adapter is not built yet" not in out
    manifest = json.loads((tmp_path / "ledger" / MANIFEST_NAME).read_text())
    assert (manifest["broker"], manifest["pattern"]) == ("kafka", "event-streaming")


def test_second_init_refuses_and_update_keeps_user_edits(tmp_path: Path) -> None:
    target = tmp_path / "svc"
    base = ("init", "svc", "--broker", "redis", "--pattern", "pub-sub", "--dir", str(target))
    assert invoke(*base)[0] == 0
    before = {p: p.read_bytes() for p in target.rglob("*") if p.is_file()}

    assert_one_line_error(*invoke(*base), "is not empty: use --update")
    assert {p: p.read_bytes() for p in target.rglob("*") if p.is_file()} == before

    consumer = target / "svc" / "messaging" / "consumer.py"
    handlers = target / "svc" / "messaging" / "handlers.py"
    readme = target / "README.md"
    consumer.write_text(consumer.read_text() + "\n# my tweak\n")
    handlers.write_text(handlers.read_text() + "\n# my logic\n")
    # README as an older generator wrote it: unchanged since, so the update refreshes it.
    readme.write_text("stale generated content\n")
    manifest = json.loads((target / MANIFEST_NAME).read_text())
    manifest["files"]["README.md"]["sha256"] = hashlib.sha256(readme.read_bytes()).hexdigest()
    (target / MANIFEST_NAME).write_text(json.dumps(manifest))
    (target / "Makefile").unlink()

    code, out, err = invoke("init", "svc", "--dir", str(target), "--update")  # from the manifest
    assert code == 0, err
    assert "✅ Message Broker Setup Updated" in out
    assert "- svc/messaging/consumer.py" in out
    assert "[kept (user-changed)]" in out
    assert "kept your changes (not overwritten): svc/messaging/consumer.py" in out
    assert "[kept (user-owned)]" in out
    assert consumer.read_text().endswith("# my tweak\n")
    assert handlers.read_text().endswith("# my logic\n")
    assert (target / "Makefile").exists()  # recreated
    assert re.search(r"^- README\.md \(\d+ lines\) \[updated\]$", out, re.M)
    assert readme.read_text().startswith("# Svc")
    assert "- Makefile (" in out
    # A second update still sees the user's change and still keeps it.
    code, out, _ = invoke("init", "svc", "--dir", str(target), "--update")
    assert "kept your changes (not overwritten): svc/messaging/consumer.py" in out


def test_update_of_generator_file_when_unchanged(tmp_path: Path) -> None:
    target = tmp_path / "svc"
    assert (
        invoke("init", "svc", "--broker", "nats", "--pattern", "work-queue", "--dir", str(target))[
            0
        ]
        == 0
    )
    code, out, _ = invoke("init", "svc", "--dir", str(target), "--update", "--no-monitoring")
    assert code == 0
    assert "[unchanged]" in out
    assert "kept your changes" not in out


def test_update_needs_a_manifest(tmp_path: Path) -> None:
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "x.txt").write_text("x")
    assert_one_line_error(
        *invoke("init", "svc", "--broker", "nats", "--pattern", "pub-sub", "--dir",
                str(tmp_path / "plain"), "--update"),
        "has no .eventwire-manifest.json",
    )  # fmt: skip


def _nothing_written(parent: Path) -> None:
    assert sorted(p.name for p in parent.iterdir() if p.name != "req.yaml") == []


@pytest.mark.parametrize(
    ("yaml_text", "fragment"),
    [
        ("use_case: telepathy\n", "unknown value 'telepathy'"),
        ("use_case: work-queue\npeak_rate: -1\n", "peak_rate"),
        ("use_case: [oops\n", "not valid YAML"),
    ],
)
def test_init_bad_requirements_write_nothing(tmp_path: Path, yaml_text: str, fragment: str) -> None:
    (tmp_path / "req.yaml").write_text(yaml_text)
    result = invoke(
        "init", "svc", "--from", str(tmp_path / "req.yaml"), "--dir", str(tmp_path / "svc")
    )
    assert_one_line_error(*result, fragment)
    _nothing_written(tmp_path)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("--broker", "oracle", "--pattern", "pub-sub"), "unknown broker 'oracle'"),
        (("--broker", "nats", "--pattern", "telepathy"), "unknown pattern 'telepathy'"),
        (("--broker", "nats"), "--broker and --pattern"),
        (("--broker", "kafka", "--pattern", "pub-sub", "--format", "xml"), "unknown format 'xml'"),
    ],
)
def test_init_bad_options_write_nothing(
    tmp_path: Path, args: tuple[str, ...], fragment: str
) -> None:
    assert_one_line_error(*invoke("init", "svc", *args, "--dir", str(tmp_path / "svc")), fragment)
    _nothing_written(tmp_path)


def test_init_into_an_unwritable_place(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    target = blocker / "svc"  # its parent is a file: nobody can create it, not even root
    result = invoke(
        "init", "svc", "--broker", "redis", "--pattern", "work-queue", "--dir", str(target)
    )
    assert_one_line_error(*result, "cannot write to")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only folders")
def test_init_into_a_read_only_folder(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        result = invoke(
            "init",
            "svc",
            "--broker",
            "redis",
            "--pattern",
            "work-queue",
            "--dir",
            str(locked / "svc"),
        )
        assert_one_line_error(*result, "cannot write to")
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o700)


def test_wizard_asks_when_a_terminal_is_attached(monkeypatch: pytest.MonkeyPatch) -> None:
    from eventwire.cli import setup_commands

    monkeypatch.setattr(setup_commands, "_interactive", lambda: True)
    answers = "request-reply\n2000\n512\nat-most-once\nnone\nn\nn\n\n\n3\n"
    result = runner.invoke(app, ["advise", "--json"], input=answers)
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout[result.stdout.index("{") :])
    assert data["requirements"]["use_case"] == "request-reply"
    assert data["requirements"]["persistence"] is False
    assert data["winner"] in {"nats-core", "nats-jetstream"}


def test_no_wizard_without_a_terminal() -> None:
    code, out, _ = invoke("advise", "--json")  # CliRunner's stdin is no terminal: defaults
    assert code == 0
    assert json.loads(out)["requirements"]["use_case"] == "work-queue"


def test_kafka_advice_has_no_pending_adapter_note() -> None:
    code, out, _ = invoke("advise", "--from", str(EXAMPLES / "event-sourcing.yaml"))
    assert code == 0
    assert "Recommended: Kafka" in out
    assert "adapter yet" not in out


def test_init_runs_the_wizard_at_a_terminal(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from eventwire.cli import setup_commands

    monkeypatch.setattr(setup_commands, "_interactive", lambda: True)
    answers = "event-sourcing\n20000\n1024\nat-least-once\nper-key\ny\ny\n\n\n10\n"
    target = tmp_path / "ledger"
    result = runner.invoke(app, ["init", "ledger", "--dir", str(target)], input=answers)
    assert result.exit_code == 0, result.stderr
    assert "Recommended: Kafka" in result.stdout
    assert "Broker: Kafka" in result.stdout
    assert json.loads((target / MANIFEST_NAME).read_text())["pattern"] == "event-streaming"


def test_update_under_another_name_refuses(tmp_path: Path) -> None:
    target = tmp_path / "svc"
    assert (
        invoke("init", "svc", "--broker", "nats", "--pattern", "pub-sub", "--dir", str(target))[0]
        == 0
    )
    assert_one_line_error(
        *invoke("init", "other", "--dir", str(target), "--update"), "holds the service 'svc'"
    )


def test_the_wizard_checks_each_answer_when_it_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    from eventwire.cli import setup_commands

    monkeypatch.setattr(setup_commands, "_interactive", lambda: True)
    # A wrong use case and a negative rate: each is refused at once and asked again.
    answers = "telepathy\npub-sub\n-5\n300\n512\nat-most-once\nnone\nn\nn\n\n\n3\n"
    result = runner.invoke(app, ["advise", "--json"], input=answers)
    assert result.exit_code == 0, result.stderr
    err = result.stderr.splitlines()
    assert any("unknown value 'telepathy'" in line for line in err)
    assert any("peak_rate" in line for line in err)
    out = result.stdout
    # The rate question comes again right after the refusal, before the size is asked.
    assert out.index("Use case") < out.index("Peak messages") < out.rindex("Typical message")
    data = json.loads(out[out.index("{") :])
    assert data["requirements"]["use_case"] == "pub-sub"
    assert data["requirements"]["peak_rate"] == 300
