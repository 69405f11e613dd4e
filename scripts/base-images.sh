#!/usr/bin/env bash
# base-images.sh - the extra local base images the tool image (top-level Dockerfile), the
# docker build recipe and the CI runner images (images/) are built FROM in tests.
#
# No image registry is reachable here, so like scripts/setup-machine.sh (whose functions
# this script reuses) every base is a debootstrap'ed Debian bookworm minbase imported with
# `docker import`; rootfs trees and tarballs are cached under $VRIFT_CACHE
# (/var/cache/vrift), so a rerun only imports an image that was deleted.
#
#   vrift-test/bookworm-node:latest   minbase + nodejs (Debian's 18.19) + strace: both
#                                     stages of the vrift tool image. Its builder stage
#                                     installs npm, gcc, make and libc6-dev with apt
#                                     (`docker build --network host`), a cached layer.
#
# A builder base with npm cannot be debootstrapped: `--include=npm` (about 300 node-*
# packages) fails in debootstrap's configure pass (dependency order; measured), so npm
# comes from apt inside the build. The public equivalent users build with is
# node:20-bookworm-slim (npm included; the Dockerfile adds gcc/make/libc6-dev).
#
# Usage:  scripts/base-images.sh            # both images (idempotent)
#         source scripts/base-images.sh     # functions only
# Exit status: 0 when the image exists, 1 with "base-images: error: ..." on stderr.

# shellcheck source=scripts/setup-machine.sh
source "$(dirname "${BASH_SOURCE[0]}")/setup-machine.sh"

VRIFT_NODE_IMAGE=vrift-test/bookworm-node:latest

# Make the node base (debootstrap only when the cached rootfs is missing).
vrift_ensure_node_images() {
  vrift_ensure_base_image "$VRIFT_NODE_IMAGE" bookworm-node bookworm nodejs,strace
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
  VRIFT_LOG_PREFIX=base-images
  vrift_ensure_dockerd
  vrift_ensure_node_images
fi
