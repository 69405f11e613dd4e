#!/usr/bin/env bash
# variants-setup.sh - what test/variants needs beyond scripts/setup-machine.sh (issue 7):
#
#   musl-arm64     Debian musl:arm64 + musl-dev:arm64 unpacked (scripts/musl-arm64.sh): the
#                  arm64-musl shim variant and its qemu runs
#   bullseye-gcc   $VRIFT_CACHE/rootfs-bullseye-gcc: debootstrap bullseye + gcc, libc6-dev;
#                  builds the oracle against glibc 2.31 headers (chroot), so the program run in
#                  vrift-test/bullseye calls what bullseye programs call (__xstat*, statx)
#   musl-image     vrift-test/musl:latest, imported from a rootfs holding only Debian's musl
#                  runtime (/lib/ld-musl-x86_64.so.1); programs are bind-mounted in
#
# Usage: scripts/variants-setup.sh [musl-arm64|bullseye-gcc|musl-image|all]...   (default: all)
# Idempotent; each step prints one line. Needs root and the Debian mirror for the first run.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=setup-machine.sh
VRIFT_LOG_PREFIX=variants-setup
source "$HERE/setup-machine.sh"

ensure_musl_image() {
  local ref=vrift-test/musl:latest
  if vrift_image_exists "$ref"; then vrift_log "image $ref: present"; return 0; fi
  [ -e /lib/ld-musl-x86_64.so.1 ] || vrift_die "musl-image: /lib/ld-musl-x86_64.so.1 missing; apt-get install musl"
  local d; d=$(mktemp -d)
  mkdir -p "$d/lib" "$d/tmp" "$d/o" "$d/s"
  chmod 1777 "$d/tmp"
  cp -L /lib/ld-musl-x86_64.so.1 "$d/lib/ld-musl-x86_64.so.1"
  tar --numeric-owner -C "$d" -cf "$d.tar" .
  docker import --message "Debian musl $(dpkg-query -W -f='${Version}' musl) runtime only" "$d.tar" "$ref" >/dev/null
  rm -rf "$d" "$d.tar"
  vrift_log "image $ref: imported (ld-musl-x86_64.so.1 only)"
}

main() {
  local steps=("$@") s
  [ ${#steps[@]} -gt 0 ] || steps=(all)
  for s in "${steps[@]}"; do
    case "$s" in
      musl-arm64) bash "$HERE/musl-arm64.sh" ;;
      bullseye-gcc) vrift_ensure_rootfs bullseye-gcc bullseye gcc,libc6-dev ;;
      musl-image) ensure_musl_image ;;
      all) bash "$HERE/musl-arm64.sh"; vrift_ensure_rootfs bullseye-gcc bullseye gcc,libc6-dev; ensure_musl_image ;;
      *) vrift_die "unknown step '$s'; use musl-arm64, bullseye-gcc, musl-image or all" ;;
    esac
  done
}
main "$@"
