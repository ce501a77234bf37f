"""RetryPolicy: bounds, exponential growth, cap and jitter."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eventwire.core.errors import ConfigurationError
from eventwire.reliability.retry import RetryPolicy


def test_exponential_and_capped_without_jitter() -> None:
    p = RetryPolicy(max_attempts=10, initial_delay=0.5, max_delay=3.0, multiplier=2.0, jitter=0.0)
    assert [p.delay_for(a) for a in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert p.delay_for(10_000) == 3.0  # no overflow


def test_should_retry_counts_every_attempt() -> None:
    p = RetryPolicy(max_attempts=3)
    assert [p.should_retry(a) for a in (1, 2, 3, 4)] == [True, True, False, False]
    assert not RetryPolicy(max_attempts=1).should_retry(1)


@settings(deadline=None)  # shared CI cores: a slow example is not a failure
@given(attempt=st.integers(1, 200), jitter=st.floats(0, 1), seed=st.integers(0, 2**32))
def test_jitter_stays_within_bounds(attempt: int, jitter: float, seed: int) -> None:
    p = RetryPolicy(initial_delay=0.1, max_delay=5.0, multiplier=3.0, jitter=jitter)
    base = min(0.1 * 3.0 ** (min(attempt, 100) - 1), 5.0)
    d = p.delay_for(attempt, random.Random(seed))
    assert base * (1 - jitter) - 1e-9 <= d <= base * (1 + jitter) + 1e-9
    assert d <= 5.0  # max_delay is a hard cap, jitter included


def test_jitter_spreads_delays() -> None:
    rng = random.Random(7)
    p = RetryPolicy(initial_delay=1.0, jitter=0.5)
    assert len({p.delay_for(1, rng) for _ in range(20)}) > 10


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_attempts": 0},
        {"initial_delay": -1},
        {"max_delay": -1},
        {"multiplier": 0.5},
        {"jitter": 1.5},
    ],
)
def test_invalid_policies_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigurationError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]  # invalid policies on purpose
