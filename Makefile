# Two entry points that work from nothing but Python 3 and pip:
#   make demo   train CartPole-v1, export it, play it with the runtime agent
#   make test   lint, type-check, the fast tests, then the slow ones (CI runs this: .ci/run)
#   make test-fast  lint, type-check and the fast test suite (the quick loop while working)
#   make c-example  export the shipped CartPole model to C and play it from a C program
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PGDEPLOY := $(VENV)/bin/pgdeploy
DEMO_DIR ?= runs/demo
# Where tests/test_docs.py finds onnxruntime-node for the JavaScript snippet.
PGDEPLOY_NODE_CACHE ?= $(HOME)/.cache/pgdeploy/node

.PHONY: install demo test test-fast test-slow lint docs docs-js bench-train bench-runtime bench-c bench-pipeline fuzz model clean c-example c-footprint bench-c-int8

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[train,dev,video,ray,test-envs]'
	touch $@

demo: install
	$(PGDEPLOY) train --seed 0 --out $(DEMO_DIR) --overwrite
	$(PGDEPLOY) export $(DEMO_DIR)/model.pt
	$(PGDEPLOY) run $(DEMO_DIR)/model.onnx --episodes 20 --seed 0

lint: install
	$(VENV)/bin/ruff check pgdeploy tests benchmarks examples tools
	$(VENV)/bin/ruff format --check pgdeploy tests benchmarks examples tools
	$(VENV)/bin/mypy

test-fast: lint
	$(PY) -m pytest -q -n 2

test-slow: install
	$(PY) -m pytest -q -n 2 -m slow

test: test-fast test-slow

# Regenerate the command sections of docs/cli.md from the CLI's --help.
docs: install
	$(PY) tools/gen_cli_docs.py

# onnxruntime-node for the docs' JavaScript snippet (the test installs it itself otherwise).
docs-js:
	mkdir -p $(PGDEPLOY_NODE_CACHE)
	test -f $(PGDEPLOY_NODE_CACHE)/package.json || echo '{"private": true}' > $(PGDEPLOY_NODE_CACHE)/package.json
	npm install --ignore-scripts --no-audit --no-fund --prefix $(PGDEPLOY_NODE_CACHE) onnxruntime-node@1.30.0

bench-train: install
	$(PY) benchmarks/train_speed.py

bench-runtime: install
	$(PY) benchmarks/runtime_speed.py

# Every goal of issue 13 as a ratio against its reference (~6 min on 2 cores); its
# LunarLander-v3 row needs Box2D, so this installs the box2d extra first.
bench-pipeline: install
	$(PY) -m pip install --quiet -c constraints.txt -e '.[box2d]'
	$(PY) benchmarks/pipeline_speed.py

# The shipped policy as C99 (policy.c/policy.h, verified at export), embedded in a C
# program with its own CartPole physics (examples/c_cartpole/cartpole.c): plays 100 episodes.
C_EXAMPLE_DIR ?= runs/c_cartpole
CC ?= cc
C_EXAMPLE_FLAGS := -std=c99 -Wall -Wextra -Werror -pedantic -O2 -ffp-contract=off
# Built twice: float32 and int8 (--quantize int8, verified against the float policy).
c-example: install
	$(PGDEPLOY) export models/CartPole-v1/model.pt --target c --out-dir $(C_EXAMPLE_DIR)
	$(CC) $(C_EXAMPLE_FLAGS) -I$(C_EXAMPLE_DIR) examples/c_cartpole/cartpole.c \
		$(C_EXAMPLE_DIR)/policy.c -lm -o $(C_EXAMPLE_DIR)/cartpole
	$(PGDEPLOY) export models/CartPole-v1/model.pt --target c --quantize int8 \
		--out-dir $(C_EXAMPLE_DIR)/int8
	$(CC) $(C_EXAMPLE_FLAGS) -I$(C_EXAMPLE_DIR)/int8 examples/c_cartpole/cartpole.c \
		$(C_EXAMPLE_DIR)/int8/policy.c -lm -o $(C_EXAMPLE_DIR)/cartpole-int8
	@echo "float32:" && $(C_EXAMPLE_DIR)/cartpole 100 0 | tail -1
	@echo "int8:" && $(C_EXAMPLE_DIR)/cartpole-int8 100 0 | tail -1

# policy.o of the shipped model for a Cortex-M4F (arm-none-eabi-gcc, Debian:
# gcc-arm-none-eabi libnewlib-arm-none-eabi), float32 and int8, and their sizes.
C_FOOTPRINT_DIR ?= runs/c_footprint
M4_FLAGS := -std=c99 -ffp-contract=off -mcpu=cortex-m4 -mthumb -mfloat-abi=hard \
	-mfpu=fpv4-sp-d16 -Os -fstack-usage
c-footprint: install
	$(PGDEPLOY) export models/CartPole-v1/model.pt --target c --out-dir $(C_FOOTPRINT_DIR)/float32
	$(PGDEPLOY) export models/CartPole-v1/model.pt --target c --quantize int8 \
		--out-dir $(C_FOOTPRINT_DIR)/int8
	for q in float32 int8; do \
		arm-none-eabi-gcc $(M4_FLAGS) -c $(C_FOOTPRINT_DIR)/$$q/policy.c \
			-o $(C_FOOTPRINT_DIR)/$$q/policy.o && \
		arm-none-eabi-size -A $(C_FOOTPRINT_DIR)/$$q/policy.o | grep -E '^[.](text|rodata|data|bss) '; \
	done
	cat $(C_FOOTPRINT_DIR)/*/policy.su

bench-c-int8: install
	$(PY) benchmarks/c_int8.py models/CartPole-v1/model.pt

bench-c: install
	$(PY) benchmarks/c_latency.py models/CartPole-v1/model.pt

# Regenerate the shipped model (models/CartPole-v1).
model: install
	$(PGDEPLOY) train --seed 0 --out models/CartPole-v1 --overwrite --quiet
	$(PGDEPLOY) export models/CartPole-v1/model.pt

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache
