"""Broker layer: the memory broker's "server" state: topic logs, groups, cursors and schedules.

A ``Hub`` plays the server: clients opened with the same ``memory://NAME`` share one hub
(a process-wide registry), ``memory://`` gets a private one. Each ``Topic`` is an append-only
log with bounded retention; each ``Group`` reads it through a cursor plus a queue of
redeliveries (nacked or returned messages) and a timer heap for delayed ones.

Ordering across group members uses key affinity: while a member holds an unsettled message
with key K, further K messages go only to that member; others set them aside in
``blocked[K]`` (in log order) until the key is free, so per-key order survives competition.

Retention keeps at most ``retention`` messages per topic (plus a small slack so trimming is
amortised), like Kafka's: a new group starts at the oldest retained message, and a group that
lags further behind than ``retention`` loses the trimmed messages (logged and counted as
``eventwire_retention_dropped_total``). Unsettled and redelivered
messages are held by their group, not the log, so trimming never loses in-flight work.
"""

from __future__ import annotations

import asyncio
import heapq
from collections import deque
from collections.abc import Iterable
from typing import Final, Protocol, TypeAlias

from eventwire.brokers._support.retention import dropped_unread
from eventwire.core.message import Message

DEFAULT_RETENTION: Final = 1_000_000

Item: TypeAlias = tuple[Message, int]  # a message and the attempt it will be delivered as


class Member(Protocol):
    """A subscription as its group sees it."""

    def wake(self) -> None:
        """Something may be available: retry taking (called synchronously, must not block)."""


class _Owner:
    __slots__ = ("count", "member")

    def __init__(self, member: Member) -> None:
        self.member = member
        self.count = 0


class Group:
    """One consumer group's position in a topic, its redeliveries and its key owners."""

    __slots__ = (
        "_cursor",
        "_seq",
        "blocked",
        "delayed",
        "members",
        "name",
        "owners",
        "ready",
        "topic",
        "unblocked",
    )

    def __init__(self, topic: Topic, name: str | None, cursor: int) -> None:
        self.topic = topic
        self.name = name  # None for a broadcast subscriber's private group
        self.members: set[Member] = set()
        self.ready: deque[Item] = deque()  # redeliveries, before anything new from the log
        self.delayed: list[tuple[float, int, Message, int]] = []  # (due, seq, message, attempt)
        self.blocked: dict[str, deque[Item]] = {}  # key -> items waiting for its owner to finish
        self.unblocked: deque[str] = deque()  # keys whose owner finished with items waiting
        self.owners: dict[str, _Owner] = {}
        self._cursor = cursor
        self._seq = 0

    def take(self, member: Member) -> Item | None:
        """The next message ``member`` may have, or None; the caller delivers it."""
        if self.delayed:
            self._promote_due()
        while self.unblocked:
            key = self.unblocked.popleft()
            queue = self.blocked.get(key)
            owner = self.owners.get(key)
            if queue is not None and (owner is None or owner.member is member):
                return self._take_blocked(member, key, queue)
        ready = self.ready
        while ready:
            item = self._admit(member, ready.popleft())
            if item is not None:
                return item
        topic = self.topic
        self._cursor = max(
            self._cursor, topic.base
        )  # trimmed by retention before this group read it
        log, base = topic.log, topic.base
        while self._cursor - base < len(log):
            message = log[self._cursor - base]
            self._cursor += 1
            if message.key is None:
                return (message, 1)
            item = self._admit(member, (message, 1))
            if item is not None:
                return item
        return None

    def _admit(self, member: Member, item: Item) -> Item | None:
        key = item[0].key
        if key is None:
            return item
        owner = self.owners.get(key)
        queue = self.blocked.get(key)
        if queue is not None:
            # Older messages of this key wait: this one queues behind them.
            queue.append(item)
            if owner is None or owner.member is member:
                return self._take_blocked(member, key, queue)
            return None
        if owner is None:
            owner = self.owners[key] = _Owner(member)
        elif owner.member is not member:
            self.blocked[key] = deque((item,))
            return None
        owner.count += 1
        return item

    def _take_blocked(self, member: Member, key: str, queue: deque[Item]) -> Item:
        item = queue.popleft()
        if not queue:
            del self.blocked[key]
        owner = self.owners.get(key)
        if owner is None:
            owner = self.owners[key] = _Owner(member)
        owner.count += 1
        return item

    def release(self, member: Member, message: Message) -> None:
        """``member`` settled (or gave back) ``message``: free its key if it held the last one."""
        key = message.key
        if key is None:
            return
        owner = self.owners.get(key)
        if owner is None or owner.member is not member:
            return
        owner.count -= 1
        if owner.count <= 0:
            del self.owners[key]
            if key in self.blocked:
                self.unblocked.append(key)
                self.wake_all()

    def requeue(self, items: Iterable[Item], *, delay: float | None = None) -> None:
        """Give messages back for redelivery: at once (before new ones) or after ``delay``."""
        if not delay or delay <= 0:
            self.ready.extend(items)
            self.wake_all()
            return
        loop = asyncio.get_running_loop()
        due = loop.time() + delay
        for message, attempt in items:
            self._seq += 1
            heapq.heappush(self.delayed, (due, self._seq, message, attempt))
        loop.call_at(due, self._on_due)

    def return_unsettled(self, items: list[Item]) -> None:
        """A member left holding ``items``: they go first to whoever takes next.

        Call after ``release``; a key with later messages set aside gets its returned ones
        in front of those, so the key's order survives a member leaving.
        """
        for item in reversed(items):
            key = item[0].key
            queue = self.blocked.get(key) if key is not None else None
            if queue is not None:
                queue.appendleft(item)
            else:
                self.ready.appendleft(item)
        self.wake_all()

    def _on_due(self) -> None:
        if self._promote_due():
            self.wake_all()
        elif self.delayed:
            # asyncio runs a timer up to its clock resolution early (15 ms on Windows): nothing
            # was due yet, and without another timer an idle group would never see it.
            loop = asyncio.get_running_loop()
            loop.call_at(max(self.delayed[0][0], loop.time() + 0.001), self._on_due)

    def _promote_due(self) -> bool:
        now = asyncio.get_running_loop().time()
        moved = False
        while self.delayed and self.delayed[0][0] <= now:
            _, _, message, attempt = heapq.heappop(self.delayed)
            self.ready.append((message, attempt))
            moved = True
        return moved

    def wake_all(self) -> None:
        for member in tuple(self.members):
            member.wake()


class Topic:
    """An append-only log with bounded retention and the groups reading it."""

    __slots__ = ("_slack", "base", "broadcast", "groups", "log", "name", "retention")

    def __init__(self, name: str, retention: int) -> None:
        self.name = name
        self.log: list[Message] = []
        self.base = 0  # offset of log[0]
        self.retention = retention
        self._slack = min(max(retention // 16, 1), 4096)
        self.groups: dict[str, Group] = {}
        self.broadcast: set[Group] = set()

    @property
    def end(self) -> int:
        """Offset the next published message gets."""
        return self.base + len(self.log)

    def append(self, messages: Iterable[Message]) -> None:
        self.log.extend(messages)
        excess = len(self.log) - self.retention
        if excess >= self._slack:
            self._report_unread(self.base + excess)
            del self.log[:excess]
            self.base += excess
        for group in self.groups.values():
            group.wake_all()
        for group in self.broadcast:
            group.wake_all()

    def _report_unread(self, new_base: int) -> None:
        # Messages below new_base go; those a durable group has not read yet are lost to it.
        if not self.groups:
            return
        slowest = min(group._cursor for group in self.groups.values())
        lost = new_base - max(slowest, self.base)
        if lost > 0:
            dropped_unread("memory", self.name, lost, limit=f"retention={self.retention}")

    def durable_group(self, name: str) -> Group:
        """The named group, created at the oldest retained message (replay) if new."""
        group = self.groups.get(name)
        if group is None:
            group = self.groups[name] = Group(self, name, self.base)
        return group

    def broadcast_group(self) -> Group:
        """A private group for one broadcast subscriber, starting at the next message."""
        group = Group(self, None, self.end)
        self.broadcast.add(group)
        return group


class Hub:
    """One in-process "server": topics by name, shared by every client opened on it."""

    __slots__ = ("name", "retention", "topics")

    def __init__(self, name: str | None, retention: int) -> None:
        self.name = name
        self.retention = retention
        self.topics: dict[str, Topic] = {}

    def topic(self, name: str) -> Topic:
        topic = self.topics.get(name)
        if topic is None:
            topic = self.topics[name] = Topic(name, self.retention)
        return topic


_NAMED: dict[str, Hub] = {}


def hub_for(name: str | None, retention: int = DEFAULT_RETENTION) -> Hub:
    """The process-wide hub called ``name`` (the first client sets its retention), or a new
    private hub when ``name`` is None."""
    if name is None:
        return Hub(None, retention)
    hub = _NAMED.get(name)
    if hub is None:
        hub = _NAMED[name] = Hub(name, retention)
    return hub


def forget_hub(name: str) -> None:
    """Drop the named hub's state (clients still open keep the old one); for test teardown."""
    _NAMED.pop(name, None)
