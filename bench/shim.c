/* SPDX-License-Identifier: Apache-2.0 */
/*
 * bench/shim.c - ns/call of stat(2) through libc alone ("kernel") and
 * through the preloaded libvrift.so ("shim"), in one process, paired.
 *
 *   LD_PRELOAD=libvrift.so VRIFT_BLOB=... bench-shim ROUNDS LIST...
 *
 * "kernel" calls libc's own stat (dlsym on the libc handle, bypassing the
 * interposer); "shim" calls stat, which resolves to libvrift.so.  Rounds
 * alternate kernel/shim (order flipped every round) so machine noise hits
 * both alike.  Each LIST is a file of paths, one per line; for each list:
 *   <list> ws     kernel=<ns> shim=<ns> ratio=<shim/kernel> shim_cold=<ns>
 *   <list> single kernel=<ns> shim=<ns> ratio=<shim/kernel> shim_cold=<ns>
 * "ws": one round = every path of the list once (the working set);
 * "single": one round = as many calls on the list's first path.
 * Each round runs each side 4 times in a row (order flipped every round):
 * ns = median ns/call of each side's last run (its steady state) over
 * ROUNDS rounds; ratio = median of the per-round paired ratios;
 * shim_cold = median of the shim's first run, right after the kernel's
 * runs, whose path walks evicted the blob from the caches (a process that
 * does other kernel work between its stats sees something in between).
 * Both must give the same answers.
 * Time is the thread's CPU time (CLOCK_THREAD_CPUTIME_ID, user + system):
 * on a shared 2-vCPU machine wall time mostly measures preemption.
 *
 * With BENCH_BLOB=<blob> it also prints, per list,
 *   <list> resolve ns=<median ns/call of psfs_resolve alone>
 * the shim's own decision cost without any syscall: on a cold list it is
 * the whole overhead the shim adds to a passthrough call (noise-free,
 * unlike the paired ratio on a busy machine).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "psfs_core.h"

static double now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t); /* excludes time preempted */
	return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static char **load(const char *file, size_t *n)
{
	FILE *f = fopen(file, "r");
	if (!f) {
		perror(file);
		exit(2);
	}
	size_t cap = 1024, len = 0;
	char **v = malloc(cap * sizeof *v);
	char *line = NULL;
	size_t lc = 0;
	ssize_t r;
	while ((r = getline(&line, &lc, f)) > 0) {
		if (line[r - 1] == '\n')
			line[r - 1] = 0;
		if (len == cap)
			v = realloc(v, (cap *= 2) * sizeof *v);
		v[len++] = strdup(line);
	}
	free(line);
	fclose(f);
	*n = len;
	return v;
}

typedef int (*stat_fn)(const char *, struct stat *);

/* One round: stat each of paths[0..n) (or paths[0] n times); sum of rc. */
static long round_once(stat_fn f, char **paths, size_t n, int single, double *ns)
{
	struct stat st;
	long sum = 0;
	double t0 = now_ns();
	for (size_t i = 0; i < n; i++)
		sum += f(paths[single ? 0 : i], &st);
	*ns = (now_ns() - t0) / (double)n;
	return sum;
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof *v, cmp);
	return v[n / 2];
}

static void measure(const char *name, stat_fn kern, char **paths, size_t n, int single, int rounds)
{
	double *k = malloc((size_t)rounds * sizeof *k), *s = malloc((size_t)rounds * sizeof *s);
	double *sc = malloc((size_t)rounds * sizeof *sc);
	double *ratio = malloc((size_t)rounds * sizeof *ratio), dummy;
	long ref = round_once(kern, paths, n, single, &dummy);   /* warm-up */
	if (round_once(stat, paths, n, single, &dummy) != ref) {
		fprintf(stderr, "%s: shim and kernel answers differ\n", name);
		exit(1);
	}
	for (int r = 0; r < rounds; r++) {
		/* Each side runs RUNS times in a row, the last run measured: its
		 * steady state.  The shim's first run, right after the kernel's
		 * runs, is reported apart (shim_cold): their 10k path walks evict
		 * the blob's lines, and on this VM it takes the shim ~4 runs of
		 * the list to get back to its steady state (93, 57, 50, 47 ns
		 * per call), longer than refilling the caches alone. */
		enum { RUNS = 4 };
		double t;
		for (int side = 0; side < 2; side++) {
			int shim = (side ^ r) & 1;   /* order flipped every round */
			for (int i = 0; i < RUNS; i++) {
				if (round_once(shim ? stat : kern, paths, n, single, &t) != ref) {
					fprintf(stderr, "%s: answers changed between rounds\n", name);
					exit(1);
				}
				if (shim && i == 0)
					sc[r] = t;
				if (i == RUNS - 1)
					*(shim ? &s[r] : &k[r]) = t;
			}
		}
		ratio[r] = s[r] / k[r];
	}
	printf("%s %s kernel=%.1f shim=%.1f ratio=%.4f shim_cold=%.1f\n", name, single ? "single" : "ws",
	       median(k, rounds), median(s, rounds), median(ratio, rounds), median(sc, rounds));
	free(k);
	free(s);
	free(sc);
	free(ratio);
}

/* Median ns/call of psfs_resolve over the list (PSFS_FOLLOW, as stat). */
static void measure_resolve(const char *name, const struct psfs_view *v, char **paths, size_t n, int rounds)
{
	double *ns = malloc((size_t)rounds * sizeof *ns);
	static char scratch[PSFS_PATH_MAX];
	const struct psfs_entry *e;
	volatile long sink = 0;
	for (int r = -1; r < rounds; r++) {
		double t0 = now_ns();
		long sum = 0;
		for (size_t i = 0; i < n; i++)
			sum += psfs_resolve(v, paths[i], PSFS_FOLLOW, scratch, &e);
		if (r >= 0)
			ns[r] = (now_ns() - t0) / (double)n;
		sink += sum;
	}
	printf("%s resolve ns=%.1f\n", name, median(ns, rounds));
	free(ns);
}

static int map_blob(const char *file, struct psfs_view *v)
{
	int fd = open(file, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) != 0)
		return -1;
	void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	return m == MAP_FAILED ? -1 : psfs_view_init(v, m, (uint64_t)st.st_size);
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: bench-shim ROUNDS LIST...\n");
		return 2;
	}
	int rounds = atoi(argv[1]);
	/* libc's own stat, not the interposer's: look it up in libc itself. */
	void *libc = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
	stat_fn kern = libc ? (stat_fn)dlsym(libc, "stat") : NULL;
	if (!kern) {
		fprintf(stderr, "bench-shim: cannot find libc's stat (glibc >= 2.33 needed)\n");
		return 2;
	}
	struct psfs_view view;
	const char *blob = getenv("BENCH_BLOB");
	int blob_ok = blob && map_blob(blob, &view) == 0;
	if (blob && !blob_ok) {
		fprintf(stderr, "bench-shim: cannot map or validate %s\n", blob);
		return 2;
	}
	for (int i = 2; i < argc; i++) {
		size_t n;
		char **paths = load(argv[i], &n);
		const char *name = strrchr(argv[i], '/') ? strrchr(argv[i], '/') + 1 : argv[i];
		measure(name, kern, paths, n, 0, rounds);
		measure(name, kern, paths, n, 1, rounds);
		if (blob_ok)
			measure_resolve(name, &view, paths, n, rounds);
	}
	return 0;
}
