#!/usr/bin/env bash
# Run a program built against Debian 13's ONNX Runtime from tools/edge/fetch.sh's sysroots.
#
# Usage: tools/edge/run.sh host|aarch64 PROGRAM [ARGS...]
#   host     x86_64 program, run by the amd64 sysroot's own dynamic loader (glibc 2.41) with the sysroot's
#            libraries first: trixie's libonnxruntime needs glibc >= 2.38 and libstdc++ 14, newer than Debian 12's.
#   aarch64  aarch64 program, run under qemu-aarch64-static with the arm64 sysroot as its root (-L) and
#            library path: its loader, glibc 2.41, libstdc++ 14, libonnxruntime 1.21.
# ORT's bundled onnx registers its operator schemas twice in Debian's build and prints ~1100 "Schema error"
# lines on stderr at start-up; they are harmless. Set HX_QUIET_SCHEMA=1 to drop them.
set -eu
ROOT=$(CDPATH= cd -- "$(dirname -- "$0")/../.." && pwd)
EDGE=${HYPERONNX_EDGE_CACHE:-$ROOT/.cache/edge}
[ $# -ge 2 ] || { echo "usage: $0 host|aarch64 PROGRAM [ARGS...]" >&2; exit 2; }
target=$1; shift
case $target in
  host)
    S=$EDGE/sysroot-amd64
    [ -x "$S/lib64/ld-linux-x86-64.so.2" ] || { echo "$0: $S missing: run tools/edge/fetch.sh host" >&2; exit 2; }
    set -- "$S/lib64/ld-linux-x86-64.so.2" --library-path "$S/usr/lib/x86_64-linux-gnu" "$@" ;;
  aarch64)
    S=$EDGE/sysroot-arm64
    [ -d "$S/usr/lib/aarch64-linux-gnu" ] || { echo "$0: $S missing: run tools/edge/fetch.sh aarch64" >&2; exit 2; }
    Q=$EDGE/bin/qemu-aarch64-static
    [ -x "$Q" ] || Q=$(command -v qemu-aarch64-static)
    set -- "$Q" -L "$S" -E "LD_LIBRARY_PATH=$S/usr/lib/aarch64-linux-gnu" "$@" ;;
  *) echo "$0: unknown target $target (host|aarch64)" >&2; exit 2 ;;
esac
if [ "${HX_QUIET_SCHEMA:-0}" = 1 ]; then
  rc=0
  "$@" 2> >(grep -v -e '^Schema error: Trying to register schema' -e '^$' >&2) || rc=$?
  wait  # for the filter to flush
  exit $rc
fi
exec "$@"
