"""Process tests: real worker processes on the SQLite broker, killed and stopped mid-work.

(a) SIGKILL while holding leased messages: a second worker takes over after the lease
    expires; nothing is lost and, with ``idempotent=True``, no side effect happens twice.
    The kill lands while every handler waits before its side effect; killed at a random
    moment instead, a handler past its side effect but not yet recorded as done runs again:
    that variant asserts no loss and at most one repeat per handler in flight.
(b) SIGTERM with 100 messages in flight: exit code 0 within 15 s, nothing lost, nothing
    left unsettled on the broker, each message's side effect exactly once.
"""

from __future__ import annotations

import signal

import pytest
from proc_rig import Rig, scale, wait_until

pytestmark = pytest.mark.slow


def test_sigkill_with_leased_messages_loses_nothing_and_repeats_nothing(rig: Rig) -> None:
    total = scale(2_000, 10_000)
    concurrency = 16
    rig.publish(total)

    first = rig.start_worker(
        PROC_CONCURRENCY=concurrency, PROC_IDEMPOTENT=1, PROC_HANG_AFTER=total // 4
    )
    # Every handler slot of the first worker is now stuck before its side effect, with more
    # deliveries prefetched behind them: the worker holds leases on unfinished messages.
    wait_until(lambda: rig.count("hung") >= concurrency, 120, "the first worker to fill up")
    held = rig.leased()
    assert held >= concurrency, held
    done_before = rig.effects()[0]
    first.send_signal(signal.SIGKILL)
    assert first.wait(timeout=10) == -signal.SIGKILL

    second = rig.start_worker(PROC_CONCURRENCY=concurrency, PROC_IDEMPOTENT=1)
    wait_until(lambda: rig.effects()[0] == total, 180, f"all {total} side effects")
    code, _ = rig.stop(second)
    assert code == 0, rig.log(second)

    distinct, repeated = rig.effects()
    stats = rig.stats()  # only the second worker reports: the first one was killed
    print(
        f"\nSIGKILL: {total} published, {held} leased at kill, {done_before} done before, "
        f"{distinct} done after, {repeated} repeated side effects, "
        f"{stats.get('duplicates_suppressed', 0)} duplicates suppressed by the second worker"
    )
    assert distinct == total  # 0 lost
    assert repeated == 0  # 0 duplicate side effects
    assert rig.unsettled() == 0


def test_sigkill_at_a_random_moment_repeats_at_most_the_handlers_in_flight(rig: Rig) -> None:
    # Killed mid-handler, a side effect already made but not yet recorded as done is made
    # again by the next worker (at-least-once); the idempotency store confines repeats to
    # those handlers in flight: every message whose completion was recorded is suppressed.
    total = scale(2_000, 10_000)
    concurrency = 16
    rig.publish(total)
    first = rig.start_worker(PROC_CONCURRENCY=concurrency, PROC_IDEMPOTENT=1, PROC_DELAY=0.002)
    wait_until(lambda: rig.effects()[0] >= total // 4, 120, "a quarter of the side effects")
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    second = rig.start_worker(PROC_CONCURRENCY=concurrency, PROC_IDEMPOTENT=1)
    wait_until(lambda: rig.effects()[0] == total, 180, f"all {total} side effects")
    assert rig.stop(second)[0] == 0, rig.log(second)
    distinct, repeated = rig.effects()
    suppressed = rig.stats().get("duplicates_suppressed", 0)
    print(f"\nrandom SIGKILL: {repeated} repeated side effects, {suppressed} suppressed")
    assert distinct == total
    assert repeated <= concurrency
    assert rig.unsettled() == 0


def test_sigkill_without_idempotency_still_loses_nothing(rig: Rig) -> None:
    total = scale(500, 2_000)
    rig.publish(total)
    first = rig.start_worker(PROC_CONCURRENCY=8, PROC_IDEMPOTENT=0, PROC_HANG_AFTER=total // 4)
    wait_until(lambda: rig.count("hung") >= 8, 120, "the first worker to fill up")
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    second = rig.start_worker(PROC_CONCURRENCY=8, PROC_IDEMPOTENT=0)
    wait_until(lambda: rig.effects()[0] == total, 180, f"all {total} side effects")
    assert rig.stop(second)[0] == 0, rig.log(second)
    assert rig.unsettled() == 0  # at-least-once: repeats are allowed here, loss is not


@pytest.mark.parametrize(
    ("delay", "shutdown_timeout"),
    [(1.0, 10.0), (30.0, 2.0)],
    ids=["handlers-finish", "handlers-outlast-the-timeout"],
)
def test_sigterm_with_100_in_flight(rig: Rig, delay: float, shutdown_timeout: float) -> None:
    rig.publish(100)
    worker = rig.start_worker(
        PROC_CONCURRENCY=100, PROC_DELAY=delay, PROC_SHUTDOWN_TIMEOUT=shutdown_timeout
    )
    wait_until(lambda: rig.count("started") == 100, 60, "100 handlers in flight")

    code, took = rig.stop(worker, timeout=15)
    assert code == 0, rig.log(worker)
    assert took < 15
    assert "Traceback" not in rig.log(worker)

    finished = rig.effects()[0]
    if finished < 100:
        # Handlers that outlasted the shutdown timeout were cancelled before their side
        # effect and their messages returned to the broker: a new worker must get them.
        assert delay > shutdown_timeout, f"only {finished} of 100 finished"
        again = rig.start_worker(PROC_CONCURRENCY=100, PROC_DELAY=0)
        wait_until(lambda: rig.effects()[0] == 100, 60, "returned messages to be processed")
        assert rig.stop(again)[0] == 0, rig.log(again)
    distinct, repeated = rig.effects()
    print(f"\nSIGTERM: exit {code} after {took:.2f} s, {finished} finished before exit")
    assert distinct == 100
    assert repeated == 0
    assert rig.unsettled() == 0
