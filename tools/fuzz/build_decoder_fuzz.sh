#!/bin/sh
# Builds the libFuzzer target over the op library's decoder core: tools/fuzz/build_decoder_fuzz.sh [OUT]
# (default build-fuzz/decoder_fuzz). Needs clang with libFuzzer (Debian: clang-14 libclang-rt-14-dev).
set -eu
cd "$(dirname "$0")/../.."
out=${1:-build-fuzz/decoder_fuzz}
cxx=${CXX_FUZZ:-$(command -v clang++ || command -v clang++-14)}
mkdir -p "$(dirname "$out")"
src=custom_ops/src
# shellcheck disable=SC2046
exec "$cxx" -std=c++17 -O1 -g -ffp-contract=off -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  -I"$src" tools/fuzz/decoder_fuzz.cc $(ls "$src"/attrs.cc "$src"/codec.cc "$src"/decoder.cc "$src"/dtype.cc \
  "$src"/parallel.cc "$src"/unpack.cc "$src"/codecs/*.cc "$src"/fused/weight.cc "$src"/fused/matmul.cc \
  "$src"/fused/gemm.cc "$src"/fused/tcq_rows.cc) -lpthread -o "$out"
