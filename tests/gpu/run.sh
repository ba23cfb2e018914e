#!/usr/bin/env bash
# GPU checks of the CUDA HyperDecode kernel, for a GPU machine without internet (tests/gpu/README.md).
# Runs from the repository root of a working tree that carries .gpu-carry/ (built elsewhere):
#   .gpu-carry/hyperonnx_cuda_golden_test   the CUDA test program (golden, random, malformed, bandwidth)
#   .gpu-carry/libhyperonnx_ops.so          the CUDA-enabled op library (ctypes + CuPy, ORT checks)
#   .gpu-carry/ort-include/                 ONNX Runtime headers, only for rebuilding here if needed
# Writes everything to $OUT/gpu.log (OUT defaults to ./gpu-out); exit status 0 only if every check passed.
set -u
cd "$(dirname "$0")/../.."
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
CARRY=${HX_GPU_CARRY:-.gpu-carry}
BIN=$CARRY/hyperonnx_cuda_golden_test
LIB=$CARRY/libhyperonnx_ops.so
GOLDEN=custom_ops/tests/golden
status=0
results=()
step() { echo; echo "=== $* ($(date +%T)) ==="; }
record() { results+=("$1: $2"); [ "$2" = PASS ] || [ "${2#SKIP}" != "$2" ] || status=1; }

main() {
step "machine"
nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap,clocks.max.sm --format=csv 2>&1 || echo "nvidia-smi failed"
echo "nvcc: $(nvcc --version 2>/dev/null | tail -1 || echo none)"
echo "cmake: $(cmake --version 2>/dev/null | head -1 || echo none)"
echo "python3: $(python3 --version 2>&1); glibc: $(ldd --version 2>&1 | head -1)"
git log --oneline -1 2>/dev/null || true

rebuild() {  # the carried binaries do not run here (glibc, missing arch, ...): build them with this nvcc
  local cc arch dir=/tmp/hyperonnx-build-gpu
  cc=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d ' .')
  arch=${cc:-90}
  echo "rebuilding for sm_$arch in $dir"
  local inc=()
  [ -f "$CARRY/ort-include/onnxruntime_cxx_api.h" ] && inc=(-DONNXRUNTIME_INCLUDE_DIR="$PWD/$CARRY/ort-include")
  local gen=()
  command -v ninja >/dev/null && gen=(-G Ninja)
  cmake -S . -B "$dir" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DHYPERONNX_CUDA=ON -DHYPERONNX_BUILD_TESTS=ON \
        -DHYPERONNX_CUDA_ARCHS="$arch" "${inc[@]}" >"$OUT/rebuild.log" 2>&1 &&
    timeout 240 cmake --build "$dir" -j 16 --target hyperonnx_ops hyperonnx_cuda_golden_test >>"$OUT/rebuild.log" 2>&1 ||
    { echo "rebuild failed:"; tail -30 "$OUT/rebuild.log"; return 1; }
  BIN=$dir/custom_ops/tests/hyperonnx_cuda_golden_test
  LIB=$dir/libhyperonnx_ops.so
}

step "CUDA test program: golden + random + malformed + bandwidth"
rc=127
run_program() { timeout 180 "$BIN" "$GOLDEN" | tee "$OUT/program.log"; rc=${PIPESTATUS[0]}; }
if [ -x "$BIN" ]; then
  run_program
else
  echo "no carried test program at $BIN"
fi
if [ $rc -ne 0 ] && [ $rc -ne 1 ] && [ $rc -ne 77 ]; then  # 1: a check failed, 77: no GPU (keep those verdicts)
  echo "test program exit $rc: not runnable as carried"
  if rebuild; then
    run_program
  fi
fi
[ $rc -eq 0 ] && record "test program" PASS || record "test program" "FAIL (exit $rc)"

step "decode bandwidth vs cudaMemcpy device-to-device (target: >= 0.8x for blocktcq and blockvq)"
# The figures come from the test program's bandwidth part (64M weights, median of 20, same stream and bytes as the
# copy). Below target is reported, not failed: the figures are measurements, correctness is the checks above.
if [ -f "$OUT/program.log" ] && grep -q "^bandwidth " "$OUT/program.log"; then
  awk '/^bandwidth /{name=$2" "$3" "$4" "$5; sub(/:$/, "", name)}
       /decode vs memcpy:/{r=$4; sub(/x$/, "", r);
         t=(name ~ /^(blocktcq|blockvq)/) ? (r+0 >= 0.8 ? "meets 0.8x" : "BELOW 0.8x") : "no target";
         printf "  %-36s %5.2fx the copy  (%s)\n", name, r, t}' "$OUT/program.log" | tee "$OUT/figures.txt"
  record "bandwidth figures" PASS
else
  echo "no bandwidth figures (the test program did not get that far)"
  record "bandwidth figures" "FAIL (missing)"
fi

step "C entry point through ctypes + CuPy"
if python3 -c "import cupy, numpy" 2>/dev/null; then
  timeout 120 python3 tests/gpu/check_capi.py "$LIB" && record "ctypes+CuPy" PASS || record "ctypes+CuPy" FAIL
else
  echo "CuPy not importable"
  record "ctypes+CuPy" "SKIP (no CuPy)"
fi

step "ONNX Runtime CUDA execution provider"
if python3 -c "import onnx, onnxruntime as o, sys; sys.exit('CUDAExecutionProvider' not in o.get_available_providers())" 2>/dev/null; then
  timeout 120 python3 tests/gpu/check_ort.py "$LIB" && record "ORT CUDA EP" PASS || record "ORT CUDA EP" FAIL
else
  echo "onnxruntime with CUDAExecutionProvider (and onnx) not importable"
  record "ORT CUDA EP" "SKIP (no onnxruntime-gpu)"
fi

step "summary"
for r in "${results[@]}"; do echo "  $r"; done
[ $status -eq 0 ] && echo "GPU CHECKS PASSED" || echo "GPU CHECKS FAILED"
return $status
}

main 2>&1 | tee "$OUT/gpu.log"
exit "${PIPESTATUS[0]}"
