# The two commands a newcomer needs are `make run` and `make test`; each does all of its own set-up.
# Everything runs from the project's virtualenv (.venv); downloads are cached in $(CLICKSTREAM_HOME).

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
#: Wheels built once from the pinned packages PyPI has only as source (PySpark, localstack-client): uv builds a
#: source distribution again for every new virtualenv (17 s of each clean `make test`).
WHEELS := $(or $(CLICKSTREAM_HOME),$(HOME)/.cache/clickstream)/wheels
SOURCE_ONLY := pyspark localstack-client

.DEFAULT_GOAL := help
.PHONY: help venv kafka-jars browser up down status deploy local kafka-tui run compact forget lake report test test-fast bench schemas docs lint clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml chalice_app/requirements.txt spark/requirements.txt registry/requirements.txt
	@$(PYTHON) -c 'import sys; sys.exit("Python >= 3.11 is required, found " + sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q "$$(grep -o 'uv==[0-9.]*' pyproject.toml)"
	@mkdir -p $(WHEELS); for name in $(SOURCE_ONLY); do \
	  pin=$$(grep -oE "\"$$name==[0-9.]+" pyproject.toml | tr -d '"'); \
	  ls $(WHEELS)/$$(echo $$name | tr - _)-$${pin##*==}-*.whl >/dev/null 2>&1 || \
	  $(PY) -m pip wheel --disable-pip-version-check -q --no-deps "$$pin" -w $(WHEELS) || exit 1; done
	$(VENV)/bin/uv pip install --python $(PY) --find-links $(WHEELS) -e '.[dev]' -r chalice_app/requirements.txt -r spark/requirements.txt -r registry/requirements.txt
	@touch $@

venv: $(STAMP) ## create the virtualenv and install the project (idempotent)

kafka-jars: $(STAMP) ## resolve Apache Kafka's jars from Maven Central into the cache (once)
	$(PY) -m stack kafka-jars

browser: $(STAMP) ## Debian's Chromium and tmux for the browser and terminal UI tests, if either is missing
	@test -x /usr/bin/chromium -a -x /usr/bin/tmux || { SUDO=$$(test "$$(id -u)" -eq 0 || echo sudo); \
	  $$SUDO apt-get update && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium fonts-noto-color-emoji tmux; }

up: $(STAMP) ## start Kafka, the schema registry on :8085, LocalStack (with the lake bucket), `chalice local` on :60000, the lake writer, the Kafka UI on :8080 (CLUSTER=1: 3 brokers, Spark standalone; LAKE_STORE=s3proxy: the lake on S3Proxy, :8333)
	$(PY) -m stack up

deploy: $(STAMP) ## deploy the collector to Lambda + API Gateway and the shop to an S3 website on LocalStack
	$(PY) -m stack deploy

down: $(STAMP) ## stop everything `make up` started
	$(PY) -m stack down

status: $(STAMP) ## say what runs
	$(PY) -m stack status

local: $(STAMP) ## run the collector in the foreground with `chalice local` on :60000 (needs Kafka: make up)
	$(PY) -m stack local

kafka-tui: $(STAMP) ## kaskade, the terminal Kafka UI: topics, groups and lag; TOPIC=<name> consumes it, decoded
	$(PY) -m stack kafka-tui $(if $(TOPIC),--topic $(TOPIC))

run: kafka-jars ## the whole pipeline: start it, deploy, send traffic through API Gateway, wait for the lake, report
	$(PY) -m run

test: kafka-jars browser lint ## lint, schema check and every test (the suite starts its own Kafka, LocalStack, Spark)
	$(PY) schemas/generate.py --check
	$(PY) -m pytest

test-fast: $(STAMP) ## only the tests that need no service
	$(PY) -m pytest -m "not slow"

compact: $(STAMP) ## sweep repeated ids, compact (OPTIMIZE) and vacuum the lake's Delta tables now (the lake writer does it too)
	$(PY) -m stack compact

forget: $(STAMP) ## forget a customer (CUSTOMER=<id>): listed so no event of theirs is kept again, their rows deleted from every table
	@test -n "$(CUSTOMER)" || { echo "make forget CUSTOMER=<id>: name the customer"; exit 2; }
	$(PY) -m stack forget --customer "$(CUSTOMER)"

lake: $(STAMP) ## what the lake holds, read back with delta-rs
	$(PY) -m lake

report: $(STAMP) ## an HTML report of what the lake holds (DuckDB over the lake's rows), in .runtime/report/
	$(PY) -m lake.report

bench: up ## every figure measured in one run; prints one JSON object (also saved under bench-results/)
	$(PY) -m stack deploy
	$(PY) -m stack deploy --stage bench
	$(PY) -m bench

schemas: $(STAMP) ## regenerate the .avsc, .proto, the collector's copy and its OpenAPI document from the JSON Schema
	$(PY) schemas/generate.py

docs: $(STAMP) ## regenerate README's settings table from the configuration tree (pipeline/config_sections.py)
	$(PY) -m pipeline readme

lint: $(STAMP) ## ruff check and ruff format --check
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

clean: down ## stop services and remove runtime state (the download cache stays)
	rm -rf .runtime
