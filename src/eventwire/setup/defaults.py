"""Setup layer: the defaults every generated service starts with, written once.

Retry defaults are the library's own (``RetryPolicy()``); the templates, the summary and
``.env.example`` all read this object, so a default changes in one place.
"""

from __future__ import annotations

from dataclasses import dataclass

from eventwire.reliability.retry import RetryPolicy

_RETRY = RetryPolicy()


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceDefaults:
    """Settings a generated service uses until its environment says otherwise."""

    concurrency: int = 8  # handler calls in flight per worker process
    max_attempts: int = _RETRY.max_attempts
    initial_delay: float = _RETRY.initial_delay
    max_delay: float = _RETRY.max_delay
    shutdown_timeout: float = 10.0
    http_port: int = 9000


SERVICE_DEFAULTS = ServiceDefaults()
