"""Broker layer: the durable embedded broker, one SQLite file shared by processes on one host.

URL: ``sqlite:///relative/path.db`` (relative to the current directory) or
``sqlite:////absolute/path.db`` (four slashes), as in SQLAlchemy; the directory is created if
missing. Options (``?lease=5&retention=3600``) are listed in ``options``.

How it works, in short:

* The file runs in WAL mode; every write is one short ``BEGIN IMMEDIATE`` transaction and
  ``busy_timeout`` lets processes queue for the write lock. Each broker object does all its
  database work in one worker thread, so the event loop never blocks.
* ``publish`` returns after COMMIT (concurrent publishes share one commit). A message id
  published twice to one topic is stored once while the first copy is retained.
* A group claims the next messages atomically (up to ``prefetch``) with a lease; live
  consumers renew it every lease/3, and the claims of a killed process return to the group
  when its lease runs out (attempt + 1). ``nack(delay)`` sets when a claim is due again.
  Leaving a subscription returns its unsettled claims at once. Acks are batched over 2 ms
  (a crash loses at most that window: redeliveries, never losses) and a batch that fails
  (lock held past ``busy_timeout``) is retried. Every settle names its claim (consumer and
  attempt), so a consumer whose lease ran out while its event loop was blocked cannot
  settle the claim another consumer (or itself, later) took since.
* Leases and delays are wall-clock times (shared by processes, kept across restarts). A
  clock set forward ends leases early (redeliveries); set back, it lengthens pending
  ``nack`` delays by the jump, while leases are capped at ``lease`` from now by retention.
* ``dead_letter`` moves the message to ``<topic>.dlq`` in the same transaction that drops
  the claim; the ``eventwire-dlq`` group of that topic exists from the first subscribe on.
  A stored row that cannot be decoded is dead-lettered with reason
  ``unreadable envelope: ...``, its body intact. ``eventwire dlq replay`` hands a letter back
  to its group only: a claim of that group on a private replay row (``store.redeliver``).
* A new group starts at the oldest retained message; a broadcast subscriber (no group) gets a
  private group starting at the end, deleted when it leaves (or three leases after its
  process died). Consumers poll (5 ms busy, up to ``poll`` idle); a publish through the same
  broker object wakes its local consumers at once.
* Retention (see ``retention``) deletes messages every group has settled once older than
  ``retention`` (7 days) or beyond ``max_messages`` per topic; unsettled ones are kept, and
  so are messages a durable group has not read yet: a group nobody reads any more pins
  its topic (delete its rows from ``consumer_groups`` and ``claims`` to let go). Freed pages
  are reused, so the file stops growing rather than shrinking (``VACUUM`` it offline to
  shrink); the WAL file is cut back once over 64 MiB (``schema``, ``retention.checkpoint``).
* ``synchronous=normal`` (default) survives a crash of any process; ``synchronous=full``
  also an operating-system crash or power loss. Network file systems are not supported
  (WAL needs shared memory on one host).
"""
