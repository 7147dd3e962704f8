# driftline — the two set-up commands of README are `make demo` and `make test`.
# Everything installs into a project-local virtual environment; nothing is installed by hand.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
OUT ?= out

.PHONY: demo test unit lint typecheck check bench quality clean services-up services-down

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	touch $(STAMP)

## demo: run the embedded monitor on a synthetic stream with three drift episodes (no services).
demo: $(STAMP)
	$(VENV)/bin/driftline demo --output $(OUT)/demo

## test: install what is missing, run the checks (lint, import contracts, types), start the services
## (deploy/local), run the whole test suite against them, and stop them again, whatever the tests'
## outcome (pytest's exit code is kept).
test: check
	@exports="$$(bash deploy/local/services.sh up)" || { bash deploy/local/services.sh down; exit 1; }; \
	eval "$$exports"; \
	trap 'bash deploy/local/services.sh down; exit 130' INT TERM; \
	status=0; $(PY) -m pytest -q --durations=15 || status=$$?; \
	bash deploy/local/services.sh down || true; \
	exit $$status

## services-up: start Kafka, PostgreSQL, Prometheus, Alertmanager and the Schema Registry on loopback (deploy/local/README.md).
## Make cannot set your shell's variables: run `eval "$(bash deploy/local/services.sh up)"` for that.
services-up:
	bash deploy/local/services.sh up
	@bash deploy/local/services.sh status

## services-down: stop the services started by services-up (or by deploy/local/services.sh up).
services-down:
	bash deploy/local/services.sh down

## bench: throughput of the engine against a naive per-event baseline, the cost of labels, detector quality, and the
## end-to-end run on the local services (full worker against a raw consumer and a counting Faust
## agent, produce-to-commit latency at 5,000 and 20,000 events/s, memory over 5,000,000 events; about
## 5 minutes; BENCH_E2E_ARGS="--events 100000 --rss-events 0" for a quick one). The services are stopped afterwards only if none was running before
## (`make bench` started them all); services that were already up, yours or a colleague's, are left running.
BENCH_E2E_ARGS ?=
bench: $(STAMP)
	$(PY) tests/benchmarks/engine_throughput.py
	$(PY) tests/benchmarks/engine_throughput.py --events-per-second 10 --events 200000
	$(PY) tests/benchmarks/label_cost.py
	$(PY) tests/benchmarks/detector_quality.py
	@if bash deploy/local/services.sh status | grep -qv ' stopped'; then ours=0; else ours=1; fi; \
	stop() { if [ $$ours = 1 ]; then bash deploy/local/services.sh down || true; fi; }; \
	exports="$$(bash deploy/local/services.sh up)" || { stop; exit 1; }; \
	eval "$$exports"; \
	trap 'stop; exit 130' INT TERM; \
	status=0; $(PY) tests/benchmarks/end_to_end.py $(BENCH_E2E_ARGS) || status=$$?; \
	stop; \
	exit $$status

## quality: the detector table (false alarms, delays, river beside them), the calibration on every kind of
## field, the window PSI check from 50 to 10,000 events per window, then false alerts per model-month of the whole
## engine at 10 and 1,000 events/s (~30 minutes in all).
quality: $(STAMP)
	$(PY) tests/benchmarks/detector_quality.py
	$(PY) tests/benchmarks/discrete_calibration.py
	$(PY) tests/benchmarks/window_psi_calibration.py --scale 0.2 --sizes 50,100,300,1000,10000
	$(PY) tests/benchmarks/budget_quality.py

## unit: the unit tests and doctests alone (no services needed).
unit: $(STAMP)
	$(PY) -m pytest -q tests/unit

## lint: ruff (lint and import order) and the import contracts of the layers (import-linter).
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

## typecheck: mypy --strict on the four packages as installed (driftline.*), each seeing the others' types.
typecheck: $(STAMP)
	@mkdir -p $(VENV)/typecheck/driftline
	@for package in detectors schemas sinks stream; do ln -sfn ../../../$$package $(VENV)/typecheck/driftline/$$package; done
	$(VENV)/bin/mypy

## check: lint and typecheck.
check: lint typecheck

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache .hypothesis .mypy_cache
