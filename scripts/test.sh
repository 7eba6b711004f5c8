#!/usr/bin/env bash
# The whole test suite: lint, format, types, and every test on SQLite and PostgreSQL, with
# coverage.
# Extra arguments go to pytest (e.g. scripts/test.sh tests/notifications -x).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh

# PostgreSQL on 127.0.0.1:5432 (trust auth) for the database tests; start it if it is down.
if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  if command -v pg_ctlcluster >/dev/null 2>&1; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start
  fi
  for _ in $(seq 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
fi

# Debian's Chromium for the console's browser tests (tests/console/test_browser.py), driven
# by Playwright's Python client through executable_path: never `playwright install`.
if [ ! -x /usr/bin/chromium ]; then
  echo "== installing chromium (apt)"
  sudo_=""; [ "$(id -u)" -eq 0 ] || sudo_="sudo -n"
  $sudo_ env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo_ env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium
fi

echo "== ruff";  .venv/bin/ruff check .
echo "== ruff format"; .venv/bin/ruff format --check .
echo "== mypy";  .venv/bin/mypy
# Two workers (pytest-xdist), a test file each at a time: every worker has its own
# databases and servers. TEST_WORKERS=0 runs everything in this one process.
echo "== pytest (with coverage of app/ and simulator/)"
.venv/bin/pytest -n "${TEST_WORKERS:-2}" --dist loadfile --cov --cov-report=term "$@"
