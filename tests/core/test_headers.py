"""Tests: header validation refuses what could inject or break headers on any broker."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import eventwire
from eventwire.core.capabilities import Support
from eventwire.core.errors import InvalidHeaderError, MessageError
from eventwire.core.headers import MAX_HEADER_VALUE, PREFIX, validate_headers

NAME_CHARS = st.characters(
    codec="utf-8", exclude_categories=("Zs", "Zl", "Zp", "Cc"), exclude_characters=":"
)
VALUE_CHARS = st.characters(codec="utf-8", exclude_characters="\r\n\x00")


def test_ordinary_headers_pass() -> None:
    validate_headers({"tenant": "acme", "x-note": "ünïcødé ✓", "empty": "", "n": "a b: c"})


@pytest.mark.parametrize(
    "headers",
    [
        {"": "v"},
        {" lead": "v"},
        {"trail ": "v"},
        {"has space": "v"},
        {"has:colon": "v"},
        {"new\nline": "v"},
        {"nul\x00": "v"},
        {"ok": "a\rb"},
        {"ok": "a\nb"},
        {"ok": "a\x00b"},
        {"ok": "x" * (MAX_HEADER_VALUE + 1)},
        {"ok": "lone surrogate \ud800"},
        {"ok": 1},
        {1: "v"},
    ],
)
def test_bad_headers_refused(headers: dict[object, object]) -> None:
    with pytest.raises(InvalidHeaderError) as info:
        validate_headers(headers)  # type: ignore[arg-type]  # ill-typed headers on purpose
    assert isinstance(info.value, MessageError)


def test_value_at_limit_passes() -> None:
    validate_headers({"ok": "x" * MAX_HEADER_VALUE})


@settings(deadline=None)  # shared CI cores: a slow example is not a failure
@given(
    name=st.text(NAME_CHARS, min_size=1, max_size=40),
    value=st.text(VALUE_CHARS, max_size=200),
)
def test_any_name_and_value_without_forbidden_characters_passes(name: str, value: str) -> None:
    validate_headers({name: value})


@settings(deadline=None)  # shared CI cores: a slow example is not a failure
@given(value=st.text(VALUE_CHARS, max_size=50), bad=st.sampled_from("\r\n\x00"))
def test_any_value_with_a_control_character_fails(value: str, bad: str) -> None:
    with pytest.raises(InvalidHeaderError):
        validate_headers({"name": value + bad + value})


def test_reserved_prefix_and_support_truthiness() -> None:
    assert PREFIX == "x-eventwire-"
    assert not Support.NONE
    assert Support.NATIVE
    assert Support.EMULATED


# Header names still spelled out elsewhere, each with its reason.
_LITERALS_ALLOWED = {
    "core/headers.py",  # the one home of every name
}


def test_reserved_header_names_are_spelled_only_in_core_headers() -> None:
    src = Path(eventwire.__file__).parent
    spelled = []
    for path in sorted(src.rglob("*.py")):
        where = path.relative_to(src).as_posix()
        if where in _LITERALS_ALLOWED:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docstrings = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
            and node.body
            and isinstance(node.body[0], ast.Expr)
        }
        spelled += [
            f"{where}:{node.lineno} {node.value!r}"
            for node in ast.walk(tree)
            if isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and PREFIX in node.value
            and id(node) not in docstrings
        ]
    assert not spelled, "use the eventwire.core.headers constants: " + "; ".join(spelled)
