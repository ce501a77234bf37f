"""Structured logs: the JSON formatter's fields, causation ids on the runtime's own lines, and
``eventwire run --log-format json`` in a real process."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider

from eventwire.brokers.catalog import open_broker
from eventwire.core.message import Delivery, Message
from eventwire.observability.logs import JsonFormatter, bind, formatter_for, get_logger
from eventwire.reliability.retry import RetryPolicy
from eventwire.runtime import lanes
from eventwire.runtime.app import App
from eventwire.runtime.context import Context
from runtime.helpers import running, wait_until

from .tracing_support import json_lines


def record_of(caplog: pytest.LogCaptureFixture) -> logging.LogRecord:
    (record,) = caplog.records
    return record


def test_a_bound_line_is_one_json_object_with_the_ids_as_fields(
    caplog: pytest.LogCaptureFixture,
) -> None:
    logger = bind(
        get_logger("runtime"),
        correlation_id="c-1",
        causation_id="m-0",
        message_id="m-1",
        topic="orders",
    )
    with caplog.at_level(logging.INFO, logger="eventwire"):
        logger.bind(group="billing").warning("charged %s", "42 €")
    line = JsonFormatter().format(record_of(caplog))
    assert "\n" not in line
    entry = json.loads(line)
    timestamp = entry.pop("timestamp")
    assert timestamp.endswith("+00:00")
    assert entry == {
        "level": "WARNING",
        "logger": "eventwire.runtime",
        "message": "charged 42 €",  # the text format's "[k=v ...]" prefix is left out
        "correlation_id": "c-1",
        "causation_id": "m-0",
        "message_id": "m-1",
        "topic": "orders",
        "group": "billing",
    }


def test_a_line_about_no_message_has_null_ids_and_keeps_its_exception(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="eventwire"):
        try:
            raise KeyError("k")
        except KeyError:
            get_logger().exception("failed [not a prefix]")
    entry = json.loads(JsonFormatter().format(record_of(caplog)))
    assert entry["message"] == "failed [not a prefix]"
    assert [entry[k] for k in ("correlation_id", "causation_id", "message_id", "topic")] == [
        None
    ] * 4
    assert entry["exception"].startswith("Traceback")
    assert "KeyError: 'k'" in entry["exception"]
    assert "trace_id" not in entry


def test_a_line_written_inside_a_span_carries_its_trace_and_span_ids() -> None:
    tracer = TracerProvider().get_tracer("test")
    with json_lines() as lines:  # formatted as they are written, as a StreamHandler does
        with tracer.start_as_current_span("work") as span:
            get_logger().info("inside")
        get_logger().info("outside")
    inside, outside = lines
    context = span.get_span_context()
    assert (inside["trace_id"], inside["span_id"]) == (
        f"{context.trace_id:032x}",
        f"{context.span_id:016x}",
    )
    assert "trace_id" not in outside


def test_text_format_is_the_one_eventwire_run_always_had() -> None:
    assert isinstance(formatter_for("json"), JsonFormatter)
    text = formatter_for("text")
    assert text._fmt == "%(asctime)s %(levelname)s %(name)s: %(message)s"


async def test_the_runtimes_retry_and_dead_letter_lines_carry_correlation_and_causation(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = App("memory://logs-causation", name="svc")

    @app.subscriber("first", group="g")
    async def first(payload: dict[str, int], ctx: Context) -> None:
        await ctx.publish("second", payload)

    @app.subscriber("second", group="g", retry=RetryPolicy(max_attempts=2, initial_delay=0.01))
    async def second(payload: dict[str, int]) -> None:
        raise RuntimeError("always")

    with caplog.at_level(logging.INFO, logger="eventwire"):
        async with app, running(app):
            sent = await app.publish("first", {"n": 1}, correlation_id="req-7")
            await wait_until(lambda: app.stats.dead_lettered == 1)
    lines = [r for r in caplog.records if getattr(r, "topic", None) == "second"]
    assert [r.levelname for r in lines] == ["WARNING", "ERROR"]  # retry, then dead letter
    for record in lines:
        assert record.correlation_id == "req-7"  # type: ignore[attr-defined]  # set on the record by eventwire's log context, unknown to LogRecord
        assert record.causation_id == sent.id  # type: ignore[attr-defined]  # set on the record by eventwire's log context, unknown to LogRecord
        assert f"causation_id={sent.id}" in record.getMessage()


SERVICE = """
from pathlib import Path
from eventwire import App, RetryPolicy

app = App(name="json-logs")
DONE = Path(__file__).with_name("done")


@app.subscriber("jobs", group="workers", retry=RetryPolicy(max_attempts=3, initial_delay=0.05))
async def handle(payload: dict, ctx) -> None:
    if ctx.attempt == 1:
        raise RuntimeError("first try fails")
    ctx.logger.info("job done")
    DONE.write_text("ok")
"""


@pytest.mark.slow
async def test_eventwire_run_log_format_json_writes_one_object_per_line(tmp_path: Path) -> None:
    (tmp_path / "svc.py").write_text(SERVICE)
    url = f"sqlite:///{tmp_path / 'broker.db'}?poll=0.02"
    async with App(url, name="client") as client:
        sent = await client.publish("jobs", {"n": 1}, correlation_id="req-json")
    worker = subprocess.Popen(
        [
            *(sys.executable, "-m", "eventwire.cli", "run", f"{tmp_path}/svc.py:app"),
            *("-b", url, "--log-format", "json", "--wait-for-broker", "0"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        await wait_until((tmp_path / "done").exists, deadline=60)
        worker.send_signal(signal.SIGTERM)
        _, err = await asyncio.to_thread(worker.communicate, timeout=60)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.communicate()
    assert worker.returncode == 0, err
    entries = [json.loads(line) for line in err.splitlines()]  # every line is one object
    assert all(
        {"timestamp", "level", "logger", "message", "correlation_id", "causation_id"} <= set(e)
        for e in entries
    )
    about = [e for e in entries if e["message_id"] == sent.id]
    assert [(e["level"], e["message"].split(" (")[0]) for e in about] == [
        ("WARNING", "attempt 1 failed"),
        ("INFO", "job done"),
    ]
    assert {(e["correlation_id"], e["causation_id"], e["topic"]) for e in about} == {
        ("req-json", None, "jobs")
    }


def test_eventwire_run_refuses_an_unknown_log_format_in_one_line() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "eventwire.cli", "run", "x:app", "--log-format", "yaml"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "'yaml' is not one of 'text', 'json'" in done.stderr
    assert "Traceback" not in done.stderr


async def test_a_processing_bug_line_carries_the_message_ids(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lanes, "FAILURE_DELAY", 0.0)
    async with open_broker("memory://logs-bug") as broker:
        sent = Message(body=b"{}", correlation_id="req-bug", causation_id="m-0")
        await broker.publish("t", sent)
        async with broker.subscribe("t", group="g") as deliveries:
            delivery = await anext(deliveries)

            async def buggy(delivery: Delivery, value: object) -> None:
                raise RuntimeError("a bug in a step")

            dispatcher = lanes.Dispatcher(1)
            with caplog.at_level(logging.WARNING, logger="eventwire"):
                dispatcher.submit(None, buggy, delivery, None)
                await wait_until(lambda: delivery.settled is not None)
                await dispatcher.drain(1.0)
    (record,) = [r for r in caplog.records if "failed unexpectedly" in r.getMessage()]
    assert (record.correlation_id, record.causation_id, record.message_id) == (  # type: ignore[attr-defined]  # set on the record by eventwire's log context
        "req-bug",
        "m-0",
        sent.id,
    )
