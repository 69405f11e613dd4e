#!/usr/bin/env bash
# test/stress/launches.sh - many process launches under LD_PRELOAD=libvrift.so
# (issue 4, item 2), each compared with the same program's output without
# the shim (the kernel's answers).
#
#   launches.sh serial     <count> <shim> <blob> <probe> <paths-file>
#   launches.sh concurrent <count> <shim> <blob> <probe> <paths-file>
#
# serial: <count> launches one after another, cycling through five kinds:
#   bash (test -e/-f/-d/-L/-s), python3 (os.stat/os.lstat), node
#   (fs.statSync/lstatSync, bigint: libuv's statx), coreutils stat(1), and the
#   C probe (stat/lstat/statx).  concurrent: rounds of 64 launches started at
#   once (<count> in total, a multiple of 64).  Every launch runs under
#   `timeout -s KILL 30` (exit 137 = hang); exit > 128 otherwise = crash.
# <paths-file>: one path per line (no spaces or newlines in a path).
#
# Prints: launches=<n> mismatches=<n> hangs=<n> crashes=<n> kinds=<list>
# and the first mismatch, if any.  Exit 0 only when all are 0.
set -uo pipefail

mode=$1 count=$2 shim=$3 blob=$4 probe=$5 pathsfile=$6
mapfile -t paths <"$pathsfile"
kinds=(bash python3 node coreutils c)
node_bin=$(command -v node)
py_bin=/usr/bin/python3
[ -x "$py_bin" ] || py_bin=$(command -v python3)

PY='import os, sys
for p in sys.argv[1:]:
    try:
        s = os.stat(p); l = os.lstat(p)
        print(p, oct(s.st_mode), s.st_size, s.st_ino, s.st_nlink, s.st_mtime_ns, s.st_ctime_ns, oct(l.st_mode), l.st_size)
    except OSError as e:
        print(p, "errno", e.errno)'
JS='const fs = require("fs");
for (const p of process.argv.slice(1)) {
  try {
    const s = fs.statSync(p, { bigint: true }), l = fs.lstatSync(p, { bigint: true });
    console.log(p, s.mode, s.size, s.ino, s.nlink, s.mtimeNs, s.ctimeNs, l.mode, l.size);
  } catch (e) { console.log(p, e.code); }
}'
BASH_PROBE='for p; do r=; [ -e "$p" ] && r+=e; [ -f "$p" ] && r+=f; [ -d "$p" ] && r+=d; [ -L "$p" ] && r+=L; [ -s "$p" ] && r+=s; [ -h "$p/" ] && r+=H; echo "$p $r"; done'

# run_kind <kind> [env assignments...]: the kind's output plus its exit status
run_kind() {
  local kind=$1
  shift
  case $kind in
    bash) env "$@" timeout -s KILL 30 bash -c "$BASH_PROBE" bash "${paths[@]}" 2>&1 ;;
    python3) env "$@" timeout -s KILL 30 "$py_bin" -S -c "$PY" "${paths[@]}" 2>&1 ;;
    node) env "$@" timeout -s KILL 30 "$node_bin" -e "$JS" "${paths[@]}" 2>&1 ;;
    # The format asks for every basic field: stat(1) then requests
    # STATX_BASIC_STATS, which the shim answers (a narrower mask - e.g.
    # `stat -c %s`, `ls -l` - passes through by design, see shim/README.md).
    coreutils) env "$@" timeout -s KILL 30 stat -c '%n %f %s %i %h %X %Y %Z %u %g %b %t %T' -- "${paths[@]}" 2>&1 ;;
    c) env "$@" timeout -s KILL 30 "$probe" "${paths[@]}" 2>&1 ;;
  esac
  echo "exit=$?"
}

declare -A expected
for k in "${kinds[@]}"; do
  expected[$k]=$(run_kind "$k" -u LD_PRELOAD)
done

launches=0 mismatches=0 hangs=0 crashes=0 first=
# judge <kind> <output>
judge() {
  local kind=$1 out=$2 rc
  launches=$((launches + 1))
  rc=${out##*exit=}
  if [ "$rc" = 137 ]; then
    hangs=$((hangs + 1))
  elif [ "$rc" -gt 128 ] 2>/dev/null; then
    crashes=$((crashes + 1))
  fi
  if [ "$out" != "${expected[$kind]}" ]; then
    mismatches=$((mismatches + 1))
    [ -n "$first" ] || first="$kind: $(diff <(echo "${expected[$kind]}") <(echo "$out") | head -6 | tr '\n' '|')"
  fi
}

case $mode in
  serial)
    for ((i = 0; i < count; i++)); do
      k=${kinds[i % ${#kinds[@]}]}
      judge "$k" "$(run_kind "$k" LD_PRELOAD="$shim" VRIFT_BLOB="$blob")"
    done
    ;;
  concurrent)
    dir=$(mktemp -d)
    trap 'rm -rf "$dir"' EXIT
    for ((r = 0; r < count / 64; r++)); do
      for ((j = 0; j < 64; j++)); do
        k=${kinds[(r * 64 + j) % ${#kinds[@]}]}
        run_kind "$k" LD_PRELOAD="$shim" VRIFT_BLOB="$blob" >"$dir/$j.$k" &
      done
      wait
      for f in "$dir"/*; do
        k=${f##*.}
        judge "$k" "$(cat "$f")"
        rm -f "$f"
      done
    done
    ;;
  *)
    echo "launches.sh: unknown mode $mode" >&2
    exit 2
    ;;
esac

echo "launches=$launches mismatches=$mismatches hangs=$hangs crashes=$crashes kinds=${kinds[*]}"
[ -z "$first" ] || echo "first mismatch: $first"
[ "$mismatches" -eq 0 ] && [ "$hangs" -eq 0 ] && [ "$crashes" -eq 0 ]
