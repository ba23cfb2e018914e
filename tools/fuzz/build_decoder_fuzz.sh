#!/bin/sh
# Builds the libFuzzer targets over the op library's decoder core and the fast path's ONNX rewriter:
#   tools/fuzz/build_decoder_fuzz.sh [OUT]   (default build-fuzz/decoder_fuzz; the rewriter's is OUT's folder/fast_fuzz)
# Needs clang with libFuzzer (Debian: clang-14 libclang-rt-14-dev).
set -eu
cd "$(dirname "$0")/../.."
out=${1:-build-fuzz/decoder_fuzz}
cxx=${CXX_FUZZ:-$(command -v clang++ || command -v clang++-14)}
mkdir -p "$(dirname "$out")"
src=custom_ops/src
flags="-std=c++17 -O1 -g -ffp-contract=off -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined"
# shellcheck disable=SC2046,SC2086
core=$(ls "$src"/attrs.cc "$src"/codec.cc "$src"/decoder.cc "$src"/dtype.cc "$src"/parallel.cc "$src"/unpack.cc \
  "$src"/codecs/*.cc "$src"/fused/weight.cc "$src"/fused/matmul.cc "$src"/fused/gemm.cc \
  "$src"/fused/tcq_rows.cc "$src"/fused/tcq_vbmi.cc "$src"/fused/tcq_neon.cc "$src"/fused/matmul_nt.cc "$src"/fused/gather.cc)
# shellcheck disable=SC2086
"$cxx" $flags -I"$src" tools/fuzz/decoder_fuzz.cc $core -lpthread -o "$out"
# shellcheck disable=SC2086
exec "$cxx" $flags -I"$src" -Icustom_ops/include tools/fuzz/fast_fuzz.cc $core "$src"/fast/rewrite.cc \
  "$src"/fast/model_file.cc -lpthread -o "$(dirname "$out")/fast_fuzz"
