"""Reliability layer: an idempotency store chosen by URL, so services configure it by environment.

Like the broker catalog, the store for a scheme is imported only when a URL names it: the
Redis and PostgreSQL stores (and their client libraries) load only for ``redis://`` and
``postgresql://``, and ``import eventwire`` loads neither.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import cast

from eventwire.core.errors import ConfigurationError
from eventwire.core.url import redact
from eventwire.reliability.idempotency import (
    DEFAULT_TTL,
    IdempotencyStore,
    MemoryIdempotencyStore,
    SQLiteIdempotencyStore,
)

# scheme -> "module:class" of a store that takes (url, ttl=...)
_NETWORK_STORES = {
    "redis": "eventwire.reliability.idempotency_redis:RedisIdempotencyStore",
    "rediss": "eventwire.reliability.idempotency_redis:RedisIdempotencyStore",
    "postgresql": "eventwire.reliability.idempotency_postgres:PostgresIdempotencyStore",
    "postgres": "eventwire.reliability.idempotency_postgres:PostgresIdempotencyStore",
}
SCHEMES = ("memory", "sqlite", *_NETWORK_STORES)


def open_idempotency_store(url: str, *, ttl: float = DEFAULT_TTL) -> IdempotencyStore:
    """The store ``url`` names: ``memory://`` (this process only), ``sqlite:///path.db``
    (processes sharing the file), ``redis://host:6379/0`` or ``postgresql://user@host/db``
    (every worker that reaches the server; PostgreSQL also does ``ctx.effectively_once``)."""
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in SCHEMES:
        raise ConfigurationError(
            f"idempotency store URL {redact(url)!r} has no known scheme: use one of "
            + ", ".join(f"{s}://" for s in SCHEMES)
        )
    if scheme == "memory":
        return MemoryIdempotencyStore(ttl=ttl)
    if scheme == "sqlite":
        path = rest[1:] if rest.startswith("/") else rest  # sqlite:///rel.db, sqlite:////abs.db
        if not path:
            raise ConfigurationError("sqlite:// idempotency URL needs a file: sqlite:///marks.db")
        return SQLiteIdempotencyStore(Path(path), ttl=ttl)
    module, _, name = _NETWORK_STORES[scheme].partition(":")
    store_class = getattr(importlib.import_module(module), name)
    return cast("IdempotencyStore", store_class(url, ttl=ttl))
