"""Circuit breaker: the state machine, and an App that stops consuming while it is open."""

from __future__ import annotations

import asyncio

import pydantic
import pytest

from eventwire.core.errors import ConfigurationError
from eventwire.reliability.circuit_breaker import BreakerPolicy, CircuitBreaker
from eventwire.reliability.retry import RetryPolicy
from eventwire.runtime.app import App

from .helpers import memory_url, running, wait_until


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_opens_after_the_threshold_probes_once_and_doubles_its_wait() -> None:
    clock = Clock()
    breaker = CircuitBreaker(
        BreakerPolicy(failure_threshold=3, open_for=1.0, max_open_for=3.0), clock=clock
    )
    for _ in range(2):
        assert breaker.try_enter()
        breaker.record(failed=True)
    assert breaker.try_enter()
    breaker.record(failed=False)  # a success resets the count
    for _ in range(3):
        assert breaker.try_enter()
        breaker.record(failed=True)
    assert (breaker.state, breaker.try_enter(), breaker.retry_in()) == ("open", False, 1.0)
    clock.now = 1.0
    assert breaker.state == "half-open"
    assert breaker.try_enter()
    assert not breaker.try_enter(), "one probe at a time"
    breaker.record(failed=True)
    assert (breaker.state, breaker.retry_in()) == ("open", 2.0)
    clock.now = 3.0
    assert breaker.try_enter()
    breaker.record(failed=True)
    assert breaker.retry_in() == 3.0  # capped at max_open_for
    clock.now = 6.0
    assert breaker.try_enter()
    breaker.record(None)  # cancelled probe: no verdict, the slot is free again
    assert breaker.try_enter()
    breaker.record(failed=False)
    assert breaker.state == "closed"  # type: ignore[comparison-overlap]  # record() moves the state mypy narrowed above
    assert breaker.times_opened == 3
    for _ in range(3):
        breaker.record(failed=True)
    assert breaker.retry_in() == 1.0, "closing resets the wait"


@pytest.mark.parametrize(
    "options",
    [{"failure_threshold": 0}, {"open_for": 0.0}, {"open_for": 5.0, "max_open_for": 1.0}],
)
def test_policy_refuses_nonsense(options: dict[str, float]) -> None:
    with pytest.raises(ConfigurationError):
        BreakerPolicy(**options)  # type: ignore[arg-type]  # nonsense options on purpose


class Order(pydantic.BaseModel):
    n: int


async def test_an_open_breaker_pauses_consumption_instead_of_dead_lettering() -> None:
    """The downstream fails for a while: the breaker opens, the handler is no longer called
    (the backlog waits on the broker, not in the DLQ), readiness is false; once the
    downstream is back a probe closes it and every message is handled."""
    app = App(memory_url())
    downstream_up = False
    calls_while_down = 0
    handled: list[int] = []

    @app.subscriber(
        "orders",
        group="g",
        concurrency=4,
        retry=RetryPolicy(max_attempts=5, initial_delay=0.01, max_delay=0.02, jitter=0.0),
        breaker=BreakerPolicy(failure_threshold=3, open_for=0.2, max_open_for=0.4),
    )
    async def handle(order: Order) -> None:
        nonlocal calls_while_down
        if not downstream_up:
            calls_while_down += 1
            raise ConnectionError("downstream is down")
        handled.append(order.n)

    async with app, running(app):
        await app.publish_batch("orders", [{"n": i} for i in range(50)])
        await wait_until(lambda: not app.ready)  # opened
        opened_at_calls = calls_while_down
        await asyncio.sleep(1.0)  # an outage of a second: probes every 0.2-0.4 s
        assert not app.ready
        probes = calls_while_down - opened_at_calls
        assert probes <= 6, f"{probes} calls while open: it did not pause"
        text = app.metrics.exposition()[0].decode()
        assert 'eventwire_breaker_open{group="g"' in text
        assert "} 1.0" in text.split("eventwire_breaker_open{", 1)[1].split("\n", 1)[0]
        downstream_up = True
        await wait_until(lambda: len(handled) == 50, deadline=20)
        await wait_until(lambda: app.ready)
    assert sorted(handled) == list(range(50))
    assert app.stats.dead_lettered == 0
    assert calls_while_down <= 3 + 4 + 6  # threshold, calls already running, probes
