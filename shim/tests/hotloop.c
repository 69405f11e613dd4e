/* SPDX-License-Identifier: Apache-2.0 */
/*
 * hotloop.c - call the stat entry points N times on the given paths.
 *
 *   hotloop N path...
 *
 * One warm-up pass, then N passes; each pass calls stat, lstat, fstatat,
 * statx, __xstat64 and syscall(SYS_statx) on every path.  Prints
 *   calls=<n> mallocs=<m> changed=<k> selftest=<s>
 * where mallocs is the malloc count during the N passes when
 * malloccount.so is preloaded (else -1), and changed counts calls whose
 * return value differs from the warm-up pass (must be 0); selftest is the
 * count seen for one deliberate malloc (1 proves the counter works).
 * Used by test/shim with strace (syscall counts) and malloccount.so.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifdef __GLIBC__
extern int __xstat64(int, const char *, struct stat64 *);
#if defined(__x86_64__)
#define STAT_VER 1
#else
#define STAT_VER 0
#endif
#endif

#define NCALLS 6

static void pass(char **paths, int n, int *rc)
{
	struct stat st;
	struct stat64 st64;
	struct statx stx;
	for (int i = 0; i < n; i++) {
		const char *p = paths[i];
		int *r = rc + i * NCALLS;
		r[0] = stat(p, &st);
		r[1] = lstat(p, &st);
		r[2] = fstatat(AT_FDCWD, p, &st, AT_SYMLINK_NOFOLLOW);
		r[3] = statx(AT_FDCWD, p, 0, STATX_BASIC_STATS, &stx);
#ifdef __GLIBC__
		r[4] = __xstat64(STAT_VER, p, &st64);
#else
		r[4] = stat64(p, &st64);
#endif
		r[5] = (int)syscall(SYS_statx, AT_FDCWD, p, 0, STATX_BASIC_STATS | STATX_BTIME, &stx);
	}
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: hotloop N path...\n");
		return 2;
	}
	long iters = atol(argv[1]);
	int n = argc - 2;
	char **paths = argv + 2;
	int *first = calloc((size_t)n * NCALLS, sizeof(int));
	int *now = calloc((size_t)n * NCALLS, sizeof(int));
	unsigned long (*count)(void) = (unsigned long (*)(void))dlsym(RTLD_DEFAULT, "malloccount_get");
	pass(paths, n, first);
	/* Self-test of the counter: one known malloc must be seen. */
	unsigned long s0 = count ? count() : 0;
	void *volatile probe = malloc(16); /* volatile: GCC elides malloc+free */
	free(probe);
	long selftest = count ? (long)(count() - s0) : -1L;
	unsigned long before = count ? count() : 0;
	long changed = 0;
	for (long it = 0; it < iters; it++) {
		pass(paths, n, now);
		for (int i = 0; i < n * NCALLS; i++)
			changed += now[i] != first[i];
	}
	unsigned long after = count ? count() : 0;
	printf("calls=%ld mallocs=%ld changed=%ld selftest=%ld\n", iters * n * NCALLS,
	       count ? (long)(after - before) : -1L, changed, selftest);
	return 0;
}
