"""Testing layer: how the conformance suite reaches one broker profile (the adapter's hook)."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit, urlunsplit

from eventwire.brokers.catalog import open_broker, profile_for
from eventwire.core.capabilities import BrokerProfile
from eventwire.core.contract import Broker
from eventwire.core.url import BrokerURL

SCALE_ENV: Final = "EVENTWIRE_CONFORMANCE_SCALE"
_FALLBACK_SCALE_ENV: Final = "EVENTWIRE_TEST_SCALE"


@dataclass(frozen=True, slots=True, kw_only=True)
class Scale:
    """Sizes and deadlines of the cases: quick by default, full for the reliability job."""

    name: str
    messages: int  # messages per bulk case
    topics: int  # topics in the many-topics case
    keys: int  # distinct keys in the ordering cases
    per_key: int  # messages per key in the ordering cases
    failures: int  # nacks in the continue-after-many-errors case
    timeout: float  # seconds a case waits for what it expects before failing
    quiet: float  # seconds a case watches for something that must NOT arrive

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Scale:
        """``FULL`` when EVENTWIRE_CONFORMANCE_SCALE (or EVENTWIRE_TEST_SCALE) is "full"."""
        source = os.environ if env is None else env
        chosen = source.get(SCALE_ENV) or source.get(_FALLBACK_SCALE_ENV) or "quick"
        return FULL if chosen.strip().lower() == "full" else QUICK


QUICK: Final = Scale(
    name="quick",
    messages=200,
    topics=8,
    keys=16,
    per_key=10,
    failures=20,
    timeout=20.0,
    quiet=0.3,
)
FULL: Final = Scale(
    name="full",
    messages=5000,
    topics=50,
    keys=16,
    per_key=100,
    failures=200,
    timeout=120.0,
    quiet=1.0,
)


class Harness(ABC):
    """What a broker's test module gives the suite through its ``harness`` fixture.

    ``profile``'s capabilities decide which cases run. ``open()`` returns a NEW connected
    client each call (the suite closes every client it opens). Reconnect cases also use
    ``supports_restart``/``restart_broker()`` and ``upstream``/``url_via()``; leave the
    defaults for embedded brokers and those cases skip with a reason.
    """

    profile: BrokerProfile
    scale: Scale = Scale.from_env()
    # True when restart_broker() stops and starts a private broker (never a shared service).
    supports_restart: bool = False
    # (host, port) the broker listens on, for a TCP fault proxy; None for embedded brokers.
    upstream: tuple[str, int] | None = None

    @abstractmethod
    async def open(self) -> Broker:
        """A new, connected client of the broker under test."""

    async def restart_broker(self) -> None:
        """Stop and start the broker, keeping its data; only when ``supports_restart``."""
        raise NotImplementedError(f"{type(self).__name__} cannot restart its broker")

    def url_via(self, host: str, port: int) -> str:
        """The broker URL rewritten to reach the broker through ``host:port`` (a fault proxy)."""
        raise NotImplementedError(f"{type(self).__name__} has no network upstream")

    async def aclose(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release what the harness holds (private servers, named state); optional."""


class URLHarness(Harness):
    """A harness for a broker reachable by URL: ``URLHarness("redis://127.0.0.1:6379/0")``.

    ``upstream`` and ``url_via`` come from the URL's host and port, so the reconnect cases can
    put a fault proxy in front of any network broker without more code.
    """

    def __init__(
        self,
        url: str,
        *,
        profile: BrokerProfile | None = None,
        scale: Scale | None = None,
        upstream: tuple[str, int] | None = None,
    ) -> None:
        parsed = BrokerURL.parse(url)
        self._url = url
        self.profile = profile or profile_for(parsed)
        if scale is not None:
            self.scale = scale
        if upstream is not None:
            self.upstream = upstream
        elif parsed.host is not None and parsed.port is not None:
            self.upstream = (parsed.host, parsed.port)

    async def open(self) -> Broker:
        return await open_connected(self._url)

    def url_via(self, host: str, port: int) -> str:
        if self.upstream is None:
            raise NotImplementedError(f"{self.profile.name} URL has no host:port to proxy")
        return rewrite_host(self._url, host, port)

    def __repr__(self) -> str:
        return f"URLHarness({BrokerURL.parse(self._url)!s}, profile={self.profile.name!r})"


async def open_connected(url: str) -> Broker:
    """``open_broker(url)`` connected, closed again if connecting fails."""
    broker = open_broker(url)
    try:
        await broker.connect()
    except BaseException:
        await broker.aclose()
        raise
    return broker


def rewrite_host(url: str, host: str, port: int) -> str:
    """``url`` with its host and port replaced, credentials, path and query kept."""
    parts = urlsplit(url)
    userinfo, at, _ = parts.netloc.rpartition("@")
    netloc = f"{userinfo}{at}{host}:{port}"
    return urlunsplit(parts._replace(netloc=netloc))
