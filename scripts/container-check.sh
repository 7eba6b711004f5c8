#!/usr/bin/env bash
# Builds the Docker image and checks it as a deployer would: the one-off migration, the
# service and the simulator from the image, the README's tour against PostgreSQL, the
# HEALTHCHECK, a non-root user, no dev tools in the image, and a clean stop on SIGTERM.
#
#     scripts/container-check.sh
#
# Needs a running Docker daemon and PostgreSQL on 127.0.0.1:5432 (trust auth, as for the
# tests; PG_ADMIN_URL overrides). Not part of .ci/run: CI has no Docker daemon or registry.
#
# The base image is python:3.11-slim when a registry answers; otherwise (no registry
# reachable, as on the project's machines) scripts/local-python-image.sh makes a stand-in
# from Debian's packages (PYTHON_IMAGE=... skips both). The containers use host networking:
# they reach the host's PostgreSQL, and the service, the simulator and the tour all talk
# over 127.0.0.1, on ports that do not clash with scripts/dev.sh (APP_PORT, SIM_PORT).
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${IMAGE:-nicepay-cvs:check}
APP_PORT=${APP_PORT:-8471}
SIM_PORT=${SIM_PORT:-8472}
PG_ADMIN_URL=${PG_ADMIN_URL:-postgresql://postgres@127.0.0.1:5432/postgres}
run_id=$$
DB=nicepay_container_check_$run_id
APP=nicepay-check-app-$run_id
SIM=nicepay-check-sim-$run_id
APP_URL=http://127.0.0.1:$APP_PORT
SIM_URL=http://127.0.0.1:$SIM_PORT

failures=0
pass() { echo "PASS  $*"; }
fail() { echo "FAIL  $*"; failures=$((failures + 1)); }
step() { echo; echo "== $*"; }

docker info >/dev/null 2>&1 || {
  echo "The Docker daemon is not running (as root: dockerd > /tmp/dockerd.log 2>&1 &)" >&2
  exit 1
}
pg_isready -q -d "$PG_ADMIN_URL" || { echo "PostgreSQL is not answering at $PG_ADMIN_URL" >&2; exit 1; }

cleanup() {
  docker rm -f "$APP" "$SIM" >/dev/null 2>&1 || true
  psql -q "$PG_ADMIN_URL" -c "DROP DATABASE IF EXISTS \"$DB\" WITH (FORCE)" >/dev/null 2>&1 || true
}
trap cleanup EXIT

step "base image"
if [ -z "${PYTHON_IMAGE:-}" ]; then
  if timeout 60 docker pull -q python:3.11-slim >/dev/null 2>&1; then
    PYTHON_IMAGE=python:3.11-slim
  else
    echo "no registry answered: a local stand-in for python:3.11-slim"
    PYTHON_IMAGE=$(scripts/local-python-image.sh)
  fi
fi
echo "PYTHON_IMAGE=$PYTHON_IMAGE"

step "build $IMAGE"
# The classic builder: it needs no BuildKit front-end image from a registry, and its
# --network host reaches PyPI the way the host does.
DOCKER_BUILDKIT=0 docker build --quiet --network host \
  --build-arg PYTHON_IMAGE="$PYTHON_IMAGE" -t "$IMAGE" . >/dev/null
echo "built $(docker image inspect -f '{{.Id}}' "$IMAGE" | cut -c1-19), $(($(docker image inspect -f '{{.Size}}' "$IMAGE") / 1000000)) MB"

# Production settings (APP_ENV=production refuses sandbox credentials, so a made-up merchant
# shared with the simulator), PostgreSQL, the simulator as NICEPAY.
KEY=check-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
MERCHANT_KEY=$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')
IMID=CHECK00001
psql -q "$PG_ADMIN_URL" -c "CREATE DATABASE \"$DB\"" >/dev/null
DATABASE_URL="postgresql+asyncpg://${PG_ADMIN_URL#postgresql://}"
DATABASE_URL="${DATABASE_URL%/*}/$DB"
SETTINGS=(
  -e APP_ENV=production
  -e DATABASE_URL="$DATABASE_URL"
  -e NICEPAY_BASE_URL="$SIM_URL"
  -e NICEPAY_IMID="$IMID"
  -e NICEPAY_MERCHANT_KEY="$MERCHANT_KEY"
  -e NICEPAY_ALLOWED_IPS=127.0.0.1/32
  -e PUBLIC_BASE_URL="$APP_URL"
  -e STOREFRONT_API_KEYS="$KEY"
  -e RECONCILE_INTERVAL_SECONDS=0
)

step "migrate (one-off container)"
if docker run --rm --network host "${SETTINGS[@]}" "$IMAGE" python -m app migrate 2>&1 | tail -3; then
  pass "migrate"
else
  fail "migrate"
fi

step "simulator and service"
docker run -d --name "$SIM" --network host -e SIM_IMID="$IMID" -e SIM_MERCHANT_KEY="$MERCHANT_KEY" \
  --no-healthcheck "$IMAGE" python -m simulator --host 127.0.0.1 --port "$SIM_PORT" >/dev/null
# The image's own HEALTHCHECK command, checked more often than its 30 s for this run.
docker run -d --name "$APP" --network host "${SETTINGS[@]}" \
  -e HEALTHCHECK_URL="$APP_URL/healthz" --health-interval 2s --health-start-period 10s \
  "$IMAGE" python -m app serve --host 127.0.0.1 --port "$APP_PORT" >/dev/null

health=starting
for _ in $(seq 60); do
  health=$(docker inspect -f '{{.State.Health.Status}}' "$APP")
  [ "$health" = healthy ] || [ "$health" = unhealthy ] && break
  sleep 1
done
[ "$health" = healthy ] && pass "HEALTHCHECK: $health" || fail "HEALTHCHECK: $health"

uid=$(docker exec "$APP" python -c 'import os; print(os.getuid(), os.getgid())')
user=$(docker inspect -f '{{.Config.User}}' "$IMAGE")
[ "$uid" = "10001 10001" ] && pass "non-root: uid/gid $uid (USER $user)" || fail "runs as uid/gid $uid"

extra=$(docker exec "$APP" python -c 'import importlib.util as u; print(" ".join(m for m in ("pytest", "mypy", "ruff", "hypothesis", "schemathesis", "watchfiles", "websockets", "yaml", "uv") if u.find_spec(m)))')
[ -z "$extra" ] && pass "no dev tools or file watcher in the image" || fail "in the image: $extra"
fast=$(docker exec "$APP" python -c 'import importlib.util as u; print(" ".join(m for m in ("uvloop", "httptools") if u.find_spec(m)))')
[ "$fast" = "uvloop httptools" ] && pass "uvloop and httptools installed" || fail "uvloop/httptools: $fast"

ready=$(curl -s -o /dev/null -w '%{http_code}' "$APP_URL/readyz")
[ "$ready" = 200 ] && pass "GET /readyz: 200 (PostgreSQL, migrations at head)" || fail "GET /readyz: $ready"
docs=$(curl -s -o /dev/null -w '%{http_code}' "$APP_URL/docs")
[ "$docs" = 404 ] && pass "GET /docs: 404 in production" || fail "GET /docs: $docs"

step "the README's tour"
REF=CHECK-$run_id
auth=(-H "Authorization: Bearer $KEY")
code=$(curl -s -o /tmp/container-check-$run_id.json -w '%{http_code}' -X POST "$APP_URL/api/v1/cvs/payments" \
  "${auth[@]}" -H 'content-type: application/json' \
  -d '{"reference_no":"'"$REF"'","amount":10000,"store":"alfamart","goods_name":"Kopi Susu",
       "customer":{"name":"Budi","phone":"081234567890","email":"budi@example.co.id"}}')
echo "1. register: $code $(cat /tmp/container-check-$run_id.json)"
rm -f /tmp/container-check-$run_id.json
[ "$code" = 201 ] && pass "register: 201" || fail "register: $code"

TXID=$(curl -s "$APP_URL/api/v1/cvs/payments/$REF" "${auth[@]}" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin).get("txid") or "")')
echo "2. pay at the till: $(curl -s -X POST "$SIM_URL/sim/transactions/$TXID/pay")"
status=
for _ in $(seq 30); do
  status=$(curl -s "$APP_URL/api/v1/cvs/payments/$REF" "${auth[@]}" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])')
  [ "$status" = paid ] && break
  sleep 1
done
echo "3. $(curl -s "$APP_URL/api/v1/cvs/payments/$REF" "${auth[@]}")"
[ "$status" = paid ] && pass "the simulator's push made it paid" || fail "payment is $status"

echo "4. $(curl -s "$APP_URL/metrics" | grep '^nicepay_notifications' | head -3)"
curl -s "$APP_URL/metrics" | grep -q '^nicepay_notifications_total{.*applied' \
  && pass "/metrics counts the applied notification" || fail "no applied notification in /metrics"

step "operator commands in the running container"
docker exec "$APP" python -m app --help | head -3
if docker exec "$APP" python -m app doctor --service-url "$APP_URL"; then pass "doctor"; else fail "doctor"; fi
if docker exec "$APP" python -m app reconcile; then pass "reconcile"; else fail "reconcile"; fi

step "clean stop (SIGTERM)"
start=$(date +%s)
docker stop -t 30 "$APP" >/dev/null
took=$(($(date +%s) - start))
exit_code=$(docker inspect -f '{{.State.ExitCode}}' "$APP")
docker logs "$APP" 2>&1 | tail -2
if [ "$exit_code" = 0 ] && docker logs "$APP" 2>&1 | grep -q 'Application shutdown complete'; then
  pass "stopped in ${took}s, exit code 0, shutdown complete"
else
  fail "stop: exit code $exit_code after ${took}s"
fi
docker stop -t 10 "$SIM" >/dev/null

echo
if [ "$failures" = 0 ]; then echo "container check: all passed"; else echo "container check: $failures failed"; fi
exit $((failures > 0))
