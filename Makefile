# Two entry points that work from nothing but Python 3 and pip:
#   make demo   train CartPole-v1, export it, play it with the runtime agent
#   make test   lint, type-check and run the fast test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PGDEPLOY := $(VENV)/bin/pgdeploy
DEMO_DIR ?= runs/demo

.PHONY: install demo test test-slow lint bench-train bench-runtime fuzz model clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[train,dev,video,ray]'
	touch $@

demo: install
	$(PGDEPLOY) train --seed 0 --out $(DEMO_DIR)
	$(PGDEPLOY) export $(DEMO_DIR)/model.pt
	$(PGDEPLOY) run $(DEMO_DIR)/model.onnx --episodes 20 --seed 0

lint: install
	$(VENV)/bin/ruff check pgdeploy tests benchmarks examples tools
	$(VENV)/bin/ruff format --check pgdeploy tests benchmarks examples tools
	$(VENV)/bin/mypy

test: lint
	$(PY) -m pytest -q

test-slow: install
	$(PY) -m pytest -q -m slow

bench-train: install
	$(PY) benchmarks/train_speed.py

bench-runtime: install
	$(PY) benchmarks/runtime_speed.py

# Regenerate the shipped model (models/CartPole-v1).
model: install
	$(PGDEPLOY) train --seed 0 --out models/CartPole-v1 --quiet
	$(PGDEPLOY) export models/CartPole-v1/model.pt

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache
