"""Tests: the shared backoff formula: caps, overflow and jitter bounds (property tests)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eventwire.core.backoff import Backoff, BackoffStreak
from eventwire.core.errors import ConfigurationError

policies = st.builds(
    Backoff,
    initial=st.floats(0, 10),
    cap=st.floats(10, 1e6),
    multiplier=st.floats(1, 100),
    jitter=st.floats(0, 1),
)
attempts = st.integers(-5, 10**9)


@given(policies, attempts, st.integers(0, 2**32))
def test_delay_stays_within_jitter_bounds_and_cap(
    backoff: Backoff, attempt: int, seed: int
) -> None:
    ceiling = backoff.ceiling(attempt)
    delay = backoff.delay(attempt, random.Random(seed))
    assert 0 <= ceiling <= backoff.cap
    assert ceiling * (1 - backoff.jitter) - 1e-9 <= delay <= ceiling


@given(policies, st.integers(1, 10_000))
def test_ceiling_never_decreases(backoff: Backoff, attempt: int) -> None:
    assert backoff.ceiling(attempt + 1) >= backoff.ceiling(attempt)


def test_huge_attempt_counts_wait_the_cap_instead_of_overflowing() -> None:
    backoff = Backoff(initial=0.05, cap=2.0, multiplier=2.0, jitter=0)
    for attempt in (1_024, 1_025, 10**6, 10**18):
        assert backoff.delay(attempt) == 2.0


def test_the_sequence_doubles_from_initial() -> None:
    backoff = Backoff(initial=0.1, cap=1.0, jitter=0)
    assert [backoff.ceiling(n) for n in range(1, 7)] == pytest.approx(
        [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    )


def test_full_jitter_reaches_down_to_zero() -> None:
    backoff = Backoff(initial=1.0, cap=1.0, jitter=1.0)
    rng = random.Random(7)
    draws = [backoff.delay(1, rng) for _ in range(2_000)]
    assert min(draws) < 0.05
    assert max(draws) > 0.95


@pytest.mark.parametrize(
    "kwargs",
    [
        {"initial": -1.0},
        {"initial": 5.0, "cap": 1.0},
        {"cap": float("inf")},
        {"multiplier": 0.5},
        {"jitter": 1.5},
    ],
)
def test_bad_settings_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigurationError):
        Backoff(**kwargs)


def test_a_streak_grows_per_failure_and_starts_over_after_reset() -> None:
    streak = BackoffStreak(Backoff(initial=0.1, cap=1.0, jitter=0))
    assert [streak.next_delay() for _ in range(6)] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])
    streak.reset()
    assert streak.next_delay() == pytest.approx(0.1)


async def test_a_streak_sleeps_the_delay_it_counts() -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    streak = BackoffStreak(Backoff(initial=0.5, cap=2.0, jitter=0), sleep=sleep)
    await streak.wait()
    await streak.wait()
    assert slept == [0.5, 1.0]
