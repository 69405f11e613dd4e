#!/bin/sh
# launchbench.sh - process launch cost of the shim's start-up checks
# (docs/shim-safety.md section 6).  Times N launches of /bin/true (fork +
# exec + ld.so + the shim's constructor) in ROUNDS alternating rounds for:
#   none      no LD_PRELOAD
#   shim      build/libvrift.so with a valid blob (every start-up check, the
#             /proc/self/mountstats scan included)
#   no-mounts the same source built without the mount scan (a copy in a
#             temp dir; nothing of it is committed)
#   baseline  BASELINE=<path to another libvrift.so>, optional (e.g. a build
#             of an earlier commit, to see what a change costs)
# and prints the median per-launch CPU time (user + sys of the launched
# processes) and wall time of each, and the ratios.
#   sh shim/tests/launchbench.sh [N=2000] [ROUNDS=7]
# Needs: make -C shim, node (vrift blob), gcc.
set -eu
N=${1:-2000}
ROUNDS=${2:-7}
HERE=$(cd "$(dirname "$0")/.." && pwd)
T=$(mktemp -d /tmp/vrift-launch-XXXXXX)
trap 'rm -rf "$T"' EXIT
chmod 0755 "$T" # the blob is rejected when a root ancestor is not searchable by all
mkdir -p "$T/dom/a/b" && echo x >"$T/dom/a/b/f"
node "$HERE/../bin/vrift.js" blob "$T/dom" -o "$T/blob" >/dev/null
chmod 0644 "$T/blob"
# The blob must be accepted, or "shim" would time the rejection path: under it
# a write into the domain is refused.
if LD_PRELOAD="$HERE/build/libvrift.so" VRIFT_BLOB="$T/blob" sh -c "echo x >'$T/dom/probe'" 2>/dev/null; then
  echo "launchbench: the shim did not accept $T/blob" >&2
  exit 1
fi
sed 's/ || domain_has_mount(&s->view)//' "$HERE/libvrift.c" >"$T/libvrift-nomounts.c"
grep -q domain_has_mount\(\&s "$T/libvrift-nomounts.c" && { echo "launchbench: could not remove the mount check" >&2; exit 1; }
cp "$HERE/psfs_core.h" "$HERE/psfs_format.h" "$T/"
gcc -std=c11 -O2 -fPIC -fvisibility=hidden -fno-stack-protector -shared -Wl,-z,now \
  -Wl,--version-script="$HERE/exports.map" -o "$T/nomounts.so" "$T/libvrift-nomounts.c" "$HERE/psfs_core.c" -ldl
# The launcher: N x fork + execve(/bin/true) + wait; prints the wall time
# and the children's CPU time (user + sys, getrusage) per launch in ns.  CPU
# time is what the check costs; wall time on a shared machine is noise.
cat >"$T/launch.c" <<'C'
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
extern char **environ;
int main(int argc, char **argv)
{
	int n = atoi(argv[1]);
	char *args[] = { "/bin/true", NULL };
	struct timespec a, b;
	struct rusage ru;
	clock_gettime(CLOCK_MONOTONIC, &a);
	for (int i = 0; i < n; i++) {
		pid_t p = fork();
		if (p == 0) {
			execve(args[0], args, environ);
			_exit(127);
		}
		int st;
		waitpid(p, &st, 0);
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
			return 1;
	}
	clock_gettime(CLOCK_MONOTONIC, &b);
	getrusage(RUSAGE_CHILDREN, &ru);
	double cpu = (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e9 + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e3;
	printf("%.0f %.0f\n", ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / n, cpu / n);
	return 0;
}
C
gcc -O2 -o "$T/launch" "$T/launch.c"
run() { # $1 = preload ("" for none); prints "wall_ns cpu_ns" per launch
  env LD_PRELOAD="$1" VRIFT_BLOB="$T/blob" "$T/launch" "$N"
}
: >"$T/none"; : >"$T/shim"; : >"$T/nomounts"; : >"$T/baseline"
r=0
while [ $r -lt "$ROUNDS" ]; do
  run "" >>"$T/none"
  run "$HERE/build/libvrift.so" >>"$T/shim"
  run "$T/nomounts.so" >>"$T/nomounts"
  [ -z "${BASELINE:-}" ] || run "$BASELINE" >>"$T/baseline"
  r=$((r + 1))
done
med() { sort -n "$1" | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
for v in none nomounts shim baseline; do
  cut -d' ' -f1 "$T/$v" >"$T/$v.wall"
  cut -d' ' -f2 "$T/$v" >"$T/$v.cpu"
done
lines=$(grep -c "^device " /proc/self/mountstats)
echo "launches: $N x $ROUNDS rounds, /proc/self/mountstats: $lines lines, load: $(cut -d' ' -f1-3 /proc/loadavg)"
for k in cpu wall; do
  none=$(med "$T/none.$k"); nom=$(med "$T/nomounts.$k"); shim=$(med "$T/shim.$k")
  awk -v k="$k" -v a="$none" -v b="$nom" -v c="$shim" 'BEGIN {
    printf "%-4s per launch (median, us): none %.1f | shim without mount scan %.1f | shim %.1f;", k, a/1000, b/1000, c/1000
    printf " ratio to none %.3f | %.3f; mount scan %+.1f us\n", b/a, c/a, (c-b)/1000 }'
  [ -z "${BASELINE:-}" ] || awk -v k="$k" -v a="$none" -v d="$(med "$T/baseline.$k")" -v c="$shim" 'BEGIN {
    printf "%-4s baseline %.1f us (ratio to none %.3f); shim - baseline %+.1f us\n", k, d/1000, d/a, (c-d)/1000 }'
done
