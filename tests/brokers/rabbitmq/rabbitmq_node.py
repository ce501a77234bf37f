"""Tests: a private, throwaway RabbitMQ node on free ports, so restarts never touch the shared one.

It runs the machine's ``rabbitmq-server`` with its own node name, data directory, config and
(empty) plugin list; the shared node and its files are never used. ``restart()`` kills the
node's process group with SIGKILL (a crash, not a clean stop) and starts it on the same data.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import tempfile
from pathlib import Path

from eventwire.testing.helpers import free_port

SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"


def available() -> bool:
    return Path(SERVER).exists()


class PrivateRabbitMQ:
    """``async with PrivateRabbitMQ() as node: node.url`` - a fresh node, deleted afterwards."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dist_port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="ew-rmq-"))
        self._proc: asyncio.subprocess.Process | None = None
        (self.dir / "enabled_plugins").write_text("[].\n")
        (self.dir / "rabbitmq.conf").write_text(f"listeners.tcp.default = 127.0.0.1:{self.port}\n")

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    async def __aenter__(self) -> PrivateRabbitMQ:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    async def start(self, timeout: float = 60.0) -> None:
        env = {
            **os.environ,
            "HOME": str(self.dir),
            "RABBITMQ_NODENAME": f"ewtest{self.port}@localhost",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.dir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.dir / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.dir / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(self.dir / "rabbitmq"),
            "RABBITMQ_PID_FILE": str(self.dir / "pid"),
        }
        log = (self.dir / "server.out").open("ab")
        self._proc = await asyncio.create_subprocess_exec(
            SERVER, env=env, stdout=log, stderr=log, start_new_session=True
        )
        log.close()
        async with asyncio.timeout(timeout):
            while not await self._accepts_amqp():
                if self._proc.returncode is not None:
                    raise RuntimeError(f"private RabbitMQ exited; see {self.dir}/server.out")
                await asyncio.sleep(0.2)

    async def _accepts_amqp(self) -> bool:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        except OSError:
            return False
        try:
            writer.write(b"AMQP\x00\x00\x09\x01")
            return bool(await asyncio.wait_for(reader.read(1), 2.0))  # Connection.Start
        except (OSError, TimeoutError):
            return False
        finally:
            writer.close()

    async def ctl(self, *args: str) -> None:
        """Run rabbitmqctl against THIS node only (its own name and cookie)."""
        env = {**os.environ, "HOME": str(self.dir)}
        proc = await asyncio.create_subprocess_exec(
            "/usr/lib/rabbitmq/bin/rabbitmqctl", "-n", f"ewtest{self.port}@localhost", *args,
            env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, err = await proc.communicate()
        if proc.returncode:
            raise RuntimeError(f"rabbitmqctl {args[0]} failed: {err.decode(errors='replace')}")

    async def kill(self) -> None:
        """SIGKILL the node's process group (only processes this object started)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
        # The beam process may outlive the wrapper script by a moment; wait for the port.
        async with asyncio.timeout(15):
            while await self._accepts_amqp():
                await asyncio.sleep(0.1)

    async def restart(self) -> None:
        await self.kill()
        await self.start()
