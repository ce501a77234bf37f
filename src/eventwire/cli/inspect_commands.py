"""CLI layer: ``health`` and ``dlq list|replay``, commands that look at a live broker or worker.

Broker code is imported inside the commands, so ``eventwire --help`` loads no adapter.
"""

from __future__ import annotations

import asyncio
import logging
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import TYPE_CHECKING, Annotated

import typer

from eventwire.cli import resolve
from eventwire.cli.errors import CLIError, scrub

if TYPE_CHECKING:
    from eventwire.core.contract import Broker
    from eventwire.core.message import Delivery, Message

BROKER_HELP = (
    f"Broker URL; default ${resolve.BROKER_URL_ENV}, else {resolve.DEFAULT_BROKER_URL} "
    "(embedded, no server needed)."
)
BrokerOption = Annotated[str | None, typer.Option("--broker", "-b", help=BROKER_HELP)]
TopicArgument = Annotated[
    str, typer.Argument(help="The source topic, e.g. orders.placed (its DLQ is TOPIC.dlq).")
]
WaitOption = Annotated[
    float,
    typer.Option("--wait", min=0.0, help="Seconds to wait for the next dead letter before ending."),
]
TimeoutOption = Annotated[
    float, typer.Option("--timeout", min=0.1, help="Seconds before giving up on the broker.")
]
DLQ_PREFIX = "x-eventwire-dlq-"
REPLAY_OF = "x-eventwire-replay-of"
BODY_PREVIEW = 60  # bytes of the body shown by `dlq list`

dlq_app = typer.Typer(
    name="dlq", help="Inspect and replay dead letters.", no_args_is_help=True, add_completion=False
)


def health(
    broker: BrokerOption = None,
    url: Annotated[
        str | None,
        typer.Option(
            "--url", help="A running worker's HTTP address (http://host:port): check its /readyz."
        ),
    ] = None,
    timeout: TimeoutOption = 10.0,
) -> None:
    """Connect to the broker (or ask a worker's /readyz) and print ok or the problem; exit 0/1."""
    if url is not None:
        ok, line = _worker_ready(url, timeout)
    else:
        resolved = resolve.broker_url(broker)
        with quiet_client_logs():
            ok, line = asyncio.run(_broker_health(resolved, timeout))
    typer.echo(line)
    raise typer.Exit(0 if ok else 1)


async def _broker_health(resolved: resolve.ResolvedBroker, within: float) -> tuple[bool, str]:
    from eventwire.brokers.catalog import open_broker

    broker = open_broker(resolved.url)
    where = f"{broker.profile.name} at {resolved.url}"
    try:
        async with asyncio.timeout(within):
            await broker.connect()
            status = await broker.health()
    except TimeoutError:
        return False, f"{where}: no answer within {within:g} s: check that the broker is running"
    except Exception as exc:  # noqa: BLE001 - any failure to connect is the answer, in one line
        problem = scrub(f"{type(exc).__name__}: {exc}", resolved.url.password)
        return False, f"{where}: {problem}"
    finally:
        await broker.aclose()
    return status.ok, f"{where}: {'ok' if status.ok else 'unhealthy: ' + status.detail}"


def _worker_ready(url: str, timeout: float) -> tuple[bool, str]:
    if not url.startswith(("http://", "https://")):
        raise CLIError(
            f"--url {scrub(url)!r} is not an HTTP address: write it like http://127.0.0.1:9000"
        )
    probe = url.rstrip("/") + "/readyz"
    try:
        with urllib.request.urlopen(probe, timeout=timeout) as answer:  # noqa: S310 - http(s) only
            return True, f"{scrub(probe)}: {answer.read().decode(errors='replace').strip()}"
    except urllib.error.HTTPError as exc:
        text = exc.read().decode(errors="replace").strip() or exc.reason
        return False, f"{scrub(probe)}: {exc.code} {text}"
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return (
            False,
            f"{scrub(probe)}: unreachable ({reason}): is the worker running with --http-port?",
        )


@dlq_app.command("list")
def dlq_list(
    topic: TopicArgument,
    broker: BrokerOption = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="Show at most N.")] = 100,
    wait: WaitOption = 1.0,
) -> None:
    """Show TOPIC's dead letters without removing them (they stay for the next reader)."""
    resolved = resolve.broker_url(broker)
    with quiet_client_logs():
        letters = asyncio.run(_list(resolved, topic, limit, wait))
    for message in letters:
        typer.echo(describe(message))
    typer.echo(f"{len(letters)} dead letter(s) in {topic}.dlq, left in place")


async def _list(
    resolved: resolve.ResolvedBroker, topic: str, limit: int, wait: float
) -> list[Message]:
    found: list[Message] = []
    # Nothing is settled: leaving the subscription hands every dead letter back.
    async with _dead_letters(resolved, topic, limit, wait) as letters:
        found.extend([delivery.message async for delivery in letters])
    return found


@dlq_app.command("replay")
def dlq_replay(
    topic: TopicArgument,
    broker: BrokerOption = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="Replay at most N.")] = 1000,
    wait: WaitOption = 1.0,
) -> None:
    """Publish TOPIC's dead letters back to TOPIC (same id and envelope), then remove them."""
    resolved = resolve.broker_url(broker)
    with quiet_client_logs():
        replayed = asyncio.run(_replay(resolved, topic, limit, wait))
    typer.echo(f"replayed {replayed} dead letter(s) from {topic}.dlq to {topic}")


async def _replay(resolved: resolve.ResolvedBroker, topic: str, limit: int, wait: float) -> int:
    replayed = 0
    async with _dead_letters(resolved, topic, min(limit, 100), wait, limit=limit) as letters:
        broker = letters.broker
        # A broker that drops a repeated message id (SQLite, JetStream) would drop a replay
        # that keeps its id, and the ack below would then lose the dead letter for good.
        renew = broker.profile.capabilities.publish_dedup
        async for delivery in letters:
            # Confirmed first, acked second: a crash in between replays it twice, never zero.
            await broker.publish(topic, original(delivery.message, new_id=renew))
            await delivery.ack()
            replayed += 1
    if renew and replayed:
        typer.echo(
            f"{broker.profile.name} drops repeated message ids, so the replays got new ids; "
            f"each names its dead letter in the {REPLAY_OF} header"
        )
    return replayed


def original(message: Message, *, new_id: bool = False) -> Message:
    """``message`` as first published: the ``x-eventwire-dlq-*`` headers removed, the rest
    (id, key, content type, correlation id, other headers) kept; with ``new_id`` a fresh id,
    the old one in the ``x-eventwire-replay-of`` header."""
    from dataclasses import replace

    from eventwire.core.message import new_message_id

    kept = {k: v for k, v in message.headers.items() if not k.startswith(DLQ_PREFIX)}
    if new_id:
        return replace(message, id=new_message_id(), headers={**kept, REPLAY_OF: message.id})
    return replace(message, headers=kept)


def describe(message: Message) -> str:
    """One line for a dead letter: id, reason, attempts, detail, start of the body."""
    from eventwire.core import headers as h

    headers = message.headers
    detail = headers.get(h.DLQ_DETAIL)
    if detail is None and h.DLQ_EXCEPTION_TYPE in headers:
        detail = f"{headers[h.DLQ_EXCEPTION_TYPE]}: {headers.get(h.DLQ_EXCEPTION_MESSAGE, '')}"
    preview = message.body[:BODY_PREVIEW].decode("utf-8", "replace")
    more = "..." if len(message.body) > BODY_PREVIEW else ""
    return (
        f"{message.id}  reason={headers.get(h.DLQ_REASON, '?')}  "
        f"attempts={headers.get(h.DLQ_ATTEMPTS, '?')}  detail={detail or '-'}  "
        f"body={preview!r}{more}"
    )


class _Letters:
    """The dead-letter deliveries of one read, and the broker they came from."""

    def __init__(
        self, broker: Broker, deliveries: AsyncIterator[Delivery], limit: int, wait: float
    ):
        self.broker = broker
        self._deliveries = deliveries
        self._left = limit
        self._wait = wait

    def __aiter__(self) -> AsyncIterator[Delivery]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Delivery]:
        while self._left > 0:
            try:
                async with asyncio.timeout(self._wait):
                    delivery = await anext(self._deliveries)
            except (TimeoutError, StopAsyncIteration):
                return  # idle for --wait seconds: that was all of them
            self._left -= 1
            yield delivery


@asynccontextmanager
async def _dead_letters(
    resolved: resolve.ResolvedBroker,
    topic: str,
    prefetch: int,
    wait: float,
    *,
    limit: int | None = None,
) -> AsyncIterator[_Letters]:
    from eventwire.brokers.catalog import open_broker
    from eventwire.core.message import DEAD_LETTER_GROUP, dead_letter_topic

    try:
        async with (
            open_broker(resolved.url) as broker,
            broker.subscribe(
                dead_letter_topic(topic), group=DEAD_LETTER_GROUP, prefetch=prefetch
            ) as deliveries,
        ):
            yield _Letters(broker, deliveries, prefetch if limit is None else limit, wait)
    except OSError as exc:
        raise CLIError(
            f"cannot reach the broker at {resolved.url} ({exc.strerror or exc}): "
            "check the URL and that the broker is running"
        ) from None


@contextmanager
def quiet_client_logs() -> Iterator[None]:
    """These commands print their own one-line answer: a client library logging the same
    failure (aiormq does) through Python's last-resort handler would only repeat it."""
    root = logging.getLogger()
    if root.handlers:
        yield
        return
    silent = logging.NullHandler()
    root.addHandler(silent)
    try:
        yield
    finally:
        root.removeHandler(silent)


def register(app: typer.Typer) -> None:
    """Add ``health`` and the ``dlq`` group to ``app``."""
    app.command("health")(health)
    app.add_typer(dlq_app)
