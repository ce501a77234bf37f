"""Runtime layer: which broker URL an app uses when none is given."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

from eventwire.observability.logs import get_logger

ENV_BROKER_URL: Final = "EVENTWIRE_BROKER_URL"
DEFAULT_BROKER_URL: Final = "sqlite:///.eventwire/broker.db"

_log = get_logger("runtime")


def resolve_broker_url(explicit: str | None) -> str:
    """``explicit``, else ``$EVENTWIRE_BROKER_URL``, else a SQLite file under ``.eventwire/``.

    The fallback keeps a fresh checkout runnable with no server; it is logged once at INFO
    so nobody ships it to production by accident.
    """
    if explicit:
        return explicit
    from_env = os.environ.get(ENV_BROKER_URL)
    if from_env:
        return from_env
    Path(".eventwire").mkdir(exist_ok=True)
    _log.info("no broker URL given and %s is unset: using %s", ENV_BROKER_URL, DEFAULT_BROKER_URL)
    return DEFAULT_BROKER_URL
