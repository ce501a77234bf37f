"""A throwaway in-test Delivery that records how it was settled (unit tests only)."""

from __future__ import annotations

from eventwire.core.message import Delivery, Message


class RecordingDelivery(Delivery):
    __slots__ = ("dead", "nack_delays")

    def __init__(
        self,
        body: bytes = b"{}",
        *,
        key: str | None = None,
        attempt: int = 1,
        topic: str = "t",
        group: str | None = "g",
        message: Message | None = None,
    ) -> None:
        super().__init__(
            message=message or Message(body=body, key=key),
            topic=topic,
            attempt=attempt,
            group=group,
        )
        self.nack_delays: list[float | None] = []
        self.dead: Message | None = None

    async def _ack(self) -> None:
        pass

    async def _nack(self, delay: float | None) -> None:
        self.nack_delays.append(delay)

    async def _dead_letter(self, dead: Message) -> None:
        self.dead = dead
