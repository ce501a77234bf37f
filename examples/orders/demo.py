"""Example driver: N worker processes on one SQLite file, 1,000 orders, one poison, a summary.

    python -m examples.orders.demo [--workers 3] [--orders 1000]

No server and no Docker: the broker is a SQLite file under ``.eventwire/orders-demo/``.
It starts the workers (``eventwire run examples.orders.service:app``), publishes the orders,
waits until every order is notified or dead-lettered, stops the workers with SIGTERM (a
graceful shutdown) and adds up what each worker reports.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `examples.orders` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from examples.orders.ledger import Ledger
from examples.orders.models import OrderPlaced
from examples.orders.service import ORDERS

from eventwire.core.headers import DLQ_REASON
from eventwire.core.message import DEAD_LETTER_GROUP, dead_letter_topic
from eventwire.runtime.app import App

ROOT = Path(__file__).resolve().parents[2]
STAT_FIELDS = ("published", "processed", "retried", "dead_lettered", "duplicates_suppressed")


@dataclass(slots=True)
class DeadLetters:
    """Dead letters read back from ``orders.placed.dlq`` while the demo runs."""

    reasons: dict[str, str] = field(default_factory=dict)  # message id -> reason


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=3, help="worker processes (3)")
    parser.add_argument("--orders", type=int, default=1000, help="orders to publish (1000)")
    parser.add_argument("--dir", type=Path, default=Path(".eventwire/orders-demo"))
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait (120)")
    parser.add_argument(
        "--kill-one",
        action="store_true",
        help="SIGKILL one worker a third of the way through and start a replacement",
    )
    args = parser.parse_args(argv)
    if args.workers < 1 or args.orders < 2:
        parser.error("use --workers >= 1 and --orders >= 2")
    return args


def make_orders(count: int) -> list[OrderPlaced]:
    orders = [
        OrderPlaced(
            order_id=f"o-{n:06d}",
            customer_id=f"c-{n % 97:03d}",
            amount_cents=100 + n % 5000,
            items=[f"sku-{n % 13}"],
        )
        for n in range(count)
    ]
    # One poison message: the handler refuses a zero amount on every attempt.
    orders[count // 2] = orders[count // 2].model_copy(update={"amount_cents": 0})
    return orders


def start_workers(
    count: int, broker_url: str, state: Path, stats: Path, *, first: int = 0
) -> list[subprocess.Popen[bytes]]:
    env = {
        **os.environ,
        "ORDERS_STATE_DIR": str(state),
        "ORDERS_STATS_DIR": str(stats),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    command = [sys.executable, "-m", "eventwire.cli", "run", "examples.orders.service:app"]
    workers = []
    for n in range(first, first + count):
        log = (state / f"worker-{n}.log").open("wb")
        workers.append(
            subprocess.Popen(
                [*command, "--broker", broker_url],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
        log.close()  # the child keeps its own handle
    return workers


async def read_dead_letters(app: App, into: DeadLetters) -> None:
    async with app.broker.subscribe(dead_letter_topic(ORDERS), group=DEAD_LETTER_GROUP) as dlq:
        async for delivery in dlq:
            into.reasons[delivery.message.id] = delivery.message.headers.get(DLQ_REASON, "?")
            await delivery.ack()


async def drive(
    args: argparse.Namespace, broker_url: str, ledger: Ledger, crash: Callable[[], None]
) -> tuple[int, DeadLetters, float]:
    orders = make_orders(args.orders)
    dead = DeadLetters()
    expected_ok = args.orders - 1
    async with App(broker_url, name="orders-demo") as app:
        reader = asyncio.create_task(read_dead_letters(app, dead))
        started = time.monotonic()
        for start in range(0, len(orders), 250):
            await app.publish_batch(
                ORDERS, orders[start : start + 250], key=lambda o: o.customer_id
            )
        print(f"published {len(orders)} orders (1 poison) in {time.monotonic() - started:.2f} s")
        deadline = started + args.timeout
        last = -1
        while time.monotonic() < deadline:
            notified = ledger.counts()["notified"]
            if notified != last:
                print(f"  notified {notified}/{expected_ok}, dead-lettered {len(dead.reasons)}/1")
                last = notified
            if notified >= expected_ok and dead.reasons:
                break
            if args.kill_one and notified >= expected_ok // 3:
                args.kill_one = False
                crash()
            await asyncio.sleep(0.5)
        elapsed = time.monotonic() - started
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        return app.stats.published, dead, elapsed


def stop_workers(workers: list[subprocess.Popen[bytes]]) -> list[int | None]:
    for worker in workers:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
    codes: list[int | None] = []
    for worker in workers:
        try:
            codes.append(worker.wait(timeout=20))
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
            codes.append(None)
    return codes


def worker_totals(stats_dir: Path) -> tuple[dict[str, int], int]:
    totals = dict.fromkeys(STAT_FIELDS, 0)
    files = sorted(stats_dir.glob("*.json"))
    for path in files:
        figures = json.loads(path.read_text())
        for name in STAT_FIELDS:
            totals[name] += int(figures.get(name, 0))
    return totals, len(files)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    state = args.dir.resolve()
    shutil.rmtree(state, ignore_errors=True)  # every run starts from an empty broker
    stats_dir = state / "stats"
    stats_dir.mkdir(parents=True)
    # Four slashes: an absolute path. A short lease so a crashed worker's messages come back fast.
    broker_url = f"sqlite:///{state / 'broker.db'}?lease=5"
    ledger = Ledger(state / "ledger.db")
    print(f"broker {broker_url} ; {args.workers} workers ; logs in {state}/worker-*.log")
    workers = start_workers(args.workers, broker_url, state, stats_dir)

    def crash() -> None:
        victim = workers[0]
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        workers[0:1] = start_workers(1, broker_url, state, stats_dir, first=args.workers)
        print(f"  killed worker pid {victim.pid} with SIGKILL; started pid {workers[0].pid}")

    crashed = args.kill_one
    try:
        published, dead, elapsed = asyncio.run(drive(args, broker_url, ledger, crash))
    finally:
        codes = stop_workers(workers)
    totals, reports = worker_totals(stats_dir)
    counts = ledger.counts()
    ledger.close()
    expected_ok = args.orders - 1
    repeats = counts["charge_requests_repeated"] + counts["notifications"] - counts["notified"]
    rows = [
        ("orders published", f"{published} (1 poison)"),
        ("workers", f"{args.workers}, exit codes {codes}, {reports} reported stats"),
        ("processed", f"{totals['processed']} handler runs (billing + notifications)"),
        ("published by workers", str(totals["published"])),
        ("retried", str(totals["retried"])),
        ("dead-lettered", f"{totals['dead_lettered']} {sorted(set(dead.reasons.values()))}"),
        ("duplicates suppressed", str(totals["duplicates_suppressed"])),
        ("orders charged", f"{counts['charged']}/{expected_ok}"),
        ("customers notified", f"{counts['notified']}/{expected_ok}"),
        ("repeated charges", str(counts["charge_requests_repeated"])),
        ("duplicate notifications", str(counts["notifications"] - counts["notified"])),
        ("elapsed", f"{elapsed:.1f} s"),
    ]
    if crashed:
        rows.append(("note", "the worker killed with SIGKILL reported no stats"))
    print("\nsummary")
    for label, value in rows:
        print(f"  {label:<22} {value}")
    if repeats:
        # Each side effect commits with its done-mark (ctx.effectively_once): even after a
        # SIGKILL none may happen twice, so a repeat is a bug, not at-least-once delivery.
        print(f"\n{repeats} side effect(s) happened twice; see examples/orders/README.md")
    ok = (
        counts["charged"] == expected_ok
        and counts["notified"] == expected_ok
        and len(dead.reasons) == 1
        and all(code == 0 for code in codes)
        and repeats == 0
    )
    print(
        "\nOK: every order charged exactly once and notified once; the poison order is in the DLQ"
        if ok
        else "\nINCOMPLETE: see the worker logs"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
