#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# vrift devcontainer feature: install.sh (POSIX sh; runs as root during the image build).
#
# 1. picks the shim variant for this image (uname -m, musl or glibc loader) and installs
#    /usr/lib/vrift/libvrift.so and /usr/local/bin/vrift-mkblob (static, any libc);
# 2. copies each configured directory P to /vrift/P (entries created in byte order, as the
#    layer tar recreates them) and leaves a symlink P -> /vrift/P, so every old path still
#    works;
# 3. points python3 at the /vrift copies (a .pth in a site dir rewrites sys.path), so its
#    lookups use /vrift paths, the ones the shim answers (a path through the symlink is not
#    in the domain and passes through);
# 4. writes /usr/lib/vrift/psfs.blob with synthetic identity, PSFS_H_DEV_RUNTIME and
#    PSFS_H_CHECK_ROOT_MTIME, after truncating mtimes to whole seconds (the classic
#    builder's layer commit keeps seconds only), and checks it with vrift-mkblob --verify;
# 5. installs a dpkg hook that drops the blob while dpkg runs and rewrites it after.
#
# Options (devcontainer-feature.json) arrive as environment variables:
#   PATHS    "auto" (default), "none", or comma-separated absolute directories
#   PYTHON   "true" (default): add the sys.path rewrite for python3
#   DPKGHOOK "true" (default): drop the blob while dpkg runs, rewrite it after
# Docs: docs/integrations/devcontainer.md
set -eu

FEATURE_DIR=$(cd "$(dirname "$0")" && pwd)
PATHS="${PATHS:-auto}"
PYTHON="${PYTHON:-true}"
DPKGHOOK="${DPKGHOOK:-true}"
LIBDIR=/usr/lib/vrift
BLOB="$LIBDIR/psfs.blob"
MKBLOB=/usr/local/bin/vrift-mkblob
ROOT=/vrift
MKBLOB_ARGS="--root $ROOT --blob $BLOB --identity synthetic --dev-runtime --check-root-mtime --truncate-mtime-ns"

log() { printf 'vrift feature: %s\n' "$*" >&2; }
die() {
  printf 'vrift feature: error: %s\n' "$*" >&2
  exit 1
}

# containerEnv puts LD_PRELOAD in the image ENV before this step runs: nothing here needs
# the shim (and it is not installed yet).
unset LD_PRELOAD

[ "$(id -u)" = 0 ] || die "install.sh must run as root (it does during a devcontainer build)"

# --- 1. variant -----------------------------------------------------------------------------
case "$(uname -m)" in
  x86_64 | amd64) ARCH=amd64 ;;
  aarch64 | arm64) ARCH=arm64 ;;
  *) die "unsupported architecture $(uname -m); vrift has shims for x86_64 (amd64) and aarch64 (arm64) only: remove the feature from devcontainer.json for this image" ;;
esac
LIBC=glibc
for f in /lib/ld-musl-*.so.1; do
  [ -e "$f" ] && LIBC=musl
done
SHIM="$FEATURE_DIR/bin/libvrift-$ARCH-$LIBC.so"
TOOL="$FEATURE_DIR/bin/vrift-mkblob-$ARCH"
if [ ! -f "$SHIM" ]; then
  have=$(cd "$FEATURE_DIR/bin" 2>/dev/null && for f in libvrift-*.so; do [ -e "$f" ] && printf '%s ' "$f"; done)
  die "no shim for linux/$ARCH $LIBC in this feature (it ships: ${have:-nothing}); build the variant (make -C shim variants) and repackage with 'npm run build:feature', or remove the feature for this image"
fi
[ -f "$TOOL" ] || die "no vrift-mkblob for linux/$ARCH in this feature; repackage with 'npm run build:feature'"
[ ! -e "$ROOT" ] || die "$ROOT already exists in the base image (built by 'vrift build'?); the feature creates $ROOT itself: use a base without it, or drop the feature and keep the image's own blob"

mkdir -p "$LIBDIR" /usr/local/bin
cp "$SHIM" "$LIBDIR/libvrift.so.tmp" && chmod 0755 "$LIBDIR/libvrift.so.tmp" && mv -f "$LIBDIR/libvrift.so.tmp" "$LIBDIR/libvrift.so"
cp "$TOOL" "$MKBLOB.tmp" && chmod 0755 "$MKBLOB.tmp" && mv -f "$MKBLOB.tmp" "$MKBLOB"
# The shim must load in this image (e.g. glibc >= 2.34 for the glibc build): a preload that
# ld.so refuses prints an error in every process.
probe=$(LD_PRELOAD="$LIBDIR/libvrift.so" /bin/sh -c : 2>&1) || true
[ -z "$probe" ] || die "the $ARCH-$LIBC shim does not load in this image: $probe"
log "installed $LIBDIR/libvrift.so (linux/$ARCH $LIBC) and $MKBLOB"

# --- 2. which directories -------------------------------------------------------------------
python_paths() { # python3's sys.path directories under /usr/lib (stdlib, Debian dist-packages)
  command -v python3 >/dev/null 2>&1 || return 0
  LD_PRELOAD='' python3 -S -c 'import sys, site
for p in sys.path + site.getsitepackages():
    if p.startswith("/usr/lib/"): print(p)' 2>/dev/null || true
}

case "$PATHS" in
  auto) requested=$(python_paths) ;;
  none | "") requested= ;;
  *) requested=$(printf '%s\n' "$PATHS" | tr ',' '\n') ;;
esac

# Refused: system directories (and their ancestors) the image and this script need, and
# anything the shim or vrift own.
protected="/ /bin /sbin /lib /lib32 /lib64 /libx32 /usr /usr/bin /usr/sbin /usr/lib /usr/libexec /usr/local /usr/local/bin /usr/local/lib /etc /var /home /root /opt /srv /usr/share"
selected=
for p in $requested; do
  p=$(printf '%s' "$p" | sed -e 's/^[[:space:]]*//' -e 's/[[:space:]]*$//' -e 's#//*#/#g' -e 's#\(.\)/$#\1#')
  [ -n "$p" ] || continue
  case "$p" in
    /*) ;;
    *) die "paths: '$p' is not an absolute path; list absolute directories, e.g. /usr/lib/python3/dist-packages" ;;
  esac
  case "$p" in
    *[!A-Za-z0-9._+@/-]*) die "paths: '$p' has characters other than letters, digits and ._+@/-; rename it or leave it out" ;;
    */./* | */../* | */. | */..) die "paths: '$p' is not normalized (no . or .. components)" ;;
  esac
  for q in $protected; do
    [ "$p" != "$q" ] || die "paths: '$p' is a system directory; list the dependency directories inside it"
  done
  case "$p" in
    /proc | /proc/* | /sys | /sys/* | /dev | /dev/* | /run | /run/* | /tmp | /tmp/* | /vrift | /vrift/* | "$LIBDIR" | "$LIBDIR"/* | /usr/lib/*-linux-gnu* | /lib/*-linux-gnu*)
      die "paths: '$p' cannot be accelerated (system, runtime or vrift directory)" ;;
  esac
  case "$FEATURE_DIR/" in "$p"/*) die "paths: '$p' contains the feature being installed" ;; esac
  if [ ! -d "$p" ] || [ -L "$p" ]; then
    [ "$PATHS" = auto ] && continue # auto: python3 lists directories that may not exist
    die "paths: '$p' is not a directory in the image (or is a symlink); list existing directories, or install them in an earlier feature/Dockerfile step"
  fi
  for s in $selected; do
    case "$p/" in "$s"/*) [ "$PATHS" = auto ] && continue 2; die "paths: '$p' is inside '$s'; list one of them" ;; esac
    case "$s/" in "$p"/*) die "paths: '$s' is inside '$p'; list one of them" ;; esac
  done
  selected="$selected $p"
done
# auto may list a parent after its child (sys.path order): drop children of selected parents
final=
for p in $selected; do
  keep=1
  for s in $selected; do
    [ "$s" != "$p" ] && case "$p/" in "$s"/*) keep=0 ;; esac
  done
  [ "$keep" = 1 ] && final="$final $p"
done
# byte order: /vrift's directories get their entries in the order the layer tar recreates them
final=$(for p in $final; do printf '%s\n' "$p"; done | LC_ALL=C sort -u | tr '\n' ' ')

# --- 3. python3: look modules up under /vrift --------------------------------------------------
pth_site=
if [ "$PYTHON" = true ] && [ -n "$final" ] && command -v python3 >/dev/null 2>&1; then
  map=
  for p in $final; do map="$map('$p', '$ROOT$p'), "; done
  # The last existing site dir: site.py processes its .pth files after every site dir is on
  # sys.path, so the rewrite sees them all (a moved one is copied with the .pth in it).
  pth_site=$(LD_PRELOAD='' python3 -S -c 'import os, site
print(([d for d in site.getsitepackages() if os.path.isdir(d)] or [""])[-1])' 2>/dev/null || true)
  # Also in every moved */site-packages or */dist-packages (a venv's, another python's): the
  # python that uses it runs the .pth from there. The rewrite is idempotent.
  pth_dirs=$pth_site
  for p in $final; do
    case "$p" in */site-packages | */dist-packages) [ "$p" = "$pth_site" ] || pth_dirs="$pth_dirs $p" ;; esac
  done
  for d in $pth_dirs; do
    # One line: .pth lines starting with "import" are executed by site.py at startup.
    printf '%s\n' "import sys; sys.path[:] = [next((d + p[len(s):] for s, d in ($map) if p == s or p.startswith(s + '/')), p) for p in sys.path]" \
      >"$d/zz-vrift.pth"
    chmod 0644 "$d/zz-vrift.pth"
    log "python3: $d/zz-vrift.pth maps sys.path entries to $ROOT"
  done
  [ -n "$pth_dirs" ] || log "python3: no site-packages directory to hold a .pth; set PYTHONPATH to the $ROOT paths yourself"
fi

# --- 4. tree and blob -------------------------------------------------------------------------
# python3 writes a missing or stale __pycache__/*.pyc next to the source at import time; in
# /vrift that would change the tree after the blob is written. Compile them now.
if command -v python3 >/dev/null 2>&1; then
  for p in $final; do
    case " $(python_paths | tr '\n' ' ') " in
      *" $p "* | *" $p/"*) LD_PRELOAD='' python3 -m compileall -q -j0 "$p" >/dev/null 2>&1 || true ;;
      *) case "$p" in */site-packages | */dist-packages) LD_PRELOAD='' python3 -m compileall -q -j0 "$p" >/dev/null 2>&1 || true ;; esac ;;
    esac
  done
fi
copies=
for p in $final; do copies="$copies --copy $p:$ROOT$p"; done
mkdir -m 0755 "$ROOT"
# shellcheck disable=SC2086 # word lists on purpose (paths are validated above)
"$MKBLOB" $MKBLOB_ARGS $copies
for p in $final; do
  rm -rf "$p"
  ln -s "$ROOT$p" "$p"
done
"$MKBLOB" --verify --blob "$BLOB" >&2 || die "the blob does not match $ROOT right after writing it (see the lines above)"
if [ -n "$final" ]; then
  log "accelerated:$final (now symlinks to $ROOT/...)"
else
  log "no directories to accelerate (paths=$PATHS): the shim is installed with an empty domain"
fi

# --- 5. dpkg hook ---------------------------------------------------------------------------------
if [ "$DPKGHOOK" = true ] && [ -d /etc/dpkg/dpkg.cfg.d ]; then
  # dpkg runs these around every unpack/configure/remove (apt-get and dpkg -i alike). Before:
  # drop the blob, so processes started meanwhile (maintainer scripts, py3compile) pass
  # through instead of being answered from a blob that no longer matches a directory dpkg
  # writes into. After: write it again (or leave none: passthrough, never a stale answer).
  cat >/etc/dpkg/dpkg.cfg.d/vrift <<EOF
# vrift devcontainer feature: keep $BLOB true to $ROOT across dpkg runs.
pre-invoke=rm -f $BLOB
post-invoke=$MKBLOB $MKBLOB_ARGS >/dev/null 2>&1 || rm -f $BLOB
EOF
  log "dpkg: /etc/dpkg/dpkg.cfg.d/vrift rewrites the blob after every dpkg run"
fi
# For a manual refresh after changing a directory under /vrift (see the docs).
printf '%s\n' "$MKBLOB_ARGS" >"$LIBDIR/mkblob.args"
log "done; switch the shim off for one command with LD_PRELOAD= (empty)"
