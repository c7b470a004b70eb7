# vgsales: `make run` (everything, then the API) and `make test` (everything, then
# the tests) are the two commands a fresh machine needs. `make help` lists the rest.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Runs a command with ml.settings exported (.run/stack.env under the real env).
WITH_ENV := scripts/with-env
PYTEST_ARGS ?=
# Total privacy budget of `make dp-release`.
EPSILON ?= 1.0
# Schedules `make deploy` creates (cron, UTC): the full pipeline about every
# four months (06:00 on 1 Jan, May, Sep), the drift check daily, and the
# prediction-log drain hourly (the API's Redis stream is capped).
# The local Prefect server `make deploy` starts (scripts/prefect_server.sh).
PREFECT_URL = $$(scripts/prefect_server.sh url)

.PHONY: help run pipeline serve test test-fast imports deployments db-shell venv stack-up stack-down stack-status data \
	lint docs docs-serve bench mlflow-ui lock clean distclean report dp-release model-card \
	deploy worker drift-check prefect-down browser dbt-changed

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

run: pipeline serve ## Set up everything, run the whole pipeline on the real data, serve the API

pipeline: venv stack-up data ## Set up everything and run the pipeline (dbt, export, training, registry)
	@echo "[pipeline] running the Prefect flow (flows/pipeline/__main__.py)"
	$(WITH_ENV) python -m flows.pipeline --html-report reports

serve: venv stack-up ## Serve the API (nginx on 127.0.0.1:API_PORT in front of API_INSTANCES gunicorn instances) and land its prediction log, foreground
	@# The consumer lands the prediction log as the API writes it; it stops with the API.
	@# python -m serve runs nginx and the instances, stops them on exit, and says where things are.
	$(WITH_ENV) python -m ml.monitoring.consumer & consumer=$$!; \
		trap 'kill $$consumer 2>/dev/null || true; wait $$consumer || true' EXIT; \
		$(WITH_ENV) python -m serve --report reports/index.html

test: venv stack-up browser imports ## Set up everything and run the whole test suite (unit, integration, system, browser)
	$(WITH_ENV) python -m pytest $(PYTEST_ARGS)

test-fast: venv imports ## Unit tests and the import arrows: no MariaDB, Redis or other service started
	$(WITH_ENV) python -m pytest tests/unit $(PYTEST_ARGS)

imports: venv ## Check the import arrows (import-linter contracts in pyproject.toml)
	@out=$$($(VENV)/bin/lint-imports --no-cache 2>&1) && status=0 || status=$$?; \
	    printf '%s\n' "$$out" | sed -n '/^Contracts/,$$p' | grep -v '^-*$$'; exit $$status

venv: $(STAMP) ## Create .venv with the pinned dependencies

$(STAMP): requirements.txt constraints.txt
	@echo "[venv] installing pinned dependencies into $(VENV) (first run: a few minutes)"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || { \
		if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq python3-venv && $(PYTHON) -m venv $(VENV); \
		else echo "[venv] error: '$(PYTHON) -m venv' failed; install python3-venv" >&2; exit 1; fi; }
	@mkdir -p .run/logs
	@{ $(PY) -m pip install --quiet --upgrade pip \
	    && $(PY) -m pip install --progress-bar off -r requirements.txt -c constraints.txt \
	    && $(PY) -m pip check; } > .run/logs/venv.log 2>&1 \
	  || { tail -n 30 .run/logs/venv.log >&2; echo "[venv] error: pip failed (whole log: .run/logs/venv.log)" >&2; exit 1; }
	@echo "[venv] ready (pip's log: .run/logs/venv.log)"
	@touch $@

browser: ## Install Debian's chromium and chromium-driver for the browser tests (as root, when missing)
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
		if [ "$$(id -u)" = 0 ]; then echo "[browser] installing chromium, chromium-driver (apt-get)"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
		else echo "[browser] error: install chromium and chromium-driver: sudo apt-get install -y chromium chromium-driver" >&2; exit 1; fi; }

stack-up: ## Start MariaDB, Redis and the MLflow registry server under .run/ (idempotent; installs what is missing, nginx too)
	@scripts/stack.sh up

stack-down: ## Stop MariaDB, Redis and the registry server (data stays in .run/)
	@scripts/stack.sh down

stack-status: ## Say what runs where
	@scripts/stack.sh status

data: venv ## Check seeds/vgsales.csv (never replaced), or put the verified Kaggle file there
	@$(WITH_ENV) python -m ml.data.fetch

deploy: venv stack-up ## Start a local Prefect server; schedule the pipeline, drift check and drain (PIPELINE_CRON, DRIFT_CRON, DRAIN_CRON override flows/deploy.py's crons)
	@scripts/prefect_server.sh up
	PREFECT_API_URL=$(PREFECT_URL) $(WITH_ENV) python -m flows.deploy

db-shell: venv stack-up ## Open the warehouse in the mariadb client as the read-only user
	@$(WITH_ENV) bash -c 'MYSQL_PWD="$$MARIADB_READER_PASSWORD" exec mariadb --host="$$MARIADB_HOST" \
	    --port="$$MARIADB_PORT" --user="$$MARIADB_READER_USER" --default-character-set=utf8mb4 "$$MARIADB_DATABASE"'

deployments: venv stack-up ## List the scheduled deployments and their next runs (starts the local Prefect server if needed)
	@scripts/prefect_server.sh up
	@PREFECT_API_URL=$(PREFECT_URL) $(WITH_ENV) python -m flows.deploy --list

worker: venv stack-up ## Run the scheduled flows: a Prefect process worker on the pool `vgsales` (foreground)
	@scripts/prefect_server.sh up
	PREFECT_API_URL=$(PREFECT_URL) $(WITH_ENV) prefect worker start --pool vgsales

drift-check: venv stack-up ## Drain the prediction log, check drift, retrain on error-level drift: reports/drift/
	$(WITH_ENV) python -m flows.drift_check

prefect-down: ## Stop the local Prefect server (schedules stay in .run/prefect-server/)
	@scripts/prefect_server.sh down

dbt-changed: venv stack-up data ## Build and test only the dbt models changed since the last `make pipeline`, and their children, into <database>_dev
	$(WITH_ENV) python -m ml.warehouse.changed

lint: venv stack-up ## sqlfluff (dbt templater) over the dbt models and tests: each violation, then how many files and what it found
	@mkdir -p .run && cd dbt_project && ../$(WITH_ENV) sqlfluff lint models tests --format json --nofail > ../.run/sqlfluff.json
	@$(VENV)/bin/python scripts/sqlfluff_report.py .run/sqlfluff.json

docs: venv stack-up data ## Generate the dbt docs site into dbt_project/target/
	cd dbt_project && ../$(WITH_ENV) dbt docs generate
	@echo "[docs] open dbt_project/target/index.html, or: make docs-serve"

docs-serve: docs ## Serve the dbt docs on 127.0.0.1:DBT_DOCS_PORT (scripts/ports.sh)
	cd dbt_project && ../$(WITH_ENV) dbt docs serve --port $$(../scripts/ports.sh DBT_DOCS_PORT)

report: venv stack-up ## Analytics report of the last run's warehouse and champions: reports/index.html
	$(WITH_ENV) python -m ml.reporting.analytics_report --out reports

dp-release: venv stack-up ## Differentially private sales aggregates (EPSILON=1.0) into reports/dp/
	$(WITH_ENV) python -m ml.reporting.dp_release --epsilon $(EPSILON) --out reports/dp

model-card: venv stack-up ## Model card of each champion and the datasheet: reports/model_card_*.md, reports/datasheet.md
	$(WITH_ENV) python -m ml.reporting.model_card --out reports

bench: venv stack-up data ## Benchmarks: print tables, write bench/results/
	@command -v wrk >/dev/null || { [ "$$(id -u)" = 0 ] && { apt-get install -y -qq wrk \
		|| { apt-get update -qq && apt-get install -y -qq wrk; }; } >/dev/null 2>&1; } \
		|| echo "[bench] wrk not installed: bench_serve uses its Python load generator"
	$(WITH_ENV) python -m bench

mlflow-ui: venv ## Where the registry's UI is (the registry server's own); with OLD=1, a UI on MLFLOW_UI_PORT over the SQLite store older checkouts left in .run/mlflow/
	@if [ -n "$(OLD)" ]; then \
		$(WITH_ENV) bash -c 'mlflow ui --backend-store-uri "sqlite:///$$PWD/.run/mlflow/mlflow.db" \
		--default-artifact-root "$$MLFLOW_ARTIFACT_ROOT" --host 127.0.0.1 --port '$$(scripts/ports.sh MLFLOW_UI_PORT); \
	else echo "[mlflow] the registry's UI: http://127.0.0.1:$$(scripts/ports.sh MLFLOW_PORT) (scripts/stack.sh runs the server)"; fi

lock: venv ## Regenerate constraints.txt from the venv
	@{ echo "# Full lock for reproducible installs: pip install -r requirements.txt -c constraints.txt"; \
	   echo "# Regenerate with: make lock"; $(PY) -m pip freeze --exclude-editable; } > constraints.txt

clean: ## Stop the stack and delete generated state (.run/, dbt target, results)
	-@scripts/prefect_server.sh down
	-@scripts/stack.sh down
	rm -rf .run dbt_project/target dbt_project/logs dbt_project/staged_seeds bench/results reports .pytest_cache

distclean: clean ## clean, and also the venv and the copied raw data
	rm -rf $(VENV) seeds/vgsales.csv
