#!/usr/bin/env bash
# setup-machine.sh - make a Debian bookworm machine (root, Debian's apt reachable, npm
# reachable, no image registry) ready for vrift's build, tests and demo.
#
# Idempotent and fast on a machine that is already set up: every step first checks whether
# its work is done and prints one line either way.
#
#   1. packages      apt-get update (once, only when something is missing) + apt-get install
#                    of the Debian packages the build and the tests use
#   2. dockerd       start `dockerd --iptables=false --ip6tables=false --bridge=none` unless
#                    `docker info` already answers; wait (bounded) until it does
#   3. base images   local base images made with debootstrap + `docker import`, because no
#                    image can be pulled here:
#                      vrift-test/bookworm-python:latest  minbase bookworm + python3, strace
#                      vrift-test/bullseye:latest         minbase bullseye + strace (glibc 2.31)
#                    rootfs trees and tarballs are cached under $VRIFT_CACHE, so a rerun only
#                    runs `docker import` when the image is gone.
#
# Usage:  scripts/setup-machine.sh [packages|dockerd|images|all]...     (default: all)
#         source scripts/setup-machine.sh   # defines the functions only, for other scripts
#
# Environment:
#   VRIFT_CACHE          cache directory for rootfs trees and tarballs (/var/cache/vrift)
#   VRIFT_DEBIAN_MIRROR  Debian mirror for debootstrap (default: the one apt uses here)
#   VRIFT_DOCKERD_LOG    dockerd's log file (/var/log/dockerd.log)
#   VRIFT_DOCKERD_WAIT_S seconds to wait for dockerd to answer (60)
#   VRIFT_DOCKERD_EXTRA  extra dockerd arguments, space-separated (none)
#
# Exit status: 0 when everything is ready, 1 with a one-line "setup-machine: error: ..."
# on stderr naming what failed and where its log is.

VRIFT_CACHE="${VRIFT_CACHE:-/var/cache/vrift}"
VRIFT_DOCKERD_LOG="${VRIFT_DOCKERD_LOG:-/var/log/dockerd.log}"
VRIFT_DOCKERD_WAIT_S="${VRIFT_DOCKERD_WAIT_S:-60}"
VRIFT_SETUP_LOG_DIR="${VRIFT_SETUP_LOG_DIR:-/var/log/vrift-setup}"

# Debian packages the project needs (build, shim variants, tests, image tooling).
VRIFT_APT_PACKAGES=(
  ca-certificates xz-utils make gcc g++         # build basics (present on this kind already)
  docker.io                                     # the engine the tests and the demo use
  debootstrap debian-archive-keyring            # local base images (no registry here)
  strace                                        # syscall counts on the host
  clang lld                                     # libFuzzer builds of the PSFS reader
  musl-tools                                    # musl shim variant
  gcc-aarch64-linux-gnu libc6-dev-arm64-cross   # aarch64 shim variant
  qemu-user-static                              # running aarch64 test binaries
  docker-registry skopeo umoci                  # local registry, OCI tooling used as oracles
)

_VRIFT_APT_UPDATED=0
# Prefix of progress and error lines; scripts that source this file may change it.
VRIFT_LOG_PREFIX="${VRIFT_LOG_PREFIX:-setup-machine}"

# --- helpers ---------------------------------------------------------------------------

# Print one progress line.
vrift_log() { printf '%s: %s\n' "$VRIFT_LOG_PREFIX" "$*"; }

# Print one error line to stderr and exit 1.
vrift_die() {
  printf '%s: error: %s\n' "$VRIFT_LOG_PREFIX" "$*" >&2
  exit 1
}

# Fail unless running as root. Called only before work that needs root (apt-get,
# debootstrap, starting dockerd), so a user in the docker group can rerun this script on a
# machine that is already set up. $1: what needs it.
vrift_require_root() {
  [ "$(id -u)" = 0 ] || vrift_die "$1: needs root; rerun as root (sudo bash scripts/setup-machine.sh)"
}

# Run a command with its output sent to a log file; on failure print the log's tail and die.
# $1: step name (for the log file name and the message); rest: the command.
vrift_run_logged() {
  local step="$1"; shift
  mkdir -p "$VRIFT_SETUP_LOG_DIR"
  local logf="$VRIFT_SETUP_LOG_DIR/$step.log"
  if ! "$@" >"$logf" 2>&1; then
    tail -n 20 "$logf" >&2 || true
    vrift_die "$step: '$*' failed; full log in $logf"
  fi
}

# The Debian mirror apt uses on this machine (first "debian" archive URI in its sources),
# or http://deb.debian.org/debian. Prints the URL.
vrift_debian_mirror() {
  if [ -n "${VRIFT_DEBIAN_MIRROR:-}" ]; then printf '%s\n' "$VRIFT_DEBIAN_MIRROR"; return; fi
  local uri
  uri=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null \
    | sed -n -E 's/^[[:space:]]*(deb[[:space:]]+(\[[^]]*\][[:space:]]+)?|URIs:[[:space:]]*)([^[:space:]]+).*/\3/p' \
    | grep -E '^https?://[^[:space:]]+/debian/?$' | head -n 1 || true)
  printf '%s\n' "${uri:-http://deb.debian.org/debian}"
}

# --- 1. packages -----------------------------------------------------------------------

# apt-get update, at most once per run of this script.
vrift_apt_update_once() {
  [ "$_VRIFT_APT_UPDATED" = 1 ] && return 0
  vrift_require_root "updating apt's package lists"
  vrift_run_logged apt-update env DEBIAN_FRONTEND=noninteractive apt-get update
  _VRIFT_APT_UPDATED=1
}

# Print the packages from the arguments that dpkg does not have installed.
vrift_missing_packages() {
  local p
  for p in "$@"; do
    [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" = installed ] || printf '%s\n' "$p"
  done
}

# Install the given Debian packages (default: VRIFT_APT_PACKAGES), skipping installed ones.
# Services the packages ship are not started (policy-rc.d), dockerd is started by
# vrift_ensure_dockerd with the flags this machine needs.
# shellcheck disable=SC2120 # arguments are optional: other scripts pass their own list
vrift_ensure_packages() {
  local want=("$@")
  [ ${#want[@]} -gt 0 ] || want=("${VRIFT_APT_PACKAGES[@]}")
  local missing
  mapfile -t missing < <(vrift_missing_packages "${want[@]}")
  if [ ${#missing[@]} -eq 0 ]; then
    vrift_log "packages: all ${#want[@]} installed"
    return 0
  fi
  vrift_require_root "installing ${missing[*]}"
  vrift_apt_update_once
  local policy=/usr/sbin/policy-rc.d made_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && made_policy=1
  fi
  local rc=0
  ( vrift_run_logged apt-install env DEBIAN_FRONTEND=noninteractive \
      apt-get install -y --no-install-recommends "${missing[@]}" ) || rc=$?
  [ "$made_policy" = 1 ] && rm -f "$policy"
  [ "$rc" = 0 ] || exit "$rc"
  vrift_log "packages: installed ${missing[*]}"
}

# --- 2. dockerd ------------------------------------------------------------------------

# True when the Docker engine answers.
vrift_docker_answers() { timeout 20 docker info >/dev/null 2>&1; }

# Start dockerd (no iptables, no bridge: this machine has neither) unless one answers, and
# wait up to VRIFT_DOCKERD_WAIT_S seconds for it. Containers then need `--network none`
# or `--network host`.
vrift_ensure_dockerd() {
  command -v docker >/dev/null || vrift_die "checking docker: no docker client; run 'scripts/setup-machine.sh packages' first"
  if vrift_docker_answers; then
    vrift_log "dockerd: already answering"
    return 0
  fi
  vrift_require_root "starting dockerd (docker info does not answer)"
  # A dockerd killed with SIGKILL (as when a session's processes are ended) leaves its pid
  # file, and a new dockerd refuses to start while that pid exists. A live dockerd that
  # does not answer yet is waited for instead of started twice.
  local pidfile=/var/run/docker.pid old
  [[ " ${VRIFT_DOCKERD_EXTRA:-} " =~ \ --pidfile[=\ ]([^ ]+) ]] && pidfile="${BASH_REMATCH[1]}"
  if [ -s "$pidfile" ]; then
    old=$(cat "$pidfile")
    if [ "$(cat "/proc/$old/comm" 2>/dev/null)" = dockerd ] && \
       ! grep -q '^State:[[:space:]]*Z' "/proc/$old/status" 2>/dev/null; then
      local rc0=0
      vrift_wait_docker "$old" || rc0=$?
      if [ "$rc0" = 0 ]; then vrift_log "dockerd: pid $old (already running) answers now"; return 0; fi
      [ "$rc0" = 1 ] || vrift_die "waiting for dockerd pid $old (from $pidfile): no answer after ${VRIFT_DOCKERD_WAIT_S}s; stop it or see $VRIFT_DOCKERD_LOG"
    fi
    rm -f "$pidfile"
  fi
  mkdir -p "$(dirname "$VRIFT_DOCKERD_LOG")"
  # Two tries: right after a SIGKILL the old dockerd's containerd can still be exiting, and
  # the new dockerd then times out waiting for it and exits.
  local try pid t0=$SECONDS rc=0
  for try in 1 2; do
    # shellcheck disable=SC2086 # VRIFT_DOCKERD_EXTRA is a word list on purpose
    nohup setsid dockerd --iptables=false --ip6tables=false --bridge=none ${VRIFT_DOCKERD_EXTRA:-} \
      >>"$VRIFT_DOCKERD_LOG" 2>&1 </dev/null &
    pid=$! rc=0
    vrift_wait_docker "$pid" || rc=$?
    if [ "$rc" != 1 ] || [ "$try" = 2 ]; then break; fi
    sleep 2
    rm -f "$pidfile"
  done
  if [ "$rc" != 0 ]; then
    tail -n 20 "$VRIFT_DOCKERD_LOG" >&2 || true
    [ "$rc" = 1 ] && vrift_die "starting dockerd: it exited (twice); see $VRIFT_DOCKERD_LOG"
    vrift_die "starting dockerd: no answer after ${VRIFT_DOCKERD_WAIT_S}s (pid $pid); see $VRIFT_DOCKERD_LOG"
  fi
  vrift_log "dockerd: started (pid $pid, try $try) after $((SECONDS - t0))s, log $VRIFT_DOCKERD_LOG"
}

# Wait until the engine answers while dockerd $1 lives, at most VRIFT_DOCKERD_WAIT_S seconds.
# Returns 0 when it answers, 1 when dockerd $1 is gone, 2 on timeout.
vrift_wait_docker() {
  local pid="$1" waited=0
  until vrift_docker_answers; do
    kill -0 "$pid" 2>/dev/null || return 1
    [ "$waited" -lt "$VRIFT_DOCKERD_WAIT_S" ] || return 2
    sleep 1; waited=$((waited + 1))
  done
}

# --- 3. base images --------------------------------------------------------------------

# True when the image exists in the engine.
vrift_image_exists() { docker image inspect "$1" >/dev/null 2>&1; }

# debootstrap a minbase rootfs into $VRIFT_CACHE/rootfs-<name> unless it is there.
# $1 name, $2 suite, $3 comma-separated --include list (may be empty).
# Built in a .partial directory and renamed, so an interrupted run leaves nothing half-made.
vrift_ensure_rootfs() {
  local name="$1" suite="$2" include="$3"
  local dir="$VRIFT_CACHE/rootfs-$name"
  if [ -x "$dir/bin/sh" ]; then
    vrift_log "rootfs $name: cached in $dir"
    return 0
  fi
  vrift_require_root "debootstrapping $suite into $dir"
  local mirror; mirror=$(vrift_debian_mirror)
  mkdir -p "$VRIFT_CACHE"
  rm -rf "$dir.partial"
  local args=(--variant=minbase)
  [ -n "$include" ] && args+=("--include=$include")
  vrift_run_logged "debootstrap-$name" debootstrap "${args[@]}" "$suite" "$dir.partial" "$mirror"
  # The downloaded .debs and apt lists are ~90 MB the images never use (containers here have
  # no network): drop them so imports, exports and `vrift build` move less data.
  rm -rf "$dir.partial"/var/cache/apt/archives/*.deb "$dir.partial"/var/cache/apt/*.bin \
    "$dir.partial"/var/lib/apt/lists/*_*
  rm -rf "$dir"
  mv "$dir.partial" "$dir"
  vrift_log "rootfs $name: debootstrapped $suite (+${include:-nothing}) from $mirror into $dir"
}

# Make $VRIFT_CACHE/<name>.tar from the cached rootfs unless the tarball is there.
vrift_ensure_rootfs_tarball() {
  local name="$1" suite="$2" include="$3"
  local tarball="$VRIFT_CACHE/$name.tar"
  if [ -s "$tarball" ]; then
    vrift_log "tarball $name: cached at $tarball"
    return 0
  fi
  vrift_ensure_rootfs "$name" "$suite" "$include"
  vrift_run_logged "tar-$name" tar --numeric-owner --xattrs -C "$VRIFT_CACHE/rootfs-$name" \
    -cf "$tarball.partial" .
  mv "$tarball.partial" "$tarball"
  vrift_log "tarball $name: wrote $tarball ($(du -m "$tarball" | cut -f1) MiB)"
}

# Make sure a local base image exists; build rootfs/tarball only when missing.
# $1 image ref, $2 cache name, $3 suite, $4 --include list.
vrift_ensure_base_image() {
  local ref="$1" name="$2" suite="$3" include="$4"
  if vrift_image_exists "$ref"; then
    vrift_log "image $ref: present"
    return 0
  fi
  vrift_ensure_rootfs_tarball "$name" "$suite" "$include"
  local id
  id=$(docker import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["/bin/bash"]' \
        --message "debootstrap --variant=minbase --include=$include $suite" \
        "$VRIFT_CACHE/$name.tar" "$ref" 2>&1) \
    || vrift_die "importing $VRIFT_CACHE/$name.tar as $ref: $id; delete the tarball to rebuild it"
  vrift_log "image $ref: imported from $VRIFT_CACHE/$name.tar ($id)"
}

# The base images the tests and the demo use.
vrift_ensure_base_images() {
  vrift_ensure_base_image vrift-test/bookworm-python:latest bookworm-python bookworm python3,strace
  vrift_ensure_base_image vrift-test/bullseye:latest bullseye bullseye strace
}

# --- main ------------------------------------------------------------------------------

vrift_setup_main() {
  local steps=("$@") t0=$SECONDS
  [ ${#steps[@]} -gt 0 ] || steps=(all)
  local s
  for s in "${steps[@]}"; do
    case "$s" in
      packages) vrift_ensure_packages ;;
      dockerd) vrift_ensure_dockerd ;;
      images) vrift_ensure_base_images ;;
      all) vrift_ensure_packages; vrift_ensure_dockerd; vrift_ensure_base_images ;;
      *) vrift_die "reading arguments: unknown step '$s'; use packages, dockerd, images or all" ;;
    esac
  done
  vrift_log "ready in $((SECONDS - t0))s"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  vrift_setup_main "$@"
fi
