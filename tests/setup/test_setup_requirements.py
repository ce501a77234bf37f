"""Setup tests: requirements from YAML and flags, with one-line errors for bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eventwire.core.errors import ConfigurationError
from eventwire.setup import requirements
from eventwire.setup.requirements import (
    Broker,
    Requirements,
    RequirementsError,
    RoutingNeed,
    UseCase,
)


def test_yaml_with_flag_overrides(tmp_path: Path) -> None:
    path = tmp_path / "req.yaml"
    path.write_text("use-case: streaming\npeak_rate: 10\nrouting: [ttl]\noperated: kafka,nats\n")
    req = requirements.load(path, {"peak_rate": 20.0})
    assert req.use_case is UseCase.STREAMING
    assert req.peak_rate == 20.0
    assert req.routing == {RoutingNeed.TTL}
    assert req.operated == {Broker.KAFKA, Broker.NATS}


def test_nested_requirements_key(tmp_path: Path) -> None:
    path = tmp_path / "req.yaml"
    path.write_text("requirements:\n  use_case: pub-sub\n")
    assert requirements.load(path).use_case is UseCase.PUB_SUB


def test_event_sourcing_implies_replay() -> None:
    assert requirements.build({"use_case": "event-sourcing"}).needs_replay()


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"use_case": "telepathy"}, "use_case: unknown value 'telepathy'"),
        ({"peak_rate": -5}, "peak_rate"),
        ({"message_size": 0}, "message_size"),
        ({"colour": "blue"}, "unknown field"),
        ({"routing": ["teleport"]}, "routing"),
    ],
)
def test_invalid_values_are_one_line(data: dict[str, object], fragment: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        requirements.build(data)
    message = str(info.value)
    assert fragment in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("use_case: [unclosed\n", "not valid YAML at line"),
        ("- just\n- a list\n", "must hold a mapping"),
    ],
)
def test_bad_files_are_one_line(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "req.yaml"
    path.write_text(text)
    with pytest.raises(ConfigurationError) as info:
        requirements.load(path)
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot read"):
        requirements.load(tmp_path / "nope.yaml")


_values = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
_fields = st.sampled_from([*Requirements.model_fields, "use-case", "junk"])


@settings(max_examples=300, deadline=None)
@given(data=st.dictionaries(_fields, _values | st.lists(_values, max_size=3), max_size=6))
def test_any_mapping_gives_requirements_or_a_one_line_error(data: dict[str, object]) -> None:
    message = ""
    try:
        requirements.build(data)
    except RequirementsError as exc:
        message = str(exc)
    assert "\n" not in message
