/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libvrift.c - LD_PRELOAD shim: answers stat-family calls for paths in the
 * PSFS domain from a read-only mapped blob; everything else passes through.
 *
 * Rules this file is built around (BRIEF.md, issue 2):
 *  - hot path (path in the domain): no malloc, no lock, no syscall, no
 *    logging, no write except the caller's buffer and errno; O(1);
 *    async-signal-safe.  It is: atomic load of one pointer, psfs_resolve
 *    into a stack buffer, fill the caller's struct.
 *  - anything uncertain: the real libc function (or a raw syscall when the
 *    symbol does not exist), never a guess.
 *  - before the constructor has published the state, every call is a raw
 *    syscall: dlsym/getenv/mmap inside the constructor may stat, and must
 *    not recurse into a half-built shim.
 *
 * Headers: no <sys/stat.h>.  The kernel's struct stat / struct statx
 * layouts are spelled out below, so the same file builds against glibc and
 * musl (which lacks struct statx before 1.2.5) and our exported prototypes
 * never clash with a libc's.
 *
 * Identity policy (BRIEF.md): st_dev comes from the entry, or with
 * PSFS_H_DEV_RUNTIME from roots[0] as the kernel reported it at init.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/syscall.h>

#include "psfs_core.h"

#define EXPORT __attribute__((visibility("default")))

#ifndef VRIFT_DEFAULT_BLOB
#define VRIFT_DEFAULT_BLOB "/usr/lib/vrift/psfs.blob"
#endif

/* ---- kernel ABI (uapi values, identical on x86_64 and aarch64) ---------- */
#define V_AT_FDCWD (-100)
#define V_AT_SYMLINK_NOFOLLOW 0x100
#define V_AT_NO_AUTOMOUNT 0x800
#define V_AT_EMPTY_PATH 0x1000
#define V_AT_STATX_FORCE_SYNC 0x2000
#define V_AT_STATX_DONT_SYNC 0x4000
#define V_O_RDONLY 0
#define V_O_CLOEXEC 02000000
#define V_O_NONBLOCK 04000
#define V_O_NOCTTY 0400
#define V_PROT_READ 1
#define V_MAP_PRIVATE 2
#define V_S_IFMT 0170000u
#define V_S_IFREG 0100000u
#define V_S_IFDIR 0040000u
#define V_STATX_BASIC_STATS 0x7ffu
#define V_STATX_MNT_ID 0x1000u
#define V_STATX__RESERVED 0x80000000u

/* fstatat: what we understand.  AT_NO_AUTOMOUNT changes nothing for us
 * (no automount points inside an immutable domain); AT_EMPTY_PATH only
 * matters for an empty path, which we pass through. */
#define FSTATAT_FLAGS (V_AT_SYMLINK_NOFOLLOW | V_AT_NO_AUTOMOUNT | V_AT_EMPTY_PATH)
/* statx: plus "don't sync", which a read-only blob trivially honours.
 * AT_STATX_FORCE_SYNC asks for fresh remote attributes: passthrough. */
#define STATX_FLAGS (FSTATAT_FLAGS | V_AT_STATX_DONT_SYNC)

#if defined(__x86_64__)
/* struct stat of the x86_64 kernel == glibc's and musl's struct stat(64). */
struct kstat {
	uint64_t st_dev, st_ino, st_nlink;
	uint32_t st_mode, st_uid, st_gid, pad0;
	uint64_t st_rdev;
	int64_t st_size, st_blksize, st_blocks;
	int64_t st_atime_sec, st_atime_nsec, st_mtime_sec, st_mtime_nsec;
	int64_t st_ctime_sec, st_ctime_nsec;
	int64_t unused[3];
};
_Static_assert(sizeof(struct kstat) == 144, "x86_64 struct stat");
#define STAT_VER 1            /* _STAT_VER_LINUX: what binaries pass to __xstat */
#define GLIBC_BASE "GLIBC_2.2.5"
#elif defined(__aarch64__)
/* asm-generic struct stat == glibc's and musl's on aarch64. */
struct kstat {
	uint64_t st_dev, st_ino;
	uint32_t st_mode, st_nlink, st_uid, st_gid;
	uint64_t st_rdev, pad1;
	int64_t st_size;
	int32_t st_blksize, pad2;
	int64_t st_blocks;
	int64_t st_atime_sec, st_atime_nsec, st_mtime_sec, st_mtime_nsec;
	int64_t st_ctime_sec, st_ctime_nsec;
	uint32_t unused4, unused5;
};
_Static_assert(sizeof(struct kstat) == 128, "aarch64 struct stat");
#define STAT_VER 0            /* _STAT_VER_KERNEL on aarch64 */
#define GLIBC_BASE "GLIBC_2.17"
#else
#error "libvrift: only x86_64 and aarch64 are supported"
#endif

/*
 * Binary compatibility (issue 7): the prebuilt glibc variants must load in
 * images with old glibc, so every versioned import is pinned to the
 * architecture's base version (GLIBC_2.2.5 / GLIBC_2.17), which every glibc
 * since then still provides.  Built on glibc >= 2.34, dlsym/dlvsym would
 * bind to their new GLIBC_2.34 default; .symver binds the old one.  On
 * glibc < 2.34 they live in libdl.so.2, which the Makefile links with
 * --no-as-needed so it is loaded there.  getauxval (GLIBC_2.16) is not
 * used: see is_secure().  test/variants/abi.test.ts checks `objdump -T`.
 */
#if defined(__GLIBC__) && !defined(VRIFT_NO_SYMVER)
#if defined(__x86_64__)
__asm__(".symver dlsym,dlsym@GLIBC_2.2.5");
__asm__(".symver dlvsym,dlvsym@GLIBC_2.2.5");
#else
__asm__(".symver dlsym,dlsym@GLIBC_2.17");
__asm__(".symver dlvsym,dlvsym@GLIBC_2.17");
#endif
#endif

struct kstatx_ts {
	int64_t tv_sec;
	uint32_t tv_nsec;
	int32_t reserved;
};
/* uapi struct statx (256 bytes; the kernel writes all of them). */
struct kstatx {
	uint32_t stx_mask, stx_blksize;
	uint64_t stx_attributes;
	uint32_t stx_nlink, stx_uid, stx_gid;
	uint16_t stx_mode, spare0;
	uint64_t stx_ino, stx_size, stx_blocks, stx_attributes_mask;
	struct kstatx_ts stx_atime, stx_btime, stx_ctime, stx_mtime;
	uint32_t stx_rdev_major, stx_rdev_minor, stx_dev_major, stx_dev_minor;
	uint64_t stx_mnt_id;
	uint32_t stx_dio_mem_align, stx_dio_offset_align;
	uint64_t spare3[12];
};
_Static_assert(sizeof(struct kstatx) == 256, "struct statx");

/* glibc/musl dev_t encoding (gnu_dev_major/minor/makedev). */
static inline uint32_t dev_major(uint64_t d)
{
	return (uint32_t)(((d >> 8) & 0xfffu) | ((d >> 32) & 0xfffff000u));
}
static inline uint32_t dev_minor(uint64_t d)
{
	return (uint32_t)((d & 0xffu) | ((d >> 12) & 0xffffff00u));
}
static inline uint64_t dev_make(uint64_t ma, uint64_t mi)
{
	return ((ma & 0xfffu) << 8) | ((ma & 0xfffff000u) << 32) | (mi & 0xffu) |
	       ((mi & 0xffffff00u) << 12);
}

/* ---- raw syscalls: the shim never calls libc's syscall() --------------- */
static inline long raw6(long n, long a, long b, long c, long d, long e, long f)
{
#if defined(__x86_64__)
	register long r10 __asm__("r10") = d;
	register long r8 __asm__("r8") = e;
	register long r9 __asm__("r9") = f;
	long ret;
	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
			 : "rcx", "r11", "memory");
	return ret;
#else
	register long x8 __asm__("x8") = n;
	register long x0 __asm__("x0") = a;
	register long x1 __asm__("x1") = b;
	register long x2 __asm__("x2") = c;
	register long x3 __asm__("x3") = d;
	register long x4 __asm__("x4") = e;
	register long x5 __asm__("x5") = f;
	__asm__ volatile("svc 0"
			 : "+r"(x0)
			 : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4), "r"(x5)
			 : "memory");
	return x0;
#endif
}
#define RAW(n, a, b, c, d, e, f) \
	raw6((long)(n), (long)(a), (long)(b), (long)(c), (long)(d), (long)(e), (long)(f))

/* Kernel return -> libc convention (-1 and errno). */
static inline long sys_ret(long r)
{
	if ((unsigned long)r > -4096ul) {
		errno = (int)-r;
		return -1;
	}
	return r;
}

static long raw_fstatat(int dirfd, const char *p, void *buf, int flags)
{
	return sys_ret(RAW(SYS_newfstatat, dirfd, p, buf, flags, 0, 0));
}
static long raw_statx(int dirfd, const char *p, int flags, unsigned mask, void *buf)
{
	return sys_ret(RAW(SYS_statx, dirfd, p, flags, mask, buf, 0));
}
static long raw_fstat(int fd, void *buf)
{
	return sys_ret(RAW(SYS_fstat, fd, buf, 0, 0, 0, 0));
}

/* ---- state: built by the constructor, then published once -------------- */
typedef int (*path_fn)(const char *, void *);
typedef int (*fd_fn)(int, void *);
typedef int (*at_fn)(int, const char *, void *, int);
typedef int (*statx_fn)(int, const char *, int, unsigned, void *);
typedef int (*xpath_fn)(int, const char *, void *);
typedef int (*xfd_fn)(int, int, void *);
typedef int (*xat_fn)(int, int, const char *, void *, int);

struct vrift_state {
	int active;                 /* blob mapped and valid */
	struct psfs_view view;
	int dev_runtime;            /* PSFS_H_DEV_RUNTIME: use dev below */
	int tagged;                 /* PSFS_H_IDENTITY_TAG (with dev_runtime) */
	uint64_t dev;
	uint32_t dev_maj, dev_min;
	uint32_t statx_extra;       /* STATX_MNT_ID when captured */
	uint64_t mnt_id, attributes_mask;
	struct {
		path_fn stat, stat64, lstat, lstat64;
		fd_fn fstat, fstat64;
		at_fn fstatat, fstatat64;
		statx_fn statx;
		xpath_fn xstat, xstat64, lxstat, lxstat64;
		xfd_fn fxstat, fxstat64;
		xat_fn fxstatat, fxstatat64;
	} real;
};

static struct vrift_state g_state;
/* NULL until the constructor is done; release/acquire makes every field
 * of g_state visible to a thread that sees the pointer. */
static struct vrift_state *_Atomic g_pub;

static inline const struct vrift_state *state(void)
{
	return atomic_load_explicit(&g_pub, memory_order_acquire);
}

/* ---- hot path ------------------------------------------------------------ */

static void fill_stat(const struct vrift_state *s, const struct psfs_entry *e,
		      struct kstat *st)
{
	__builtin_memset(st, 0, sizeof *st);   /* padding as the kernel: 0 */
	st->st_dev = s->dev_runtime ? s->dev : e->dev;
	st->st_ino = e->ino;
	st->st_nlink = e->nlink;
	st->st_mode = e->mode;
	st->st_uid = e->uid;
	st->st_gid = e->gid;
	st->st_rdev = e->rdev;
	st->st_size = (int64_t)e->size;
	st->st_blksize = e->blksize;
	st->st_blocks = (int64_t)e->blocks;
	st->st_atime_sec = e->atime_sec;
	st->st_atime_nsec = e->atime_nsec;
	st->st_mtime_sec = e->mtime_sec;
	st->st_mtime_nsec = e->mtime_nsec;
	st->st_ctime_sec = e->ctime_sec;
	st->st_ctime_nsec = e->ctime_nsec;
}

/*
 * statx: stx_mask is exactly what the blob really provides, the basic
 * stats, plus STATX_MNT_ID when it was captured from roots[0] at init
 * (PSFS_H_DEV_RUNTIME).  STATX_BTIME, STATX_DIOALIGN and every newer bit
 * stay clear (their fields 0) even when requested: statx(2) allows a
 * filesystem not to provide a field, and callers check stx_mask.
 * stx_attributes is 0 (an image domain holds no immutable/append-only/...
 * files); stx_attributes_mask is roots[0]'s when captured, else 0.
 */
static void fill_statx(const struct vrift_state *s, const struct psfs_entry *e,
		       struct kstatx *x)
{
	__builtin_memset(x, 0, sizeof *x);
	x->stx_mask = V_STATX_BASIC_STATS | s->statx_extra;
	x->stx_blksize = e->blksize;
	x->stx_attributes_mask = s->attributes_mask;
	x->stx_nlink = e->nlink;
	x->stx_uid = e->uid;
	x->stx_gid = e->gid;
	x->stx_mode = (uint16_t)e->mode;
	x->stx_ino = e->ino;
	x->stx_size = e->size;
	x->stx_blocks = e->blocks;
	x->stx_atime.tv_sec = e->atime_sec;
	x->stx_atime.tv_nsec = e->atime_nsec;
	x->stx_mtime.tv_sec = e->mtime_sec;
	x->stx_mtime.tv_nsec = e->mtime_nsec;
	x->stx_ctime.tv_sec = e->ctime_sec;
	x->stx_ctime.tv_nsec = e->ctime_nsec;
	x->stx_rdev_major = dev_major(e->rdev);
	x->stx_rdev_minor = dev_minor(e->rdev);
	if (s->dev_runtime) {
		x->stx_dev_major = s->dev_maj;
		x->stx_dev_minor = s->dev_min;
	} else {
		x->stx_dev_major = dev_major(e->dev);
		x->stx_dev_minor = dev_minor(e->dev);
	}
	x->stx_mnt_id = s->mnt_id;
}

/* Answer from the blob.  Returns 1 with *rc set (0, or -1 and errno), or 0
 * to pass through.  `x` selects statx output instead of struct stat.
 * noinline: keeps the 4 KiB scratch out of the wrappers' frames, so a
 * passthrough call runs the real function at its usual stack depth. */
static __attribute__((noinline)) int hot(const struct vrift_state *s, const char *path,
		      int nofollow, void *buf, int x, int *rc)
{
	char scratch[PSFS_PATH_MAX];   /* stack, not TLS or heap: reentrant */
	const struct psfs_entry *e;
	if (!s || !s->active || !buf)
		return 0;                  /* before init, no valid blob, or a NULL
					    * buffer (the kernel says EFAULT) */
	switch (psfs_resolve(&s->view, path, nofollow ? 0 : PSFS_FOLLOW, scratch, &e)) {
	case PSFS_HIT:
		if (x)
			fill_statx(s, e, buf);
		else
			fill_stat(s, e, buf);
		*rc = 0;
		return 1;
	case PSFS_ENOENT:
		errno = ENOENT;
		*rc = -1;
		return 1;
	case PSFS_ENOTDIR:
		errno = ENOTDIR;
		*rc = -1;
		return 1;
	default:
		return 0;
	}
}

/*
 * Identity for kernel answers (PSFS_H_IDENTITY_TAG, cold side only).
 * The blob gives domain inodes a synthetic st_ino (the build cannot know
 * the engine's), so a kernel answer about the same inode - fstat of an
 * open file, fstatat relative to a directory fd, a path the shim passed
 * through - must carry the same identity, or `cp` ("replaced while being
 * copied"), `du -L`, `find -samefile` and os.path.samefile see two files.
 * The builder wrote each inode's mtime nanoseconds as its tag, so the
 * answer itself names its entry: O(1), no syscall, and a file that is
 * not a domain inode (other device, other fields) is left alone.
 */
#define V_STATX_TAGGED 0x2ceu      /* MODE NLINK UID GID MTIME SIZE */
#define V_STATX_ATIME 0x20u
#define V_STATX_CTIME 0x80u
#define V_STATX_INO 0x100u

static int tag_stat(const struct vrift_state *s, int rc, void *buf)
{
	struct kstat *st = buf;
	const struct psfs_entry *e;
	if (rc != 0 || !s || !s->tagged || st->st_dev != s->dev)
		return rc;
	e = psfs_tagged(&s->view, st->st_mode, st->st_uid, st->st_gid,
			(uint64_t)st->st_nlink, (uint64_t)st->st_size,
			st->st_mtime_sec, (uint32_t)st->st_mtime_nsec);
	if (e) {
		st->st_ino = e->ino;
		st->st_atime_sec = e->atime_sec;
		st->st_atime_nsec = e->atime_nsec;
		st->st_ctime_sec = e->ctime_sec;
		st->st_ctime_nsec = e->ctime_nsec;
	}
	return rc;
}

static int tag_statx(const struct vrift_state *s, int rc, void *buf)
{
	struct kstatx *x = buf;
	const struct psfs_entry *e;
	if (rc != 0 || !s || !s->tagged || (x->stx_mask & V_STATX_TAGGED) != V_STATX_TAGGED ||
	    x->stx_dev_major != s->dev_maj || x->stx_dev_minor != s->dev_min)
		return rc;
	e = psfs_tagged(&s->view, x->stx_mode, x->stx_uid, x->stx_gid, x->stx_nlink,
			x->stx_size, x->stx_mtime.tv_sec, x->stx_mtime.tv_nsec);
	if (e) {
		if (x->stx_mask & V_STATX_INO)
			x->stx_ino = e->ino;
		if (x->stx_mask & V_STATX_ATIME) {
			x->stx_atime.tv_sec = e->atime_sec;
			x->stx_atime.tv_nsec = e->atime_nsec;
		}
		if (x->stx_mask & V_STATX_CTIME) {
			x->stx_ctime.tv_sec = e->ctime_sec;
			x->stx_ctime.tv_nsec = e->ctime_nsec;
		}
	}
	return rc;
}

/* fstatat-style flags we can answer, given the path (empty -> kernel). */
static inline int at_ok(const char *path, int flags, int allowed)
{
	return !(flags & ~allowed) && path && path[0] == '/';
}

/* ---- exported entry points ---------------------------------------------- */

/* stat family: follow (or not) the final symlink, answer, else the real
 * function, else (no such symbol, or before init) the raw syscall. */
#define PATH_WRAPPER(name, field, nofollow)                                    \
	EXPORT int name(const char *path, void *buf)                           \
	{                                                                      \
		const struct vrift_state *s = state();                         \
		int rc;                                                        \
		if (hot(s, path, nofollow, buf, 0, &rc))                       \
			return rc;                                             \
		if (s && s->real.field)                                        \
			return tag_stat(s, s->real.field(path, buf), buf);     \
		return tag_stat(s, (int)raw_fstatat(V_AT_FDCWD, path, buf,     \
				nofollow ? V_AT_SYMLINK_NOFOLLOW : 0), buf);   \
	}
PATH_WRAPPER(stat, stat, 0)
PATH_WRAPPER(stat64, stat64, 0)
PATH_WRAPPER(lstat, lstat, 1)
PATH_WRAPPER(lstat64, lstat64, 1)

/* fstat: a descriptor names no path: the kernel answers; a domain inode
 * gets its blob identity (tag_stat). */
#define FD_WRAPPER(name, field)                                                \
	EXPORT int name(int fd, void *buf)                                     \
	{                                                                      \
		const struct vrift_state *s = state();                         \
		if (s && s->real.field)                                        \
			return tag_stat(s, s->real.field(fd, buf), buf);       \
		return tag_stat(s, (int)raw_fstat(fd, buf), buf);              \
	}
FD_WRAPPER(fstat, fstat)
FD_WRAPPER(fstat64, fstat64)

/* fstatat: the path must be absolute (then dirfd is ignored by the kernel
 * too); relative paths depend on a directory we cannot see: passthrough. */
#define AT_WRAPPER(name, field)                                                \
	EXPORT int name(int dirfd, const char *path, void *buf, int flags)     \
	{                                                                      \
		const struct vrift_state *s = state();                         \
		int rc;                                                        \
		if (at_ok(path, flags, FSTATAT_FLAGS) &&                       \
		    hot(s, path, flags & V_AT_SYMLINK_NOFOLLOW, buf, 0, &rc))  \
			return rc;                                             \
		if (s && s->real.field)                                        \
			return tag_stat(s, s->real.field(dirfd, path, buf, flags), buf); \
		return tag_stat(s, (int)raw_fstatat(dirfd, path, buf, flags), buf); \
	}
AT_WRAPPER(fstatat, fstatat)
AT_WRAPPER(fstatat64, fstatat64)

/* statx with any mask is answered with all the basic stats: statx(2) lets
 * the kernel return fields the caller did not ask for ("may return fields
 * that weren't requested"), and callers read stx_mask.  GNU ls -l asks for
 * MODE|NLINK|UID|GID|MTIME|SIZE, stat -c %s for SIZE alone.  Recent kernels
 * leave unrequested timestamps out (zero, bit clear); the shim's extra
 * fields are true values, never zeros posing as data. */
static inline int statx_ok(const char *path, int flags, unsigned mask)
{
	return at_ok(path, flags, STATX_FLAGS) && !(mask & V_STATX__RESERVED);
}

EXPORT int statx(int dirfd, const char *path, int flags, unsigned mask, void *buf)
{
	const struct vrift_state *s = state();
	int rc;
	if (statx_ok(path, flags, mask) &&
	    hot(s, path, flags & V_AT_SYMLINK_NOFOLLOW, buf, 1, &rc))
		return rc;
	if (s && s->real.statx)
		return tag_statx(s, s->real.statx(dirfd, path, flags, mask, buf), buf);
	return tag_statx(s, (int)raw_statx(dirfd, path, flags, mask, buf), buf);
}

/* Pre-2.33 glibc ABI: `ver` selects the struct layout; we only know the
 * platform's own (_STAT_VER), anything else is glibc's to accept or not. */
#define XSTAT_WRAPPER(name, field, nofollow)                                   \
	EXPORT int name(int ver, const char *path, void *buf)                  \
	{                                                                      \
		const struct vrift_state *s = state();                         \
		int rc;                                                        \
		if (ver == STAT_VER && hot(s, path, nofollow, buf, 0, &rc))    \
			return rc;                                             \
		if (ver != STAT_VER) {  /* another layout: never touch it */  \
			if (s && s->real.field)                                \
				return s->real.field(ver, path, buf);          \
			errno = EINVAL;                                        \
			return -1;                                             \
		}                                                              \
		if (s && s->real.field)                                        \
			return tag_stat(s, s->real.field(ver, path, buf), buf); \
		return tag_stat(s, (int)raw_fstatat(V_AT_FDCWD, path, buf,     \
				nofollow ? V_AT_SYMLINK_NOFOLLOW : 0), buf);   \
	}
XSTAT_WRAPPER(__xstat, xstat, 0)
XSTAT_WRAPPER(__xstat64, xstat64, 0)
XSTAT_WRAPPER(__lxstat, lxstat, 1)
XSTAT_WRAPPER(__lxstat64, lxstat64, 1)

#define FXSTAT_WRAPPER(name, field)                                            \
	EXPORT int name(int ver, int fd, void *buf)                            \
	{                                                                      \
		const struct vrift_state *s = state();                         \
		if (ver != STAT_VER) {  /* another layout: never touch it */  \
			if (s && s->real.field)                                \
				return s->real.field(ver, fd, buf);            \
			errno = EINVAL;                                        \
			return -1;                                             \
		}                                                              \
		if (s && s->real.field)                                        \
			return tag_stat(s, s->real.field(ver, fd, buf), buf);  \
		return tag_stat(s, (int)raw_fstat(fd, buf), buf);              \
	}
FXSTAT_WRAPPER(__fxstat, fxstat)
FXSTAT_WRAPPER(__fxstat64, fxstat64)

#define FXSTATAT_WRAPPER(name, field)                                          \
	EXPORT int name(int ver, int dirfd, const char *path, void *buf,       \
			int flags)                                             \
	{                                                                      \
		const struct vrift_state *s = state();                         \
		int rc;                                                        \
		if (ver == STAT_VER && at_ok(path, flags, FSTATAT_FLAGS) &&    \
		    hot(s, path, flags & V_AT_SYMLINK_NOFOLLOW, buf, 0, &rc))  \
			return rc;                                             \
		if (ver != STAT_VER) {  /* another layout: never touch it */  \
			if (s && s->real.field)                                \
				return s->real.field(ver, dirfd, path, buf, flags); \
			errno = EINVAL;                                        \
			return -1;                                             \
		}                                                              \
		if (s && s->real.field)                                        \
			return tag_stat(s, s->real.field(ver, dirfd, path, buf, flags), buf); \
		return tag_stat(s, (int)raw_fstatat(dirfd, path, buf, flags), buf); \
	}
FXSTATAT_WRAPPER(__fxstatat, fxstatat)
FXSTATAT_WRAPPER(__fxstatat64, fxstatat64)

/*
 * syscall(): libuv (Node) calls syscall(SYS_statx, ...) directly.  Every
 * number is forwarded unchanged with all six argument registers (reading
 * six variadic longs is what libc's own syscall() does: on x86_64 and
 * aarch64 they are registers, present whatever the caller passed).  The
 * stat numbers are answered first when the path is ours.
 */
EXPORT long syscall(long n, ...)
{
	va_list ap;
	long a[6];
	va_start(ap, n);
	for (int i = 0; i < 6; i++)
		a[i] = va_arg(ap, long);
	va_end(ap);

	const struct vrift_state *s = state();
	int rc;
	const char *p;
	switch (n) {
	case SYS_statx:
		p = (const char *)a[1];
		if (statx_ok(p, (int)a[2], (unsigned)a[3]) &&
		    hot(s, p, (int)a[2] & V_AT_SYMLINK_NOFOLLOW, (void *)a[4], 1, &rc))
			return rc;
		break;
	case SYS_fstat:
		break;
	case SYS_newfstatat:
		p = (const char *)a[1];
		if (at_ok(p, (int)a[3], FSTATAT_FLAGS) &&
		    hot(s, p, (int)a[3] & V_AT_SYMLINK_NOFOLLOW, (void *)a[2], 0, &rc))
			return rc;
		break;
#ifdef SYS_stat
	case SYS_stat:
	case SYS_lstat:
		if (hot(s, (const char *)a[0], n == SYS_lstat, (void *)a[1], 0, &rc))
			return rc;
		break;
#endif
	default:
		return sys_ret(raw6(n, a[0], a[1], a[2], a[3], a[4], a[5]));
	}
	/* A stat number the blob did not answer: the kernel does, and a
	 * domain inode gets its blob identity. */
	long r = sys_ret(raw6(n, a[0], a[1], a[2], a[3], a[4], a[5]));
	if (n == SYS_statx)
		return tag_statx(s, (int)r, (void *)a[4]);
	if (n == SYS_newfstatat)
		return tag_stat(s, (int)r, (void *)a[2]);
	return tag_stat(s, (int)r, (void *)a[1]);   /* fstat, stat, lstat */
}

/* ---- constructor (cold, once per process) -------------------------------- */

static void *sym(const char *name)
{
	return dlsym(RTLD_NEXT, name);
}

/* The __xstat family exists only as GLIBC_2.2.5/2.17 symbols; ask for that
 * version first (newer glibc hides it from plain dlsym in some builds). */
static void *xsym(const char *name)
{
	void *p = NULL;
#ifdef __GLIBC__
	p = dlvsym(RTLD_NEXT, name, GLIBC_BASE);
#endif
	return p ? p : dlsym(RTLD_NEXT, name);
}

static void resolve_real(struct vrift_state *s)
{
	s->real.stat = (path_fn)sym("stat");
	s->real.stat64 = (path_fn)sym("stat64");
	s->real.lstat = (path_fn)sym("lstat");
	s->real.lstat64 = (path_fn)sym("lstat64");
	s->real.fstat = (fd_fn)sym("fstat");
	s->real.fstat64 = (fd_fn)sym("fstat64");
	s->real.fstatat = (at_fn)sym("fstatat");
	s->real.fstatat64 = (at_fn)sym("fstatat64");
	s->real.statx = (statx_fn)sym("statx");
	s->real.xstat = (xpath_fn)xsym("__xstat");
	s->real.xstat64 = (xpath_fn)xsym("__xstat64");
	s->real.lxstat = (xpath_fn)xsym("__lxstat");
	s->real.lxstat64 = (xpath_fn)xsym("__lxstat64");
	s->real.fxstat = (xfd_fn)xsym("__fxstat");
	s->real.fxstat64 = (xfd_fn)xsym("__fxstat64");
	s->real.fxstatat = (xat_fn)xsym("__fxstatat");
	s->real.fxstatat64 = (xat_fn)xsym("__fxstatat64");
}

/* The blob's PSFS_E_REACHABLE bits cover the directories from each root
 * down; the root's own ancestors ("/" for "/vrift") are checked here, once:
 * each must be a directory everyone may search, or the shim could answer
 * where the kernel says EACCES.  0 when all are. */
static int ancestors_searchable(const struct psfs_view *v)
{
	char buf[PSFS_PATH_MAX];
	for (uint32_t r = 0; r < v->root_count; r++) {
		const uint8_t *p = v->strings + v->roots[r].path_off;
		uint32_t n = v->roots[r].path_len;
		for (uint32_t i = 0; i < n; i++) {
			if (p[i] != '/')
				continue;
			/* prefix p[0..i), or "/" for i == 0 */
			uint32_t len = i ? i : 1;
			for (uint32_t j = 0; j < len; j++)
				buf[j] = (char)p[j];
			buf[len] = 0;
			struct kstat st;
			if (RAW(SYS_newfstatat, V_AT_FDCWD, buf, &st, 0, 0, 0) != 0 ||
			    (st.st_mode & V_S_IFMT) != V_S_IFDIR || (st.st_mode & 0111) != 0111)
				return -1;
		}
	}
	return 0;
}

/* Map the blob and validate it; 0 on success.  Raw syscalls only: libc's
 * open/mmap could be interposed by something that stats. */
static int load_blob(struct vrift_state *s, const char *file)
{
	/* O_NONBLOCK: a FIFO (or device) named by VRIFT_BLOB must not block
	 * the process in its constructor; fstat then rejects it. */
	long fd = RAW(SYS_openat, V_AT_FDCWD, file,
		      V_O_RDONLY | V_O_CLOEXEC | V_O_NONBLOCK | V_O_NOCTTY, 0, 0, 0);
	if (fd < 0)
		return -1;
	struct kstat st;
	long r = RAW(SYS_fstat, fd, &st, 0, 0, 0, 0);
	long euid = RAW(SYS_geteuid, 0, 0, 0, 0, 0, 0);
	/* Only a regular file nobody else can rewrite under us: a blob is
	 * trusted for every answer in the domain. */
	if (r < 0 || (st.st_mode & V_S_IFMT) != V_S_IFREG || (st.st_mode & 022) ||
	    (st.st_uid != 0 && (long)st.st_uid != euid) || st.st_size < PSFS_HEADER_SIZE) {
		RAW(SYS_close, fd, 0, 0, 0, 0, 0);
		return -1;
	}
	uint64_t size = (uint64_t)st.st_size;
	long m = RAW(SYS_mmap, 0, size, V_PROT_READ, V_MAP_PRIVATE, fd, 0);
	RAW(SYS_close, fd, 0, 0, 0, 0, 0);
	if ((unsigned long)m > -4096ul)
		return -1;
	if (psfs_view_init(&s->view, (const void *)m, size) != 0 ||
	    ancestors_searchable(&s->view) != 0) {
		RAW(SYS_munmap, m, size, 0, 0, 0, 0);
		return -1;
	}

	/* Identity checks that need the real roots[0] (cold, once). */
	if (s->view.flags & (PSFS_H_DEV_RUNTIME | PSFS_H_CHECK_ROOT_MTIME)) {
		char root[PSFS_PATH_MAX];
		const struct psfs_root *r0 = &s->view.roots[0];
		const uint8_t *rp = s->view.strings + r0->path_off;
		for (uint32_t i = 0; i < r0->path_len; i++)
			root[i] = (char)rp[i];
		root[r0->path_len] = 0;
		const struct psfs_entry *re = psfs_lookup(&s->view, rp, r0->path_len);
		struct kstatx x;
		if (!re || RAW(SYS_statx, V_AT_FDCWD, root, V_AT_SYMLINK_NOFOLLOW,
			       V_STATX_BASIC_STATS | V_STATX_MNT_ID, &x, 0) < 0 ||
		    (x.stx_mode & V_S_IFMT) != V_S_IFDIR ||
		    ((s->view.flags & PSFS_H_CHECK_ROOT_MTIME) &&
		     (x.stx_mtime.tv_sec != re->mtime_sec ||
		      x.stx_mtime.tv_nsec != re->mtime_nsec))) {
			RAW(SYS_munmap, m, size, 0, 0, 0, 0);
			return -1;
		}
		if (s->view.flags & PSFS_H_DEV_RUNTIME) {
			s->dev_runtime = 1;
			s->tagged = (s->view.flags & PSFS_H_IDENTITY_TAG) != 0;
			s->dev_maj = x.stx_dev_major;
			s->dev_min = x.stx_dev_minor;
			s->dev = dev_make(x.stx_dev_major, x.stx_dev_minor);
			s->attributes_mask = x.stx_attributes_mask;
			if (x.stx_mask & V_STATX_MNT_ID) {
				s->statx_extra = V_STATX_MNT_ID;
				s->mnt_id = x.stx_mnt_id;
			}
		}
	}
	return 0;
}

#define V_AT_NULL 0
#define V_AT_SECURE 23

/*
 * AT_SECURE from the auxiliary vector, read from /proc/self/auxv with raw
 * syscalls (getauxval needs GLIBC_2.16, newer than the x86_64 base).  Cold:
 * once, in the constructor.  When the vector cannot be read (no /proc in a
 * chroot) the answer is "secure": VRIFT_BLOB is then ignored and the
 * default blob path is used, never a path from the environment.
 */
static int is_secure(void)
{
	uint64_t av[128];  /* (type, value) pairs; Linux passes < 32 of them */
	long fd = RAW(SYS_openat, V_AT_FDCWD, "/proc/self/auxv", V_O_RDONLY | V_O_CLOEXEC, 0, 0, 0);
	if (fd < 0)
		return 1;
	long n = 0, r;
	while (n < (long)sizeof av &&
	       (r = RAW(SYS_read, fd, (char *)av + n, sizeof av - (unsigned long)n, 0, 0, 0)) > 0)
		n += r;
	RAW(SYS_close, fd, 0, 0, 0, 0, 0);
	for (long i = 0; i + 1 < n / 8; i += 2) {
		if (av[i] == V_AT_SECURE)
			return av[i + 1] != 0;
		if (av[i] == V_AT_NULL)
			break;
	}
	return 1;   /* no AT_SECURE entry seen: assume secure */
}

__attribute__((constructor)) static void vrift_init(void)
{
	struct vrift_state *s = &g_state;
	resolve_real(s);
	/* VRIFT_BLOB is ignored for set-uid/set-gid/capability programs. */
	const char *file = is_secure() ? NULL : getenv("VRIFT_BLOB");
	if (!file || !file[0])
		file = VRIFT_DEFAULT_BLOB;
	s->active = load_blob(s, file) == 0;
	atomic_store_explicit(&g_pub, s, memory_order_release);
}
