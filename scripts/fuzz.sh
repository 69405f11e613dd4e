#!/usr/bin/env bash
# scripts/fuzz.sh - build the libFuzzer targets (shim/fuzz, clang with
# -fsanitize=fuzzer,address,undefined) and run each for a bounded time.
#
#   npm run fuzz                       every target, FUZZ_SECONDS each (default 60)
#   FUZZ_SECONDS=20 scripts/fuzz.sh    the short CI pass (test/hostile/fuzz.test.ts)
#   scripts/fuzz.sh fuzz_lookup        one target
#
# Env: FUZZ_SECONDS (per target, default 60), FUZZ_MAX_LEN (bytes, overrides the
# per-target longest input), FUZZ_KEEP=<dir> keeps the grown
# corpus there (default: a temp dir, removed). The committed seed corpus
# (shim/fuzz/corpus/<target>/) is only read. A crash, sanitizer report,
# failed CHECK or an input running > 10 s (a hang) stops that target; its
# input is saved as shim/build/fuzz/artifacts/<target>-crash-*.
#
# Prints one line per target, then exits non-zero if any target failed:
#   fuzz: <target> execs=<n> seconds=<s> result=ok|FAILED
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

secs=${FUZZ_SECONDS:-60}
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(fuzz_header fuzz_resolve fuzz_lookup)
if ! command -v "${FUZZ_CC:-clang}" >/dev/null; then
  echo "fuzz: clang not found (Debian: apt-get install clang); libFuzzer needs it" >&2
  exit 2
fi
make -s -C shim fuzz
art=shim/build/fuzz/artifacts
mkdir -p "$art"
work=${FUZZ_KEEP:-$(mktemp -d "${TMPDIR:-/tmp}/vrift-fuzz.XXXXXX")}
[ -n "${FUZZ_KEEP:-}" ] || trap 'rm -rf "$work"' EXIT

# Longest input per target: whole small blobs; paths just past PATH_MAX (4096).
declare -A max_len=([fuzz_header]=16384 [fuzz_resolve]=4200 [fuzz_lookup]=8192)
fail=0
for t in "${targets[@]}"; do
  [ -d "shim/fuzz/corpus/$t" ] || { echo "fuzz: unknown target $t" >&2; exit 2; }
  mkdir -p "$work/$t"
  log="$work/$t.log"
  rc=0
  "shim/build/fuzz/$t" -max_total_time="$secs" -max_len="${FUZZ_MAX_LEN:-${max_len[$t]}}" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$art/$t-" "$work/$t" "shim/fuzz/corpus/$t" >"$log" 2>&1 || rc=$?
  execs=$(awk '/stat::number_of_executed_units/ {print $2}' "$log")
  if [ "$rc" -eq 0 ]; then
    echo "fuzz: $t execs=${execs:-0} seconds=$secs result=ok"
  else
    echo "fuzz: $t execs=${execs:-0} seconds=$secs result=FAILED (exit $rc)"
    grep -E 'ERROR|CHECK failed|SUMMARY|runtime error|Test unit written|#[0-9]+ 0x' "$log" | head -40 >&2 || tail -40 "$log" >&2
    fail=1
  fi
done
exit $fail
