#!/bin/sh
# launchbench.sh - process launch cost of the shim's start-up checks
# (docs/shim-safety.md section 6).  Times N x ROUNDS launches of /bin/true
# (fork + exec + ld.so + the shim's constructor) of each of these, one
# launch of each in turn:
#   none      no LD_PRELOAD
#   shim      build/libvrift.so with a valid blob (every start-up check, the
#             /proc/self/mountstats scan included)
#   no-mounts the same source built without the mount scan (a copy in a
#             temp dir; nothing of it is committed)
#   baseline  BASELINE=<path to another libvrift.so>, optional (e.g. a build
#             of an earlier commit, to see what a change costs)
# and prints the median per-launch CPU time (user + sys of each launched
# process) and wall time of each, and the ratios.
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
# The launcher: ROUNDS x N rounds of one launch per variant in turn (fork +
# execve(/bin/true) + wait4), so every variant sees the same machine load
# to within one launch; each child's own CPU time (user + sys from wait4,
# the kernel's exact runtime) and wall time are kept, and the median, p25
# and p75 per variant printed in ns.  CPU time is what the checks cost; wall
# time on a shared machine is noise.
cat >"$T/launch.c" <<'C'
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
extern char **environ;
static int cmp(const void *a, const void *b)
{
	long x = *(const long *)a, y = *(const long *)b;
	return (x > y) - (x < y);
}
/* launch N NAME=PRELOAD...: PRELOAD "" runs without LD_PRELOAD */
int main(int argc, char **argv)
{
	long n = atol(argv[1]);
	int nv = argc - 2, ne = 0;
	char *args[] = { "/bin/true", NULL }, ***envs = calloc(nv, sizeof *envs);
	long **cpu = calloc(nv, sizeof *cpu), **wall = calloc(nv, sizeof *wall);
	while (environ[ne])
		ne++;
	for (int v = 0; v < nv; v++) {
		char *pre = strchr(argv[v + 2], '=') + 1, **e = envs[v] = calloc(ne + 2, sizeof *e);
		for (int i = 0; i < ne; i++)
			if (strncmp(environ[i], "LD_PRELOAD=", 11) != 0)
				*e++ = environ[i];
		if (*pre) {
			*e = malloc(strlen(pre) + 12);
			strcat(strcpy(*e++, "LD_PRELOAD="), pre);
		}
		cpu[v] = calloc(n, sizeof **cpu), wall[v] = calloc(n, sizeof **wall);
	}
	for (long i = 0; i < n; i++)
		for (int v = 0; v < nv; v++) {
			struct timespec a, b;
			struct rusage ru;
			int st;
			clock_gettime(CLOCK_MONOTONIC, &a);
			pid_t p = fork();
			if (p == 0) {
				execve(args[0], args, envs[v]);
				_exit(127);
			}
			if (wait4(p, &st, 0, &ru) != p || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
				return 1;
			clock_gettime(CLOCK_MONOTONIC, &b);
			cpu[v][i] = (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000L +
				    (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000L;
			wall[v][i] = (b.tv_sec - a.tv_sec) * 1000000000L + (b.tv_nsec - a.tv_nsec);
		}
	for (int v = 0; v < nv; v++) {
		qsort(cpu[v], n, sizeof **cpu, cmp);
		qsort(wall[v], n, sizeof **wall, cmp);
		*strchr(argv[v + 2], '=') = 0;
		printf("%s %ld %ld %ld %ld %ld %ld\n", argv[v + 2], cpu[v][n / 2], cpu[v][n / 4], cpu[v][3 * n / 4],
		       wall[v][n / 2], wall[v][n / 4], wall[v][3 * n / 4]);
	}
	return 0;
}
C
gcc -O2 -o "$T/launch" "$T/launch.c"
# Copies of the preloads, taken once: another build replacing build/libvrift.so
# during the run must not change what is measured.
cp "$HERE/build/libvrift.so" "$T/shim.so"
[ -z "${BASELINE:-}" ] || cp "$BASELINE" "$T/baseline.so"
VRIFT_BLOB="$T/blob" "$T/launch" $((N * ROUNDS)) none= nomounts="$T/nomounts.so" shim="$T/shim.so" \
  ${BASELINE:+baseline="$T/baseline.so"} >"$T/res"
lines=$(grep -c "^device " /proc/self/mountstats)
echo "launches: $((N * ROUNDS)) per variant, interleaved one by one; /proc/self/mountstats: $lines lines; load: $(cut -d' ' -f1-3 /proc/loadavg)"
col() { awk -v v="$1" -v c="$2" '$1 == v { print $c }' "$T/res"; }
for k in cpu wall; do
  c=2; [ $k = cpu ] || c=5
  none=$(col none $c); nom=$(col nomounts $c); shim=$(col shim $c)
  awk -v k="$k" -v a="$none" -v b="$nom" -v c="$shim" -v q="$(col shim $((c + 1)))-$(col shim $((c + 2)))" 'BEGIN {
    split(q, r, "-")
    printf "%-4s per launch (median, us): none %.1f | shim without mount scan %.1f | shim %.1f (p25-p75 %.1f-%.1f);", k, a/1000, b/1000, c/1000, r[1]/1000, r[2]/1000
    printf " ratio to none %.3f | %.3f; mount scan %+.1f us\n", b/a, c/a, (c-b)/1000 }'
  [ -z "${BASELINE:-}" ] || awk -v k="$k" -v a="$none" -v d="$(col baseline $c)" -v c="$shim" 'BEGIN {
    printf "%-4s baseline %.1f us (ratio to none %.3f); shim - baseline %+.1f us\n", k, d/1000, d/a, (c-d)/1000 }'
done
