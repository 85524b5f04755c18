# The two commands of the README: `make demo` and `make test`. Nothing else is needed on a
# fresh Linux machine with Python 3.11+ (PYTHON=python3.12 make test picks another interpreter).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DIR := demo_output

.PHONY: demo test install clean-demo bench-smoke

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

# Runs the detection notebook end to end on generated (synthetic) demo data, offline.
demo: $(STAMP)
	$(BIN)/python -m helpers.demo --output $(DEMO_DIR)

# The whole test suite, notebooks included (what CI runs).
test: $(STAMP)
	$(BIN)/python -m pytest -ra --durations=15

# Checks that the benchmark scripts run (a few minutes); the real runs are in docs/benchmarks.md.
bench-smoke: $(STAMP)
	$(BIN)/python bench/detection_speed.py --smoke
	$(BIN)/python bench/detection_bccd.py --smoke
	$(BIN)/python bench/detection_memory.py --smoke
	$(BIN)/python bench/classification_speed.py --smoke
	$(BIN)/python bench/from_scratch.py --task classification --smoke
	$(BIN)/python bench/from_scratch.py --task grading --smoke
