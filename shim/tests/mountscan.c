/* SPDX-License-Identifier: Apache-2.0 */
/*
 * mountscan.c - what the shim's start-up mount check costs, read from
 * /proc/self/mountstats (what the shim does) and from listmount(2) +
 * statmount(2) (Linux 6.8+), each in a freshly forked process (a new pid:
 * its /proc entries are created on the first open, as in a new process).
 * Prints the median and p10/p90 in us of N runs per way, taken in turn:
 *   mountstats      openat + read to EOF + close (4 KiB buffer)
 *   listmount       listmount(LSMT_ROOT) alone: the ids, no mount point
 *   statmount-point listmount + statmount(STATMOUNT_MNT_POINT) of each id:
 *                   what an equivalent check needs
 *   statmount-basic listmount + statmount(STATMOUNT_MNT_BASIC) of each id
 *                   (parent ids, no strings: not enough for the check)
 * docs/shim-safety.md section 6 has the numbers and the decision.
 *   cc -O2 -o /tmp/mountscan shim/tests/mountscan.c && /tmp/mountscan [N=300]
 * A way whose syscall fails (ENOSYS on older kernels or under a seccomp
 * profile that does not know it) prints the errno instead.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define NR_STATMOUNT 457 /* x86_64 and asm-generic (aarch64) */
#define NR_LISTMOUNT 458
#define LSMT_ROOT 0xffffffffffffffffull
#define STATMOUNT_MNT_BASIC 0x2u
#define STATMOUNT_MNT_POINT 0x10u

struct mnt_id_req { uint32_t size, spare; uint64_t mnt_id, param; }; /* MNT_ID_REQ_SIZE_VER0 */
struct statmount_hdr { uint32_t size, spare1; uint64_t mask; uint64_t fields[62]; }; /* 512 bytes */

static const char *const way[] = { "mountstats", "listmount", "statmount-point", "statmount-basic" };

static long now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1000000000L + t.tv_nsec;
}

/* One run of way w: ns, or -errno. */
static long run(int w)
{
	char buf[sizeof(struct statmount_hdr) + 4096];
	uint64_t ids[256];
	long t0 = now();
	if (w == 0) {
		int fd = open("/proc/self/mountstats", O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			return -errno;
		while (read(fd, buf, 4096) > 0)
			;
		close(fd);
		return now() - t0;
	}
	struct mnt_id_req q = { 24, 0, LSMT_ROOT, 0 };
	long n = syscall(NR_LISTMOUNT, &q, ids, 256, 0);
	if (n < 0)
		return -errno;
	for (long i = 0; w > 1 && i < n; i++) {
		struct mnt_id_req r = { 24, 0, ids[i], w == 2 ? STATMOUNT_MNT_POINT : STATMOUNT_MNT_BASIC };
		if (syscall(NR_STATMOUNT, &r, buf, w == 2 ? sizeof buf : sizeof(struct statmount_hdr), 0) < 0)
			return -errno;
	}
	return now() - t0;
}

static int cmp(const void *a, const void *b)
{
	long x = *(const long *)a, y = *(const long *)b;
	return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 300;
	long *v = calloc(4 * (size_t)n, sizeof *v);
	for (int i = 0; i < n; i++)
		for (int w = 0; w < 4; w++) {
			int p[2];
			if (pipe(p) != 0)
				return 1;
			pid_t c = fork();
			if (c == 0) {
				long r = run(w);
				_exit(write(p[1], &r, sizeof r) == sizeof r ? 0 : 1);
			}
			if (read(p[0], &v[w * n + i], sizeof *v) != sizeof *v)
				return 1;
			waitpid(c, NULL, 0);
			close(p[0]), close(p[1]);
		}
	for (int w = 0; w < 4; w++) {
		long *x = v + w * n;
		qsort(x, n, sizeof *x, cmp);
		if (x[0] < 0)
			printf("%-16s %s\n", way[w], strerror((int)-x[0]));
		else
			printf("%-16s median %.1f us (p10 %.1f, p90 %.1f)\n", way[w], x[n / 2] / 1e3, x[n / 10] / 1e3,
			       x[n * 9 / 10] / 1e3);
	}
	return 0;
}
