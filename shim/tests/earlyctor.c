/* SPDX-License-Identifier: Apache-2.0 */
/*
 * earlyctor.c - a preloaded library whose constructor calls stat() and
 * statx() on $EARLY_PATH, possibly before libvrift.so's constructor has
 * run (depends on the LD_PRELOAD order).  Prints to stderr:
 *   early stat rc=<rc> size=<st_size> statx rc=<rc> size=<stx_size>
 * test/shim/shimAnswers.test.ts checks that calls made before the shim is
 * initialized get the kernel's answer (raw syscall passthrough).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

__attribute__((constructor)) static void early(void)
{
	const char *p = getenv("EARLY_PATH");
	if (!p)
		return;
	struct stat st = {0};
	struct statx stx = {0};
	int a = stat(p, &st);
	int b = statx(AT_FDCWD, p, 0, STATX_BASIC_STATS, &stx);
	fprintf(stderr, "early stat rc=%d size=%lld statx rc=%d size=%llu\n", a, (long long)st.st_size, b,
		(unsigned long long)stx.stx_size);
}
