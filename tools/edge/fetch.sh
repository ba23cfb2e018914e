#!/bin/sh
# Fetch the Debian packages the edge samples need into a private cache, without touching the system's apt state
# (own sources list, lists, package cache and dpkg status; nothing is installed, .debs are unpacked with dpkg -x).
#
# Usage: tools/edge/fetch.sh [host|aarch64|all]...        (default: all)
#   host     Debian 13 (trixie) amd64 libonnxruntime1.21 + libonnxruntime-dev and their runtime dependencies
#            -> $EDGE/sysroot-amd64   (glibc 2.41 / libstdc++ 14: run binaries with its dynamic loader)
#   aarch64  Debian 12 (bookworm) g++-aarch64-linux-gnu + qemu-user-static, the packages this machine lacks
#            -> $EDGE/toolchain, wrappers in $EDGE/bin (aarch64-linux-gnu-g++, ..., qemu-aarch64-static);
#            trixie arm64 libonnxruntime1.21 (+ its 14 dependencies) + libonnxruntime-dev -> $EDGE/sysroot-arm64
#
# $EDGE is $HYPERONNX_EDGE_CACHE, default <repo>/.cache/edge (git-ignored). Idempotent: each step leaves a stamp
# and is skipped next time; delete $EDGE to start over. Prints "EDGE=<dir>" on its last line.
set -eu

ROOT=$(CDPATH= cd -- "$(dirname -- "$0")/../.." && pwd)
EDGE=${HYPERONNX_EDGE_CACHE:-$ROOT/.cache/edge}
MIRROR=${HYPERONNX_DEBIAN_MIRROR:-}
if [ -z "$MIRROR" ]; then
  MIRROR=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
fi
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SECURITY=$(echo "$MIRROR" | sed 's#/debian/*$#/debian-security#')
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
ME=$(id -un)

log() { echo "fetch.sh: $*" >&2; }

# apt_env NAME ARCH STATUS: sets $APT_OPTS for a private apt instance $EDGE/apt/NAME (sources written by caller).
apt_env() {
  A=$EDGE/apt/$1
  mkdir -p "$A/lists/partial" "$A/cache/archives/partial" "$A/etc"
  [ -f "$A/status" ] || : >"$A/status"
  STATUS=$3
  [ "$STATUS" = private ] && STATUS=$A/status
  APT_OPTS="-o Dir::State::Lists=$A/lists -o Dir::Cache=$A/cache -o Dir::Etc::SourceList=$A/etc/sources.list
    -o Dir::Etc::SourceParts=/dev/null -o Dir::Etc::Preferences=/dev/null -o Dir::Etc::PreferencesParts=/dev/null
    -o Dir::State::status=$STATUS -o Debug::NoLocking=1 -o APT::Sandbox::User=$ME
    -o APT::Architecture=$2 -o APT::Architectures::=$2 -o Acquire::Languages=none"
}

apt_update() {  # once per private instance
  if [ ! -f "$A/updated" ]; then
    log "apt-get update ($A)"
    # shellcheck disable=SC2086
    apt-get $APT_OPTS -qq update >&2
    touch "$A/updated"
  fi
}

# Recursive Depends/PreDepends closure of the given packages (real packages only).
closure() {
  # shellcheck disable=SC2086
  apt-cache $APT_OPTS depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks --no-replaces \
    --no-enhances "$@" | grep -v '^ ' | grep -v '^<' | sort -u
}

# download DIR PKG...: apt-get download into DIR (skipped when DIR/.done exists)
download() {
  D=$1; shift
  if [ ! -f "$D/.done" ]; then
    mkdir -p "$D"
    log "downloading $# packages into $D"
    # shellcheck disable=SC2086
    (cd "$D" && apt-get $APT_OPTS -qq download "$@" >&2)
    echo "$@" | tr ' ' '\n' >"$D/.done"
  fi
}

# unpack DEBDIR DEST: dpkg -x every .deb (skipped when DEST/.done exists)
unpack() {
  if [ ! -f "$2/.done" ]; then
    rm -rf "$2" && mkdir -p "$2"
    for f in "$1"/*.deb; do dpkg -x "$f" "$2"; done
    # merged /usr: the ELF interpreter paths (/lib/ld-linux-*.so.*, /lib64/...) must resolve inside the sysroot
    for d in lib lib64; do
      if [ -d "$2/usr/$d" ] && [ ! -e "$2/$d" ]; then ln -s "usr/$d" "$2/$d"; fi
    done
    ls "$1"/*.deb | sed 's#.*/##' >"$2/.done"
  fi
}

trixie_sysroot() {  # ARCH
  apt_env "trixie-$1" "$1" private
  echo "deb [signed-by=$KEYRING] $MIRROR trixie main" >"$A/etc/sources.list"
  apt_update
  PKGS=$(closure libonnxruntime1.21 libonnxruntime-dev)
  # shellcheck disable=SC2086
  download "$EDGE/debs/trixie-$1" $PKGS
  unpack "$EDGE/debs/trixie-$1" "$EDGE/sysroot-$1"
  if [ "$1" = amd64 ] && [ ! -e "$EDGE/sysroot-amd64/lib64" ]; then  # x86_64 ELF interpreter: /lib64/ld-linux-x86-64.so.2
    mkdir -p "$EDGE/sysroot-amd64/lib64"
    ln -s ../usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 "$EDGE/sysroot-amd64/lib64/ld-linux-x86-64.so.2"
  fi
}

toolchain() {
  # The cross compiler and qemu come from the system's own release (bookworm), so they run on this machine.
  # Only the packages this machine lacks are fetched: apt resolves against the system's dpkg status (read-only).
  apt_env bookworm-amd64 amd64 /var/lib/dpkg/status
  {
    echo "deb [signed-by=$KEYRING] $MIRROR bookworm main"
    echo "deb [signed-by=$KEYRING] $MIRROR bookworm-updates main"
    echo "deb [signed-by=$KEYRING] $SECURITY bookworm-security main"
  } >"$A/etc/sources.list"
  apt_update
  if [ ! -f "$EDGE/debs/toolchain/.done" ]; then
    # shellcheck disable=SC2086
    PKGS=$(apt-get $APT_OPTS install --simulate -y g++-aarch64-linux-gnu qemu-user-static 2>/dev/null |
      awk '/^Inst/{print $2}')
    if [ -n "$PKGS" ]; then
      # shellcheck disable=SC2086
      download "$EDGE/debs/toolchain" $PKGS
    else
      mkdir -p "$EDGE/debs/toolchain" && : >"$EDGE/debs/toolchain/.done"   # everything already installed
    fi
  fi
  if ls "$EDGE/debs/toolchain"/*.deb >/dev/null 2>&1; then
    unpack "$EDGE/debs/toolchain" "$EDGE/toolchain"
  else
    mkdir -p "$EDGE/toolchain" && : >"$EDGE/toolchain/.done"
  fi
  # Wrappers: unpacked binutils need their private libraries (libopcodes/libbfd) on LD_LIBRARY_PATH, and a
  # dynamic link needs --sysroot (libc.so is a linker script with absolute paths); the toolchain file passes it.
  mkdir -p "$EDGE/bin"
  T=$EDGE/toolchain
  for tool in gcc g++ ar ranlib nm objdump strip readelf ld as; do
    w=$EDGE/bin/aarch64-linux-gnu-$tool
    if [ -x "$T/usr/bin/aarch64-linux-gnu-$tool" ]; then
      printf '#!/bin/sh\nLD_LIBRARY_PATH="%s/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" exec "%s/usr/bin/aarch64-linux-gnu-%s" "$@"\n' \
        "$T" "$T" "$tool" >"$w"
      chmod +x "$w"
    elif command -v "aarch64-linux-gnu-$tool" >/dev/null 2>&1; then
      ln -sf "$(command -v "aarch64-linux-gnu-$tool")" "$w"
    fi
  done
  if [ -x "$T/usr/bin/qemu-aarch64-static" ]; then
    ln -sf "$T/usr/bin/qemu-aarch64-static" "$EDGE/bin/qemu-aarch64-static"
  elif command -v qemu-aarch64-static >/dev/null 2>&1; then
    ln -sf "$(command -v qemu-aarch64-static)" "$EDGE/bin/qemu-aarch64-static"
  fi
  [ -x "$EDGE/bin/aarch64-linux-gnu-g++" ] && [ -x "$EDGE/bin/qemu-aarch64-static" ] || {
    log "the aarch64 toolchain or qemu is missing after the fetch"; exit 1; }
}

command -v apt-get >/dev/null 2>&1 && command -v dpkg >/dev/null 2>&1 || {
  log "needs apt-get and dpkg (Debian/Ubuntu)"; exit 1; }
[ $# -gt 0 ] || set -- all
for what in "$@"; do
  case $what in
    host) trixie_sysroot amd64 ;;
    aarch64) toolchain; trixie_sysroot arm64 ;;
    all) trixie_sysroot amd64; toolchain; trixie_sysroot arm64 ;;
    *) log "unknown target '$what' (host|aarch64|all)"; exit 2 ;;
  esac
done
echo "EDGE=$EDGE"
