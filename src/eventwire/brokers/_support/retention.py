"""Broker layer: the one place a retention limit reports the unread messages it dropped.

Eventwire's defaults never drop a message a live group has not acknowledged. A limit the user
sets (Redis ``maxlen``, JetStream ``max_age``/``max_bytes``/``max_msgs``, memory ``retention``)
can; when it does, the adapter calls ``dropped_unread``: one warning line and a process-wide
count per (profile, topic) that ``/metrics`` exposes as ``eventwire_retention_dropped_total``.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping

log = logging.getLogger("eventwire.brokers.retention")

_dropped: Counter[tuple[str, str]] = Counter()


def dropped_unread(profile: str, topic: str, count: int, *, limit: str) -> None:
    """``count`` messages of ``topic`` not yet acknowledged by every group were removed by
    the user-set ``limit`` (e.g. "maxlen=50"): say so, and count them."""
    if count <= 0:
        return
    _dropped[(profile, topic)] += count
    log.warning(
        "%s: retention limit %s dropped %d message(s) of %r that a group had not acknowledged "
        "yet; raise or remove the limit to keep them",
        profile,
        limit,
        count,
        topic,
    )


def dropped_counts() -> Mapping[tuple[str, str], int]:
    """Unread messages dropped by retention limits in this process, by (profile, topic)."""
    return dict(_dropped)
