#!/usr/bin/env bash
# The whole suite. Uses DATABASE_URL / CELERY_BROKER_URL when set (CI sets PostgreSQL and Redis);
# pytest's exit code 5 (no tests collected) is a failure, not a pass.
set -u
cd "$(dirname "$0")/.."
export DJANGO_ALLOW_ASYNC_UNSAFE=true
.venv/bin/python -m pytest "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: failing" >&2
  exit 1
fi
exit "$rc"
