"""Observability layer: the worker's tiny HTTP server for /metrics, /healthz and /readyz,
and the same endpoints as an ASGI application (``asgi_endpoints``) to mount in a web service.

Stdlib asyncio only: a GET per connection (``Connection: close``), answered from callables
the runtime passes in, so this module knows nothing of ``App``. ``/healthz`` is 200 while the
process and its broker connection are healthy, ``/readyz`` 200 while every subscription
exists, the broker answers its health checks and no circuit breaker is open; both are 503
otherwise, with a one-line reason as the body. ``/metrics`` answers in OpenMetrics when the
request's ``Accept`` asks for it (as Prometheus does), else in the classic text format.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any, Final, Self, TypeAlias

from eventwire.core.contract import Health
from eventwire.core.errors import ConfigurationError
from eventwire.core.lifetime import ClosesOnExit
from eventwire.observability.logs import get_logger

DEFAULT_HOST: Final = "127.0.0.1"
ENV_HTTP_PORT: Final = "EVENTWIRE_HTTP_PORT"
ENV_HTTP_HOST: Final = "EVENTWIRE_HTTP_HOST"

_READ_TIMEOUT = 5.0  # seconds a client gets to send its request head
_HEALTH_TIMEOUT = 5.0  # a broker that does not answer a health check in time is unhealthy
_MAX_HEAD = 8192
_TEXT: Final = "text/plain; charset=utf-8"
_REASONS: Final = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    503: "Service Unavailable",
}

_log = get_logger("observability")


@dataclass(frozen=True, slots=True, kw_only=True)
class Probes:
    """Where the endpoints get their answers from."""

    metrics: Callable[[str], tuple[bytes, str]]  # exposition for an Accept header, its type
    health: Callable[[], Awaitable[Health]]
    ready: Callable[[], bool]
    # Why the app is not ready, for the 503 body (None: the generic reason).
    not_ready_reason: Callable[[], str] | None = None


class OpsServer(ClosesOnExit):
    """``async with OpsServer(probes, port=9000):`` serves the endpoints until the block ends.

    ``port=0`` picks a free port (read it back from ``port``). A port already in use raises
    a ``ConfigurationError`` that says so in one line.
    """

    def __init__(self, probes: Probes, *, port: int, host: str = DEFAULT_HOST) -> None:
        self._probes = probes
        self._host = host
        self._requested_port = port
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        """The port bound (useful with ``port=0``)."""
        if self._server is None or not self._server.sockets:
            return self._requested_port
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        try:
            self._server = await asyncio.start_server(
                self._handle, self._host, self._requested_port
            )
        except OSError as exc:
            raise ConfigurationError(bind_problem(self._host, self._requested_port, exc)) from exc
        _log.info("serving /metrics, /healthz and /readyz on %s", self.url)

    async def aclose(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            # Idle keep-alive never happens (Connection: close), so this returns promptly.
            await server.wait_closed()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                async with asyncio.timeout(_READ_TIMEOUT):
                    head = await reader.readuntil(b"\r\n\r\n")
            except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                return  # a client that sends no request gets no answer
            status, body, content_type, head_only = await _respond(self._probes, head)
            writer.write(_response(status, body, content_type, head_only=head_only))
            await writer.drain()
        except ConnectionError:
            pass  # the client went away; nothing to answer
        except Exception:  # noqa: BLE001 - a bad request must never stop the server
            _log.exception("ops endpoint failed")
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


async def _respond(probes: Probes, head: bytes) -> tuple[int, bytes, str, bool]:
    lines = head[:_MAX_HEAD].decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        return 400, b"bad request\n", _TEXT, False
    accept = ""
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "accept":
            accept = value.strip()
    method, target = parts[0], parts[1].split("?", 1)[0]
    status, body, content_type = await answer(probes, method, target, accept)
    return status, body, content_type, method == "HEAD"


async def answer(probes: Probes, method: str, path: str, accept: str) -> tuple[int, bytes, str]:
    """Status, body and content type of ``method path`` (both servers answer with this)."""
    if method not in ("GET", "HEAD"):
        return 405, b"only GET and HEAD\n", _TEXT
    if path == "/metrics":
        return (200, *probes.metrics(accept))
    if path == "/healthz":
        health = await _health(probes)
        text = f"{'ok' if health.ok else 'unhealthy'}: {health.detail}\n".encode()
        return (200 if health.ok else 503), text, _TEXT
    if path == "/readyz":
        if probes.ready():
            return 200, b"ready\n", _TEXT
        why = probes.not_ready_reason() if probes.not_ready_reason else None
        return 503, f"not ready: {why or 'subscriptions not established'}\n".encode(), _TEXT
    return 404, b"not found: try /metrics, /healthz or /readyz\n", _TEXT


async def _health(probes: Probes) -> Health:
    try:
        async with asyncio.timeout(_HEALTH_TIMEOUT):
            return await probes.health()
    except TimeoutError:
        return Health(ok=False, detail=f"broker health check took over {_HEALTH_TIMEOUT} s")
    except Exception as exc:  # noqa: BLE001 - any failure to answer is "unhealthy"
        return Health(ok=False, detail=f"{type(exc).__name__}: {exc}")


Scope: TypeAlias = MutableMapping[str, Any]
Receive: TypeAlias = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send: TypeAlias = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp: TypeAlias = Callable[[Scope, Receive, Send], Awaitable[None]]


def asgi_endpoints(probes: Probes) -> ASGIApp:
    """``/metrics``, ``/healthz`` and ``/readyz`` as a plain ASGI 3 application, to mount in
    FastAPI or Starlette (``api.mount("/ops", app.asgi())``): paths are read relative to
    the mount point (``root_path``). Lifespan events are accepted and do nothing: the app's
    own lifecycle stays with whoever runs it."""

    async def endpoints(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                event = await receive()
                kind = event["type"].removeprefix("lifespan.")
                if kind in ("startup", "shutdown"):
                    await send({"type": f"lifespan.{kind}.complete"})
                if kind == "shutdown":
                    return
        if scope["type"] != "http":
            return  # websockets: not served here
        path = scope.get("path", "/")
        root = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :] or "/"
        accept = ""
        for name, value in scope.get("headers", ()):
            if name.lower() == b"accept":
                accept = value.decode("latin-1")
        method = scope.get("method", "GET")
        status, body, content_type = await answer(probes, method, path, accept)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", content_type.encode("latin-1")),
                    (b"content-length", str(len(body)).encode()),
                    (b"cache-control", b"no-store"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else body})

    return endpoints


def _response(status: int, body: bytes, content_type: str, *, head_only: bool) -> bytes:
    head = (
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Cache-Control: no-store\r\n"
        "Connection: close\r\n\r\n"
    ).encode("latin-1")
    return head if head_only else head + body


def bind_problem(host: str, port: int, exc: OSError) -> str:
    """One line saying why ``host:port`` cannot be served, and what to do about it."""
    if exc.errno == errno.EADDRINUSE:
        return (
            f"cannot serve HTTP on {host}:{port}: the port is already in use; "
            "stop what uses it or choose another --http-port"
        )
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"cannot serve HTTP on {host}:{port}: permission denied; use a port above 1023"
    return (
        f"cannot serve HTTP on {host}:{port} ({exc.strerror or exc}): "
        "check --http-host and --http-port"
    )
