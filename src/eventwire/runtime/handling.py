"""Runtime layer: what happens to one delivery: admit (decode, ordering key), dedupe, call,
ack / retry / dead-letter. Every policy of the message path lives here.

``admit`` runs on the consumer loop for each delivery and never raises: bad input (a body
its decoder refuses, an unsupported content type, a failing ``ordered_by``) becomes a job
that dead-letters it, so nothing in a message can stop the consumer. The job for a good
message is the subscriber's *plan*, chosen once when the ``Processor`` is built (plain
at-least-once, idempotent, or ack-before), so the per-message path makes no decision twice
and allocates nothing that belongs to the subscription.

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
from bisect import bisect_left
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from time import perf_counter
from typing import Any, Final, TypeAlias

from eventwire.core import headers as h
from eventwire.core.errors import ConfigurationError, DecodeError, EventwireError, PermanentError
from eventwire.core.message import Delivery
from eventwire.observability import tracing
from eventwire.observability.counters import SubscriberMetrics
from eventwire.observability.logs import BoundLogger, bind_message, get_logger
from eventwire.reliability import dead_letter as dl
from eventwire.reliability.idempotency import IdempotencyStore
from eventwire.runtime.breaking import BreakerGate
from eventwire.runtime.context import Completion, Context, PublishFn
from eventwire.runtime.subscriber import SubscriberSpec
from eventwire.runtime.transactional import Transactions, publishing_into
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


# What a worker runs for one admitted delivery: ``await step(delivery, value)``.
Step: TypeAlias = Callable[[Delivery, Any], Awaitable[None]]
REASON_TIMEOUT = "timeout"


class _Stopping(Exception):
    """What a call held by an open breaker returns when the app starts stopping."""


_STOPPING: Final = _Stopping()


class HandlerTimeoutError(EventwireError):
    """The handler ran past its subscriber's ``timeout=`` and was cancelled (a failure:
    retried like any other, its reason ``timeout``)."""

    reason = REASON_TIMEOUT


class Processor:
    """Applies one subscriber's policies to each of its deliveries."""

    def __init__(
        self,
        spec: SubscriberSpec,
        *,
        store: IdempotencyStore,
        publish: PublishFn,
        failures: dl.FailureLog,
        stopping: asyncio.Event,
        in_place_retries: bool,
        timing: Timing,
        counters: SubscriberMetrics | None = None,
        profile: str = "unknown",
        transactions: Transactions | None = None,
    ) -> None:
        """``transactions``: the broker's ``transaction``, needed by a transactional spec;
        ``counters``: where this subscriber's outcomes are counted (the app's, for
        ``App.stats`` and ``/metrics``; default: a private set); ``profile``: the broker
        profile's name (the spans' ``messaging.system`` while tracing is on)."""
        self.spec = spec
        self.counters = counters or SubscriberMetrics(spec.topic, spec.group, spec.name)
        self._store = store
        self._publish = publish
        if spec.transactional and transactions is None:
            raise ConfigurationError(
                f"transactional=True on {spec.topic!r} needs a broker with transactions"
            )
        self._transactions = transactions if spec.transactional else None
        self._failures = failures
        self._stopping = stopping
        self._in_place = in_place_retries or spec.ordered_by is not None
        self._timing = timing
        self._handler = spec.handler
        self._decoder = spec.decoder
        # Schema codecs decode asynchronously (the writer's schema may need a registry call).
        self.decodes_async = inspect.iscoroutinefunction(spec.decoder)
        self._max_attempts = spec.retry.max_attempts
        # Broadcast subscribers have no group; their dedupe scope is this app's subscription.
        self._scope = spec.group or f"{spec.topic}#{spec.name}"
        self._completion = Completion(store=store, scope=self._scope, idempotent=spec.idempotent)
        self.gate = (
            None
            if spec.breaker is None
            else BreakerGate(spec.breaker, counters=self.counters, name=spec.name)
        )
        # Through the breaker only when there is one: no extra call per message otherwise.
        self._invoke = self._call if self.gate is None else self._call_through
        self._plan: Step
        if spec.ack == "before":
            self._plan = self._at_most_once
        elif spec.idempotent:
            self._plan = self._idempotent
        else:
            self._plan = self._at_least_once
        # Tracing is decided once per subscription: untraced, the plans run as they are.
        self._tracer = tracer = tracing.active()
        self._rejecting: Step = self._reject
        if tracer is not None:
            topic, group = spec.topic, spec.group
            self._plan = tracer.traced_step(self._plan, topic=topic, group=group, profile=profile)
            self._rejecting = tracer.traced_step(
                self._reject, topic=topic, group=group, profile=profile
            )

    # -- admission: on the consumer loop, never raises ---------------------------------------

    def admit(self, delivery: Delivery) -> tuple[str | None, Step, Any]:
        """Decode ``delivery`` and find its ordering key: ``(key, step, value)``, the job to
        run. Undecodable input gets the step that dead-letters it (``value``: the error)."""
        try:
            value = self._decoder(delivery.message)
        except DecodeError as exc:
            return None, self._rejecting, exc
        except Exception as exc:  # noqa: BLE001 - a failing decoder is bad input too
            return None, self._rejecting, _decoder_failed(exc)
        return self._keyed(delivery, value)

    async def admit_async(self, delivery: Delivery) -> tuple[str | None, Step, Any]:
        """``admit`` for an async (schema codec) decoder. ``RegistryUnavailableError`` is
        raised as it is: an outage is transient, the consumer waits it out (never a dead
        letter)."""
        try:
            value = await self._decoder(delivery.message)
        except RegistryUnavailableError:
            raise
        except DecodeError as exc:
            return None, self._rejecting, exc
        except Exception as exc:  # noqa: BLE001 - a failing decoder is bad input too
            return None, self._rejecting, _decoder_failed(exc)
        return self._keyed(delivery, value)

    def _keyed(self, delivery: Delivery, value: Any) -> tuple[str | None, Step, Any]:
        if self.spec.ordered_by is None:
            return None, self._plan, value
        try:
            key = self.spec.key_of(value, delivery.message)
        except Exception:  # noqa: BLE001 - a faulty key function must not stop the consumer
            self._logger(delivery).exception("ordered_by failed; using the envelope key")
            key = delivery.message.key or ""
        return key, self._plan, value

    async def _reject(self, delivery: Delivery, exc: DecodeError) -> None:
        """Dead-letter an undecodable delivery at once: retrying cannot change its body."""
        now = self._timing.clock()
        failure = dl.Failure(
            reason=exc.reason, detail=str(exc), exception=exc, first_failure=now, last_failure=now
        )
        self._logger(delivery).warning("dead-lettering undecodable message: %s", exc.reason)
        await self._dead_letter(delivery, failure.reason, failure.headers(), exc, delivery.attempt)

    # -- the plans ------------------------------------------------------------------------

    async def _idempotent(self, delivery: Delivery, value: Any) -> None:
        if await self._is_done(delivery):
            await delivery.ack()
            self.counters.duplicates += 1
            return
        await self._at_least_once(delivery, value)

    async def _at_least_once(self, delivery: Delivery, value: Any) -> None:
        """Call the handler; ack on success, else retry (delayed nack or in place) or
        dead-letter once the attempts are used up."""
        attempt = delivery.attempt
        if attempt > self._max_attempts:
            # Redelivered past its budget without a recorded failure: the worker holding it
            # died (OOM, SIGKILL). Calling again could kill the next worker too: a crash loop.
            await self._give_up(delivery, None, dl.REASON_MAX_ATTEMPTS, attempt)
            return
        counters = self.counters
        invoke = self._invoke
        while True:
            error = await invoke(delivery, value, attempt)
            if error is None:
                break
            if error is _STOPPING:
                await delivery.nack()  # stopping while the breaker held it: back at once
                return
            counters.failures += 1
            if isinstance(error, PermanentError):
                await self._give_up(delivery, error, dl.REASON_PERMANENT, attempt)
                return
            if attempt >= self._max_attempts:
                await self._give_up(delivery, error, dl.REASON_MAX_ATTEMPTS, attempt)
                return
            self._failures.record(delivery.message.id)
            delay = self.spec.retry.delay_for(attempt, self._timing.rng)
            counters.retries += 1
            if self._tracer is not None:
                self._tracer.retried(attempt, error, delay, in_place=self._in_place)
            self._logger(delivery).warning(
                "attempt %d failed (%s: %s); retrying in %.3f s",
                attempt,
                type(error).__name__,
                error,
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
        await delivery.ack()  # a no-op after a transaction: its commit settled the delivery
        if attempt > 1:
            self._failures.forget(delivery.message.id)
        counters.processed_count += 1

    async def _at_most_once(self, delivery: Delivery, value: Any) -> None:
        if self.spec.idempotent and await self._is_done(delivery):
            await delivery.ack()
            self.counters.duplicates += 1
            return
        gate = self.gate
        if gate is not None and not await gate.enter(self._stopping):
            await delivery.nack()
            return
        await delivery.ack()
        error = await self._call(delivery, value, delivery.attempt)
        if gate is not None:
            gate.leave(error is not None and not isinstance(error, PermanentError))
        if error is not None:
            self.counters.failures += 1
            if self._tracer is not None:
                self._tracer.failed(error)
            self._logger(delivery).error(
                "handler failed (ack=before, not retried): %s", error, exc_info=error
            )
            return
        if self.spec.idempotent:
            await self._mark_done(delivery)
        self.counters.processed_count += 1

    # -- the handler call -----------------------------------------------------------------

    async def _call(self, delivery: Delivery, value: Any, attempt: int) -> Exception | None:
        """Call the handler once, timed and counted: None on success, else what it raised.

        A ``CancelledError`` that is not a cancellation of this task (the handler awaited
        something cancelled elsewhere) is a failure like any other: let through, it would end
        the worker with the delivery unsettled.
        """
        counters = self.counters
        spec = self.spec
        counters.in_flight += 1
        started = perf_counter()
        try:
            if self._transactions is not None:
                await self._call_in_transaction(delivery, value, attempt, self._transactions)
            elif spec.timeout is not None:
                await self._call_with_timeout(delivery, value, attempt, spec.timeout)
            elif spec.wants_context:
                await self._handler(value, self._context(delivery, attempt))
            else:
                await self._handler(value)
        except Exception as exc:  # noqa: BLE001 - any handler failure is retried or dead-lettered
            return exc
        except asyncio.CancelledError as exc:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
            failure = RuntimeError(f"handler raised CancelledError: {exc}")
            failure.__cause__ = exc
            return failure
        finally:
            # SubscriberMetrics.handler_finished inlined: this runs for every handler call.
            counters.in_flight -= 1
            elapsed = perf_counter() - started
            duration = counters.duration
            duration.counts[bisect_left(duration.bounds, elapsed)] += 1
            duration.total += elapsed
        return None

    async def _call_through(self, delivery: Delivery, value: Any, attempt: int) -> Exception | None:
        """``_call`` once the breaker lets it in (``_STOPPING`` if the app stops first);
        its verdict goes back to the breaker (a ``PermanentError`` is about the message, not
        the downstream: it does not count)."""
        gate = self.gate
        assert gate is not None
        if not await gate.enter(self._stopping):
            return _STOPPING
        failed: bool | None = None
        try:
            error = await self._call(delivery, value, attempt)
            failed = error is not None and not isinstance(error, PermanentError)
        finally:
            gate.leave(failed)
        return error

    async def _call_in_transaction(
        self, delivery: Delivery, value: Any, attempt: int, transactions: Transactions
    ) -> None:
        """The handler inside ``broker.transaction(delivery)``: its ``ctx.publish`` goes to
        the transaction; returning commits the outputs with the offset (which settles the
        delivery), raising aborts them and leaves the delivery open for the retry policy."""
        async with transactions(delivery) as tx:
            publish = publishing_into(tx)
            if self.spec.timeout is not None:
                await self._call_with_timeout(delivery, value, attempt, self.spec.timeout, publish)
            elif self.spec.wants_context:
                await self._handler(value, self._context(delivery, attempt, publish))
            else:
                await self._handler(value)

    async def _call_with_timeout(
        self,
        delivery: Delivery,
        value: Any,
        attempt: int,
        seconds: float,
        publish: PublishFn | None = None,
    ) -> None:
        try:
            async with asyncio.timeout(seconds) as scope:
                if self.spec.wants_context:
                    await self._handler(value, self._context(delivery, attempt, publish))
                else:
                    await self._handler(value)
        except TimeoutError as exc:
            if scope.expired():
                raise HandlerTimeoutError(
                    f"timeout: the handler ran longer than {seconds:g} s and was cancelled"
                ) from exc
            raise

    def _context(
        self, delivery: Delivery, attempt: int, publish: PublishFn | None = None
    ) -> Context:
        return Context(
            message=delivery.message,
            topic=delivery.topic,
            group=delivery.group,
            attempt=attempt,
            publish=publish or self._publish,
            completion=self._completion,
        )

    # -- helpers --------------------------------------------------------------------------

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
        await self._dead_letter(delivery, reason, headers, exc, attempt)

    async def _dead_letter(
        self,
        delivery: Delivery,
        reason: str,
        headers: dict[str, str],
        exc: BaseException | None,
        attempt: int,
    ) -> None:
        if self._tracer is not None:
            self._tracer.dead_lettered(delivery.topic, reason, exc, attempt)
        await delivery.dead_letter(reason, headers=headers)
        self.counters.dead_lettered(reason)

    def _logger(self, delivery: Delivery) -> BoundLogger:
        return bind_message(_log, delivery.message, delivery.topic)


def _decoder_failed(exc: Exception) -> DecodeError:
    error = DecodeError(f"decoder failed: {type(exc).__name__}: {exc}")
    error.__cause__ = exc
    return error
