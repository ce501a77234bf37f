"""The whole eventwire setup flow on the embedded broker, no Docker and no server.

requirements file -> `eventwire advise` -> `eventwire init` (advice picks the broker) ->
the generated demo (worker and publisher) runs on the embedded SQLite broker -> the setup summary
and the processing figures.

    python examples/setup_flow.py [--requirements FILE] [--dir PATH] [--count N]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DEFAULT_REQUIREMENTS = HERE / "requirements" / "orders-work-queue.yaml"
SQLITE_URL = "sqlite:///.eventwire/broker.db"  # relative to the service folder
SQLITE_MARKS = "sqlite:///.eventwire/idempotency.db"  # the idempotency store, next to it


def eventwire(*args: str) -> str:
    """Run an ``eventwire`` command as a user would; its output, or exit with its error."""
    print(f"$ eventwire {' '.join(args)}", flush=True)
    done = subprocess.run(
        [sys.executable, "-m", "eventwire.cli", *args], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        sys.exit(done.stderr.strip() or f"eventwire {args[0]} failed")
    return done.stdout


def run_on_sqlite(root: Path, package: str, count: int) -> dict[str, Any]:
    """The generated demo (worker + publisher in one process), then the dead-letter reader."""
    module = f"{package}.messaging"
    env = {**os.environ, "EVENTWIRE_IDEMPOTENCY_URL": SQLITE_MARKS}
    print(f"$ python -m {module}.demo --broker-url {SQLITE_URL} --count {count} --poison 1")
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", f"{module}.demo", "--broker-url", SQLITE_URL,
         "--count", str(count), "--poison", "1", "--timeout", "300"],
        cwd=root, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(done.stderr.strip() or "the demo did not finish: see its output above")
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    letters = subprocess.run(
        [sys.executable, "-m", f"{module}.dead_letters", "--broker-url", SQLITE_URL],
        cwd=root, env=env, check=True, capture_output=True, text=True,
    )  # fmt: skip
    figures["dead_letters_in_dlq"] = json.loads(letters.stdout.splitlines()[-1])["dead_letters"]
    figures["seconds"] = round(elapsed, 2)
    figures["messages_per_second"] = round(figures["handled"] / elapsed) if elapsed else None
    figures["worker_exit"] = done.returncode
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requirements", type=Path, default=DEFAULT_REQUIREMENTS)
    parser.add_argument("--dir", type=Path, help="where the service goes (default: a temp dir)")
    parser.add_argument("--name", default="orders-service")
    parser.add_argument("--count", type=int, default=1000)
    args = parser.parse_args()
    parent = args.dir or Path(tempfile.mkdtemp(prefix="eventwire-flow-"))
    root = parent / args.name

    print("== 1. Advice\n")
    print(eventwire("advise", "--from", str(args.requirements)))
    print("== 2. Scaffold (advice picks the broker; pattern from the use case)\n")
    summary = eventwire("init", args.name, "--from", str(args.requirements), "--dir", str(root))
    package = json.loads((root / ".eventwire-manifest.json").read_text())["package"]
    print(f"   service written to {root}\n")
    print(f"== 3. Run on the embedded SQLite broker: {args.count} messages + 1 poison\n")
    figures = run_on_sqlite(root, package, args.count)
    print()
    print(summary[summary.index("✅") :].rstrip())
    print("\nProcessing (embedded SQLite broker):")
    for key in ("processed", "dead_lettered", "dead_letters_in_dlq", "retried", "failed",
                "duplicates_suppressed", "seconds", "messages_per_second"):  # fmt: skip
        print(f"  {key}: {figures[key]}")
    return 0 if figures["worker_exit"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
