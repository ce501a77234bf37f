"""Runtime layer: what happens to one delivery: decode, dedupe, call, ack / retry / dead-letter.

Retries: the first choice is the broker's delayed redelivery (``nack(delay=...)``), so no
task sleeps while holding a message and other members of the group may take the retry.
Handlers with ``ordered_by`` (and profiles without ``delayed_redelivery``) retry *in place*
instead: the job sleeps with backoff inside its lane and calls the handler again, counting
the attempt itself, because a nack would let later messages of the key overtake this one.
When the app starts stopping during such a sleep the delivery is nacked back instead.
"""

from __future__ import annotations

import asyncio
import inspect
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from eventwire.core import headers as h
from eventwire.core.errors import DecodeError, PermanentError
from eventwire.core.message import Delivery
from eventwire.observability.counters import SubscriberObserver
from eventwire.observability.logs import BoundLogger, bind, get_logger
from eventwire.observability.metrics import NoopRecorder
from eventwire.reliability import dead_letter as dl
from eventwire.reliability.idempotency import IdempotencyStore
from eventwire.runtime.context import Completion, Context, PublishFn
from eventwire.runtime.stats import StatsCounter
from eventwire.runtime.subscriber import SubscriberSpec
from eventwire.serialization.registry import RegistryUnavailableError

_log = get_logger("runtime")


@dataclass(frozen=True, slots=True, kw_only=True)
class Timing:
    """Sleep, clock and randomness the runtime uses; tests inject fakes."""

    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    clock: Callable[[], float] = time.time
    rng: random.Random = field(default_factory=random.Random)

    async def sleep_unless(self, delay: float, stopping: asyncio.Event) -> None:
        """Sleep ``delay`` s, cut short when ``stopping`` is set."""
        sleeper = asyncio.ensure_future(self.sleep(delay))
        stopper = asyncio.ensure_future(stopping.wait())
        try:
            await asyncio.wait({sleeper, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            stopper.cancel()


class Processor:
    """Applies one subscriber's policies to each of its deliveries."""

    def __init__(
        self,
        spec: SubscriberSpec,
        *,
        stats: StatsCounter,
        store: IdempotencyStore,
        publish: PublishFn,
        failures: dl.FailureLog,
        stopping: asyncio.Event,
        in_place_retries: bool,
        timing: Timing,
        metrics: SubscriberObserver | None = None,
    ) -> None:
        """``metrics`` gets one call next to every ``stats`` update (default: records nothing)."""
        self.spec = spec
        self._stats = stats
        self._metrics = metrics or NoopRecorder().subscriber(spec.topic, spec.group, spec.name)
        self._store = store
        self._publish = publish
        self._failures = failures
        self._stopping = stopping
        self._in_place = in_place_retries or spec.ordered_by is not None
        self._timing = timing
        # Broadcast subscribers have no group; their dedupe scope is this app's subscription.
        self._scope = spec.group or f"{spec.topic}#{spec.name}"
        self._completion = Completion(store=store, scope=self._scope, idempotent=spec.idempotent)
        # Schema codecs decode asynchronously (the writer's schema may need a registry call).
        self.decodes_async = inspect.iscoroutinefunction(spec.decoder)

    def decode(self, delivery: Delivery) -> Any:
        """The handler's first argument; raises ``DecodeError`` / ``ValidationError``."""
        try:
            return self.spec.decoder(delivery.message)
        except DecodeError:
            raise
        except Exception as exc:
            raise DecodeError(f"decoder failed: {type(exc).__name__}: {exc}") from exc

    async def decode_async(self, delivery: Delivery) -> Any:
        """``decode`` for an async decoder; ``RegistryUnavailableError`` (transient) is raised
        as it is, so the consumer waits for the registry instead of dead-lettering."""
        try:
            return await self.spec.decoder(delivery.message)
        except (DecodeError, RegistryUnavailableError):
            raise
        except Exception as exc:
            raise DecodeError(f"decoder failed: {type(exc).__name__}: {exc}") from exc

    async def reject(self, delivery: Delivery, exc: DecodeError) -> None:
        """Dead-letter an undecodable delivery at once: retrying cannot change its body."""
        now = self._timing.clock()
        failure = dl.Failure(
            reason=exc.reason, detail=str(exc), exception=exc, first_failure=now, last_failure=now
        )
        self._logger(delivery).warning("dead-lettering undecodable message: %s", exc.reason)
        await delivery.dead_letter(failure.reason, headers=failure.headers())
        self._stats.dead_lettered += 1
        self._metrics.dead_lettered(failure.reason)

    async def process(self, delivery: Delivery, value: Any) -> None:
        """Run the handler under the subscriber's ack, idempotency and retry policies."""
        if self.spec.idempotent and await self._is_done(delivery):
            await delivery.ack()
            self._stats.duplicates_suppressed += 1
            self._metrics.duplicate_suppressed()
            return
        if self.spec.ack == "before":
            await self._at_most_once(delivery, value)
        elif delivery.attempt > self.spec.retry.max_attempts:
            # Redelivered past its budget without a recorded failure: the worker holding it
            # died (OOM, SIGKILL). Calling again could kill the next worker too: a crash loop.
            await self._give_up(delivery, None, dl.REASON_MAX_ATTEMPTS, delivery.attempt)
        else:
            await self._with_retries(delivery, value)

    async def _with_retries(self, delivery: Delivery, value: Any) -> None:
        message_id = delivery.message.id
        attempt = delivery.attempt
        while True:
            try:
                await self._call(delivery, value, attempt)
            except PermanentError as exc:
                self._stats.failed += 1
                self._metrics.failed()
                await self._give_up(delivery, exc, dl.REASON_PERMANENT, attempt)
                return
            except Exception as exc:  # noqa: BLE001 - any handler failure is retried or dead-lettered
                self._stats.failed += 1
                self._metrics.failed()
                if not self.spec.retry.should_retry(attempt):
                    await self._give_up(delivery, exc, dl.REASON_MAX_ATTEMPTS, attempt)
                    return
                self._failures.record(message_id)
                delay = self.spec.retry.delay_for(attempt, self._timing.rng)
                self._stats.retried += 1
                self._metrics.retried()
                self._logger(delivery).warning(
                    "attempt %d failed (%s: %s); retrying in %.3f s",
                    attempt,
                    type(exc).__name__,
                    exc,
                    delay,
                )
                if not self._in_place:
                    await delivery.nack(delay=delay)
                elif await self._backoff(delay):
                    attempt += 1
                    continue
                else:
                    # Stopping mid-backoff: back at once, not delayed, so that it is ahead of
                    # its key's later messages, which the shutdown returns right after it.
                    await delivery.nack()
                return
            if self.spec.idempotent:
                await self._mark_done(delivery)
            await delivery.ack()
            self._failures.forget(message_id)
            self._stats.processed += 1
            self._metrics.processed()
            return

    async def _at_most_once(self, delivery: Delivery, value: Any) -> None:
        await delivery.ack()
        try:
            await self._call(delivery, value, delivery.attempt)
        except Exception as exc:  # noqa: BLE001 - at-most-once: a failure is logged, not retried
            self._stats.failed += 1
            self._metrics.failed()
            self._logger(delivery).exception("handler failed (ack=before, not retried): %s", exc)
            return
        if self.spec.idempotent:
            await self._mark_done(delivery)
        self._stats.processed += 1
        self._metrics.processed()

    async def _is_done(self, delivery: Delivery) -> bool:
        """Whether the store has this message done; a failing store answers "no" (logged):
        handling a rare duplicate beats redelivering every message in a tight loop, or
        dead-lettering them once redeliveries use up their attempts, while the store is down."""
        try:
            return await self._store.is_done(self._scope, delivery.message.id)
        except Exception:  # noqa: BLE001 - at-least-once still holds without the store
            self._logger(delivery).exception("idempotency store failed; handling the message")
            return False

    async def _mark_done(self, delivery: Delivery) -> None:
        """Record completion; a store failure is logged, never turned into a redelivery
        (the handler's side effect happened: not acking would repeat it for certain)."""
        try:
            await self._store.mark_done(self._scope, delivery.message.id)
        except Exception:  # noqa: BLE001 - the ack matters more than the dedupe record
            self._logger(delivery).exception("idempotency store failed to record completion")

    async def _call(self, delivery: Delivery, value: Any, attempt: int) -> None:
        # Timed here, inline: one more coroutine per message would cost more than the metrics.
        metrics = self._metrics
        if self.spec.wants_context:
            ctx = Context(
                message=delivery.message,
                topic=delivery.topic,
                group=delivery.group,
                attempt=attempt,
                logger=self._logger(delivery),
                publish=self._publish,
                completion=self._completion,
            )
            started = metrics.handler_started()
            try:
                await self.spec.handler(value, ctx)
            finally:
                metrics.handler_finished(started)
        else:
            started = metrics.handler_started()
            try:
                await self.spec.handler(value)
            finally:
                metrics.handler_finished(started)

    async def _backoff(self, delay: float) -> bool:
        """Sleep ``delay`` s unless the app starts stopping; True if the full delay passed."""
        if self._stopping.is_set():
            return False
        await self._timing.sleep_unless(delay, self._stopping)
        return not self._stopping.is_set()

    async def _give_up(
        self, delivery: Delivery, exc: BaseException | None, reason: str, attempt: int
    ) -> None:
        first, last = self._failures.record(delivery.message.id)
        self._failures.forget(delivery.message.id)
        failure = dl.Failure(
            reason=reason,
            exception=exc,
            detail=None if exc else "redelivered after its consumer stopped without settling it",
            first_failure=first,
            last_failure=last,
        )
        headers = {**failure.headers(), h.DLQ_ATTEMPTS: str(attempt)}
        self._logger(delivery).error(
            "dead-lettering after attempt %d: %s (%s: %s)",
            attempt,
            reason,
            type(exc).__name__ if exc else "no exception",
            exc,
        )
        await delivery.dead_letter(reason, headers=headers)
        self._stats.dead_lettered += 1
        self._metrics.dead_lettered(reason)

    def _logger(self, delivery: Delivery) -> BoundLogger:
        message = delivery.message
        return bind(
            _log,
            correlation_id=message.correlation_id or message.id,
            message_id=message.id,
            topic=delivery.topic,
        )
