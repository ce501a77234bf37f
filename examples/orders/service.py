"""Example: the orders service: billing charges orders, notifications tells customers.

Run it with ``eventwire run examples.orders.service:app`` (several processes may run it on
one SQLite broker file: they share the work). Environment:

* ``ORDERS_STATE_DIR`` (default ``.eventwire/orders``): where ``ledger.db`` lives: the shared
  idempotency store AND the tables of side effects, in one SQLite file, so each side effect
  commits in the same transaction as its message's done-mark (``ctx.effectively_once``).
* ``ORDERS_STATS_DIR`` (unset: off): when set, the worker writes its ``app.stats`` as JSON to
  ``<dir>/<pid>.json`` when it exits, so a driver can add up every worker's figures.
"""

from __future__ import annotations

import atexit
import dataclasses
import json
import os
import zlib
from functools import partial
from pathlib import Path

from examples.orders import ledger
from examples.orders.models import OrderPlaced, PaymentCharged

from eventwire.core.errors import PermanentError
from eventwire.core.message import Message
from eventwire.reliability.idempotency import SQLiteIdempotencyStore
from eventwire.reliability.retry import RetryPolicy
from eventwire.runtime.app import App
from eventwire.runtime.context import Context

STATE_DIR = Path(os.environ.get("ORDERS_STATE_DIR", ".eventwire/orders"))
ORDERS = "orders.placed"
CHARGED = "billing.charged"

# A store in a file shared by every worker process, next to the tables the effects write:
# a message redelivered to another worker (its first worker died before the ack) is
# recognised as done exactly when its side effect was committed.
LEDGER_FILE = STATE_DIR / "ledger.db"
app = App(
    name="orders",
    shutdown_timeout=10.0,
    idempotency_store=SQLiteIdempotencyStore(LEDGER_FILE),
)


class GatewayTimeoutError(Exception):
    """A transient failure of the (simulated) payment gateway: retrying helps."""


def _flaky(order_id: str) -> bool:
    # Deterministic 2% of orders time out on their first attempt, to show retries.
    return zlib.crc32(order_id.encode()) % 50 == 0


@app.subscriber(
    ORDERS,
    group="billing",
    concurrency=8,
    retry=RetryPolicy(max_attempts=3, initial_delay=0.05, max_delay=0.5, multiplier=2.0),
    ordered_by="customer_id",  # one customer's orders are charged in the order placed
    idempotent=True,
)
async def charge(order: OrderPlaced, ctx: Context) -> None:
    """Charge an order and announce it; the charge commits with the message's done-mark."""
    if order.amount_cents <= 0:
        # Poison: every attempt fails the same way; after max_attempts it is dead-lettered.
        raise ValueError(f"order {order.order_id} has amount {order.amount_cents}: refusing")
    if _flaky(order.order_id) and ctx.attempt == 1:
        raise GatewayTimeoutError(f"payment gateway timed out for {order.order_id}")
    if not order.items:
        raise PermanentError(f"order {order.order_id} has no items")  # dead-lettered at once
    charged = PaymentCharged(
        order_id=order.order_id,
        customer_id=order.customer_id,
        amount_cents=order.amount_cents,
        charge_id=f"ch-{ctx.message.id[:12]}",
    )
    # Announced BEFORE the charge commits: once it commits, a redelivery is acked without
    # calling this handler, so an announcement after it would be lost if the worker died in
    # between. A worker dying after the publish repeats it, under the same id (derived from
    # this message's), which the idempotent ``notify`` recognises. (To announce strictly
    # after the commit, write the announcement in the effect's transaction: an outbox.)
    await ctx.publish(
        CHARGED,
        Message(
            body=charged.model_dump_json().encode(),
            id=f"{ctx.message.id}.charged",
            content_type="application/json",
        ),
        key=order.customer_id,
    )
    await ctx.effectively_once(
        partial(
            ledger.charge,
            order_id=order.order_id,
            amount_cents=order.amount_cents,
            message_id=ctx.message.id,
        )
    )


@app.subscriber(CHARGED, group="notifications", concurrency=8, idempotent=True)
async def notify(charged: PaymentCharged, ctx: Context) -> None:
    """Tell the customer (here: record that we would have sent an e-mail)."""
    ctx.logger.debug("charged %s cents for %s", charged.amount_cents, charged.order_id)
    await ctx.effectively_once(
        partial(ledger.notify, order_id=charged.order_id, message_id=ctx.message.id)
    )


def _write_stats(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"{os.getpid()}.json"
    tmp = target.with_suffix(".tmp")
    tmp.write_text(json.dumps(dataclasses.asdict(app.stats)))
    tmp.replace(target)  # a reader never sees half a file


if os.environ.get("ORDERS_STATS_DIR"):
    # atexit runs after `eventwire run` returns from app.serve(), i.e. after a graceful stop.
    atexit.register(_write_stats, Path(os.environ["ORDERS_STATS_DIR"]))
