"""Testing layer: the worker and the figures of a hostile-producer test (issue 11's shape).

A hostile-producer test writes messages with a broker's raw client, one field broken at a
time, between good ones numbered ``0..n-1`` (ids ``good-<n>``), into the worker built by
``typed_worker``: a typed handler (``Job``), ``concurrency=4``, ``max_attempts=3``. Good jobs
are counted once handled; a job with ``fail`` always raises; a job numbered -1..-99 marks a
message whose *envelope* is hostile, so reaching the handler is itself the failure.
``HostileRun.figures`` and ``check`` turn what happened into the figures the issue asks for.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final, TypeVar

import pydantic

from eventwire.core.errors import PermanentError
from eventwire.core.message import Message
from eventwire.reliability.retry import RetryPolicy
from eventwire.runtime.app import App

__all__ = ["GOOD_PREFIX", "MAX_ATTEMPTS", "HostileRun", "Job", "interleave", "job_body"]

T = TypeVar("T")

MAX_ATTEMPTS: Final = 3
GOOD_PREFIX: Final = "good-"  # the id of every good message


class Job(pydantic.BaseModel):
    """The typed payload: ``n`` names the message, ``fail`` makes every attempt fail."""

    n: int
    fail: bool = False


def job_body(n: int, *, fail: bool = False) -> bytes:
    return json.dumps({"n": n, "fail": fail}).encode()


def interleave(
    hostile: Iterable[T], good: Callable[[int], T], *, per: int = 4
) -> tuple[list[T], int]:
    """``per`` good messages (``good(0)``, ``good(1)``, ...) before each hostile one; returns
    the sequence and how many good ones it holds."""
    sequence: list[T] = []
    n = 0
    for item in hostile:
        for _ in range(per):
            sequence.append(good(n))
            n += 1
        sequence.append(item)
    return sequence, n


@dataclass
class HostileRun:
    """Handler calls and completions by job number, and the worker that records them."""

    calls: Counter[int] = field(default_factory=Counter)
    handled: Counter[int] = field(default_factory=Counter)

    def typed_worker(self, url: str, topic: str, *, name: str = "hostile") -> App:
        """An App on ``url`` whose group ``workers`` reads ``topic`` into ``Job``."""
        app = App(url, name=name)

        @app.subscriber(
            topic,
            group="workers",
            concurrency=4,
            retry=RetryPolicy(max_attempts=MAX_ATTEMPTS, initial_delay=0.01),
        )
        async def handle(job: Job) -> None:
            self.calls[job.n] += 1
            if job.fail:
                raise ValueError("always fails")
            if -100 < job.n < 0:
                raise PermanentError("a message with a hostile envelope reached the handler")
            self.handled[job.n] += 1

        return app

    def figures(
        self, *, cases: int, good_sent: int, letters: Sequence[Message]
    ) -> dict[str, object]:
        """The per-broker figures: all but the counts of cases and dead letters must be 0
        (good processed/sent must read ``good_sent/good_sent``)."""
        once = sum(1 for g in range(good_sent) if self.handled[g] == 1)
        return {
            "hostile cases injected": cases,
            "good processed/sent": f"{once}/{good_sent}",
            "good dead-lettered unhandled": sum(1 for m in letters if m.id.startswith(GOOD_PREFIX)),
            "lost": good_sent - sum(1 for g in range(good_sent) if self.handled[g]),
            "handler calls above max_attempts": sum(
                1 for c in self.calls.values() if c > MAX_ATTEMPTS
            ),
            "dead letters": len(letters),
        }

    def check(self, figures: dict[str, object], *, good_sent: int) -> None:
        """Every good message handled exactly once; no good one dead-lettered; no handler
        called more than ``MAX_ATTEMPTS`` times."""
        assert all(self.handled[g] == 1 for g in range(good_sent)), figures
        assert figures["good dead-lettered unhandled"] == 0, figures
        assert figures["lost"] == 0, figures
        assert figures["handler calls above max_attempts"] == 0, figures
