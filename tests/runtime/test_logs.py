"""Correlation-id bound loggers."""

from __future__ import annotations

import logging

import pytest

from eventwire.observability.logs import bind, get_logger


def test_bound_logger_stamps_ids_on_text_and_record(caplog: pytest.LogCaptureFixture) -> None:
    logger = bind(correlation_id="c-1", message_id="m-1", topic="orders")
    with caplog.at_level(logging.INFO, logger="eventwire"):
        logger.info("charged %s", "42")
        logger.bind(step="mail").warning("sent")
    first, second = caplog.records
    assert first.getMessage() == "[correlation_id=c-1 message_id=m-1 topic=orders] charged 42"
    assert first.correlation_id == "c-1"  # type: ignore[attr-defined]  # set on the record by eventwire's log context, unknown to LogRecord
    assert second.step == "mail"  # type: ignore[attr-defined]  # bound via logger.bind(), unknown to LogRecord
    assert "step=mail" in second.getMessage()
    assert first.name == "eventwire"


def test_unbound_fields_are_left_out() -> None:
    logger = bind(get_logger("runtime"), correlation_id=None)
    assert logger.fields == {}
    assert logger.process("x", {}) == ("x", {"extra": {}})
