"""Broker layer: the durable embedded broker, one SQLite file shared by processes on one host.

URL: ``sqlite:///relative/path.db`` (relative to the current directory) or
``sqlite:////absolute/path.db`` (four slashes), as in SQLAlchemy; the directory is created if
missing. Options (``?lease=5&retention=3600``) are listed in ``settings``.

How it works, in short:

* The file runs in WAL mode; every write is one short ``BEGIN IMMEDIATE`` transaction and
  ``busy_timeout`` lets processes queue for the write lock. Each broker object does all its
  database work in one worker thread, so the event loop never blocks.
* ``publish`` returns after COMMIT (concurrent publishes share one commit). A message id
  published twice to one topic is stored once while the first copy is retained.
* A group claims the next messages atomically (up to ``prefetch``) with a lease; live
  consumers renew it every lease/3, and the claims of a killed process return to the group
  when its lease runs out (attempt + 1). ``nack(delay)`` sets when a claim is due again.
  Leaving a subscription returns its unsettled claims at once. Acks are batched over 2 ms.
* ``dead_letter`` moves the message to ``<topic>.dlq`` in the same transaction that drops
  the claim; the ``eventwire-dlq`` group of that topic exists from the first subscribe on.
  A stored row that cannot be decoded is dead-lettered with reason ``envelope-error``.
* A new group starts at the oldest retained message; a broadcast subscriber (no group) gets a
  private group starting at the end, deleted when it leaves (or three leases after its
  process died). Consumers poll (5 ms busy, up to ``poll`` idle); a publish through the same
  broker object wakes its local consumers at once.
* Retention (see ``retention``) deletes messages every group has settled once older than
  ``retention`` (7 days) or beyond ``max_messages`` per topic; unsettled ones are kept.
  Freed pages are reused by SQLite, so the file stops growing rather than shrinking.
* ``synchronous=normal`` (default) survives a crash of any process; ``synchronous=full``
  also an operating-system crash or power loss. Network file systems are not supported
  (WAL needs shared memory on one host).
"""
