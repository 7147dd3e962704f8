# driftline — the two set-up commands of README are `make demo` and `make test`.
# Everything installs into a project-local virtual environment; nothing is installed by hand.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
OUT ?= out

.PHONY: demo test unit bench quality typecheck clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	touch $(STAMP)

## demo: run the embedded monitor on a synthetic stream with three drift episodes (no services).
demo: $(STAMP)
	$(VENV)/bin/driftline demo --output $(OUT)/demo

## test: install what is missing, type-check, and run the whole test suite.
test: $(STAMP)
	$(VENV)/bin/mypy detectors/ schemas/ stream/ sinks/
	$(PY) -m pytest -q

## bench: throughput of the engine against a naive per-event baseline, and detector quality.
bench: $(STAMP)
	$(PY) tests/benchmarks/engine_throughput.py
	$(PY) tests/benchmarks/engine_throughput.py --events-per-second 10 --events 200000
	$(PY) tests/benchmarks/detector_quality.py

## quality: the full detector calibration table (false alarms and detection delays).
quality: $(STAMP)
	$(PY) tests/benchmarks/detector_quality.py

typecheck: $(STAMP)
	$(VENV)/bin/mypy detectors/ schemas/ stream/ sinks/

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache .hypothesis .mypy_cache
