"""Broker layer: nats-py's message framing made total for what a producer controls.

nats-py 2.16 parses a message's header block and decodes its reply subject inside its read
loop, outside any ``try``: a header block of just ``NATS/1.0`` (``IndexError``), a status
line or description that is not UTF-8, or a non-UTF-8 reply subject (``UnicodeDecodeError``)
ends the read loop for good. The connection then reads nothing until the ping timeout
reconnects it: core NATS loses what was published meanwhile, and JetStream redelivers the
same message, which ends the loop again, forever. ``TolerantClient`` hands such a message
on instead, its header block kept (base64) under ``UNPARSED_HEADERS``, so the decoding
boundary (``_envelope.from_nats``) dead-letters it raw like any unreadable envelope.
"""

from __future__ import annotations

import base64
from typing import Any, Final

from nats.aio.client import Client

from eventwire.core import headers as h

UNPARSED_HEADERS: Final = h.UNPARSED_HEADERS  # base64 of the raw header block
UNPARSED_WHY: Final = h.UNPARSED_WHY  # what nats-py failed on


class TolerantClient(Client):
    """A nats-py ``Client`` whose read loop survives any header block or reply subject."""

    async def _process_headers(self, headers: Any) -> dict[str, str] | None:
        try:
            parsed: dict[str, str] | None = await super()._process_headers(headers)
        except Exception as exc:  # noqa: BLE001 - whatever the parser trips on is the producer's data
            return {
                UNPARSED_HEADERS: base64.b64encode(bytes(headers)).decode(),
                UNPARSED_WHY: f"{type(exc).__name__}: {exc}"[:200],
            }
        return parsed

    def _build_message(
        self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: Any
    ) -> Any:
        try:
            return super()._build_message(sid, subject, reply, data, headers)
        except UnicodeDecodeError:
            # The reply subject is the producer's (core NATS); eventwire never answers it.
            return self.msg_class(
                subject=subject.decode("utf-8", "backslashreplace"),
                reply=reply.decode("utf-8", "backslashreplace"),
                data=data,
                headers=headers,
                _client=self,
                _sid=sid,
            )
