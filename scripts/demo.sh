#!/usr/bin/env bash
# demo.sh - the main job on a default input, end to end (`npm run demo`).
#
#   1. scripts/setup-machine.sh (packages, dockerd, local base image vrift-test/bookworm-python)
#   2. npm ci && npm run build (TypeScript + libvrift.so)
#   3. a real, sizeable pure-Python package from Debian (default: python3-sympy and its
#      dependency python3-mpmath, ~34 MB, ~1,900 files): `apt-get download` + `dpkg -x`, then
#      byte-compiled with the host's python3 when it matches the image's (as pip would do)
#   4. vrift build --base docker-daemon:vrift-test/bookworm-python:latest \
#        --add <dist-packages>:/vrift/python --tag vrift-demo:latest --load
#   5. docker run --network none of the image: import the package from /vrift/python and use
#      it, then count stat-family syscalls (strace -f) on /vrift paths with the shim and with
#      LD_PRELOAD emptied, and print both.
#
# Environment (all optional):
#   VRIFT_DEMO_PACKAGES  Debian packages to put under /vrift/python ("python3-sympy python3-mpmath")
#   VRIFT_DEMO_CODE      Python code run in the container (imports and uses sympy)
#   VRIFT_DEMO_BASE      base image (docker-daemon:vrift-test/bookworm-python:latest)
#   VRIFT_DEMO_TAG       built image (vrift-demo:latest)
#   VRIFT_DEMO_SKIP_NPM  set to 1 to skip `npm ci && npm run build` (already built)
#
# Exit status: 0 when the image was built and the code ran in it, non-zero otherwise, with a
# "demo: error: ..." line saying what failed.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
# shellcheck source=scripts/setup-machine.sh
source scripts/setup-machine.sh

PACKAGES=${VRIFT_DEMO_PACKAGES:-python3-sympy python3-mpmath}
CODE=${VRIFT_DEMO_CODE:-"import sympy; x = sympy.Symbol('x'); print('sympy', sympy.__version__, 'integrate(sin(x)**2) =', sympy.integrate(sympy.sin(x)**2, x))"}
BASE=${VRIFT_DEMO_BASE:-docker-daemon:vrift-test/bookworm-python:latest}
TAG=${VRIFT_DEMO_TAG:-vrift-demo:latest}

demo_log() { printf 'demo: %s\n' "$*"; }
demo_die() { printf 'demo: error: %s\n' "$*" >&2; exit 1; }

# 1. machine
vrift_setup_main all
VRIFT_LOG_PREFIX=demo

# 2. build vrift
if [ "${VRIFT_DEMO_SKIP_NPM:-0}" != 1 ]; then
  t=$SECONDS
  vrift_run_logged npm-ci npm ci --no-audit --no-fund
  vrift_run_logged npm-build npm run build
  demo_log "npm ci && npm run build: done in $((SECONDS - t))s"
fi

work=$(mktemp -d /tmp/vrift-demo.XXXXXX)
trap 'rm -rf "$work"' EXIT
chmod 755 "$work"   # apt-get download fetches as user _apt

# 3. input: real Debian packages, unpacked
read -r -a pkgs <<<"$PACKAGES"
if ! apt-cache show --no-all-versions "${pkgs[@]}" >/dev/null 2>&1; then
  vrift_apt_update_once
fi
mkdir -m 755 "$work/debs" "$work/root"
# Stale package lists point at versions the mirror no longer has: update once and retry.
if ! (cd "$work/debs" && apt-get download -q "${pkgs[@]}" >/dev/null 2>&1); then
  vrift_apt_update_once
  (cd "$work/debs" && vrift_run_logged apt-download apt-get download "${pkgs[@]}")
fi
for deb in "$work"/debs/*.deb; do dpkg -x "$deb" "$work/root"; done
src="$work/root/usr/lib/python3/dist-packages"
[ -d "$src" ] || demo_die "unpacking $PACKAGES: no usr/lib/python3/dist-packages in them; choose pure-Python python3-* packages"
image_tag=$(docker run --rm --network none "${BASE#docker-daemon:}" python3 -c 'import sys; print(sys.implementation.cache_tag)' 2>/dev/null || true)
host_tag=$(python3 -c 'import sys; print(sys.implementation.cache_tag)' 2>/dev/null || true)
if [ -n "$image_tag" ] && [ "$image_tag" = "$host_tag" ]; then
  vrift_run_logged compileall python3 -m compileall -q -j 0 "$src"
  compiled=" + .pyc ($image_tag)"
else
  compiled=" (not byte-compiled: host python ${host_tag:-none}, image ${image_tag:-unknown})"
fi
demo_log "input: $PACKAGES -> $(find "$src" -type f | wc -l) files, $(du -sm "$src" | cut -f1) MiB$compiled"

# 4. vrift build
t=$SECONDS
node bin/vrift.js build --base "$BASE" --add "$src:/vrift/python" --tag "$TAG" --load \
  || demo_die "vrift build failed (exit $?); see the message above"
demo_log "vrift build: $TAG in $((SECONDS - t))s"

# 5. run it, with and without the shim
run() { docker run --rm --network none -e PYTHONPATH=/vrift/python -e PYTHONDONTWRITEBYTECODE=1 "$@"; }
out=$(run "$TAG" python3 -c "$CODE") || demo_die "running the package in $TAG failed: $out"
demo_log "in the container: $out"

# Prints "<stat-family syscalls on /vrift paths> <all stat-family syscalls>".
count_stats() {
  # shellcheck disable=SC2016 # expanded by sh inside the container
  run "$@" "$TAG" sh -c 'strace -f -qq -e trace=%stat,%lstat,%fstat -o /tmp/trace python3 -c "$0" >/dev/null &&
    printf "%s %s\n" "$(grep -c "\"/vrift" /tmp/trace)" "$(wc -l </tmp/trace)"' "$CODE"
}
read -r with_vrift with_all < <(count_stats) || demo_die "strace in $TAG failed"
read -r without_vrift without_all < <(count_stats -e LD_PRELOAD=) || demo_die "strace in $TAG (LD_PRELOAD emptied) failed"
demo_log "stat-family syscalls on /vrift paths: ${without_vrift} without the shim (LD_PRELOAD emptied), ${with_vrift} with it (all paths: ${without_all} -> ${with_all})"
if [ "$without_vrift" -gt 0 ]; then
  demo_log "the shim answered $(( (without_vrift - with_vrift) * 100 / without_vrift ))% of them from the PSFS blob, without a syscall"
fi
