"""Broker layer: a JetStream delivery (ack/nak/term on its reply subject) and its metadata."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from nats.aio.msg import Msg

from eventwire.core.message import Delivery, Message

# Stores a dead letter; the int is the original's stream sequence (None if unknown).
DeadLetterSink = Callable[[Message, int | None], Awaitable[None]]
Forget = Callable[[str, int], Awaitable[None]]  # (stream, sequence): delete a settled message


class Settler(Protocol):
    """What a delivery needs from the consumer it came from (``subscription.PullConsumer``)."""

    topic: str
    group: str | None
    dead_letter_sink: DeadLetterSink
    forget: Forget | None  # called with (stream, sequence) after an ack: deletes the message

    async def settle(
        self, delivery: JetStreamDelivery, send: Callable[[], Awaitable[None]]
    ) -> None:
        """Run ``send`` (ack, nak or term) unless ``delivery`` was already given back."""


class JetStreamDelivery(Delivery):
    """A JetStream message; ack/nak/term go to its reply subject, progress keeps it leased."""

    __slots__ = ("_msg", "_pull", "_since")

    def __init__(
        self, *, msg: Msg, pull: Settler, message: Message, attempt: int, now: float
    ) -> None:
        super().__init__(message=message, topic=pull.topic, attempt=attempt, group=pull.group)
        self._msg = msg
        self._pull = pull
        self._since = now

    async def _ack(self) -> None:
        forget = self._pull.forget
        if forget is None:
            await self._pull.settle(self, self._msg.ack)
            return

        async def ack_then_forget() -> None:
            await self._msg.ack()
            stream, seq = stream_and_seq(self._msg.reply)
            if stream is not None and seq is not None:
                await forget(stream, seq)

        await self._pull.settle(self, ack_then_forget)

    async def _nack(self, delay: float | None) -> None:
        await self._pull.settle(self, lambda: self._msg.nak(delay=delay))

    async def _dead_letter(self, dead: Message) -> None:
        async def store_then_term() -> None:
            # Confirmed before the original goes; the stream sequence names this dead-lettering
            # (a repeat after a crash before term() is dropped, a replay's failure is kept).
            _, stream_seq = attempt_and_seq(self._msg.reply)
            await self._pull.dead_letter_sink(dead, stream_seq)
            await self._msg.term()

        await self._pull.settle(self, store_then_term)


def stream_and_seq(reply: str | None) -> tuple[str | None, int | None]:
    """Stream name and stream sequence from a ``$JS.ACK...`` reply subject (v1 or v2)."""
    tokens = (reply or "").split(".")
    if len(tokens) == 9:
        return tokens[2], int(tokens[5])
    if len(tokens) >= 12:
        return tokens[4], int(tokens[7])
    return None, None


def attempt_and_seq(reply: str | None) -> tuple[int, int | None]:
    """num_delivered and stream sequence from a ``$JS.ACK...`` reply subject (v1 or v2)."""
    if not reply:
        return 1, None
    tokens: list[Any] = reply.split(".")
    if len(tokens) == 9:  # $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>
        return int(tokens[4]), int(tokens[5])
    if len(tokens) >= 12:  # $JS.ACK.<domain>.<hash>.<stream>.<consumer>.<delivered>.<sseq>...
        return int(tokens[6]), int(tokens[7])
    return 1, None
