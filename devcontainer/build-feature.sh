#!/bin/sh
# build-feature.sh - package the vrift devcontainer feature (npm run build:feature).
#
# Builds the shim variants and vrift-mkblob (make -C shim) and copies what the feature ships
# into devcontainer/src/vrift/bin/ (gitignored: build outputs are never committed):
#   libvrift-<arch>-<libc>.so   every shim variant built here: shim/build/<arch>-<libc>/libvrift.so
#                               (amd64/arm64 x glibc/musl; one whose toolchain is missing is
#                               skipped by the Makefile and then not shipped)
#   vrift-mkblob-<arch>         static vrift-mkblob: shim/build/vrift-mkblob (amd64, musl) and
#                               shim/build/vrift-mkblob-arm64 (static glibc)
# install.sh picks the variant matching the image and fails clearly when it is missing.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
shim=$(dirname "$here")/shim
bin="$here/src/vrift/bin"
make -s -C "$shim" variants mkblob
rm -rf "$bin.tmp"
mkdir -p "$bin.tmp"
for v in amd64-glibc arm64-glibc amd64-musl arm64-musl; do
  if [ -f "$shim/build/$v/libvrift.so" ]; then cp "$shim/build/$v/libvrift.so" "$bin.tmp/libvrift-$v.so"; fi
done
[ -f "$bin.tmp/libvrift-amd64-glibc.so" ] || { echo "build-feature: shim/build/amd64-glibc/libvrift.so was not built" >&2; exit 1; }
cp "$shim/build/vrift-mkblob" "$bin.tmp/vrift-mkblob-amd64"
if [ -f "$shim/build/vrift-mkblob-arm64" ]; then cp "$shim/build/vrift-mkblob-arm64" "$bin.tmp/vrift-mkblob-arm64"; fi
chmod 0755 "$bin.tmp"/*
rm -rf "$bin"
mv "$bin.tmp" "$bin"
echo "build-feature: $(cd "$bin" && for f in *; do printf '%s ' "$f"; done)in $bin"
