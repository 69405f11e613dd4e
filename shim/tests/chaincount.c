/* SPDX-License-Identifier: Apache-2.0 */
/*
 * chaincount.c - an LD_PRELOAD library that counts the calls it sees of
 * the mutating and probing functions libvrift.so interposes, and passes
 * each on (dlsym(RTLD_NEXT)).  Preloaded after the shim
 * (LD_PRELOAD=libvrift.so:chaincount.so) it shows whether the shim hands
 * a call it does not refuse to the next library in the chain, as a cold
 * call must ("pure passthrough to the real call"): fakeroot,
 * libeatmydata and the like rely on that.  At exit it prints to stderr
 *   chaincount <name> <calls>
 * for every function called at least once, sorted by name.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <utime.h>

#include <sys/time.h>
#include <sys/xattr.h>
#include <unistd.h>
#include <fcntl.h>

static const char *names[64];
static long counts[64];

static void hit(const char *name)
{
	int i = 0;
	while (i < 63 && names[i] && strcmp(names[i], name) != 0)
		i++;
	names[i] = name;
	counts[i]++;
}

__attribute__((destructor)) static void report(void)
{
	for (int i = 0; i < 64 && names[i]; i++)
		for (int j = i + 1; j < 64 && names[j]; j++)
			if (strcmp(names[j], names[i]) < 0) {
				const char *n = names[i];
				long c = counts[i];
				names[i] = names[j], counts[i] = counts[j];
				names[j] = n, counts[j] = c;
			}
	for (int i = 0; i < 64 && names[i]; i++)
		fprintf(stderr, "chaincount %s %ld\n", names[i], counts[i]);
}

/* W(return type, name, (parameters), (arguments)) */
#define W(ret, name, params, args)                                             \
	ret name params                                                        \
	{                                                                      \
		hit(#name);                                                    \
		ret(*next) params = (ret(*) params)dlsym(RTLD_NEXT, #name);   \
		return next args;                                              \
	}

W(int, truncate, (const char *p, off_t l), (p, l))
W(int, truncate64, (const char *p, off_t l), (p, l))
W(int, unlink, (const char *p), (p))
W(int, unlinkat, (int d, const char *p, int f), (d, p, f))
W(int, rmdir, (const char *p), (p))
W(int, remove, (const char *p), (p))
W(int, rename, (const char *o, const char *n), (o, n))
W(int, renameat, (int od, const char *o, int nd, const char *n), (od, o, nd, n))
W(int, renameat2, (int od, const char *o, int nd, const char *n, unsigned f), (od, o, nd, n, f))
W(int, mkdir, (const char *p, mode_t m), (p, m))
W(int, mkdirat, (int d, const char *p, mode_t m), (d, p, m))
W(int, chmod, (const char *p, mode_t m), (p, m))
W(int, fchmodat, (int d, const char *p, mode_t m, int f), (d, p, m, f))
W(int, chown, (const char *p, uid_t u, gid_t g), (p, u, g))
W(int, lchown, (const char *p, uid_t u, gid_t g), (p, u, g))
W(int, fchownat, (int d, const char *p, uid_t u, gid_t g, int f), (d, p, u, g, f))
W(int, utimensat, (int d, const char *p, const struct timespec t[2], int f), (d, p, t, f))
W(int, utime, (const char *p, const struct utimbuf *t), (p, t))
W(int, utimes, (const char *p, const struct timeval t[2]), (p, t))
W(int, lutimes, (const char *p, const struct timeval t[2]), (p, t))
W(int, link, (const char *o, const char *n), (o, n))
W(int, linkat, (int od, const char *o, int nd, const char *n, int f), (od, o, nd, n, f))
W(int, symlink, (const char *t, const char *p), (t, p))
W(int, symlinkat, (const char *t, int d, const char *p), (t, d, p))
W(int, mknod, (const char *p, mode_t m, dev_t v), (p, m, v))
W(int, mknodat, (int d, const char *p, mode_t m, dev_t v), (d, p, m, v))
W(int, mkfifo, (const char *p, mode_t m), (p, m))
W(int, mkfifoat, (int d, const char *p, mode_t m), (d, p, m))
W(int, setxattr, (const char *p, const char *n, const void *v, size_t s, int f), (p, n, v, s, f))
W(int, lsetxattr, (const char *p, const char *n, const void *v, size_t s, int f), (p, n, v, s, f))
W(int, removexattr, (const char *p, const char *n), (p, n))
W(int, lremovexattr, (const char *p, const char *n), (p, n))
W(int, access, (const char *p, int m), (p, m))
W(int, faccessat, (int d, const char *p, int m, int f), (d, p, m, f))
