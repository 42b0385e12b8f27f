# The two set-up commands of the README: `make demo` (the main job) and `make test`.
# Each creates the virtual environment and installs the package with its dev extras,
# at the versions constraints.txt pins (the tested set, made on Python 3.11).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# `make test` runs the suite in this many pytest-xdist processes, a test file to each
# (its module fixtures are built once); 2 suits a 2-core machine. TEST_WORKERS=0 runs
# it in one process.
TEST_WORKERS ?= 2

.PHONY: demo test test-slow bench bench-rbm lint docs clean

$(VENV)/.installed: setup.py constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e ".[dev]"
	touch $@

demo: $(VENV)/.installed
	$(PY) scripts/demo.py

test: $(VENV)/.installed
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile

test-slow: $(VENV)/.installed
	$(PY) -m pytest -q -m slow -n $(TEST_WORKERS) --dist loadfile

bench: $(VENV)/.installed
	$(PY) benchmarks/bench_all.py

bench-rbm: $(VENV)/.installed
	$(PY) benchmarks/bench_rbm.py --repeats 3

docs: $(VENV)/.installed
	$(VENV)/bin/mkdocs build --strict

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check tfboltz tests scripts benchmarks

clean:
	rm -rf $(VENV) runs
