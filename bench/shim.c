/* SPDX-License-Identifier: Apache-2.0 */
/*
 * bench/shim.c - ns/call of stat(2) as the process sees it (with or without
 * LD_PRELOAD=libvrift.so; bench/shim.mjs runs both and compares).
 *
 *   bench-shim ROUNDS LIST...
 *
 * Each LIST is a file of paths, one per line.  For each list it prints
 *   <list> ws <median ns/call> <min> <max> <calls/round>
 *   <list> single <median ns/call> <min> <max> <calls/round>
 * "ws": one round = stat of every path of the list once (the working set);
 * "single": one round = as many stats of the list's first path.
 * Median over ROUNDS rounds, after one warm-up round.  Return values are
 * checked to be stable across rounds (a changing answer aborts).
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

static double now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
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

/* One round: stat each of paths[0..n) (or paths[0] n times); sum of rc. */
static long round_once(char **paths, size_t n, int single)
{
	struct stat st;
	long sum = 0;
	for (size_t i = 0; i < n; i++)
		sum += stat(paths[single ? 0 : i], &st);
	return sum;
}

static void measure(const char *name, char **paths, size_t n, int single, int rounds)
{
	double *ns = malloc((size_t)rounds * sizeof *ns);
	long ref = round_once(paths, n, single);   /* warm-up */
	for (int r = 0; r < rounds; r++) {
		double t0 = now_ns();
		long sum = round_once(paths, n, single);
		ns[r] = (now_ns() - t0) / (double)n;
		if (sum != ref) {
			fprintf(stderr, "%s: answers changed between rounds\n", name);
			exit(1);
		}
	}
	qsort(ns, (size_t)rounds, sizeof *ns, cmp);
	printf("%s %s %.1f %.1f %.1f %zu\n", name, single ? "single" : "ws", ns[rounds / 2], ns[0],
	       ns[rounds - 1], n);
	free(ns);
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: bench-shim ROUNDS LIST...\n");
		return 2;
	}
	int rounds = atoi(argv[1]);
	for (int i = 2; i < argc; i++) {
		size_t n;
		char **paths = load(argv[i], &n);
		const char *name = strrchr(argv[i], '/') ? strrchr(argv[i], '/') + 1 : argv[i];
		measure(name, paths, n, 0, rounds);
		measure(name, paths, n, 1, rounds);
	}
	return 0;
}
