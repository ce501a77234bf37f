"""CLI layer: ``health`` and ``dlq list|replay``, commands that look at a live broker or worker.

Broker code is imported inside the commands, so ``eventwire --help`` loads no adapter.
"""

from __future__ import annotations

import asyncio
import logging
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from eventwire.cli import resolve
from eventwire.cli.errors import CLIError, scrub
from eventwire.reliability.replay import list_dead_letters, replay_dead_letters

if TYPE_CHECKING:
    from eventwire.core.contract import Broker
    from eventwire.core.message import Message

T = TypeVar("T")

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
    probe = getattr(broker, "probe", None)  # a check that creates nothing (the sqlite file)
    try:
        async with asyncio.timeout(within):
            if probe is not None:
                status = await probe()
            else:
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
    resolve.announce_read(resolved)
    shown = [0]

    def show(message: Message) -> None:
        # Printed as read: an interrupted --wait keeps every line it had.
        typer.echo(describe(message))
        shown[0] += 1

    try:
        with quiet_client_logs():
            found = asyncio.run(_list(resolved, topic, limit, wait, show))
    except KeyboardInterrupt:
        typer.echo(f"interrupted: {shown[0]} dead letter(s) shown from {topic}.dlq, left in place")
        raise typer.Exit(130) from None
    if found is None:
        typer.echo(f"no {topic}.dlq at {resolved.url}: no dead letters (nothing was created)")
        return
    typer.echo(f"{found} dead letter(s) in {topic}.dlq, left in place")


async def _list(
    resolved: resolve.ResolvedBroker,
    topic: str,
    limit: int,
    wait: float,
    show: Callable[[Message], None],
) -> int | None:
    from eventwire.brokers.catalog import open_broker

    try:
        return await list_dead_letters(
            open_broker(resolved.url), topic, limit=limit, wait=wait, each=show
        )
    except OSError as exc:
        raise CLIError(
            f"cannot reach the broker at {resolved.url} ({exc.strerror or exc}): "
            "check the URL and that the broker is running"
        ) from None


@dlq_app.command("replay")
def dlq_replay(
    topic: TopicArgument,
    broker: BrokerOption = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="Replay at most N.")] = 1000,
    wait: WaitOption = 1.0,
) -> None:
    """Publish each of TOPIC's dead letters once back to the group that failed it (same id
    and envelope), then remove it."""
    resolved = resolve.broker_url(broker)
    with quiet_client_logs():
        result = asyncio.run(
            _with_broker(
                resolved,
                lambda b: replay_dead_letters(b, topic, limit=limit, wait=wait),
            )
        )
    if result.failed_again:
        typer.echo(
            f"{result.failed_again} replayed message(s) failed again during this replay and "
            f"were dead-lettered again: they stay in {topic}.dlq"
        )
    groups = ", ".join(
        f"{n} to {'every subscriber' if not g else 'group ' + g}"
        for g, n in sorted(result.by_group.items())
    )
    typer.echo(
        f"replayed {result.replayed} dead letter(s) from {topic}.dlq to {topic}"
        + (f" ({groups})" if groups else "")
    )


def describe(message: Message) -> str:
    """One line for a dead letter: id, group, reason, attempts, detail, start of the body."""
    from eventwire.core import headers as h

    headers = message.headers
    detail = headers.get(h.DLQ_DETAIL)
    if detail is None and h.DLQ_EXCEPTION_TYPE in headers:
        detail = f"{headers[h.DLQ_EXCEPTION_TYPE]}: {headers.get(h.DLQ_EXCEPTION_MESSAGE, '')}"
    preview = message.body[:BODY_PREVIEW].decode("utf-8", "replace")
    more = "..." if len(message.body) > BODY_PREVIEW else ""
    return (
        f"{message.id}  group={headers.get(h.DLQ_GROUP) or '-'}  "
        f"reason={headers.get(h.DLQ_REASON, '?')}  "
        f"attempts={headers.get(h.DLQ_ATTEMPTS, '?')}  detail={detail or '-'}  "
        f"body={preview!r}{more}"
    )


async def _with_broker(
    resolved: resolve.ResolvedBroker, work: Callable[[Broker], Awaitable[T]]
) -> T:
    from eventwire.brokers.catalog import open_broker

    try:
        async with open_broker(resolved.url) as broker:
            return await work(broker)
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
