#!/usr/bin/env bash
# Runs the service on SQLite with the NICEPAY simulator standing in for NICEPAY.
#
# The settings live in .env, which this script writes from .env.example on first run
# (PORT and SIM_PORT choose the ports then; defaults 8000 and 8900). The service and every
# `.venv/bin/python -m app ...` command run from the repository root read that same .env,
# so `doctor`, `replay` and `reconcile` in a second terminal see what the service sees.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh

if [ ! -f .env ]; then
  sed -e "s#^NICEPAY_BASE_URL=.*#NICEPAY_BASE_URL=http://127.0.0.1:${SIM_PORT:-8900}#" \
      -e "s#^PUBLIC_BASE_URL=.*#PUBLIC_BASE_URL=http://127.0.0.1:${PORT:-8000}#" \
      .env.example > .env
  echo "== wrote .env from .env.example (development values: the simulator as NICEPAY)"
fi

# The ports follow from the settings (.env, and the environment over it), not the other way
# round: the dbProcessUrl is built from PUBLIC_BASE_URL and the service calls NICEPAY_BASE_URL.
read -r app_port sim_port db_url < <(.venv/bin/python - <<'PY'
from urllib.parse import urlsplit

from sqlalchemy import make_url

from app.cli import load_settings

s = load_settings()
nicepay = urlsplit(s.nicepay_base_url)
local = nicepay.hostname in ("127.0.0.1", "localhost", "::1")
sim_port = (nicepay.port or 80) if local else "-"
db_url = make_url(s.database_url).render_as_string(hide_password=True)
print(urlsplit(s.public_base_url).port or 80, sim_port, db_url)
PY
)
for pair in "PORT:$app_port:PUBLIC_BASE_URL" "SIM_PORT:$sim_port:NICEPAY_BASE_URL"; do
  IFS=: read -r name wanted setting <<<"$pair"
  if [ -n "${!name:-}" ] && [ "${!name}" != "$wanted" ]; then
    echo "$name=${!name}, but $setting in .env says port $wanted: edit .env (or remove it" \
         "to have it written again with $name)" >&2
    exit 2
  fi
done

.venv/bin/python -m app migrate
if [ "$sim_port" != "-" ]; then
  .venv/bin/python -m simulator --port "$sim_port" &
  sim=$!
  trap 'kill $sim 2>/dev/null' EXIT
  simulator="http://127.0.0.1:$sim_port"
else
  simulator="not started (NICEPAY_BASE_URL is not local)"
fi

cat <<BANNER

  NICEPAY CVS service   http://127.0.0.1:$app_port   (API docs: /docs)
  NICEPAY simulator     $simulator
  database              $db_url
  settings              $PWD/.env (also read by .venv/bin/python -m app ... run from here)
  storefront key        $(grep -m1 '^STOREFRONT_API_KEYS=' .env | cut -d= -f2 | cut -d, -f1)

BANNER
.venv/bin/python -m app serve --port "$app_port"
