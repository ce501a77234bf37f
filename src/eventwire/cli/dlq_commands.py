"""CLI layer: ``dlq list|show|replay|purge``: read, replay and remove a topic's dead letters.

Read commands (``list``, ``show``, and ``--dry-run`` of the others) change nothing: they go
through ``list_dead_letters`` (a passive read where the broker has one, else a subscription
that settles nothing). ``purge`` first reads what it would remove the same way, asks (unless
``--yes``), then removes only letters with those ids that still match: what was shown is
what goes, and a letter that arrives meanwhile stays. Broker code is imported inside the
commands, so ``eventwire --help`` loads no adapter.
"""

from __future__ import annotations

import asyncio
import base64
import sys
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from eventwire.cli import resolve
from eventwire.cli.errors import CLIError
from eventwire.cli.inspect_commands import BrokerOption, quiet_client_logs
from eventwire.core.errors import ConfigurationError
from eventwire.reliability.dead_letter_filter import FIELD_NAMES, LetterFilter
from eventwire.reliability.replay import (
    group_of,
    list_dead_letters,
    purge_dead_letters,
    replay_dead_letters,
)

if TYPE_CHECKING:
    from eventwire.core.contract import Broker
    from eventwire.core.message import Message

T = TypeVar("T")

TopicArgument = Annotated[
    str, typer.Argument(help="The source topic, e.g. orders.placed (its DLQ is TOPIC.dlq).")
]
WaitOption = Annotated[
    float,
    typer.Option("--wait", min=0.0, help="Seconds to wait for the next dead letter before ending."),
]
WhereOption = Annotated[
    list[str] | None,
    typer.Option(
        "--where",
        "-w",
        help=(
            f"Only letters with KEY=VALUE (a value may be a pattern: reason=unreadable*); keys: "
            f"{', '.join(FIELD_NAMES)}, or a header name; repeat to require several."
        ),
    ),
]
GroupOption = Annotated[
    str | None, typer.Option("--group", "-g", help="Only letters the GROUP dead-lettered.")
]
DryRunOption = Annotated[
    bool, typer.Option("--dry-run", help="Show what would be done; change nothing.")
]
BODY_PREVIEW = 60  # bytes of the body shown by `dlq list`
SHOW_PREVIEW = 512  # bytes of the body shown by `dlq show`

dlq_app = typer.Typer(
    name="dlq",
    help="Inspect, replay and purge dead letters.",
    no_args_is_help=True,
    add_completion=False,
)


def _filter(where: list[str] | None, group: str | None) -> LetterFilter:
    try:
        chosen = LetterFilter.parse(where or [])
    except ConfigurationError as exc:
        raise CLIError(str(exc)) from None
    return chosen.with_condition("group", group)


async def _open(
    resolved: resolve.ResolvedBroker, work: Callable[[Broker], Awaitable[T]], *, connect: bool
) -> T:
    """Run ``work`` on a broker for ``resolved``: connected by ``async with`` (``connect``) or
    handed over unconnected (``list_dead_letters`` connects only if it must, and closes)."""
    from eventwire.brokers.catalog import open_broker

    try:
        if not connect:
            return await work(open_broker(resolved.url))
        async with open_broker(resolved.url) as broker:
            return await work(broker)
    except OSError as exc:
        raise CLIError(
            f"cannot reach the broker at {resolved.url} ({exc.strerror or exc}): "
            "check the URL and that the broker is running"
        ) from None


async def _read(
    resolved: resolve.ResolvedBroker,
    topic: str,
    *,
    limit: int,
    wait: float,
    chosen: LetterFilter,
    each: Callable[[Message], None] | None = None,
) -> list[Message] | None:
    """The letters ``chosen`` selects among the first ``limit`` of ``topic``'s DLQ, changing
    nothing (None: there is no DLQ). ``each`` sees each one as it is read."""
    found: list[Message] = []

    def keep(message: Message) -> None:
        if chosen(message):
            found.append(message)
            if each is not None:
                each(message)

    async def work(broker: Broker) -> int | None:
        return await list_dead_letters(broker, topic, limit=limit, wait=wait, each=keep)

    with quiet_client_logs():
        read = await _open(resolved, work, connect=False)
    return None if read is None else found


@dlq_app.command("list")
def dlq_list(
    topic: TopicArgument,
    *,
    broker: BrokerOption = None,
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=1, help="Read at most N letters.")
    ] = 100,
    wait: WaitOption = 1.0,
    where: WhereOption = None,
    group: GroupOption = None,
) -> None:
    """Show TOPIC's dead letters without removing them (they stay for the next reader)."""
    resolved = resolve.broker_url(broker)
    chosen = _filter(where, group)
    resolve.announce_read(resolved)
    shown: list[Message] = []

    def show(message: Message) -> None:
        # Printed as read: an interrupted --wait keeps every line it had.
        typer.echo(describe(message))
        shown.append(message)

    try:
        found = asyncio.run(
            _read(resolved, topic, limit=limit, wait=wait, chosen=chosen, each=show)
        )
    except KeyboardInterrupt:
        typer.echo(
            f"interrupted: {len(shown)} dead letter(s) shown from {topic}.dlq, left in place"
        )
        raise typer.Exit(130) from None
    if found is None:
        typer.echo(f"no {topic}.dlq at {resolved.url}: no dead letters (nothing was created)")
        return
    which = "" if not chosen.conditions else f" matching {chosen}"
    typer.echo(f"{len(found)} dead letter(s){which} in {topic}.dlq, left in place")


@dlq_app.command("show")
def dlq_show(
    topic: TopicArgument,
    *,
    broker: BrokerOption = None,
    message_id: Annotated[
        str | None, typer.Option("--id", help="The letter with this message id.")
    ] = None,
    index: Annotated[
        int | None,
        typer.Option("--index", "-i", min=1, help="The Nth letter, as `dlq list` orders them."),
    ] = None,
    group: GroupOption = None,
    where: WhereOption = None,
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=1, help="Read at most N letters to find it.")
    ] = 1000,
    wait: WaitOption = 1.0,
    as_json: Annotated[
        bool, typer.Option("--json", help="The letter as JSON, body in base64.")
    ] = False,
) -> None:
    """Show one dead letter in full (every header, a body preview), removing nothing;
    the first one unless --id or --index says which."""
    if message_id is not None and index is not None:
        raise CLIError("--id and --index both name a letter: give one of them")
    resolved = resolve.broker_url(broker)
    chosen = _filter(where, group).with_condition("id", message_id)
    resolve.announce_read(resolved)
    wanted = index or 1
    found = asyncio.run(_read(resolved, topic, limit=limit, wait=wait, chosen=chosen))
    if found is None:
        typer.echo(f"no {topic}.dlq at {resolved.url}: no dead letters (nothing was created)")
        raise typer.Exit(1)
    if len(found) < wanted:
        which = f"with id {message_id!r}" if message_id else f"number {wanted}"
        typer.echo(
            f"no dead letter {which} in {topic}.dlq ({len(found)} matching "
            f"{chosen} among the first {limit} read)"
        )
        raise typer.Exit(1)
    letter = found[wanted - 1]
    if as_json:
        import orjson

        typer.echo(orjson.dumps(letter_json(letter), option=orjson.OPT_INDENT_2).decode())
        return
    typer.echo(f"dead letter {wanted} of {len(found)} in {topic}.dlq (left in place)")
    for line in show_lines(letter):
        typer.echo(line)


@dlq_app.command("replay")
def dlq_replay(
    topic: TopicArgument,
    *,
    broker: BrokerOption = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="Replay at most N.")] = 1000,
    wait: WaitOption = 1.0,
    where: WhereOption = None,
    group: GroupOption = None,
    dry_run: DryRunOption = False,
) -> None:
    """Publish each of TOPIC's dead letters once back to the group that failed it (same id
    and envelope), then remove it; with --where only the letters that match."""
    resolved = resolve.broker_url(broker)
    chosen = _filter(where, group)
    which = "" if not chosen.conditions else f" matching {chosen}"
    if dry_run:
        found = asyncio.run(_read(resolved, topic, limit=limit, wait=wait, chosen=chosen)) or []
        for message in found:
            typer.echo(describe(message))
        by_group = Counter(group_of(m) or "" for m in found)
        typer.echo(
            f"dry run: would replay {len(found)} dead letter(s){which} from {topic}.dlq to "
            f"{topic}{_groups(by_group)}; nothing was changed"
        )
        return

    async def work(b: Broker) -> Any:
        return await replay_dead_letters(
            b, topic, limit=limit, wait=wait, matches=chosen if chosen.conditions else None
        )

    with quiet_client_logs():
        result = asyncio.run(_open(resolved, work, connect=True))
    if result.failed_again:
        typer.echo(
            f"{result.failed_again} replayed message(s) failed again during this replay and "
            f"were dead-lettered again: they stay in {topic}.dlq"
        )
    if result.skipped:
        typer.echo(f"{result.skipped} dead letter(s) not matching {chosen} left in place")
    typer.echo(
        f"replayed {result.replayed} dead letter(s){which} from {topic}.dlq to {topic}"
        + _groups(result.by_group)
    )


def _groups(by_group: dict[str, int] | Counter[str] | Any) -> str:
    groups = ", ".join(
        f"{n} to {'every subscriber' if not g else 'group ' + g}"
        for g, n in sorted(by_group.items())
    )
    return f" ({groups})" if groups else ""


@dlq_app.command("purge")
def dlq_purge(
    topic: TopicArgument,
    *,
    broker: BrokerOption = None,
    where: WhereOption = None,
    group: GroupOption = None,
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=1, help="Remove at most N letters.")
    ] = 10_000,
    wait: WaitOption = 1.0,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    dry_run: DryRunOption = False,
) -> None:
    """Remove TOPIC's dead letters for good (those --where selects, else all); shows how many
    and asks first unless --yes. Letters arriving after that question are kept."""
    resolved = resolve.broker_url(broker)
    chosen = _filter(where, group)
    which = "" if not chosen.conditions else f" matching {chosen}"
    if not yes and not dry_run and not _interactive():
        raise CLIError(
            f"dlq purge removes dead letters for good: pass --yes to purge {topic}.dlq "
            "without a terminal to confirm on (or --dry-run to see what it would remove)"
        )
    resolve.announce_read(resolved)
    found = asyncio.run(_read(resolved, topic, limit=limit, wait=wait, chosen=chosen)) or []
    if dry_run:
        for message in found:
            typer.echo(describe(message))
        typer.echo(
            f"dry run: would remove {len(found)} dead letter(s){which} from {topic}.dlq; "
            "nothing was changed"
        )
        return
    if not found:
        typer.echo(f"no dead letters{which} in {topic}.dlq: nothing removed")
        return
    if not yes and not typer.confirm(
        f"Remove {len(found)} dead letter(s){which} from {topic}.dlq for good?", default=False
    ):
        typer.echo("nothing removed")
        raise typer.Exit(1)
    # Only letters that were counted (same ids) and still match: a new arrival stays.
    confirmed = chosen.only(m.id for m in found)

    async def work(b: Broker) -> Any:
        return await purge_dead_letters(b, topic, limit=len(found), wait=wait, matches=confirmed)

    with quiet_client_logs():
        result = asyncio.run(_open(resolved, work, connect=True))
    # Checked, not assumed: a broker that acknowledges by offset (Kafka) keeps a letter that
    # sits behind a kept one, and the DLQ must not be said to be rid of it.
    after = asyncio.run(_read(resolved, topic, limit=limit, wait=wait, chosen=confirmed)) or []
    still = min(len(after), result.removed)
    typer.echo(f"removed {result.removed - still} dead letter(s){which} from {topic}.dlq")
    if still:
        typer.echo(
            f"{still} acknowledged letter(s) still show in {topic}.dlq: this broker acknowledges "
            "up to the first kept letter (Kafka offsets, the JetStream ack floor), so a letter "
            "behind a kept one stays; it is kept, not lost"
        )
    if result.removed < len(found):
        typer.echo(
            f"{len(found) - result.removed} of those counted were not removed (gone meanwhile, "
            "or not reached): they stay if still there; run purge again"
        )


def _interactive() -> bool:
    return sys.stdin is not None and not sys.stdin.closed and sys.stdin.isatty()


def printable(text: str) -> str:
    """``text`` with control characters escaped: a hostile header cannot drive the terminal."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def describe(message: Message) -> str:
    """One line for a dead letter: id, group, reason, attempts, detail, start of the body."""
    from eventwire.core import headers as h

    headers = message.headers
    detail = headers.get(h.DLQ_DETAIL)
    if detail is None and h.DLQ_EXCEPTION_TYPE in headers:
        detail = f"{headers[h.DLQ_EXCEPTION_TYPE]}: {headers.get(h.DLQ_EXCEPTION_MESSAGE, '')}"
    preview = message.body[:BODY_PREVIEW].decode("utf-8", "replace")
    more = "..." if len(message.body) > BODY_PREVIEW else ""
    return printable(
        f"{message.id}  group={headers.get(h.DLQ_GROUP) or '-'}  "
        f"reason={headers.get(h.DLQ_REASON, '?')}  "
        f"attempts={headers.get(h.DLQ_ATTEMPTS, '?')}  detail={detail or '-'}  "
        f"body={preview!r}{more}"
    )


def show_lines(message: Message) -> list[str]:
    """A letter in full: envelope, every header (sorted), and a binary-safe body preview."""
    from datetime import UTC, datetime

    created = datetime.fromtimestamp(message.timestamp, tz=UTC).isoformat(timespec="milliseconds")
    lines = [
        f"id: {printable(message.id)}",
        f"key: {printable(message.key) if message.key is not None else '-'}",
        f"content-type: {printable(message.content_type)}",
        f"correlation-id: {printable(message.correlation_id or '-')}",
        f"causation-id: {printable(message.causation_id or '-')}",
        f"created: {created}",
        f"headers ({len(message.headers)}):",
    ]
    lines += [f"  {printable(k)}: {printable(v)}" for k, v in sorted(message.headers.items())]
    lines += body_preview(message.body)
    return lines


def body_preview(body: bytes) -> list[str]:
    """The start of ``body``: text (escaped) if it is UTF-8, else a hex dump."""
    head = body[:SHOW_PREVIEW]
    more = f", first {SHOW_PREVIEW} shown" if len(body) > SHOW_PREVIEW else ""
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if len(body) > SHOW_PREVIEW and exc.start >= len(head) - 3:
            text = head[: exc.start].decode("utf-8")  # a character cut by the preview
        else:
            return [f"body ({len(body)} bytes, binary{more}):", *_hexdump(head)]
    return [f"body ({len(body)} bytes, UTF-8 text{more}):", f"  {printable(text)}"]


def _hexdump(data: bytes) -> list[str]:
    rows = []
    for offset in range(0, len(data), 16):
        chunk = data[offset : offset + 16]
        ascii_ = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        rows.append(f"  {offset:08x}  {chunk.hex(' '):<47}  {ascii_}")
    return rows


def letter_json(message: Message) -> dict[str, object]:
    """A letter as JSON: the envelope, headers, and the whole body in base64."""
    return {
        "id": message.id,
        "key": message.key,
        "content_type": message.content_type,
        "correlation_id": message.correlation_id,
        "causation_id": message.causation_id,
        "timestamp": message.timestamp,
        "headers": dict(message.headers),
        "body_base64": base64.b64encode(message.body).decode(),
        "body_bytes": len(message.body),
    }


def register(app: typer.Typer) -> None:
    """Add the ``dlq`` group to ``app``."""
    app.add_typer(dlq_app)
