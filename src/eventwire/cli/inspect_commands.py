"""CLI layer: ``health``, a command that looks at a live broker or worker (``dlq`` is in
``dlq_commands``); and the quiet logging the commands that print one-line answers share.

Broker code is imported inside the commands, so ``eventwire --help`` loads no adapter.
"""

from __future__ import annotations

import asyncio
import logging
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer

from eventwire.cli import resolve
from eventwire.cli.errors import CLIError, scrub

BROKER_HELP = (
    f"Broker URL; default ${resolve.BROKER_URL_ENV}, else {resolve.DEFAULT_BROKER_URL} "
    "(embedded, no server needed)."
)
BrokerOption = Annotated[str | None, typer.Option("--broker", "-b", help=BROKER_HELP)]
TimeoutOption = Annotated[
    float, typer.Option("--timeout", min=0.1, help="Seconds before giving up on the broker.")
]


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
    """Add ``health`` to ``app``."""
    app.command("health")(health)
