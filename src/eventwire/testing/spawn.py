"""Testing layer: private broker processes on free loopback ports (redis-server), for fault tests.

Restart and kill tests must never touch the machine's shared services; these helpers start a
throw-away server in a temporary directory, wait until it answers, and kill it afterwards::

    async with spawn_redis(appendonly=True) as server:
        url = server.url          # redis://127.0.0.1:<port>/0
        await server.restart()    # SIGKILL + start on the same port, data kept by the AOF
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from eventwire.brokers.catalog import profile_for
from eventwire.core.contract import Broker
from eventwire.core.errors import ConfigurationError
from eventwire.core.url import BrokerURL
from eventwire.testing.conformance.harness import Harness, open_connected, rewrite_host
from eventwire.testing.helpers import LOOPBACK, free_port

# LOOPBACK and free_port (written once in helpers) stay importable from here, where the
# spawn and fault-proxy tests have always found them.
__all__ = [
    "LOOPBACK",
    "ManagedProcess",
    "ProcessHarness",
    "RedisServer",
    "free_port",
    "scrubbed_keys",
    "spawn_redis",
    "wait_for_port",
]


async def wait_for_port(host: str, port: int, timeout: float, probe: bytes = b"") -> bytes:  # noqa: ASYNC109
    """Until ``host:port`` accepts a connection (and answers ``probe``); the reply is returned."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 1.0)
        except (OSError, TimeoutError) as exc:
            last = exc
            await asyncio.sleep(0.05)
            continue
        try:
            if not probe:
                return b""
            writer.write(probe)
            await writer.drain()
            return await asyncio.wait_for(reader.readline(), 1.0)
        except (OSError, TimeoutError) as exc:
            last = exc
            await asyncio.sleep(0.05)
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
    raise TimeoutError(f"nothing answered on {host}:{port} within {timeout} s ({last!r})")


@dataclass(kw_only=True)
class ManagedProcess:
    """A server process we started; ``start``/``stop``/``kill``/``restart`` keep its port."""

    argv: Sequence[str]
    host: str
    port: int
    workdir: Path
    probe: bytes = b""
    ready_timeout: float = 15.0
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    async def start(self) -> None:
        if self.running:
            return
        log = (self.workdir / "server.log").open("ab")
        try:
            # Popen returns at once (it does not wait for the child); it keeps kill/wait free of
            # asyncio child watchers, which differ between loops.
            self.process = subprocess.Popen(  # noqa: S603, ASYNC220 - argv is ours, no shell
                list(self.argv),
                cwd=self.workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        finally:
            log.close()
        try:
            await wait_for_port(self.host, self.port, self.ready_timeout, self.probe)
        except TimeoutError:
            await self.kill()
            tail = (self.workdir / "server.log").read_text(errors="replace")[-2000:]
            raise TimeoutError(f"{self.argv[0]} did not start on {self.port}:\n{tail}") from None

    async def _end(self, sig: signal.Signals) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(sig)
            try:
                await asyncio.to_thread(process.wait, 10)
            except subprocess.TimeoutExpired:
                process.kill()
                await asyncio.to_thread(process.wait, 10)

    async def stop(self) -> None:
        """Graceful stop (SIGTERM)."""
        await self._end(signal.SIGTERM)

    async def kill(self) -> None:
        """Crash it (SIGKILL): whatever was not on disk is gone."""
        await self._end(signal.SIGKILL)

    async def restart(self, *, graceful: bool = False) -> None:
        await (self.stop() if graceful else self.kill())
        await self.start()


@dataclass(kw_only=True)
class RedisServer(ManagedProcess):
    """A private redis-server; ``url`` has no password unless one was asked for."""

    password: str | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}{self.host}:{self.port}/0"


@contextlib.asynccontextmanager
async def spawn_redis(
    *,
    appendonly: bool = False,
    password: str | None = None,
    binary: str = "redis-server",
    extra_args: Sequence[str] = (),
) -> AsyncIterator[RedisServer]:
    """A private redis-server on a free loopback port, killed and deleted on exit.

    ``appendonly=True`` turns on the AOF with ``appendfsync always``, so every write Redis
    acknowledged survives ``restart()`` (a SIGKILL); otherwise nothing is persisted
    (``--save ""``), which is what a restart-loses-everything test wants.
    """
    path = shutil.which(binary)
    if path is None:
        raise ConfigurationError(f"{binary} is not installed: install redis-server to spawn one")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="eventwire-redis-") as tmp:
        argv = [
            path,
            "--port",
            str(port),
            "--bind",
            LOOPBACK,
            "--save",
            "",
            "--dir",
            tmp,
            "--daemonize",
            "no",
            "--protected-mode",
            "no",
            "--appendonly",
            "yes" if appendonly else "no",
            "--appendfsync",
            "always",
        ]
        if password:
            argv += ["--requirepass", password]
        server = RedisServer(
            argv=[*argv, *extra_args],
            host=LOOPBACK,
            port=port,
            workdir=Path(tmp),
            probe=b"PING\r\n",
            password=password,
        )
        await server.start()
        try:
            yield server
        finally:
            await server.kill()


class ProcessHarness(Harness):
    """A conformance harness over a private server we started: restarts and fault proxies OK.

    ``url`` must point at ``server``'s host and port; ``restart_broker`` SIGKILLs and starts
    it again on the same port (data survives only what the server persisted).
    """

    def __init__(self, server: ManagedProcess, url: str) -> None:
        self.profile = profile_for(BrokerURL.parse(url))
        self.server = server
        self.supports_restart = True
        self.upstream = (server.host, server.port)
        self._url = url

    async def open(self) -> Broker:
        return await open_connected(self._url)

    async def restart_broker(self) -> None:
        await self.server.restart()

    def url_via(self, host: str, port: int) -> str:
        return rewrite_host(self._url, host, port)


@contextlib.asynccontextmanager
async def scrubbed_keys(url: str, pattern: str) -> AsyncIterator[None]:
    """Delete, afterwards, the keys matching ``pattern`` that appeared meanwhile on the Redis
    at ``url``: tests on a shared server leave no streams, groups or schedules behind."""
    import redis.asyncio as aioredis  # only tests on Redis need the client

    client = aioredis.Redis.from_url(url)
    try:
        before = {key async for key in client.scan_iter(match=pattern, count=1000)}
        yield
    finally:
        with contextlib.suppress(OSError, aioredis.RedisError):
            new = [k async for k in client.scan_iter(match=pattern, count=1000) if k not in before]
            for start in range(0, len(new), 500):
                await client.delete(*new[start : start + 500])
        await client.aclose()
