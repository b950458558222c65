#!/usr/bin/env bash
# The whole suite. Uses DATABASE_URL / CELERY_BROKER_URL when set (CI sets PostgreSQL and Redis);
# pytest's exit code 5 (no tests collected) is a failure, not a pass.
#
# Without arguments, and with CI or PORTAL_FAULT_TESTS set, the fault tests follow in a session of
# their own (tests/faults): they stop and start this machine's PostgreSQL and Redis and SIGKILL
# Celery workers, so they never share a session with the tests that hold database connections.
set -u
cd "$(dirname "$0")/.."
export DJANGO_ALLOW_ASYNC_UNSAFE=true

run_pytest() {
  .venv/bin/python -m pytest "$@"
  local rc=$?
  if [ "$rc" -eq 5 ]; then
    echo "pytest collected no tests: failing" >&2
    return 1
  fi
  return "$rc"
}

run_pytest "$@"
rc=$?
if [ "$#" -eq 0 ]; then
  if [ -n "${CI:-}" ] || [ -n "${PORTAL_FAULT_TESTS:-}" ]; then
    echo
    echo "== fault tests: PostgreSQL and Redis stopped for real, workers SIGKILLed (tests/faults)"
    run_pytest --faults tests/faults -s  # -s: each test prints what it measured
    frc=$?
    [ "$rc" -eq 0 ] && rc=$frc
  else
    echo "(fault tests not run: they stop this machine's PostgreSQL and Redis; CI runs them, or set PORTAL_FAULT_TESTS=1)"
  fi
fi
exit "$rc"
