#!/bin/sh
# probebench.sh - gcc's include search under the shim (issue 7 item 6; the
# numbers in bench/reach-notes.md).  A domain of 12 include directories
# (20 headers each); main.c includes 5 headers from each and 20 system
# headers, so the preprocessor probes every -I directory in turn (openat,
# ENOENT) before it finds each header.  Prints the open/access/stat-family
# syscalls on domain paths under strace -f with and without the shim, then
# the median wall and CPU time of RUNS compiles each (alternating).
#   sh shim/tests/probebench.sh [RUNS=15]
# Needs: make -C shim, node (vrift blob), gcc, strace, python3.
set -eu
RUNS=${1:-15}
HERE=$(cd "$(dirname "$0")/.." && pwd)
SHIM="$HERE/build/libvrift.so"
T=$(mktemp -d /tmp/vrift-probes-XXXXXX)
trap 'rm -rf "$T"' EXIT
chmod 0755 "$T" # the blob is rejected when a root ancestor is not searchable by all
I=
for i in $(seq 1 12); do
  mkdir -p "$T/dom/inc$i"
  for j in $(seq 1 20); do echo "#define H_${i}_$j $j" >"$T/dom/inc$i/h${i}_$j.h"; done
  I="$I -I$T/dom/inc$i"
done
{
  for i in $(seq 1 12); do for j in 1 5 10 15 20; do echo "#include <h${i}_$j.h>"; done; done
  for h in stdio.h stdlib.h string.h unistd.h fcntl.h errno.h math.h time.h pthread.h signal.h \
    sys/stat.h sys/types.h sys/mman.h stdint.h stddef.h ctype.h limits.h locale.h setjmp.h assert.h; do
    echo "#include <$h>"
  done
  echo 'int main(void) { return 0; }'
} >"$T/main.c"
node "$HERE/../bin/vrift.js" blob "$T/dom" -o "$T/blob" >/dev/null
chmod 0644 "$T/blob"
for pre in "" "$SHIM"; do
  # shellcheck disable=SC2086 # $I is a word list on purpose
  LD_PRELOAD=$pre VRIFT_BLOB="$T/blob" strace -f -qq -o "$T/st" \
    -e trace=open,openat,access,faccessat,faccessat2,newfstatat,statx,stat,lstat gcc $I -fsyntax-only "$T/main.c"
  label="no shim"; [ -z "$pre" ] || label="shim"
  echo "strace ($label): $(wc -l <"$T/st") calls in all, $(grep -c "\"$T/dom" "$T/st") on domain paths, $(grep "\"$T/dom" "$T/st" | grep -c ENOENT) of them ENOENT"
done
python3 - "$RUNS" "$SHIM" "$T" $I <<'PY'
import os, resource, statistics, subprocess, sys, time
runs, shim, t, iflags = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4:]
cmd = ['gcc', *iflags, '-fsyntax-only', t + '/main.c']
res = {'off': ([], []), 'shim': ([], [])}
for _ in range(runs):
    for k, pre in (('off', ''), ('shim', shim)):
        env = dict(os.environ, LD_PRELOAD=pre, VRIFT_BLOB=t + '/blob')
        c0 = resource.getrusage(resource.RUSAGE_CHILDREN); t0 = time.perf_counter()
        subprocess.run(cmd, env=env, check=True)
        t1 = time.perf_counter(); c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        res[k][0].append(t1 - t0); res[k][1].append(c1.ru_utime + c1.ru_stime - c0.ru_utime - c0.ru_stime)
m = {k: (statistics.median(w) * 1e3, statistics.median(c) * 1e3) for k, (w, c) in res.items()}
print('median of %d: wall %.1f ms without / %.1f ms with the shim (%.3fx); cpu %.1f / %.1f ms (%.3fx); load %s' % (
    runs, m['off'][0], m['shim'][0], m['shim'][0] / m['off'][0], m['off'][1], m['shim'][1], m['shim'][1] / m['off'][1],
    ' '.join(open('/proc/loadavg').read().split()[:3])))
PY
