"""Dead-letter failure headers and first-failure bookkeeping."""

from __future__ import annotations

from eventwire.core import headers as h
from eventwire.core.headers import validate_headers
from eventwire.reliability.dead_letter import Failure, FailureLog, header_text, iso_time


class Boom(Exception):
    pass


def test_failure_headers() -> None:
    f = Failure(
        reason="max-attempts",
        exception=Boom("bad\r\nthing\x00"),
        first_failure=0.0,
        last_failure=1.5,
    )
    out = f.headers()
    validate_headers(out)  # CR/LF/NUL from the exception text are blanked
    assert out[h.DLQ_EXCEPTION_TYPE].endswith("test_dead_letter.Boom")
    assert out[h.DLQ_EXCEPTION_MESSAGE] == "bad  thing "
    assert out[h.DLQ_FIRST_FAILURE] == "1970-01-01T00:00:00.000+00:00"
    assert out[h.DLQ_LAST_FAILURE] == iso_time(1.5)
    assert h.DLQ_DETAIL not in out
    assert Failure(reason="x", exception=ValueError("v")).headers()[h.DLQ_EXCEPTION_TYPE] == (
        "ValueError"
    )


def test_header_text_caps_length_and_stays_valid() -> None:
    text = header_text("é" * 50_000 + "\ud800")
    validate_headers({"a": text})
    assert len(text) == 2000
    assert text.endswith("...")


def test_failure_log_keeps_first_failure_and_is_bounded() -> None:
    now = [10.0]
    log = FailureLog(max_entries=2, clock=lambda: now[0])
    assert log.record("a") == (10.0, 10.0)
    now[0] = 12.0
    assert log.record("a") == (10.0, 12.0)
    log.record("b")
    log.record("c")  # evicts the oldest ("a")
    assert len(log) == 2
    assert log.record("a") == (12.0, 12.0)
    log.forget("a")
    log.forget("missing")
    assert len(log) == 1
