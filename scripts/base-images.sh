#!/usr/bin/env bash
# base-images.sh - the extra local base images the tool image (top-level Dockerfile), the
# docker build recipe and the CI runner images (images/) are built FROM in tests.
#
# No image registry is reachable here, so like scripts/setup-machine.sh (whose functions
# this script reuses) every base is a debootstrap'ed Debian bookworm minbase imported with
# `docker import`; rootfs trees and tarballs are cached under $VRIFT_CACHE
# (/var/cache/vrift), so a rerun only imports an image that was deleted.
#
#   vrift-test/bookworm-node:latest        minbase + nodejs (Debian's 18.x) + strace:
#                                          the run-time base of the vrift tool image
#   vrift-test/bookworm-node-build:latest  the same + npm, gcc, make, libc6-dev: the
#                                          builder stage (npm ci, tsc, make -C shim)
#
# The public equivalents users build with are node:20-bookworm-slim (both stages; the
# Dockerfile installs gcc/make with apt when the builder base lacks them).
#
# Usage:  scripts/base-images.sh            # both images (idempotent)
#         source scripts/base-images.sh     # functions only
# Exit status: 0 when both images exist, 1 with "base-images: error: ..." on stderr.

# shellcheck source=scripts/setup-machine.sh
source "$(dirname "${BASH_SOURCE[0]}")/setup-machine.sh"

VRIFT_NODE_IMAGE=vrift-test/bookworm-node:latest
VRIFT_NODE_BUILD_IMAGE=vrift-test/bookworm-node-build:latest

# Make both node bases (debootstrap only when the cached rootfs is missing).
vrift_ensure_node_images() {
  vrift_ensure_base_image "$VRIFT_NODE_IMAGE" bookworm-node bookworm nodejs,strace
  vrift_ensure_base_image "$VRIFT_NODE_BUILD_IMAGE" bookworm-node-build bookworm \
    nodejs,npm,gcc,make,libc6-dev,strace
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
  VRIFT_LOG_PREFIX=base-images
  vrift_ensure_dockerd
  vrift_ensure_node_images
fi
