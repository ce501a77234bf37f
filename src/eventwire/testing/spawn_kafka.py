"""Testing layer: a private single-node Apache Kafka (KRaft) on free ports, for restart tests.

Built from the jars ``scripts/services.sh up`` caches from Maven Central (no download here)::

    async with spawn_kafka() as server:
        url = server.url              # kafka://127.0.0.1:<port>
        await server.restart()        # SIGKILL + start on the same ports; the log dirs are kept

To put the TCP fault proxy between clients and this broker, start the proxy first and let the
broker advertise the proxy's port, so that the metadata it returns routes every client
connection back through the proxy (Kafka clients connect to the advertised address, not to the
bootstrap one)::

    port = free_port()
    async with FaultProxy(LOOPBACK, port) as proxy, spawn_kafka(
        port=port, advertised_port=proxy.port
    ) as server:
        ...  # clients use kafka://127.0.0.1:{proxy.port}

Never touches the shared broker on 9092.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from eventwire.core.errors import ConfigurationError
from eventwire.testing.helpers import LOOPBACK, free_port
from eventwire.testing.kafka_probe import is_ready
from eventwire.testing.spawn import ManagedProcess

LIBS_ENV = "EVENTWIRE_KAFKA_LIBS"
_CACHE = Path("~/.cache/eventwire/services").expanduser()


def kafka_libs() -> Path:
    """The folder of Kafka jars: ``$EVENTWIRE_KAFKA_LIBS``, else the newest cached version."""
    configured = os.environ.get(LIBS_ENV)
    if configured:
        path = Path(configured)
    else:
        cached = sorted(_CACHE.glob("kafka-*/libs"), key=lambda p: _version_key(p.parent.name))
        if not cached:
            raise ConfigurationError(
                f"no Kafka jars in {_CACHE}: run `bash scripts/services.sh up` once "
                f"(or set {LIBS_ENV} to a folder of Kafka jars)"
            )
        path = cached[-1]
    if not any(path.glob("kafka_2.13-*.jar")):
        raise ConfigurationError(f"{path} holds no kafka_2.13 jar: set {LIBS_ENV} to Kafka's libs")
    return path


def _version_key(name: str) -> tuple[int, ...]:
    digits = name.removeprefix("kafka-").split(".")
    return tuple(int(d) if d.isdigit() else 0 for d in digits)


def server_properties(*, port: int, controller_port: int, advertised_port: int, logs: Path) -> str:
    """A single combined broker+controller; internal topics sized for one node."""
    return "\n".join(
        [
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@{LOOPBACK}:{controller_port}",
            f"listeners=PLAINTEXT://{LOOPBACK}:{port},CONTROLLER://{LOOPBACK}:{controller_port}",
            f"advertised.listeners=PLAINTEXT://{LOOPBACK}:{advertised_port}",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=PLAINTEXT",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            f"log.dirs={logs}",
            "offsets.topic.replication.factor=1",
            "offsets.topic.num.partitions=4",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "transaction.state.log.num.partitions=4",
            "share.coordinator.state.topic.replication.factor=1",
            "share.coordinator.state.topic.min.isr=1",
            "group.initial.rebalance.delay.ms=0",
            "auto.create.topics.enable=false",
            "num.network.threads=2",
            "num.io.threads=2",
            # Every acknowledged write is on disk before the ack, so a SIGKILL loses nothing
            # that acks=all confirmed (a single node has no replica to recover from).
            "log.flush.interval.messages=1",
            "",
        ]
    )


@dataclass(kw_only=True)
class KafkaServer(ManagedProcess):
    """A private Kafka; ready means it answers a metadata request naming itself."""

    advertised_port: int

    @property
    def url(self) -> str:
        return f"kafka://{self.host}:{self.advertised_port}"

    @property
    def bootstrap(self) -> str:
        """``host:port`` as Kafka clients take it (through the proxy when one is advertised)."""
        return f"{self.host}:{self.advertised_port}"

    async def start(self) -> None:
        if self.running:
            return
        await super().start()  # the listener accepts connections
        deadline = time.monotonic() + self.ready_timeout
        while not await asyncio.to_thread(is_ready, self.host, self.port, 1.0):
            if not self.running or time.monotonic() > deadline:
                await self.kill()
                tail = (self.workdir / "server.log").read_text(errors="replace")[-3000:]
                raise TimeoutError(f"Kafka did not become ready on {self.port}:\n{tail}")
            await asyncio.sleep(0.2)


def _java() -> str:
    java = shutil.which("java")
    if java is None:
        raise ConfigurationError("java is not on PATH: Kafka needs Java 17 or newer")
    return java


@contextlib.asynccontextmanager
async def spawn_kafka(
    *,
    port: int | None = None,
    advertised_port: int | None = None,
    heap: str = "512m",
    ready_timeout: float = 90.0,
) -> AsyncIterator[KafkaServer]:
    """A private Kafka on free loopback ports, killed and its data deleted on exit."""
    libs = kafka_libs()
    java = _java()
    port = port or free_port()
    controller_port = free_port()
    with tempfile.TemporaryDirectory(prefix="eventwire-kafka-") as tmp:
        workdir = Path(tmp)
        config = workdir / "server.properties"
        config.write_text(
            server_properties(
                port=port,
                controller_port=controller_port,
                advertised_port=advertised_port or port,
                logs=workdir / "logs",
            )
        )
        jvm = [
            java,
            f"-Xmx{heap}",
            "-Xms128m",
            "-XX:+UseSerialGC",  # two cores: no parallel GC threads fighting the tests
            "-XX:TieredStopAtLevel=1",  # starts in seconds; a test broker needs no peak speed
            "-Djava.awt.headless=true",
            "-cp",
            f"{libs}/*",
        ]
        cluster_id = new_cluster_id()
        formatted = await asyncio.to_thread(
            subprocess.run,
            [*jvm, "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(config)],
            capture_output=True,
            check=False,
        )
        if formatted.returncode != 0:
            output = (formatted.stdout + formatted.stderr).decode(errors="replace")[-2000:]
            raise ConfigurationError(f"kafka-storage format failed:\n{output}")
        server = KafkaServer(
            argv=[*jvm, "kafka.Kafka", str(config)],
            host=LOOPBACK,
            port=port,
            advertised_port=advertised_port or port,
            workdir=workdir,
            ready_timeout=ready_timeout,
        )
        await server.start()
        try:
            yield server
        finally:
            await server.kill()


def new_cluster_id() -> str:
    """A random KRaft cluster id: URL-safe base64 of 16 bytes, never starting with ``-``.

    One id in 64 would start with ``-``, and the storage tool's argument parser then reads it
    as an option ("argument --cluster-id: expected one argument"); Kafka's own
    ``Uuid.randomUuid`` redraws such ids for the same reason.
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id
