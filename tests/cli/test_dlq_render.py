"""Unit tests: how `dlq show` renders a letter (binary-safe) and what `--where` selects."""

from __future__ import annotations

import pytest

from eventwire.cli.dlq_commands import SHOW_PREVIEW, body_preview, printable, show_lines
from eventwire.core import headers as h
from eventwire.core.errors import ConfigurationError
from eventwire.core.message import Message
from eventwire.reliability.dead_letter_filter import LetterFilter


def test_text_body_is_shown_as_text_with_controls_escaped() -> None:
    assert body_preview(b'{"a": "b"}') == ["body (10 bytes, UTF-8 text):", '  {"a": "b"}']
    assert body_preview("é\x1b[2J\n".encode()) == [
        "body (7 bytes, UTF-8 text):",
        "  é\\x1b[2J\\n",
    ]


def test_binary_body_is_a_hex_dump_and_a_cut_character_stays_text() -> None:
    lines = body_preview(b"\xff\x00abc")
    assert lines[0] == "body (5 bytes, binary):"
    assert lines[1].startswith("  00000000  ff 00 61 62 63")
    assert lines[1].endswith("..abc")
    # A long UTF-8 body whose preview ends inside a character is still text.
    long_text = ("é" * SHOW_PREVIEW).encode()
    first = body_preview(long_text)
    assert first[0] == f"body ({len(long_text)} bytes, UTF-8 text, first {SHOW_PREVIEW} shown):"


def test_show_lines_list_every_header_sorted_and_escaped() -> None:
    letter = Message(body=b"x", key="k", headers={"b": "2", "a": "1\x07", h.DLQ_REASON: "r"})
    lines = show_lines(letter)
    assert "headers (3):" in lines
    start = lines.index("headers (3):")
    assert lines[start + 1 : start + 4] == ["  a: 1\\x07", "  b: 2", f"  {h.DLQ_REASON}: r"]
    assert printable("ok\u200b") == "ok\\u200b"  # invisible characters are shown too


def test_where_conditions_all_hold_patterns_and_ids() -> None:
    letter = Message(body=b"", key="c-1", headers={h.DLQ_REASON: "decode-error", "tenant": "a"})
    assert LetterFilter()(letter)
    assert LetterFilter.parse(["reason=decode-error", "tenant=a"])(letter)
    assert LetterFilter.parse(["reason=*-error", "key=c-?"])(letter)
    assert not LetterFilter.parse(["reason=decode-error", "tenant=b"])(letter)
    assert not LetterFilter.parse(["missing=x"])(letter)  # an absent header never matches
    assert LetterFilter.parse(["group="])(letter)  # no group recorded: the empty group
    assert LetterFilter.parse(["id=" + letter.id])(letter)
    assert not LetterFilter().only(["other"])(letter)
    assert LetterFilter.parse(["tenant=a=b"]).conditions == (("tenant", "a=b"),)
    assert str(LetterFilter.parse(["reason=x", "tenant=a"])) == "reason=x and tenant=a"


@pytest.mark.parametrize("bad", ["reason", "=x", " =x"])
def test_where_without_a_key_is_a_configuration_error(bad: str) -> None:
    with pytest.raises(ConfigurationError, match="is not KEY=VALUE"):
        LetterFilter.parse([bad])
