/* SPDX-License-Identifier: Apache-2.0 */
/*
 * oracle.c - differential oracle for libvrift.so.
 *
 * Reads paths from stdin, one per line, raw bytes (no escaping; a line
 * "<NULL>" means a NULL pointer and "<EMPTY>" the empty string).  For each
 * path it calls EVERY stat entry point the shim exports, by symbol, and
 * prints one line per call: the call, its return value, errno's name and
 * every field of the result.  Run once plainly and once under
 * LD_PRELOAD=libvrift.so: the outputs must be identical except for the
 * statx fields the shim documents as not provided (test/shim/differential).
 *
 * Output line:  <call> rc=<n> [err=<ENAME>] [fields...]
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#if defined(__x86_64__)
#define STAT_VER 1
#elif defined(__aarch64__)
#define STAT_VER 0
#endif

/* musl before 1.2.5 has no struct statx and no statx(): the uapi layout
 * here, and only syscall(SYS_statx) is called (what musl programs can do). */
#if !defined(__GLIBC__) && !defined(STATX_BASIC_STATS)
#include <stdint.h>
#define STATX_BASIC_STATS 0x7ffU
#define STATX_BTIME 0x800U
#define AT_STATX_FORCE_SYNC 0x2000
#define AT_STATX_DONT_SYNC 0x4000
struct statx_timestamp {
	int64_t tv_sec;
	uint32_t tv_nsec;
	int32_t reserved;
};
struct statx {
	uint32_t stx_mask, stx_blksize;
	uint64_t stx_attributes;
	uint32_t stx_nlink, stx_uid, stx_gid;
	uint16_t stx_mode, spare0;
	uint64_t stx_ino, stx_size, stx_blocks, stx_attributes_mask;
	struct statx_timestamp stx_atime, stx_btime, stx_ctime, stx_mtime;
	uint32_t stx_rdev_major, stx_rdev_minor, stx_dev_major, stx_dev_minor;
	uint64_t stx_mnt_id;
	uint64_t spare[13];
};
#define ORACLE_NO_STATX_FN 1
#endif

/* Pre-2.33 glibc ABI, no longer declared by the headers. */
#ifdef __GLIBC__
extern int __xstat(int, const char *, struct stat *);
extern int __xstat64(int, const char *, struct stat64 *);
extern int __lxstat(int, const char *, struct stat *);
extern int __lxstat64(int, const char *, struct stat64 *);
extern int __fxstat(int, int, struct stat *);
extern int __fxstat64(int, int, struct stat64 *);
extern int __fxstatat(int, int, const char *, struct stat *, int);
extern int __fxstatat64(int, int, const char *, struct stat64 *, int);
#endif

static const char *ename(int e)
{
	switch (e) {
#define E(x) case x: return #x;
	E(ENOENT) E(ENOTDIR) E(ENAMETOOLONG) E(ELOOP) E(EACCES) E(EFAULT)
	E(EINVAL) E(EBADF) E(ENOSYS) E(EPERM) E(EOVERFLOW) E(ENOMEM) E(EROFS) E(ENXIO)
#undef E
	}
	static char buf[32];
	snprintf(buf, sizeof buf, "E%d", e);
	return buf;
}

static void head(const char *call, long rc, int err)
{
	printf("%s rc=%ld", call, rc);
	if (rc != 0)
		printf(" err=%s", ename(err));
}

static void pstat(const char *call, long rc, int err, const struct stat *st)
{
	head(call, rc, err);
	if (rc == 0)
		printf(" dev=%llu ino=%llu mode=0%o nlink=%llu uid=%u gid=%u rdev=%llu size=%lld"
		       " blksize=%lld blocks=%lld atime=%lld.%09ld mtime=%lld.%09ld ctime=%lld.%09ld",
		       (unsigned long long)st->st_dev, (unsigned long long)st->st_ino,
		       (unsigned)st->st_mode, (unsigned long long)st->st_nlink, st->st_uid, st->st_gid,
		       (unsigned long long)st->st_rdev, (long long)st->st_size,
		       (long long)st->st_blksize, (long long)st->st_blocks,
		       (long long)st->st_atim.tv_sec, st->st_atim.tv_nsec,
		       (long long)st->st_mtim.tv_sec, st->st_mtim.tv_nsec,
		       (long long)st->st_ctim.tv_sec, st->st_ctim.tv_nsec);
	putchar('\n');
}

static void pstatx(const char *call, long rc, int err, const struct statx *x)
{
	head(call, rc, err);
	if (rc == 0)
		printf(" mask=0x%x blksize=%u attributes=0x%llx nlink=%u uid=%u gid=%u mode=0%o"
		       " ino=%llu size=%llu blocks=%llu attributes_mask=0x%llx"
		       " atime=%lld.%09u btime=%lld.%09u ctime=%lld.%09u mtime=%lld.%09u"
		       " rdev=%u:%u dev=%u:%u mnt_id=%llu",
		       x->stx_mask, x->stx_blksize, (unsigned long long)x->stx_attributes,
		       x->stx_nlink, x->stx_uid, x->stx_gid, x->stx_mode,
		       (unsigned long long)x->stx_ino, (unsigned long long)x->stx_size,
		       (unsigned long long)x->stx_blocks, (unsigned long long)x->stx_attributes_mask,
		       (long long)x->stx_atime.tv_sec, x->stx_atime.tv_nsec,
		       (long long)x->stx_btime.tv_sec, x->stx_btime.tv_nsec,
		       (long long)x->stx_ctime.tv_sec, x->stx_ctime.tv_nsec,
		       (long long)x->stx_mtime.tv_sec, x->stx_mtime.tv_nsec,
		       x->stx_rdev_major, x->stx_rdev_minor, x->stx_dev_major, x->stx_dev_minor,
		       (unsigned long long)x->stx_mnt_id);
	putchar('\n');
}

/* Every call starts from a poisoned buffer and errno, so a call that
 * "succeeds" without filling a field, or leaves errno alone, shows. */
#define POISON(b) (memset(&(b), 0xa5, sizeof(b)), errno = 0)
#define ST(call, expr)                                                     \
	do {                                                               \
		struct stat st;                                            \
		POISON(st);                                                \
		long rc = (expr);                                          \
		pstat(call, rc, errno, &st);                               \
	} while (0)
#define ST64(call, expr)                                                   \
	do {                                                               \
		struct stat64 st;                                          \
		POISON(st);                                                \
		long rc = (expr);                                          \
		pstat(call, rc, errno, (struct stat *)&st);                \
	} while (0)
#define STX(call, expr)                                                    \
	do {                                                               \
		struct statx stx;                                          \
		POISON(stx);                                               \
		long rc = (expr);                                          \
		pstatx(call, rc, errno, &stx);                             \
	} while (0)

/* open: an fd is closed and shown as rc=0 (numbers differ run to run) */
#define OPN(call, expr)                                                    \
	do {                                                               \
		errno = 0;                                                 \
		long rc = (expr);                                          \
		int e = errno;                                             \
		if (rc >= 0) {                                             \
			close((int)rc);                                    \
			rc = 0;                                            \
		}                                                          \
		head(call, rc, e);                                         \
		putchar('\n');                                            \
	} while (0)
#define ACC(call, expr)                                                    \
	do {                                                               \
		errno = 0;                                                 \
		long rc = (expr);                                          \
		head(call, rc, errno);                                     \
		putchar('\n');                                            \
	} while (0)

#define NF AT_SYMLINK_NOFOLLOW
#define XMASK (STATX_BASIC_STATS | STATX_BTIME)

/* glibc's wrappers pass a NULL path to the kernel (EFAULT); musl's
 * fstatat reads *path for some flag/fd combinations and crashes (undefined
 * behaviour either way): with musl a NULL path only goes to syscall(). */
#ifdef __GLIBC__
#define LIBC_TAKES_NULL 1
#else
#define LIBC_TAKES_NULL 0
#endif

static void probe(const char *p)
{
	if (!p && !LIBC_TAKES_NULL)
		goto raw;
	ST("stat", stat(p, &st));
	ST64("stat64", stat64(p, &st));
	ST("lstat", lstat(p, &st));
	ST64("lstat64", lstat64(p, &st));
	ST("fstatat", fstatat(AT_FDCWD, p, &st, 0));
	ST("fstatat:NOFOLLOW", fstatat(AT_FDCWD, p, &st, NF));
	ST("fstatat:NO_AUTOMOUNT", fstatat(AT_FDCWD, p, &st, AT_NO_AUTOMOUNT));
	ST("fstatat:EMPTY_PATH", fstatat(AT_FDCWD, p, &st, AT_EMPTY_PATH));
	ST("fstatat:badflag", fstatat(AT_FDCWD, p, &st, 0x40000000));
	ST64("fstatat64", fstatat64(AT_FDCWD, p, &st, 0));
	ST64("fstatat64:NOFOLLOW", fstatat64(AT_FDCWD, p, &st, NF));
	ST("fstatat:badfd", fstatat(-5, p, &st, 0));
#ifndef ORACLE_NO_STATX_FN
	STX("statx", statx(AT_FDCWD, p, 0, XMASK, &stx));
	STX("statx:NOFOLLOW", statx(AT_FDCWD, p, NF, XMASK, &stx));
	STX("statx:DONT_SYNC", statx(AT_FDCWD, p, AT_STATX_DONT_SYNC, STATX_BASIC_STATS, &stx));
	STX("statx:FORCE_SYNC", statx(AT_FDCWD, p, AT_STATX_FORCE_SYNC, STATX_BASIC_STATS, &stx));
	STX("statx:mask0", statx(AT_FDCWD, p, 0, 0, &stx));
	/* GNU ls -l's mask, and stat -c %s's */
	STX("statx:ls", statx(AT_FDCWD, p, NF, STATX_MODE | STATX_NLINK | STATX_UID | STATX_GID | STATX_MTIME | STATX_SIZE, &stx));
	STX("statx:size", statx(AT_FDCWD, p, 0, STATX_SIZE, &stx));
#else
	STX("syscall(statx):DONT_SYNC", syscall(SYS_statx, AT_FDCWD, p, AT_STATX_DONT_SYNC, STATX_BASIC_STATS, &stx));
	STX("syscall(statx):FORCE_SYNC", syscall(SYS_statx, AT_FDCWD, p, AT_STATX_FORCE_SYNC, STATX_BASIC_STATS, &stx));
	STX("syscall(statx):mask0", syscall(SYS_statx, AT_FDCWD, p, 0, 0, &stx));
	STX("syscall(statx):size", syscall(SYS_statx, AT_FDCWD, p, 0, 0x200, &stx));
#endif
#ifdef __GLIBC__
	ST("__xstat", __xstat(STAT_VER, p, &st));
	ST64("__xstat64", __xstat64(STAT_VER, p, &st));
	ST("__lxstat", __lxstat(STAT_VER, p, &st));
	ST64("__lxstat64", __lxstat64(STAT_VER, p, &st));
	ST("__xstat:ver99", __xstat(99, p, &st));
	ST("__fxstatat", __fxstatat(STAT_VER, AT_FDCWD, p, &st, 0));
	ST("__fxstatat:NOFOLLOW", __fxstatat(STAT_VER, AT_FDCWD, p, &st, NF));
	ST64("__fxstatat64", __fxstatat64(STAT_VER, AT_FDCWD, p, &st, 0));
	ST64("__fxstatat64:NOFOLLOW", __fxstatat64(STAT_VER, AT_FDCWD, p, &st, NF));
#endif
	/* Existence probes the shim answers for missing domain paths (issue 7
	 * item 6): read-only opens (O_NONBLOCK: the tree has a FIFO) and
	 * access F_OK; R_OK/X_OK pass through.  W_OK differs on purpose
	 * (EROFS on domain paths: test/shim/immutability.test.ts). */
	OPN("open", open(p, O_RDONLY | O_NONBLOCK | O_CLOEXEC));
	OPN("open:NOFOLLOW", open(p, O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC));
	OPN("open:DIRECTORY", open(p, O_RDONLY | O_DIRECTORY | O_CLOEXEC));
	OPN("open:PATH", open(p, O_PATH | O_CLOEXEC));
	OPN("open64", open64(p, O_RDONLY | O_NONBLOCK | O_CLOEXEC));
	OPN("openat", openat(AT_FDCWD, p, O_RDONLY | O_NONBLOCK | O_CLOEXEC));
	OPN("openat:badfd", openat(-5, p, O_RDONLY | O_NONBLOCK | O_CLOEXEC));
	OPN("openat64", openat64(AT_FDCWD, p, O_RDONLY | O_NONBLOCK | O_CLOEXEC));
	ACC("access:F_OK", access(p, F_OK));
	ACC("access:R_OK", access(p, R_OK));
	ACC("access:X_OK", access(p, X_OK));
	ACC("faccessat:F_OK", faccessat(AT_FDCWD, p, F_OK, 0));
	ACC("faccessat:F_OK:NOFOLLOW", faccessat(AT_FDCWD, p, F_OK, AT_SYMLINK_NOFOLLOW));
	ACC("faccessat:F_OK:EACCESS", faccessat(AT_FDCWD, p, F_OK, AT_EACCESS));
	ACC("faccessat:F_OK:badflag", faccessat(AT_FDCWD, p, F_OK, 0x40000000));
	ACC("faccessat:R_OK|X_OK", faccessat(AT_FDCWD, p, R_OK | X_OK, 0));
	ACC("euidaccess:F_OK", euidaccess(p, F_OK));
	ACC("eaccess:F_OK", eaccess(p, F_OK));
raw:
	OPN("syscall(openat)", syscall(SYS_openat, AT_FDCWD, p, O_RDONLY | O_NONBLOCK | O_CLOEXEC));
	ACC("syscall(faccessat):F_OK", syscall(SYS_faccessat, AT_FDCWD, p, F_OK));
	ACC("syscall(faccessat2):F_OK", syscall(439, AT_FDCWD, p, F_OK, 0));
	ACC("syscall(faccessat2):F_OK:NOFOLLOW", syscall(439, AT_FDCWD, p, F_OK, AT_SYMLINK_NOFOLLOW));
#ifdef SYS_access
	ACC("syscall(access):F_OK", syscall(SYS_access, p, F_OK));
#endif
#ifdef SYS_open
	OPN("syscall(open)", syscall(SYS_open, p, O_RDONLY | O_NONBLOCK | O_CLOEXEC));
#endif
	STX("syscall(statx)", syscall(SYS_statx, AT_FDCWD, p, 0, XMASK, &stx));
	STX("syscall(statx):NOFOLLOW", syscall(SYS_statx, AT_FDCWD, p, NF, XMASK, &stx));
	ST("syscall(newfstatat)", syscall(SYS_newfstatat, AT_FDCWD, p, &st, 0));
	ST("syscall(newfstatat):NOFOLLOW", syscall(SYS_newfstatat, AT_FDCWD, p, &st, NF));
#ifdef SYS_stat
	ST("syscall(stat)", syscall(SYS_stat, p, &st));
	ST("syscall(lstat)", syscall(SYS_lstat, p, &st));
#endif
	/* The fd entry points are pure passthrough; exercise them anyway. */
	int fd = p ? open(p, O_PATH | O_NOFOLLOW | O_CLOEXEC) : -1;
	if (fd >= 0) {
		ST("fstat", fstat(fd, &st));
		ST64("fstat64", fstat64(fd, &st));
#ifdef __GLIBC__
		ST("__fxstat", __fxstat(STAT_VER, fd, &st));
		ST64("__fxstat64", __fxstat64(STAT_VER, fd, &st));
#endif
		close(fd);
	}
	/* A forwarded non-stat number keeps its value and errno semantics. */
	long r = syscall(SYS_getppid);
	printf("syscall(getppid) ok=%d\n", r == (long)getppid());
	errno = 0;
	r = syscall(SYS_close, -1);
	printf("syscall(close,-1) rc=%ld err=%s\n", r, ename(errno));
	/* All six argument registers reach the kernel (mmap uses the sixth). */
	long m = syscall(SYS_mmap, 0L, 8192L, (long)PROT_READ, (long)(MAP_PRIVATE | MAP_ANONYMOUS), -1L, 4096L);
	printf("syscall(mmap,6 args) err=%s\n", m == -1 ? ename(errno) : "none");
	if (m != -1)
		munmap((void *)m, 8192);
	m = syscall(SYS_mmap, 0L, 8192L, (long)PROT_READ, (long)(MAP_PRIVATE | MAP_ANONYMOUS), -1L, 4095L);
	printf("syscall(mmap,unaligned offset) rc=%ld err=%s\n", m, ename(errno));
}

int main(void)
{
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	setvbuf(stdout, NULL, _IOFBF, 1 << 16);
	while ((n = getline(&line, &cap, stdin)) > 0) {
		if (line[n - 1] == '\n')
			line[--n] = 0;
		const char *p = line;
		if (strcmp(line, "<NULL>") == 0)
			p = NULL;
		else if (strcmp(line, "<EMPTY>") == 0)
			p = "";
		printf("## %zd\n", n);   /* path index marker: length only */
		probe(p);
	}
	free(line);
	return 0;
}
