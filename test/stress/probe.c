/* SPDX-License-Identifier: Apache-2.0 */
/*
 * probe.c - the C program of the launch mix (test/stress/launches.sh):
 * stat, lstat and statx every argument and print one line per path:
 *   <path> <rc> <errno> <mode> <size> <ino> <nlink> <mtime.ns> <lmode> <xsize>
 * Run once without the shim (expected) and thousands of times under it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>

int main(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		struct stat st = {0}, lst = {0};
		struct statx sx = {0};
		errno = 0;
		int rc = stat(argv[i], &st);
		int err = rc ? errno : 0;
		lstat(argv[i], &lst);
		statx(AT_FDCWD, argv[i], 0, STATX_BASIC_STATS, &sx);
		printf("%s %d %d %o %lld %llu %lu %lld.%09ld %o %llu\n", argv[i], rc, err, st.st_mode,
		       (long long)st.st_size, (unsigned long long)st.st_ino, (unsigned long)st.st_nlink,
		       (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec, lst.st_mode,
		       (unsigned long long)sx.stx_size);
	}
	return 0;
}
