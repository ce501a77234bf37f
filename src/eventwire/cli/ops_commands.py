"""CLI layer: run, publish and the other commands that operate a live service."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated

import typer

from eventwire.cli import resolve
from eventwire.cli.errors import CLIError
from eventwire.core.errors import ConfigurationError
from eventwire.observability.logs import LogFormat, configure_logging
from eventwire.runtime.loops import LoopName, loop_factory

BROKER_HELP = (
    f"Broker URL; default ${resolve.BROKER_URL_ENV}, else {resolve.DEFAULT_BROKER_URL} "
    "(embedded, no server needed)."
)
BrokerOption = Annotated[str | None, typer.Option("--broker", "-b", help=BROKER_HELP)]
_ONLY_EVENTWIRE = logging.Filter("eventwire")

if TYPE_CHECKING:  # typing only: the runtime loads inside the command
    from eventwire.runtime.app import App


def _configure_logging() -> None:
    # Only when nobody configured logging (an app module may do it on import).
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )


@contextmanager
def _only_eventwire_logs() -> Iterator[None]:
    # While a command reports a failure in one line of its own, a client library's log of
    # the same failure (aiormq logs connection errors itself) would only repeat it.
    handlers = list(logging.getLogger().handlers)
    for handler in handlers:
        handler.addFilter(_ONLY_EVENTWIRE)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(_ONLY_EVENTWIRE)


def _version(value: bool) -> None:
    if value:
        from eventwire import __version__

        typer.echo(f"eventwire {__version__}")
        raise typer.Exit(0)


def root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", help="Print the version and exit.", callback=_version, is_eager=True
        ),
    ] = False,
) -> None:
    """Production-ready messaging for event-driven services."""


def run(
    target: Annotated[
        str,
        typer.Argument(
            metavar="MODULE:APP",
            help="Where the App is: a module (examples.orders.service:app) or file (svc.py:app).",
        ),
    ],
    *,
    broker: BrokerOption = None,
    concurrency: Annotated[
        int | None,
        typer.Option(
            "--concurrency", "-c", min=1, help="Handlers in flight per subscriber (overrides code)."
        ),
    ] = None,
    http_port: Annotated[
        int | None,
        typer.Option(
            "--http-port",
            min=0,
            max=65535,
            envvar="EVENTWIRE_HTTP_PORT",
            help="Serve /metrics, /healthz and /readyz on this port (0: any free port).",
        ),
    ] = None,
    http_host: Annotated[
        str,
        typer.Option(
            "--http-host",
            envvar="EVENTWIRE_HTTP_HOST",
            help="Address for --http-port; 0.0.0.0 to let containers scrape it.",
        ),
    ] = "127.0.0.1",
    wait_for_broker: Annotated[
        float,
        typer.Option(
            "--wait-for-broker",
            min=0.0,
            envvar="EVENTWIRE_WAIT_FOR_BROKER",
            help="Seconds to keep trying a broker that is not up yet (0: try once).",
        ),
    ] = 60.0,
    loop: Annotated[
        LoopName,
        typer.Option(
            "--loop",
            envvar="EVENTWIRE_LOOP",
            help="Event loop: asyncio (the default) or uvloop (the uvloop extra).",
        ),
    ] = "asyncio",
    log_format: Annotated[
        LogFormat,
        typer.Option(
            "--log-format",
            envvar="EVENTWIRE_LOG_FORMAT",
            help="Log lines as text, or as one JSON object each (ids as fields).",
        ),
    ] = "text",
) -> None:
    """Run an App's subscribers until SIGTERM or Ctrl-C, then shut down gracefully."""
    configure_logging(log_format)
    resolved = resolve.broker_url(broker)
    _check_loop(loop)
    if http_port:
        _check_bindable(http_host, http_port)
    app = resolve.load_app(target)
    resolve.announce(resolved)
    with _only_eventwire_logs():
        # A worker started beside its broker (compose, systemd, Kubernetes) waits for it,
        # one log line per try, and gives up in one line after --wait-for-broker seconds.
        from eventwire.cli.broker_wait import wait_until_reachable

        asyncio.run(wait_until_reachable(resolved, wait_for_broker))
    servable: App = app  # type: ignore[assignment]  # load_app checked for .serve
    code = servable.serve(
        broker_url=resolved.url.secret(),
        concurrency=concurrency,
        install_signal_handlers=True,
        http_port=http_port,
        http_host=http_host,
        loop=loop,
    )
    raise typer.Exit(code)


def _check_loop(loop: str) -> None:
    # uvloop asked for and not installed: one line before the app is imported or connected.
    try:
        loop_factory(loop)
    except ConfigurationError as exc:
        raise CLIError(f"--loop {loop}: {exc}") from None


def _check_bindable(host: str, port: int) -> None:
    # A taken port is a usage problem: say so in one line before connecting anything. The
    # same options as asyncio's server (SO_REUSEADDR), so a TIME_WAIT port is not "taken".
    from eventwire.observability.http import bind_problem

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = infos[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except socket.gaierror as exc:
        raise CLIError(f"--http-host {host!r} is not a usable address ({exc.strerror})") from None
    except OSError as exc:
        raise CLIError(bind_problem(host, port, exc)) from None


def publish(
    topic: Annotated[str, typer.Argument(help="Topic to publish to, e.g. orders.placed.")],
    data: Annotated[
        str,
        typer.Option(
            "--data", "-d", help="JSON body, or @path/to/file.json to read it from a file."
        ),
    ],
    key: Annotated[str | None, typer.Option("--key", "-k", help="Partition/ordering key.")] = None,
    header: Annotated[
        list[str] | None,
        typer.Option("--header", "-H", help="A header NAME=VALUE; repeat for more."),
    ] = None,
    broker: BrokerOption = None,
) -> None:
    """Publish one JSON message and print its id once the broker has confirmed it."""
    _configure_logging()
    body = resolve.json_body(data)
    headers = resolve.headers(header or [])
    resolved = resolve.broker_url(broker)
    resolve.announce(resolved)
    with _only_eventwire_logs():
        message_id = asyncio.run(_publish(resolved, topic, body, key, headers))
    typer.echo(f"published {message_id} to {topic} on {resolved.url}")


async def _publish(
    resolved: resolve.ResolvedBroker,
    topic: str,
    body: bytes,
    key: str | None,
    headers: dict[str, str],
) -> str:
    from eventwire.brokers.catalog import open_broker
    from eventwire.core.message import Message

    message = Message(body=body, key=key, headers=headers, content_type="application/json")
    try:
        async with open_broker(resolved.url) as broker:
            await broker.publish(topic, message)
    except OSError as exc:
        raise _unreachable(resolved, exc) from None
    return message.id


def _unreachable(resolved: resolve.ResolvedBroker, exc: OSError) -> CLIError:
    # A client library leaking a socket error: still one line, still redacted.
    return CLIError(
        f"cannot reach the broker at {resolved.url} ({exc.strerror or exc}): "
        "check the URL and that the broker is running"
    )


def register(app: typer.Typer) -> None:
    """Add this module's commands (and the root ``--version`` option) to ``app``."""
    app.callback()(root)
    app.command("run")(run)
    app.command("publish")(publish)
    from eventwire.cli import dlq_commands, inspect_commands  # commands on a live broker

    inspect_commands.register(app)
    dlq_commands.register(app)
