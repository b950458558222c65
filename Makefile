# The two commands: `make run` (portal on the embedded default) and `make test` (the whole suite).
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export PYTHONUNBUFFERED := 1

.PHONY: run test lint bench venv migrate clean

$(PY):
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "Python 3.11 is needed ($(PYTHON) not found); set PYTHON=/path/to/python3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

venv: $(STAMP)

migrate: venv
	$(PY) manage.py migrate --noinput -v0
	$(PY) manage.py seed_defaults

run: migrate
	$(PY) manage.py demo_users
	$(PY) manage.py seed_defaults  # again: level 1 of the seeded policies now pages the demo rotation
	@echo ""
	@echo "  FairTradeWorker Ops Portal: http://127.0.0.1:8000"
	@echo "  AWS sandbox endpoint:       http://127.0.0.1:4566"
	@echo ""
	$(VENV)/bin/honcho -f Procfile.dev start

test: venv
	bash scripts/test.sh

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check portal runbooks deployments tests bench || true
	$(VENV)/bin/mypy portal runbooks deployments

bench: venv  # every figure of issue 23 in one table, target beside each (bench/run_all.py; --quick for a smoke run)
	$(PY) bench/run_all.py $(BENCH_ARGS)

clean:
	rm -rf data
