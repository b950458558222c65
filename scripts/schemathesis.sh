#!/usr/bin/env bash
# Schemathesis against /api/v1/openapi.json on a throwaway portal: no 5xx, no schema violations.
set -euo pipefail
cd "$(dirname "$0")/.."
data=$(mktemp -d /tmp/portal-st-XXXXXX)
export PORTAL_DATA_DIR="$data" PORTAL_ENV=development CELERY_BROKER_URL=memory:// DATABASE_URL=
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION=us-east-1
unset DJANGO_ALLOW_ASYNC_UNSAFE
.venv/bin/python manage.py migrate --noinput -v0
.venv/bin/python manage.py seed_defaults >/dev/null
token=$(.venv/bin/python manage.py create_api_token --name schemathesis --scope lead)
port=$(.venv/bin/python -c "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])")
.venv/bin/gunicorn portal.wsgi:application --bind "127.0.0.1:$port" --workers 2 --timeout 60 --no-control-socket \
  --error-logfile "$data/gunicorn.log" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$data"' EXIT
for _ in $(seq 1 50); do curl -fs "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.2; done
.venv/bin/schemathesis run "http://127.0.0.1:$port/api/v1/openapi.json" \
  -H "Authorization: Bearer $token" \
  --checks not_a_server_error,response_schema_conformance \
  --max-examples "${SCHEMATHESIS_MAX_EXAMPLES:-15}" --request-timeout 20 \
  --generation-deterministic "$@"
