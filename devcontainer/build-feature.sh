#!/bin/sh
# build-feature.sh - package the vrift devcontainer feature (npm run build:feature).
#
# Builds the shim and vrift-mkblob (make -C shim) and copies the binaries the feature ships
# into devcontainer/src/vrift/bin/ (gitignored: build outputs are never committed):
#   libvrift-<arch>-<libc>.so   shim variants; the native build of this machine, plus any
#                               shim/build/libvrift-<arch>-<libc>.so variant built already
#   vrift-mkblob-<arch>         static vrift-mkblob
# install.sh picks the variant matching the image and fails clearly when it is missing.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
bin="$here/src/vrift/bin"
make -s -C "$repo/shim" build/libvrift.so build/vrift-mkblob
case "$(uname -m)" in
  x86_64) arch=amd64 ;;
  aarch64) arch=arm64 ;;
  *) echo "build-feature: unsupported build machine $(uname -m)" >&2; exit 1 ;;
esac
libc=glibc
if ldd "$repo/shim/build/libvrift.so" 2>/dev/null | grep -q musl; then libc=musl; fi
rm -rf "$bin.tmp"
mkdir -p "$bin.tmp"
cp "$repo/shim/build/libvrift.so" "$bin.tmp/libvrift-$arch-$libc.so"
cp "$repo/shim/build/vrift-mkblob" "$bin.tmp/vrift-mkblob-$arch"
for v in "$repo"/shim/build/libvrift-*-*.so "$repo"/shim/build/vrift-mkblob-*; do
  [ -f "$v" ] && cp "$v" "$bin.tmp/"
done
chmod 0755 "$bin.tmp"/*
rm -rf "$bin"
mv "$bin.tmp" "$bin"
echo "build-feature: $(cd "$bin" && for f in *; do printf '%s ' "$f"; done)in $bin"
