"""Testing layer: a private nats-server with JetStream on a free port, killable and restartable."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import tempfile
from pathlib import Path
from typing import Self

from eventwire.core.errors import ConfigurationError
from eventwire.core.lifetime import ClosesOnExit
from eventwire.testing.helpers import free_port

__all__ = ["NatsServer", "free_port"]  # free_port (from helpers) stays importable here


class NatsServer(ClosesOnExit):
    """``async with NatsServer() as server:`` runs ``nats-server -js`` for a test.

    The JetStream store lives in its own directory (removed afterwards unless ``store_dir`` was
    given), so streams, consumers and acknowledged messages survive ``kill()`` + ``start()``
    (or ``restart()``), which keep the same port. Never touches the shared server on 4222.
    """

    def __init__(
        self,
        *,
        binary: str = "nats-server",
        port: int | None = None,
        store_dir: str | Path | None = None,
        user: str | None = None,
        password: str | None = None,
        ready_timeout: float = 10.0,
        jetstream: bool = True,
    ) -> None:
        found = shutil.which(binary)
        if found is None:
            raise ConfigurationError(f"{binary!r} is not on PATH: install nats-server")
        self._binary = found
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.monitor_port = free_port()
        self._own_store = store_dir is None
        self.store_dir = Path(store_dir or tempfile.mkdtemp(prefix="eventwire-nats-"))
        self._user = user
        self._password = password
        self._ready_timeout = ready_timeout
        # Core-only tests run without JetStream (they need none). The "fresh `-js` server
        # routes no core messages" seen here (3 of 80 fresh servers) was not the server: it
        # was nats-py's flush() PING overtaking the queued SUB, a race a slower-starting -js
        # server widens; with brokers.nats._connection.subscribed() it is 0 of 80.
        self._jetstream = jetstream
        self._process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        """``nats://[user:pass@]127.0.0.1:<port>``; use ``scheme`` for ``nats+core``."""
        return self.url_for("nats")

    def url_for(self, scheme: str) -> str:
        auth = f"{self._user}:{self._password}@" if self._user else ""
        return f"{scheme}://{auth}{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.returncode is None

    async def start(self) -> None:
        """Start the server (again) and return once it accepts clients."""
        if self.running:
            return
        args = [
            "-a",
            self.host,
            "-p",
            str(self.port),
            *(["-js", "-sd", str(self.store_dir)] if self._jetstream else []),
            "--no_advertise",
            "-m",
            str(self.monitor_port),
        ]
        if self._user:
            args += ["--user", self._user, "--pass", self._password or ""]
        self._process = await asyncio.create_subprocess_exec(
            self._binary,
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        await self._wait_ready()

    async def _wait_ready(self) -> None:
        # /healthz answers 200 only once the server, JetStream included, is ready (the same
        # check a compose file uses); an open client port comes earlier than that.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._ready_timeout
        while loop.time() < deadline:
            if not self.running:
                raise RuntimeError(f"nats-server on port {self.port} exited at start")
            with contextlib.suppress(OSError, TimeoutError, IndexError):
                if await asyncio.wait_for(self._healthy(), 1.0):
                    return
            await asyncio.sleep(0.05)
        await self.kill()
        raise TimeoutError(f"nats-server on port {self.port} not ready in {self._ready_timeout}s")

    async def _healthy(self) -> bool:
        reader, writer = await asyncio.open_connection(self.host, self.monitor_port)
        try:
            writer.write(b"GET /healthz HTTP/1.0\r\nHost: localhost\r\n\r\n")
            await writer.drain()
            status = await reader.readline()
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        return status.split(b" ")[1:2] == [b"200"]

    async def kill(self) -> None:
        """SIGKILL: no flush, no goodbye, like a crashed host (the store dir stays)."""
        await self._stop(signal.SIGKILL)

    async def stop(self) -> None:
        """SIGTERM and wait: a clean shutdown."""
        await self._stop(signal.SIGTERM)

    async def restart(self) -> None:
        await self.kill()
        await self.start()

    async def _stop(self, sig: signal.Signals) -> None:
        process, self._process = self._process, None
        if process is None or process.returncode is not None:
            return
        process.send_signal(sig)
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            process.kill()
            await process.wait()

    async def aclose(self) -> None:
        await self.stop()
        if self._own_store:
            shutil.rmtree(self.store_dir, ignore_errors=True)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<NatsServer {self.host}:{self.port} {state}>"
