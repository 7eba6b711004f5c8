#!/usr/bin/env bash
# Runs the service on SQLite with the NICEPAY simulator standing in for NICEPAY.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh

PORT=${PORT:-8000}
SIM_PORT=${SIM_PORT:-8900}
export APP_ENV=development
export DATABASE_URL=${DATABASE_URL:-sqlite+aiosqlite:///./nicepay_cvs.db}
export NICEPAY_BASE_URL=http://127.0.0.1:$SIM_PORT
export PUBLIC_BASE_URL=http://127.0.0.1:$PORT
# The simulator pushes from 127.0.0.1; production keeps only NICEPAY's two ranges.
export NICEPAY_ALLOWED_IPS=103.20.51.0/24,103.117.8.0/24,127.0.0.1/32
export STOREFRONT_API_KEYS=${STOREFRONT_API_KEYS:-dev-storefront-key}
export RECONCILE_INTERVAL_SECONDS=${RECONCILE_INTERVAL_SECONDS:-60}

.venv/bin/python -m app migrate
.venv/bin/python -m simulator --port "$SIM_PORT" &
sim=$!
trap 'kill $sim 2>/dev/null' EXIT

cat <<BANNER

  NICEPAY CVS service   http://127.0.0.1:$PORT   (API docs: /docs)
  NICEPAY simulator     http://127.0.0.1:$SIM_PORT
  database              $DATABASE_URL
  storefront key        ${STOREFRONT_API_KEYS%%,*}

BANNER
.venv/bin/python -m app serve --port "$PORT"
