#!/usr/bin/env bash
# Builds the CUDA-enabled library and the CUDA test program on this (GPU-less) machine and fills .gpu-carry/
# for tests/gpu/run.sh on a GPU machine (tests/gpu/README.md). .gpu-carry/ and build-cuda/ are kept out of
# git through .git/info/exclude (local, never committed), so only an explicit carry takes them along.
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${HX_CUDA_BUILD:-build-cuda}
gen=()
command -v ninja >/dev/null && gen=(-G Ninja)
cmake -S . -B "$BUILD" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DHYPERONNX_CUDA=ON -DHYPERONNX_BUILD_TESTS=ON >/dev/null
cmake --build "$BUILD" -j "$(nproc)" --target hyperonnx_ops hyperonnx_cuda_golden_test
exclude=$(git rev-parse --git-path info/exclude)
mkdir -p "$(dirname "$exclude")"
for p in /.gpu-carry/ "/$BUILD/"; do grep -qxF "$p" "$exclude" 2>/dev/null || echo "$p" >>"$exclude"; done
rm -rf .gpu-carry
mkdir .gpu-carry
cp "$BUILD/custom_ops/tests/hyperonnx_cuda_golden_test" "$BUILD/libhyperonnx_ops.so" .gpu-carry/
cp -r "$(sed -n 's/^ONNXRUNTIME_INCLUDE_DIR:PATH=//p' "$BUILD/CMakeCache.txt")" .gpu-carry/ort-include
du -sh .gpu-carry
git status --short --ignored .gpu-carry
echo "ready: run 'bash tests/gpu/run.sh' on the GPU machine with carry [\".gpu-carry\"]"
