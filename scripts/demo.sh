#!/usr/bin/env bash
# The main job on the embedded SQLite broker, no server and no Docker:
#  1. requirements file -> `eventwire advise` -> `eventwire init` -> the generated service's
#     worker and publisher run on SQLite -> the setup summary and processing figures;
#  2. the orders -> billing -> notifications example with several worker processes and one
#     poison message, ending with its summary.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
out=${1:-$(mktemp -d -t eventwire-demo-XXXXXX)}
echo "### Part 1: set up a service from requirements (into $out)"
.venv/bin/python examples/setup_flow.py --dir "$out/orders-service"
echo
echo "### Part 2: the orders example, 3 worker processes on one SQLite file"
.venv/bin/python -m examples.orders.demo
