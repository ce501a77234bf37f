#!/usr/bin/env bash
# Regenerates requirements.lock: resolves pyproject's `dev` extra (which pulls in every
# broker extra) in a throw-away venv and writes the exact versions, eventwire itself left out.
# Review the diff, then `bash scripts/bootstrap.sh` installs it.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
tmp=$(mktemp -d -t eventwire-lock-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
"$PYTHON" -m venv "$tmp/venv"
"$tmp/venv/bin/python" -m pip install --quiet --disable-pip-version-check ".[dev]"
"$tmp/venv/bin/python" -m pip freeze --disable-pip-version-check --exclude eventwire \
  | LC_ALL=C sort -f >requirements.lock
echo "requirements.lock: $(wc -l <requirements.lock) pins"
