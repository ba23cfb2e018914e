#!/bin/sh
# Fetch ONNX Runtime C/C++ API headers (Debian trixie's libonnxruntime-dev, ORT 1.21) into a cache folder.
#
# Usage: fetch_ort_headers.sh [DEST]     (DEST defaults to ${HOME}/.cache/hyperonnx/ort-headers)
# Prints the include directory (DEST/usr/include/onnxruntime) on its last line.
#
# Why Debian: the pip wheels ship no headers, and the .deb is 85 KB. A private apt configuration (its own
# lists, cache and sources list) leaves the system's apt state untouched, so this is safe inside pip builds.
# Headers at C API version 21 work with every runtime >= 1.21 (the library negotiates the version at load).
set -eu

DEST=${1:-${HOME}/.cache/hyperonnx/ort-headers}
INC="$DEST/usr/include/onnxruntime"
if [ -f "$INC/onnxruntime_cxx_api.h" ]; then   # cached by an earlier build
  echo "$INC"
  exit 0
fi

command -v apt-get >/dev/null 2>&1 || {
  echo "fetch_ort_headers.sh: apt-get not found; pass -DONNXRUNTIME_INCLUDE_DIR=<dir with onnxruntime_cxx_api.h>" >&2
  exit 1
}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/hyperonnx-ort-apt.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/lists/partial" "$WORK/cache/archives/partial" "$WORK/etc" "$WORK/debs"

# Reuse the mirror the system already trusts; fall back to the main Debian mirror.
URI=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
if [ -z "$URI" ]; then
  URI=$(awk '/^deb /{for(i=2;i<=NF;i++) if ($i ~ /^https?:/) {print $i; exit}}' /etc/apt/sources.list 2>/dev/null || true)
fi
URI=${URI:-http://deb.debian.org/debian}
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
echo "deb [signed-by=$KEYRING] $URI trixie main" >"$WORK/etc/sources.list"

set -- -o "Dir::State::Lists=$WORK/lists" -o "Dir::Cache=$WORK/cache" \
  -o "Dir::Etc::SourceList=$WORK/etc/sources.list" -o "Dir::Etc::SourceParts=/dev/null" -o "Debug::NoLocking=1" -o "APT::Sandbox::User=$(id -un)"
apt-get "$@" -qq update >&2
(cd "$WORK/debs" && apt-get "$@" -qq download libonnxruntime-dev >&2)

mkdir -p "$DEST.tmp"
dpkg -x "$WORK"/debs/libonnxruntime-dev_*.deb "$DEST.tmp"
[ -f "$DEST.tmp/usr/include/onnxruntime/onnxruntime_cxx_api.h" ] || {
  echo "fetch_ort_headers.sh: the package did not contain onnxruntime_cxx_api.h" >&2
  exit 1
}
rm -rf "$DEST" && mv "$DEST.tmp" "$DEST"   # publish atomically so a half-extracted cache is never used
echo "$INC"
