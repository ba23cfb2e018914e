#!/usr/bin/env bash
# The whole emulated aarch64 flow (docs/edge.md), from the repository root with the venv active:
#   1. fetch Debian 12's aarch64 cross toolchain + qemu-user-static and Debian 13's arm64 libonnxruntime 1.21
#      (+ its 14 dependencies) into .cache/edge (tools/edge/fetch.sh aarch64; private apt state, nothing installed)
#   2. cross-build the op library, its C++ decode tests and the two C++ samples (cmake/aarch64-linux-gnu.cmake)
#   3. run the decode tests (golden vectors, malformed input, casts, threads) under qemu-aarch64-static (ctest)
#   4. run a decode benchmark under qemu (correctness of the vector path under emulation; timings meaningless)
#   5. run both samples end to end under qemu against the arm64 ORT and compare with Python's x86_64 output
#
# Usage: tools/edge/run_aarch64.sh [MODEL.hx.onnx]   (default: samples/cpp/make_model.py's model)
# Env: HYPERONNX_EDGE_CACHE (default .cache/edge), HX_OPS_SOURCE (op library checkout, default this one),
#      HX_RTOL (tolerance for model outputs vs Python, default 1e-5), PYTHON (default python).
set -euo pipefail
ROOT=$(CDPATH= cd -- "$(dirname -- "$0")/../.." && pwd)
cd "$ROOT"
EDGE=${HYPERONNX_EDGE_CACHE:-$ROOT/.cache/edge}
B=$EDGE/build-aarch64
PY=${PYTHON:-python}
export HX_QUIET_SCHEMA=1
t0=$SECONDS
step() { echo "== [$((SECONDS - t0)) s] $*"; }

step "fetch"
tools/edge/fetch.sh aarch64 >/dev/null

step "cross-build (op library, decode tests, samples)"
cmake -S samples/cpp -B "$B" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_TOOLCHAIN_FILE="$ROOT/cmake/aarch64-linux-gnu.cmake" \
  -DONNXRUNTIME_ROOT="$EDGE/sysroot-arm64" -DHX_SAMPLE_ALLOW_SHLIB_UNDEFINED=ON -DHYPERONNX_BUILD_TESTS=ON \
  ${HX_OPS_SOURCE:+-DHYPERONNX_SOURCE_DIR="$HX_OPS_SOURCE"} >/dev/null
cmake --build "$B" -j"${JOBS:-2}" >/dev/null
file -b "$B/hyperonnx_sample" | cut -d, -f1-2

step "decode unit tests under qemu-aarch64"
ctest --test-dir "$B/hyperonnx" --output-on-failure

step "decode benchmark under qemu-aarch64 (paper codec, 1M codes; emulated timings are not speeds)"
tools/edge/run.sh aarch64 "$B/hyperonnx/custom_ops/tests/hyperonnx_decode_bench" 1048576 3 paper 1 1

MODEL=${1:-}
if [ -z "$MODEL" ]; then
  step "model (samples/cpp/make_model.py)"
  "$PY" samples/cpp/make_model.py "$B/model" >/dev/null
  MODEL=$B/model/model.hx.onnx
fi
for exe in hyperonnx_sample hyperonnx_sample_static; do
  step "$exe under qemu-aarch64 vs Python (x86_64)"
  mkdir -p "$B/out-$exe"
  tools/edge/run.sh aarch64 "$B/$exe" "$MODEL" --runs 3 --save "$B/out-$exe" | tee "$B/out-$exe/stdout.txt"
  "$PY" tools/edge/sample_check.py "$MODEL" "$B/out-$exe/stdout.txt" --saved "$B/out-$exe" --rtol "${HX_RTOL:-1e-5}"
done
step "done"
