"""Broker layer: sqlite URL -> file path and tuning options, checked before the file is opened.

Path mapping follows SQLAlchemy: ``sqlite:///broker.db`` is ``broker.db`` relative to the
current directory, ``sqlite:////var/lib/app/broker.db`` (four slashes) is absolute.

Query options (all optional):

* ``lease=SECONDS`` (30): how long a claimed delivery stays with its consumer without a
  heartbeat; a consumer killed with SIGKILL loses its claims after this long.
* ``retention=SECONDS`` (604800, 7 days): messages every group of the topic has settled are
  deleted once older than this; unsettled messages are never deleted.
* ``max_messages=N`` (unset): settled messages beyond the newest N of a topic are deleted
  even before ``retention``.
* ``busy_timeout=MS`` (5000): how long a write waits for another process's transaction.
* ``synchronous=normal|full`` (normal): ``normal`` survives a process crash, ``full`` also
  an operating-system crash or power loss, at a cost in publish throughput.
* ``poll=SECONDS`` (0.1): the longest pause between polls of an idle consumer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

from eventwire.core.errors import ConfigurationError
from eventwire.core.url import BrokerURL

_EXAMPLE = "use sqlite:///relative.db or sqlite:////absolute/path.db"


@dataclass(frozen=True, slots=True, kw_only=True)
class SQLiteSettings:
    """Where the broker file lives and how the adapter uses it."""

    path: Path
    lease: float = 30.0
    retention: float = 7 * 24 * 3600.0
    max_messages: int | None = None
    busy_timeout_ms: int = 5000
    synchronous: str = "NORMAL"
    max_poll: float = 0.1
    min_poll: float = 0.005
    sweep_interval: float = 1.0  # how often one broker object runs retention at most

    @classmethod
    def from_url(cls, url: BrokerURL) -> SQLiteSettings:
        """Settings for ``url``; ``ConfigurationError`` with one clear line if it is wrong."""
        if url.host:
            raise ConfigurationError(
                f"sqlite URL {url} names a host ({url.host!r}): {_EXAMPLE} (three or four slashes)"
            )
        raw = unquote(url.path)
        if not raw or raw == "/":
            raise ConfigurationError(f"sqlite URL {url} has no file path: {_EXAMPLE}")
        path = Path(raw[1:])  # the first slash separates the empty host from the path
        if raw[1:] == ":memory:":
            raise ConfigurationError(
                f"sqlite URL {url} names no file: use memory:// for an in-process broker"
            )
        options = dict(url.query)
        settings = cls(
            path=path,
            lease=_seconds(options, "lease", 30.0, minimum=0.05),
            retention=_seconds(options, "retention", 7 * 24 * 3600.0, minimum=0.0),
            max_messages=_count(options, "max_messages"),
            busy_timeout_ms=int(_seconds(options, "busy_timeout", 5000.0, minimum=0.0)),
            synchronous=_choice(options, "synchronous", ("normal", "full")).upper(),
            max_poll=_seconds(options, "poll", 0.1, minimum=0.005),
        )
        if options:
            raise ConfigurationError(
                f"sqlite URL option(s) {', '.join(sorted(options))} unknown: use lease, "
                "retention, max_messages, busy_timeout, synchronous or poll"
            )
        return settings


def _seconds(options: dict[str, str], name: str, default: float, *, minimum: float) -> float:
    raw = options.pop(name, None)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < minimum:
        raise ConfigurationError(
            f"sqlite URL option {name}={raw!r} is invalid: use a number >= {minimum}"
        )
    return value


def _count(options: dict[str, str], name: str) -> int | None:
    raw = options.pop(name, None)
    if raw is None:
        return None
    if not raw.isdigit() or int(raw) < 1:
        raise ConfigurationError(
            f"sqlite URL option {name}={raw!r} is invalid: use a whole number >= 1"
        )
    return int(raw)


def _choice(options: dict[str, str], name: str, allowed: tuple[str, ...]) -> str:
    raw = options.pop(name, allowed[0]).lower()
    if raw not in allowed:
        raise ConfigurationError(
            f"sqlite URL option {name}={raw!r} is invalid: use one of {', '.join(allowed)}"
        )
    return raw
