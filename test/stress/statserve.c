/* SPDX-License-Identifier: Apache-2.0 */
/*
 * statserve.c - a long-running process for the blob replacement test
 * (test/hostile/truncate.test.ts): for each path read from stdin (one per
 * line) it calls stat() and prints "<rc> <errno> <st_size>", flushed.  The
 * test replaces or truncates the blob between two requests, while this
 * process keeps the old one mapped.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

int main(void)
{
	char line[4200];
	while (fgets(line, sizeof line, stdin)) {
		line[strcspn(line, "\n")] = 0;
		struct stat st = {0};
		errno = 0;
		int rc = stat(line, &st);
		printf("%d %d %lld\n", rc, rc ? errno : 0, (long long)st.st_size);
		fflush(stdout);
	}
	return 0;
}
