#!/usr/bin/env bash
# The whole check: lint, format, types, import contracts, then every test. Any failure fails.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export PATH="$PWD/.venv/bin:$PATH"
echo "== ruff check";   ruff check .
echo "== ruff format";  ruff format --check .
echo "== mypy";         mypy
echo "== mypy tests";   mypy tests
echo "== import contracts"; lint-imports
echo "== pytest"
set +e
pytest "$@"
code=$?
set -e
if [ "$code" -eq 5 ]; then
  echo "pytest collected no tests: that is a failure" >&2
  exit 1
fi
exit "$code"
