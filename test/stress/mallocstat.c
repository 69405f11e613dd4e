/* SPDX-License-Identifier: Apache-2.0 */
/*
 * mallocstat.c - preloaded malloc interposer whose malloc/calloc/realloc
 * call stat() on $MALLOCSTAT_PATH every time (issue 4: "safe when stat is
 * called from inside malloc initialisation").  Built as
 * shim/build/stress-mallocstat.so; test/stress/stress.test.ts preloads it
 * before and after libvrift.so, so stat runs inside the allocation made by
 * its own constructor (before or after the shim's) as well as on the hot
 * path.  At exit it prints "mallocstat calls=<n> bad=<m>" to stderr, bad
 * counting answers whose st_size is not $MALLOCSTAT_SIZE.
 */
#define _GNU_SOURCE
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);

static atomic_ulong calls, bad;

static void probe(void)
{
	const char *p = getenv("MALLOCSTAT_PATH");   /* getenv does not allocate */
	const char *want = getenv("MALLOCSTAT_SIZE");
	if (!p || !want)
		return;
	struct stat st;
	int rc = stat(p, &st);
	atomic_fetch_add(&calls, 1);
	if (rc != 0 || st.st_size != atoll(want))
		atomic_fetch_add(&bad, 1);
}

void *malloc(size_t n)
{
	probe();
	return __libc_malloc(n);
}

void *calloc(size_t a, size_t b)
{
	probe();
	return __libc_calloc(a, b);
}

void *realloc(void *p, size_t n)
{
	probe();
	return __libc_realloc(p, n);
}

/* One allocation in a constructor: in the LD_PRELOAD order where this
 * constructor runs before the shim's, the stat inside it meets the shim
 * before init.  Nothing else allocates that early: since e7bdf1f the shim's
 * own constructor makes no allocation on glibc (no lookup fails there). */
__attribute__((constructor)) static void early(void)
{
	void *volatile p = malloc(1);
	free(p);
}

__attribute__((destructor)) static void report(void)
{
	fprintf(stderr, "mallocstat calls=%lu bad=%lu\n", atomic_load(&calls), atomic_load(&bad));
}
