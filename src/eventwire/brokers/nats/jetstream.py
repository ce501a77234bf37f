"""Broker layer: the NATS JetStream adapter (streams, durable pull consumers, confirmed publish)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    RetentionPolicy,
    SequenceInfo,
    StorageType,
    StreamConfig,
)

from eventwire.brokers._support.errors import translate
from eventwire.brokers._support.retention import dropped_unread
from eventwire.brokers._support.subscription import Subscription
from eventwire.brokers.nats.broker import NatsBrokerBase
from eventwire.brokers.nats.envelope import check_size, from_nats, raw_dead_letter, to_headers
from eventwire.brokers.nats.errors import NATS
from eventwire.brokers.nats.options import safe_name
from eventwire.brokers.nats.publisher import PubAcks
from eventwire.brokers.nats.subscription import PullConsumer
from eventwire.core import headers as h
from eventwire.core.backoff import Backoff
from eventwire.core.capabilities import BrokerProfile
from eventwire.core.errors import BrokerError, MessageError, PublishError
from eventwire.core.message import (
    DEAD_LETTER_GROUP,
    DEAD_LETTER_SUFFIX,
    Delivery,
    Message,
    dead_letter_topic,
    new_message_id,
)
from eventwire.core.url import BrokerURL

log = logging.getLogger("eventwire.brokers.nats")

_STREAM_IN_USE = 10058  # "stream name already in use with a different configuration"
_PERMANENT = (nats.js.errors.BadRequestError, nats.errors.MaxPayloadError)
# Pauses between publish rounds: 0.1 s doubling up to 1 s, anywhere below that ("full
# jitter": re-sends are deduplicated by Nats-Msg-Id, so bunching costs nothing but load).
_RESEND_BACKOFF = Backoff(initial=0.1, cap=1.0, jitter=1.0)


def _seq(position: SequenceInfo | None) -> int:
    return int(position.stream_seq or 0) if position is not None else 0


class JetStreamBroker(NatsBrokerBase):
    """``nats://`` / ``tls://``: one stream per topic, one durable pull consumer per group.

    Streams are named ``<stream_prefix><topic>_<hash>`` and capture exactly the subject
    ``<prefix>.<topic>``; ``topic.dlq`` is therefore its own stream, created when a group of
    ``topic`` subscribes so that dead letters are kept before anyone reads them.
    """

    connection_name = "eventwire-jetstream"

    def __init__(self, url: BrokerURL, profile: BrokerProfile) -> None:
        super().__init__(url, profile)
        self._js: JetStreamContext | None = None
        self._acks: PubAcks | None = None
        self._streams: dict[str, asyncio.Task[str]] = {}
        # When each topic's stream was created, as last declared, and as each broadcast
        # consumer saw it: a different date later means the server lost it and made a new one.
        self._created: dict[str, object] = {}
        self._epochs: dict[str, object] = {}
        # Per stream: up to which sequence messages removed by limits were already reported.
        self._limit_counted: dict[str, int] = {}

    async def _connect(self) -> None:
        await super()._connect()
        nc = self.client
        self._js = nc.jetstream(timeout=5.0)
        self._acks = PubAcks(nc)
        await self._acks.start()

    # -- topology ------------------------------------------------------------------------
    async def ensure_stream(self, topic: str, *, fresh: bool = False) -> str:
        """Create or update ``topic``'s stream once per broker object; its name."""
        task = self._streams.get(topic)
        if task is not None and task.done():
            if not fresh and not task.cancelled() and task.exception() is None:
                return task.result()  # the hot path: no shield, no await
            task = None  # failed or cancelled: declare again
        if task is None or fresh:
            task = asyncio.create_task(self._declare_stream(topic))
            self._streams[topic] = task
        return await asyncio.shield(task)

    async def _declare_stream(self, topic: str) -> str:
        assert self._js is not None
        opts = self.options
        dlq = topic.endswith(DEAD_LETTER_SUFFIX)
        # 0 means "no limit" to the server too; None would keep a limit set earlier.
        config = StreamConfig(
            name=opts.stream(topic),
            subjects=[opts.subject(topic)],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE if opts.storage == "file" else StorageType.MEMORY,
            discard=DiscardPolicy.OLD,
            max_age=opts.dlq_max_age if dlq else opts.max_age,
            max_bytes=-1 if dlq or not opts.max_bytes else opts.max_bytes,
            max_msgs=-1 if dlq or not opts.max_msgs else opts.max_msgs,
            duplicate_window=opts.dup_window,
            num_replicas=opts.replicas,
        )
        try:
            try:
                info = await self._js.add_stream(config)
            except nats.js.errors.BadRequestError as exc:
                if exc.err_code != _STREAM_IN_USE:
                    raise
                info = await self._js.update_stream(config)
        except Exception as exc:
            raise translate(NATS, exc, self.url, f"declaring the stream of {topic!r}") from exc
        self._created[topic] = info.created
        return config.name or ""

    async def ensure_consumer(
        self, topic: str, group: str | None, name: str, start: int | None
    ) -> str:
        """Create (or update) the group's durable consumer / the broadcast consumer."""
        assert self._js is not None
        opts = self.options
        stream = await self.ensure_stream(topic)
        config = ConsumerConfig(
            name=name,
            durable_name=name if group is not None else None,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=opts.ack_wait,
            max_deliver=-1,  # the adapter enforces max_deliver by dead-lettering, see options
            filter_subject=opts.subject(topic),
            max_ack_pending=opts.max_ack_pending,
        )
        if group is None:
            config.inactive_threshold = opts.broadcast_inactive
            if start is None:
                config.deliver_policy = DeliverPolicy.NEW
            else:  # recreating a lost broadcast consumer: carry on after the last one seen
                config.deliver_policy = DeliverPolicy.BY_START_SEQUENCE
                config.opt_start_seq = start
        else:
            config.deliver_policy = DeliverPolicy.ALL
        try:
            epoch = self._created.get(topic)  # the stream this consumer reads from
            if start is not None:  # recovering: keep a consumer that is still there
                with contextlib.suppress(nats.js.errors.NotFoundError):
                    await self._js.consumer_info(stream, name)
                    return self._next_subject(stream, name)
                if group is None:
                    epoch = await self._resume_broadcast(stream, config, self._epochs.get(name))
            try:
                await self._js.add_consumer(stream, config)
            except nats.js.errors.NotFoundError:  # the stream itself is gone: recreate both
                stream = await self.ensure_stream(topic, fresh=True)
                epoch = self._created.get(topic)
                await self._js.add_consumer(stream, config)
        except Exception as exc:
            raise translate(NATS, exc, self.url, f"creating the consumer of {topic!r}") from exc
        if group is None:
            self._epochs[name] = epoch
        return self._next_subject(stream, name)

    async def _resume_broadcast(self, stream: str, config: ConsumerConfig, seen: object) -> object:
        """Carry on after the last message seen, unless the stream is not the one this
        subscriber read (the server lost its store and the stream was made anew, restarting
        its sequence numbers): then everything in it is new to the subscriber.

        Returns the stream's creation date (None if it is gone).
        """
        assert self._js is not None
        created: object = None
        with contextlib.suppress(nats.js.errors.NotFoundError):
            created = (await self._js.stream_info(stream)).created
        if created is None or created != seen:
            config.deliver_policy = DeliverPolicy.ALL
            config.opt_start_seq = None
        return created

    def _next_subject(self, stream: str, consumer: str) -> str:
        assert self._js is not None
        return f"{self._js._prefix}.CONSUMER.MSG.NEXT.{stream}.{consumer}"

    # -- retention -----------------------------------------------------------------------
    async def trim(self, topic: str) -> int:
        """Purge ``topic``'s stream up to what every consumer has acknowledged (a stream no
        consumer reads is kept whole); report messages a user-set limit removed before a
        consumer got them. Returns how many messages the purge removed."""
        assert self._js is not None
        stream = self.options.stream(topic)
        try:
            info = await self._js.stream_info(stream)
            consumers = await self._js.consumers_info(stream)
        except nats.js.errors.NotFoundError:
            return 0
        if not consumers:
            return 0
        first = int(info.state.first_seq or 0)
        # Never delivered to the slowest consumer yet already gone: removed by a limit.
        slowest = min(_seq(c.delivered) for c in consumers)
        counted = self._limit_counted.get(stream, 0)
        gone_unread = first - 1 - max(slowest, counted)
        if gone_unread > 0:
            self._limit_counted[stream] = first - 1
            dropped_unread(self.profile.name, topic, gone_unread, limit=self._limits())
        floor = min(_seq(c.ack_floor) for c in consumers)
        if floor + 1 <= first:
            return 0
        before = int(info.state.messages or 0)
        await self._js.purge_stream(stream, seq=floor + 1)  # keeps floor + 1 and later
        return max(0, before - int((await self._js.stream_info(stream)).state.messages or 0))

    def _limits(self) -> str:
        opts = self.options
        set_ = {"max_age": opts.max_age, "max_bytes": opts.max_bytes, "max_msgs": opts.max_msgs}
        return ", ".join(f"{k}={v:g}" for k, v in set_.items() if v) or "a server-side limit"

    async def _trim_forever(self, topic: str) -> None:
        while True:
            await asyncio.sleep(self.options.trim_interval)
            try:
                await self.trim(topic)
            except Exception as exc:  # noqa: BLE001 - reconnecting, or the stream is gone
                log.debug("NATS retention pass on %r failed: %s", topic, exc)

    # -- passive reads (dlq list) ---------------------------------------------------------
    async def browse_dead_letters(self, topic: str, limit: int) -> list[Message] | None:
        """Dead letters of ``topic`` the ``eventwire-dlq`` consumer has not acknowledged,
        read with direct gets: no stream or consumer is created, nothing is delivered or
        moved. None if the topic has no dead-letter stream."""
        await self.connect()
        assert self._js is not None
        stream = self.options.stream(dead_letter_topic(topic))
        try:
            info = await self._js.stream_info(stream)
            floor = 0
            with contextlib.suppress(nats.js.errors.NotFoundError):
                consumer = await self._js.consumer_info(stream, safe_name(DEAD_LETTER_GROUP))
                floor = _seq(consumer.ack_floor)
            out: list[Message] = []
            seq = max(int(info.state.first_seq or 1), floor + 1)
            last = int(info.state.last_seq or 0)
            while seq <= last and len(out) < limit:
                with contextlib.suppress(nats.js.errors.NotFoundError):  # deleted: a gap
                    raw = await self._js.get_msg(stream, seq)
                    out.append(from_nats(raw.data or b"", raw.headers))
                seq += 1
        except nats.js.errors.NotFoundError:
            return None
        except Exception as exc:
            raise translate(NATS, exc, self.url, f"reading the dead letters of {topic!r}") from exc
        return out

    async def _forget_dead_letter(self, stream: str, seq: int) -> None:
        """Delete an acknowledged dead letter from its stream.

        The dead-letter consumer's ack floor only moves past letters settled in order, so one
        replayed or purged out of order would still sit above it and be listed by
        ``browse_dead_letters``, which cannot tell acked from pending there. Deleted, it
        leaves a gap the read skips. A failure here leaves a listed, already-settled letter,
        never a lost one: it is logged, not raised (the ack itself went through).
        """
        assert self._js is not None
        try:
            await self._js.delete_msg(stream, seq)
        except nats.js.errors.NotFoundError:
            pass  # trimmed meanwhile
        except Exception as exc:  # noqa: BLE001 - logged; see above
            log.warning("could not delete settled dead letter %d of %s: %s", seq, stream, exc)

    # -- publish -------------------------------------------------------------------------
    async def _send(
        self, topic: str, subject: str, prepared: list[tuple[Message, dict[str, str]]]
    ) -> None:
        await self.ensure_stream(topic)
        await self.publish_prepared(topic, subject, prepared)

    async def _republish(self, topic: str, message: Message, group: str | None) -> None:
        # A replay keeps the message id; as Nats-Msg-Id it would be dropped as a duplicate of
        # the original inside the duplicate window, so the replay run and group name it.
        run = message.headers.get(h.REPLAY_RUN) or new_message_id()
        headers = to_headers(message, dedup_id=f"{message.id}.replay.{run}.{group or 'all'}")
        check_size(message, headers, self.client.max_payload)
        await self._send(topic, self.options.subject(topic), [(message, headers)])

    async def _publish_dead_letter(
        self, topic: str, dead: Message, group: str | None, stream_seq: int | None
    ) -> None:
        # One dead letter per (stored message, group), deduplicated on the original's stream
        # sequence, never on its id: a second group's copy, a replay that failed again and
        # two producers' messages sharing an id are each kept, while a repeat by the same
        # group of the same stored message (crash before term()) is still dropped.
        dlq = dead_letter_topic(topic)
        origin = new_message_id() if stream_seq is None else f"seq{stream_seq}"
        dedup_id = f"{origin}.dlq.{group or 'broadcast'}"
        try:
            dead.validate(max_body_bytes=self.profile.capabilities.max_body_bytes)
            headers = to_headers(dead, dedup_id=dedup_id)
            check_size(dead, headers, self.client.max_payload)
        except MessageError as exc:
            # A message that arrived but cannot be sent on as it is (a header NATS would
            # strip, a body that leaves no room for the dead-letter headers): its raw form.
            reason = dead.headers.get(h.DLQ_REASON, "dead-letter")
            dead, _ = raw_dead_letter(
                dead.body,
                {k: v for k, v in dead.headers.items() if not k.startswith(h.DLQ_PREFIX)},
                why=f"{reason}; the message could not be sent on as it is: {exc}",
                topic=topic,
                group=group,
                attempt=int(dead.headers.get(h.DLQ_ATTEMPTS, "1") or 1),
                max_payload=self.client.max_payload,
                message_id=dead.id,
            )
            dead = dead.with_headers(**{h.DLQ_REASON: reason})
            headers = to_headers(dead, dedup_id=dedup_id)
        await self.ensure_stream(dlq)
        await self.publish_prepared(dlq, self.options.subject(dlq), [(dead, headers)])

    async def publish_prepared(
        self, topic: str, subject: str, prepared: list[tuple[Message, dict[str, str]]]
    ) -> None:
        """Send until every message has a PubAck (retries dedup on Nats-Msg-Id) or time is up."""
        assert self._js is not None
        nc = self.client
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.options.publish_timeout
        pending = prepared
        attempt = 0
        while True:
            assert self._acks is not None
            failed, error = await self._acks.send_round(subject, pending, deadline)
            if not failed:
                return
            if isinstance(error, _PERMANENT):
                break
            if isinstance(error, nats.errors.OutboundBufferLimitError):
                raise PublishError(
                    f"{len(failed)} of {len(prepared)} message(s) to {topic!r} were not sent: "
                    f"NATS at {self.url} is unreachable (reconnecting) and the reconnect "
                    f"buffer (pending_size={self.options.pending_size} bytes) has no room for "
                    "them; treat them as not sent"
                ) from error
            if isinstance(error, nats.js.errors.NoStreamResponseError):
                with contextlib.suppress(BrokerError):
                    await self.ensure_stream(topic, fresh=True)
            attempt += 1
            pause = _RESEND_BACKOFF.delay(attempt)
            await asyncio.sleep(min(pause, max(0.0, deadline - loop.time())))
            # Sending again while reconnecting would only pile copies into the reconnect
            # buffer (the last copy is there and goes out on reconnect): wait for the link.
            # (nats-py has nothing to await for "connected"; polling costs nothing here.)
            while not (nc.is_connected or nc.is_closed):
                if loop.time() >= deadline:
                    break
                await asyncio.sleep(0.05)
            if loop.time() >= deadline or nc.is_closed:
                break
            pending = failed
        cause = translate(NATS, error, self.url, "publishing") if error else None
        down = "" if nc.is_connected else "; the connection is down (reconnecting)"
        raise PublishError(
            f"{len(failed)} of {len(prepared)} message(s) to {topic!r} were not confirmed by "
            f"NATS at {self.url} within {self.options.publish_timeout:g}s ({cause}{down}): "
            "treat them as not sent"
        ) from error

    # -- subscribe -----------------------------------------------------------------------
    def _subscribe(self, topic: str, group: str | None, prefetch: int) -> Subscription:
        return _JetStreamSubscription(self, topic, group, prefetch)

    async def _close_connection(self) -> None:
        for task in self._streams.values():
            task.cancel()
        if self._acks is not None:
            with contextlib.suppress(Exception):
                await self._acks.aclose()
        await super()._close_connection()

    def _connected_detail(self) -> str:
        return f"connected to {self.url}"


def _reads_dead_letters(topic: str, group: str | None) -> bool:
    """The ``eventwire-dlq`` group on a ``.dlq`` topic: what it settles leaves the DLQ."""
    return group == DEAD_LETTER_GROUP and topic.endswith(DEAD_LETTER_SUFFIX)


class _JetStreamSubscription:
    """The ``Subscription``: declares the topic's streams, runs a ``PullConsumer`` on the
    group's durable consumer (or a broadcast one, deleted on leaving) and, for a group, the
    stream trimmer. It is the broker's own part (same module): it uses the stream and
    consumer declarations that the broker keeps per topic."""

    def __init__(
        self, broker: JetStreamBroker, topic: str, group: str | None, prefetch: int
    ) -> None:
        self._broker, self._topic, self._group, self._prefetch = broker, topic, group, prefetch
        self._name = ""
        self._pull: PullConsumer | None = None
        self._trimmer: asyncio.Task[None] | None = None
        self._closed = False

    async def open(self) -> AsyncIterator[Delivery]:
        broker, topic, group = self._broker, self._topic, self._group
        broker.options.subject(topic)  # refuse unroutable topics before touching the server
        if group is not None and not topic.endswith(DEAD_LETTER_SUFFIX):
            await broker.ensure_stream(dead_letter_topic(topic))  # keep dead letters from now on
        name = safe_name(group) if group is not None else "bc_" + broker.client.new_inbox()[7:]
        self._name = name

        async def ensure(start: int | None) -> str:
            return await broker.ensure_consumer(topic, group, name, start)

        async def sink(dead: Message, stream_seq: int | None) -> None:
            await broker._publish_dead_letter(topic, dead, group, stream_seq)

        pull = self._pull = PullConsumer(
            nc=broker.client,
            url=broker.url,
            options=broker.options,
            topic=topic,
            group=group,
            prefetch=self._prefetch,
            ensure_consumer=ensure,
            dead_letter_sink=sink,
            forget=broker._forget_dead_letter if _reads_dead_letters(topic, group) else None,
        )
        await pull.start()
        if group is not None:
            self._trimmer = asyncio.create_task(
                broker._trim_forever(topic), name=f"eventwire-nats-trim-{topic}"
            )
        return pull

    async def aclose(self) -> int:
        if self._closed:
            return 0
        self._closed = True
        broker, group = self._broker, self._group
        if self._trimmer is not None:
            self._trimmer.cancel()
        broker._epochs.pop(self._name, None)
        returned = 0
        if self._pull is not None:
            # A broadcast consumer about to be deleted returns nothing (nobody could get it);
            # when the broker closes it is kept, so what it holds goes back.
            returned = await self._pull.aclose(give_back=group is not None or broker.closed)
        if group is None and self._name and broker._js is not None and not broker.closed:
            with contextlib.suppress(Exception):
                await broker._js.delete_consumer(broker.options.stream(self._topic), self._name)
        return returned
