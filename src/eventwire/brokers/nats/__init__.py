"""Broker layer: the NATS adapters, JetStream (``nats://``, ``tls://``) and core (``nats+core://``).

JetStream design (each choice is what the conformance suite and tests/brokers/nats prove):

* One file-backed stream per topic, ``<stream_prefix><topic>_<hash>`` capturing exactly
  ``<prefix>.<topic>`` (duplicate window 2 min), created or updated idempotently. Retention:
  no age, size or count limit by default; every ``trim_interval`` (30 s) a group member
  purges what every consumer of the stream has acknowledged (the lowest ack floor), so a
  stream keeps exactly what some group still needs (a stream nobody reads is kept whole,
  and a new group replays what is retained). Limits the user sets (``max_age``,
  ``max_bytes``, ``max_msgs``) drop the oldest messages even unread: each such drop is
  logged and counted. ``.dlq`` streams ignore them (``dlq_max_age`` only). Why not interest
  or work-queue retention: both delete a message published before any group exists, take
  replay away from new groups, and cannot be switched on for an existing limits stream.
  Per topic rather than per first token so that ``topic.dlq`` is a separate stream with its
  own limits, and a topic's data can be dropped on its own.
* One durable pull consumer per group (explicit ack, AckWait, DeliverAll: new groups replay);
  broadcast uses an ephemeral consumer (DeliverNew, removed when left or inactive; recreated
  after the last sequence seen, or from the start if the server made the stream anew).
  The adapter keeps one short pull request open for ``prefetch - unsettled`` messages and
  hands each out as it arrives; ``in_progress`` keeps held messages leased past AckWait.
* ``nak(delay)`` for retries; ``attempt`` is the server's delivery count. ``max_deliver`` is
  enforced by dead-lettering (server MaxDeliver would strand the message instead), except
  on ``.dlq`` topics: listing dead letters (a delivery each time) must never move them.
* Publish: Nats-Msg-Id = message id (dedup), pipelined, returns once every PubAck arrived;
  unconfirmed ones are re-sent (dedup absorbs repeats) until ``publish_timeout`` (which must
  be shorter than the duplicate window), then ``PublishError``. Dead letter = confirmed
  publish to ``topic.dlq`` (Nats-Msg-Id ``seq<original stream sequence>.dlq.<group>``, the
  id in ``x-eventwire-id``: each dead-lettering is kept, a repeat after a crash is not), then
  ``term()``. A replayed dead letter keeps its id; its Nats-Msg-Id names the replay run.
* One connection per broker object; reconnects forever with capped, jittered backoff; pings
  every 3 s notice a dead link in <= ~12 s; lost pull requests/consumers/streams are recreated.

Core NATS: ``publish`` returns once the bytes are in nats-py's bounded outbound buffer (not yet
written; ``aclose`` flushes); a subscription buffers at most ``prefetch`` deliveries, then
backs up into nats-py's per-subscription queue, which drops the excess (slow consumer).

Options are URL query parameters, see ``_options.NatsOptions``.
"""
