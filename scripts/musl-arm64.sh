#!/usr/bin/env bash
# musl-arm64.sh - unpack Debian's musl:arm64 and musl-dev:arm64 (bookworm, musl 1.2.3) into
# $MUSL_ARM64_ROOT (default /var/cache/vrift/musl-arm64), for shim/Makefile's arm64-musl
# variant (headers, crt files, libc.so to link against) and for running arm64 musl
# programs under qemu-aarch64-static -L $MUSL_ARM64_ROOT (lib/ld-musl-aarch64.so.1).
#
# Debian has no aarch64 musl cross compiler; aarch64-linux-gnu-gcc with the package's
# musl-gcc.specs (paths rewritten by the Makefile) builds a correct shared object.
#
# apt runs with a private state directory ($MUSL_ARM64_ROOT.apt) and APT::Architectures=arm64,
# so the machine's dpkg architectures and package lists are left alone. Idempotent.
set -euo pipefail
ROOT="${MUSL_ARM64_ROOT:-/var/cache/vrift/musl-arm64}"
if [ -f "$ROOT/usr/lib/aarch64-linux-musl/musl-gcc.specs" ] && [ -e "$ROOT/lib/ld-musl-aarch64.so.1" ]; then
  echo "musl-arm64: present in $ROOT"
  exit 0
fi
[ "$(id -u)" = 0 ] || { echo "musl-arm64: error: needs root (apt-get)" >&2; exit 1; }
APTDIR="$ROOT.apt"
mkdir -p "$APTDIR/lists/partial" "$APTDIR/cache/archives/partial"
touch "$APTDIR/status"
A=(-o APT::Architecture=arm64 -o APT::Architectures::=arm64
   -o "Dir::State::Lists=$APTDIR/lists" -o "Dir::Cache=$APTDIR/cache"
   -o "Dir::State::status=$APTDIR/status")
apt-get "${A[@]}" update >"$APTDIR/update.log" 2>&1 \
  || { tail -5 "$APTDIR/update.log" >&2; echo "musl-arm64: error: apt-get update (arm64) failed; see $APTDIR/update.log" >&2; exit 1; }
( cd "$APTDIR" && rm -f ./*.deb && apt-get "${A[@]}" download musl:arm64 musl-dev:arm64 >/dev/null 2>&1 ) \
  || { echo "musl-arm64: error: apt-get download musl:arm64 musl-dev:arm64 failed" >&2; exit 1; }
rm -rf "$ROOT.partial"
mkdir -p "$ROOT.partial"
for d in "$APTDIR"/*.deb; do dpkg-deb -x "$d" "$ROOT.partial"; done
rm -rf "$ROOT"
mv "$ROOT.partial" "$ROOT"
echo "musl-arm64: unpacked $(cd "$APTDIR" && ls ./*.deb | tr '\n' ' ')into $ROOT"
