"""Broker layer: the Kafka adapter (confluent-kafka / librdkafka, classic API).

How the contract maps onto Kafka:

* ``publish`` produces through one idempotent producer (``acks=all``); the key picks the
  partition. It returns when every delivery report of the call is in; the producer's poll
  thread resolves the call's future (``publisher.py``).
* A group is a Kafka consumer group (cooperative-sticky, or KIP-848 with
  ``group_protocol=consumer``); a new group starts at the earliest retained offset (replay).
  ``group=None`` assigns every partition at the high watermark: it reads from now.
* Every subscription runs its own ``Consumer`` on its own thread (``worker.py``); offsets are
  committed only up to the lowest unfinished offset of each partition (``offsets.py``), every
  ``commit_interval``, at once on revoke and on close, never for lost partitions. Partitions
  are paused while ``prefetch`` deliveries are open, and polling goes on.
* ``nack(delay)`` produces a copy to ``<topic>.retry.<n>`` with its due time; the group reads
  those topics too and pauses a retry partition until its head is due (``topics.py``).
  ``dead_letter`` produces to ``<topic>.dlq`` with the reason and the original topic,
  partition and offset; the body is byte-identical.
* Leaving a subscription commits the lowest unsettled offset with each unsettled offset's
  attempt in the commit metadata: the next member redelivers them with attempt + 1.
* ``browse_dead_letters`` (``eventwire dlq list``) reads ``<topic>.dlq`` from the
  ``eventwire-dlq`` group's committed offsets with an assigned consumer that never joins the
  group or commits: listing changes nothing, and a missing DLQ topic is reported, not made.
* Topics are created on demand with ``partitions``/``replication`` from the URL, or with
  ``create_topics=false`` a missing one is a ``ConfigurationError``.

Known windows, all on the side of duplicates, never loss: a crash redelivers what was
finished after the last commit (at most ``commit_interval`` of work, plus everything above an
unfinished offset); a copy to a retry or dead-letter topic is confirmed before the original
is finished, so a crash in between leaves both. A delivery still held when its partition is
revoked is read again by the new owner; settling it afterwards is a no-op. After a crash the
attempt count restarts from the last commit's metadata (or 1). A broadcast ``nack`` is
redelivered from memory: a broadcast subscriber that dies loses it, as it loses everything
published while it is away.
"""
