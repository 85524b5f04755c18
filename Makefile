# The two commands of the README: `make demo` and `make test`. Nothing else is needed on a fresh
# Linux machine. The environment is built with Colab's Python (3.13; tools/find_python.sh finds it,
# PYTHON=python3.12 make test picks another) and Colab's version of every package Colab has
# (constraints/colab-gpu.txt, generated from Google's pip freeze of Colab's GPU runtime).
PYTHON ?= $(shell tools/find_python.sh)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONSTRAINTS := constraints/colab-gpu.txt
DEMO_DIR := demo_output

.PHONY: demo test install versions clean-demo bench-smoke

# A .venv of another Python (e.g. from before the move to 3.13) is replaced, never patched.
$(STAMP): pyproject.toml $(CONSTRAINTS)
	@wanted=$$($(PYTHON) -c 'import platform; print(platform.python_version())'); \
	have=$$(test -x $(BIN)/python && $(BIN)/python -c 'import platform; print(platform.python_version())'); \
	if [ "$$wanted" != "$$have" ]; then echo "Creating $(VENV) with Python $$wanted ($(PYTHON))"; \
	  rm -rf $(VENV); $(PYTHON) -m venv $(VENV); fi
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --constraint $(CONSTRAINTS) -e ".[test]"
	$(BIN)/python -m pip check
	touch $(STAMP)
	@$(MAKE) --no-print-directory versions

install: $(STAMP)

# The versions the tests and notebooks run with (CI's log shows them).
versions:
	@$(BIN)/python -c 'import platform, importlib.metadata as m; print("Environment: Python", platform.python_version(), "|", ", ".join(f"{n} {m.version(n)}" for n in ("tensorflow", "keras", "tf-keras", "numpy", "ipywidgets", "ipython", "scikit-learn", "tf-models-official")))'

# Runs the detection notebook end to end on generated (synthetic) demo data, offline.
demo: $(STAMP)
	$(BIN)/python -m helpers.demo --output $(DEMO_DIR)

# The whole test suite, notebooks included (what CI runs).
# (PYDEVD_DISABLE_FILE_VALIDATION: silences ipykernel's debugger note about frozen modules on 3.13.)
# Two pytest-xdist workers, one test file each at a time (--dist loadfile keeps a file's module-scoped
# trained model in one worker): CI has 2 cores, and half of a notebook test is single-threaded Python
# (kernel start, imports, PDFs) that the other worker's training overlaps. TEST_WORKERS=0 runs in one process.
# The longest files start first (tests/file_order.py; --no-loadscope-reorder keeps that order instead of
# xdist's most-tests-first), and the log ends with the time per worker and per file.
TEST_WORKERS ?= 2
test: $(STAMP)
	PYDEVD_DISABLE_FILE_VALIDATION=1 $(BIN)/python -m pytest -ra --durations=20 -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

# Checks that the benchmark scripts run (a few minutes); the real runs are in docs/benchmarks.md.
bench-smoke: $(STAMP)
	$(BIN)/python bench/detection_speed.py --smoke
	$(BIN)/python bench/detection_bccd.py --smoke
	$(BIN)/python bench/detection_bccd.py --smoke --mosaic 3
	$(BIN)/python bench/detection_memory.py --smoke
	$(BIN)/python bench/classification_speed.py --smoke
	$(BIN)/python bench/from_scratch.py --task classification --smoke
	$(BIN)/python bench/from_scratch.py --task grading --smoke
	$(BIN)/python bench/finetune_vs_scratch.py --task detection --smoke
	$(BIN)/python bench/finetune_vs_scratch.py --task classification --smoke
