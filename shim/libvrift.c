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

/* musl's <stdlib.h> maps the LFS64 names to the plain ones with macros;
 * the shim exports both names as functions. */
#undef mkstemp64
#undef mkostemp64
#undef mkstemps64
#undef mkostemps64

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
 * imported, only looked up: see is_secure().  test/variants/abi.test.ts
 * checks `objdump -T`.
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
};

/* The real libc functions (dlsym(RTLD_NEXT)), filled by the constructor
 * before g_pub is published, read only after a non-NULL g_pub.  Kept out
 * of the state so chroot() can publish g_off (below) and keep them. */
typedef void *gen_fn;         /* cast to the symbol's own prototype at the call */
static struct {
	path_fn stat, stat64, lstat, lstat64;
	fd_fn fstat, fstat64;
	at_fn fstatat, fstatat64;
	statx_fn statx;
	xpath_fn xstat, xstat64, lxstat, lxstat64;
	xfd_fn fxstat, fxstat64;
	xat_fn fxstatat, fxstatat64;
	/* mutating calls (section "immutability") and existence probes */
	gen_fn open, open64, openat, openat64, open_2, open64_2, openat_2, openat64_2;
	gen_fn creat, creat64, fopen, fopen64, truncate, truncate64;
	gen_fn unlink, unlinkat, remove, rename, renameat, renameat2;
	gen_fn mkdir, mkdirat, rmdir, chmod, lchmod, fchmodat, chown, lchown, fchownat;
	gen_fn utime, utimes, utimensat, futimesat, lutimes;
	gen_fn link, linkat, symlink, symlinkat, mknod, mknodat, xmknod, xmknodat, mkfifo, mkfifoat;
	gen_fn setxattr, lsetxattr, removexattr, lremovexattr;
	gen_fn mkstemp, mkstemp64, mkostemp, mkostemp64, mkstemps, mkstemps64, mkostemps, mkostemps64, mkdtemp;
	gen_fn chroot;
	gen_fn access, faccessat, euidaccess, eaccess;
} g_real;

static struct vrift_state g_state;
/* Published after a successful chroot(): active 0, never written (static
 * zero): every call passes through, the real functions stay reachable. */
static struct vrift_state g_off;
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
	/* Padding words as the kernel: 0.  Stored one by one, not memset:
	 * gcc makes a 144-byte memset a `rep stos`, ~12 ns of a ~50 ns hot
	 * stat (npm run bench:shim). */
#if defined(__x86_64__)
	st->pad0 = 0;
	st->unused[0] = st->unused[1] = st->unused[2] = 0;
#else
	st->pad1 = st->pad2 = 0;
	st->unused4 = st->unused5 = 0;
#endif
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
	/* Fields the blob does not provide are 0, stored one by one: a
	 * 256-byte memset becomes a `rep stos` (see fill_stat). */
	x->stx_attributes = 0;
	x->spare0 = 0;
	x->stx_btime = (struct kstatx_ts){ 0, 0, 0 };
	x->stx_atime.reserved = x->stx_mtime.reserved = x->stx_ctime.reserved = 0;
	x->stx_dio_mem_align = x->stx_dio_offset_align = 0;
	x->spare3[0] = x->spare3[1] = x->spare3[2] = x->spare3[3] = 0;
	x->spare3[4] = x->spare3[5] = x->spare3[6] = x->spare3[7] = 0;
	x->spare3[8] = x->spare3[9] = x->spare3[10] = x->spare3[11] = 0;
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

/* hot() below, past its cheap checks.  noinline: keeps the 4 KiB scratch
 * out of the wrappers' frames, so a passthrough call runs the real
 * function at its usual stack depth. */
#define HOT_STATX 0x100u   /* hot_answer: statx output (not a PSFS_ flag) */
static __attribute__((noinline)) int hot_answer(const struct vrift_state *s, const char *path,
		      unsigned how, void *buf, int *rc,
		      const struct psfs_entry **known)
{
	char scratch[PSFS_PATH_MAX];   /* stack, not TLS or heap: reentrant */
	/* *known (NULL on entry) doubles as the out-parameter: set on a HIT,
	 * and on a PASS only for an uncertain entry (psfs_resolve). */
	switch (psfs_resolve_ours(&s->view, path, how & PSFS_FOLLOW, scratch, known)) {
	case PSFS_HIT:
		if (how & HOT_STATX)
			fill_statx(s, *known, buf);
		else
			fill_stat(s, *known, buf);
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

/* Answer from the blob.  Returns 1 with *rc set (0, or -1 and errno), or 0
 * to pass through, with *known the blob's entry for the path when only its
 * uncertain size (PSFS_E_UNCERTAIN) kept the shim from answering, else
 * left NULL: the kernel's answer for that path needs no confirming lstat
 * (tag_stat).  `x` selects statx output instead of struct stat.
 * Inline checks first, so most paths outside the domain (byte 1 differs
 * from every root's: psfs_may_be_ours) pass through without a call. */
static inline int hot(const struct vrift_state *s, const char *path,
		      int nofollow, void *buf, int x, int *rc,
		      const struct psfs_entry **known)
{
	if (!s || !s->active || !psfs_ptr_ok(buf) || !psfs_may_be_ours(&s->view, path))
		return 0;                  /* before init, no valid blob, a NULL
					    * or first-page buffer (the kernel
					    * says EFAULT), or not ours */
	/* Six arguments: all in registers (a seventh goes on the stack). */
	return hot_answer(s, path, (nofollow ? 0 : PSFS_FOLLOW) | (x ? HOT_STATX : 0),
			  buf, rc, known);
}

/*
 * Identity for kernel answers (PSFS_H_IDENTITY_TAG, cold side only).
 * The blob gives domain inodes a synthetic st_ino (the build cannot know
 * the engine's), so a kernel answer about the same inode - fstat of an
 * open file, fstatat relative to a directory fd, a path the shim passed
 * through - must carry the same identity, or `cp` ("replaced while being
 * copied"), `du -L`, `find -samefile` and os.path.samefile see two files.
 * The builder wrote each inode's mtime nanoseconds as its tag, so the
 * answer itself names its entry (O(1)); a file on another device or with
 * other fields is left alone.  A copy made with `cp -a` keeps nanoseconds,
 * mode and owner.  A copied file still differs in st_nlink (every domain
 * file is also linked from /vrift/.cas, which a copy of a subtree leaves
 * behind), but a directory does not: a directory match is confirmed with
 * one raw lstat of the entry's own path, where the domain inode lives
 * (domain_inode).  That syscall is paid only by directory answers that
 * match a tag (fstat of a domain directory's fd: opendir, fts).
 */
#define V_STATX_TAGGED 0x2ceu      /* MODE NLINK UID GID MTIME SIZE */
#define V_STATX_ATIME 0x20u
#define V_STATX_MTIME 0x40u
#define V_STATX_CTIME 0x80u
#define V_STATX_INO 0x100u

/* Whether the kernel's inode `ino` (on roots[0]'s device) is the one at
 * entry e's path in the domain, i.e. the domain inode e describes, not a
 * copy of it elsewhere.  Raw lstat, not interposed; cold side only. */
static int domain_inode(const struct vrift_state *s, const struct psfs_entry *e, uint64_t ino)
{
	char p[PSFS_PATH_MAX];
	struct kstat k;
	const struct psfs_view *v = &s->view;
	uint32_t n = e->path_len;
	if (n >= PSFS_PATH_MAX || (uint64_t)e->path_off + n > v->strings_size)
		return 0;                  /* corrupt key: leave the answer alone */
	for (uint32_t i = 0; i < n; i++)
		p[i] = (char)v->strings[e->path_off + i];
	p[n] = 0;
	int err = errno;               /* a failed lstat must not leak its errno */
	int same = raw_fstatat(V_AT_FDCWD, p, &k, V_AT_SYMLINK_NOFOLLOW) == 0 &&
		   (uint64_t)k.st_ino == ino && (uint64_t)k.st_dev == s->dev;
	errno = err;
	return same;
}

static int tag_stat(const struct vrift_state *s, int rc, void *buf,
		    const struct psfs_entry *known)
{
	struct kstat *st = buf;
	const struct psfs_entry *e;
	if (rc != 0 || !s || !s->tagged || st->st_dev != s->dev)
		return rc;
	if (known)          /* the path's own entry: its mtime must still agree */
		e = known->mtime_sec == st->st_mtime_sec &&
		    known->mtime_nsec == (uint32_t)st->st_mtime_nsec ? known : NULL;
	else
		e = psfs_tagged(&s->view, st->st_mode, st->st_uid, st->st_gid,
				(uint64_t)st->st_nlink, (uint64_t)st->st_size,
				st->st_mtime_sec, (uint32_t)st->st_mtime_nsec);
	if (e && (e == known || (st->st_mode & V_S_IFMT) != V_S_IFDIR ||
		  domain_inode(s, e, (uint64_t)st->st_ino))) {
		st->st_ino = e->ino;
		st->st_atime_sec = e->atime_sec;
		st->st_atime_nsec = e->atime_nsec;
		st->st_ctime_sec = e->ctime_sec;
		st->st_ctime_nsec = e->ctime_nsec;
	}
	return rc;
}

/* statx: the kernel may leave out fields not asked for (stat -c %i asks
 * for STATX_INO alone), so without `known` an answer lacking the tagged
 * fields is left alone; with it, only a present mtime is checked. */
static int tag_statx(const struct vrift_state *s, int rc, void *buf,
		     const struct psfs_entry *known)
{
	struct kstatx *x = buf;
	const struct psfs_entry *e;
	if (rc != 0 || !s || !s->tagged ||
	    x->stx_dev_major != s->dev_maj || x->stx_dev_minor != s->dev_min)
		return rc;
	if (known) {
		e = !(x->stx_mask & V_STATX_MTIME) ||
		    (known->mtime_sec == x->stx_mtime.tv_sec &&
		     known->mtime_nsec == x->stx_mtime.tv_nsec) ? known : NULL;
	} else {
		if ((x->stx_mask & V_STATX_TAGGED) != V_STATX_TAGGED)
			return rc;
		e = psfs_tagged(&s->view, x->stx_mode, x->stx_uid, x->stx_gid, x->stx_nlink,
				x->stx_size, x->stx_mtime.tv_sec, x->stx_mtime.tv_nsec);
		/* A directory is confirmed by its inode number (domain_inode):
		 * without STATX_INO in the answer it is left as the kernel gave it. */
		if (e && (x->stx_mode & V_S_IFMT) == V_S_IFDIR &&
		    (!(x->stx_mask & V_STATX_INO) || !domain_inode(s, e, x->stx_ino)))
			e = NULL;
	}
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

/* fstatat-style flags we can answer.  The path is hot()'s to check: a
 * relative or empty one (dirfd, AT_EMPTY_PATH) passes through there
 * (psfs_may_be_ours). */
static inline int at_flags_ok(int flags, int allowed)
{
	return !(flags & ~allowed);
}

/* ---- exported entry points ---------------------------------------------- */

/* stat family: follow (or not) the final symlink, answer, else the real
 * function, else (no such symbol, or before init) the raw syscall. */
#define PATH_WRAPPER(name, field, nofollow)                                    \
	EXPORT int name(const char *path, void *buf)                           \
	{                                                                      \
		const struct vrift_state *s = state();                         \
		int rc;                                                        \
		const struct psfs_entry *k = NULL;                             \
		if (hot(s, path, nofollow, buf, 0, &rc, &k))                   \
			return rc;                                             \
		if (s && g_real.field)                                         \
			return tag_stat(s, g_real.field(path, buf), buf, k);   \
		return tag_stat(s, (int)raw_fstatat(V_AT_FDCWD, path, buf,     \
				nofollow ? V_AT_SYMLINK_NOFOLLOW : 0), buf, k);\
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
		if (s && g_real.field)                                         \
			return tag_stat(s, g_real.field(fd, buf), buf, NULL);  \
		return tag_stat(s, (int)raw_fstat(fd, buf), buf, NULL);        \
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
		const struct psfs_entry *k = NULL;                             \
		if (at_flags_ok(flags, FSTATAT_FLAGS) &&                       \
		    hot(s, path, flags & V_AT_SYMLINK_NOFOLLOW, buf, 0, &rc, &k))  \
			return rc;                                             \
		if (s && g_real.field)                                         \
			return tag_stat(s, g_real.field(dirfd, path, buf, flags), buf, k); \
		return tag_stat(s, (int)raw_fstatat(dirfd, path, buf, flags), buf, k); \
	}
AT_WRAPPER(fstatat, fstatat)
AT_WRAPPER(fstatat64, fstatat64)

/* statx with any mask is answered with all the basic stats: statx(2) lets
 * the kernel return fields the caller did not ask for ("may return fields
 * that weren't requested"), and callers read stx_mask.  GNU ls -l asks for
 * MODE|NLINK|UID|GID|MTIME|SIZE, stat -c %s for SIZE alone.  Recent kernels
 * leave unrequested timestamps out (zero, bit clear); the shim's extra
 * fields are true values, never zeros posing as data. */
static inline int statx_ok(int flags, unsigned mask)
{
	return at_flags_ok(flags, STATX_FLAGS) && !(mask & V_STATX__RESERVED);
}

EXPORT int statx(int dirfd, const char *path, int flags, unsigned mask, void *buf)
{
	const struct vrift_state *s = state();
	int rc;
	const struct psfs_entry *k = NULL;
	if (statx_ok(flags, mask) &&
	    hot(s, path, flags & V_AT_SYMLINK_NOFOLLOW, buf, 1, &rc, &k))
		return rc;
	if (s && g_real.statx)
		return tag_statx(s, g_real.statx(dirfd, path, flags, mask, buf), buf, k);
	return tag_statx(s, (int)raw_statx(dirfd, path, flags, mask, buf), buf, k);
}

/* Pre-2.33 glibc ABI: `ver` selects the struct layout; we only know the
 * platform's own (_STAT_VER), anything else is glibc's to accept or not. */
#define XSTAT_WRAPPER(name, field, nofollow)                                   \
	EXPORT int name(int ver, const char *path, void *buf)                  \
	{                                                                      \
		const struct vrift_state *s = state();                         \
		int rc;                                                        \
		const struct psfs_entry *k = NULL;                             \
		if (ver == STAT_VER && hot(s, path, nofollow, buf, 0, &rc, &k))    \
			return rc;                                             \
		if (ver != STAT_VER) {  /* another layout: never touch it */   \
			if (s && g_real.field)                                 \
				return g_real.field(ver, path, buf);           \
			errno = EINVAL;                                        \
			return -1;                                             \
		}                                                              \
		if (s && g_real.field)                                         \
			return tag_stat(s, g_real.field(ver, path, buf), buf, k); \
		return tag_stat(s, (int)raw_fstatat(V_AT_FDCWD, path, buf,     \
				nofollow ? V_AT_SYMLINK_NOFOLLOW : 0), buf, k);\
	}
XSTAT_WRAPPER(__xstat, xstat, 0)
XSTAT_WRAPPER(__xstat64, xstat64, 0)
XSTAT_WRAPPER(__lxstat, lxstat, 1)
XSTAT_WRAPPER(__lxstat64, lxstat64, 1)

#define FXSTAT_WRAPPER(name, field)                                            \
	EXPORT int name(int ver, int fd, void *buf)                            \
	{                                                                      \
		const struct vrift_state *s = state();                         \
		if (ver != STAT_VER) {  /* another layout: never touch it */   \
			if (s && g_real.field)                                 \
				return g_real.field(ver, fd, buf);             \
			errno = EINVAL;                                        \
			return -1;                                             \
		}                                                              \
		if (s && g_real.field)                                         \
			return tag_stat(s, g_real.field(ver, fd, buf), buf, NULL);  \
		return tag_stat(s, (int)raw_fstat(fd, buf), buf, NULL);        \
	}
FXSTAT_WRAPPER(__fxstat, fxstat)
FXSTAT_WRAPPER(__fxstat64, fxstat64)

#define FXSTATAT_WRAPPER(name, field)                                          \
	EXPORT int name(int ver, int dirfd, const char *path, void *buf,       \
			int flags)                                             \
	{                                                                      \
		const struct vrift_state *s = state();                         \
		int rc;                                                        \
		const struct psfs_entry *k = NULL;                             \
		if (ver == STAT_VER && at_flags_ok(flags, FSTATAT_FLAGS) &&    \
		    hot(s, path, flags & V_AT_SYMLINK_NOFOLLOW, buf, 0, &rc, &k))  \
			return rc;                                             \
		if (ver != STAT_VER) {  /* another layout: never touch it */   \
			if (s && g_real.field)                                 \
				return g_real.field(ver, dirfd, path, buf, flags); \
			errno = EINVAL;                                        \
			return -1;                                             \
		}                                                              \
		if (s && g_real.field)                                         \
			return tag_stat(s, g_real.field(ver, dirfd, path, buf, flags), buf, k); \
		return tag_stat(s, (int)raw_fstatat(dirfd, path, buf, flags), buf, k); \
	}
FXSTATAT_WRAPPER(__fxstatat, fxstatat)
FXSTATAT_WRAPPER(__fxstatat64, fxstatat64)

/* ==== immutability of the domain (issue 4 item 6) ========================
 *
 * A blob is only true while the domain is unchanged, so while one is
 * accepted the shim refuses every call that would change a domain path,
 * with EROFS, as if the domain were a read-only mount.  These are cold
 * paths (mutating calls and a few existence probes): they may make one
 * syscall to name a relative path (getcwd, or readlink of /proc/self/fd/N
 * for a dirfd), still without malloc, locks or TLS.  Membership is decided
 * exactly as for stat: psfs_resolve of the object (chmod, chown, utimes,
 * xattrs, truncate, open for writing) or of the parent directory (create,
 * remove, rename).  Only a PSFS_HIT counts, so a path the blob cannot vouch
 * for (outside every root, through a symlink that leaves the domain, below
 * a directory not searchable by all) passes through.  A path that reaches
 * the domain through a symlink from outside (/usr/lib/x -> /vrift/usr/lib/x,
 * the devcontainer feature) is not a domain path lexically: dpkg keeps
 * writing there, and its hook rewrites the blob.  Where the kernel would
 * fail such a call on a read-only mount without writing (EEXIST, EISDIR,
 * ELOOP, EINVAL, ...), the call passes through and the kernel says so.
 * Switch the refusal off for one process tree with LD_PRELOAD= (empty) or
 * VRIFT_BLOB=/nonexistent: no blob, no refusal. */

#define V_O_ACCMODE 3
#define V_O_CREAT 0100
#define V_O_EXCL 0200
#define V_O_TRUNC 01000
#define V_O_APPEND 02000
#define V_O_PATH 010000000
#define V___O_TMPFILE 020000000
#if defined(__x86_64__)
#define V_O_NOFOLLOW 0400000
#else
#define V_O_NOFOLLOW 0100000
#endif
/* open flags that can write: an access mode other than O_RDONLY, create,
 * truncate, an unnamed temp file. */
#define OPEN_WRITES (V_O_ACCMODE | V_O_CREAT | V_O_TRUNC | V___O_TMPFILE)
#define V_AT_REMOVEDIR 0x200
#define V_AT_EACCESS 0x200
#define V_AT_SYMLINK_FOLLOW 0x400
#define V_S_IFLNK 0120000u
#define V_S_IFCHR 0020000u
#define V_S_IFBLK 0060000u
#define V_S_IFIFO 0010000u
#define V_S_IFSOCK 0140000u
#define V_UTIME_NOW ((1L << 30) - 1L)
#define V_UTIME_OMIT ((1L << 30) - 2L)
#define V_W_OK 2
#define V_SYS_faccessat2 439
#define V_SYS_openat2 437
#define V_SYS_fchmodat2 452

/* Outcomes of the gates below. */
enum { R_PASS = 0, R_EROFS, R_ENOENT, R_ENOTDIR, R_EXISTS, R_ZERO };

/* Set errno for a refusal or a proven-missing path; 1 when the call ends
 * here with -1. */
static inline int deny(int r)
{
	switch (r) {
	case R_EROFS: errno = EROFS; return 1;
	case R_ENOENT: errno = ENOENT; return 1;
	case R_ENOTDIR: errno = ENOTDIR; return 1;
	default: return 0;
	}
}

static inline int active(const struct vrift_state *s)
{
	return s && s->active;
}

/* `path` as an absolute path in out[PSFS_PATH_MAX]; its length, or -1 to
 * pass through (NULL or empty path, no /proc, a cwd outside the root, too
 * long).  Cold: one getcwd or readlink syscall for a relative path.  Both
 * give the physical directory, so `cd /vrift/x && touch f` is refused. */
static int absolutize(int dirfd, const char *path, char *out)
{
	long n = 0;
	if (!psfs_ptr_ok(path) || !path[0])
		return -1;
	if (path[0] != '/') {
		if (dirfd == V_AT_FDCWD) {
			n = RAW(SYS_getcwd, out, PSFS_PATH_MAX, 0, 0, 0, 0);
			if (n <= 1)
				return -1;
			n--;                       /* the kernel counts the NUL */
		} else {
			char proc[32] = "/proc/self/fd/";
			char d[12];
			int i = 14, k = 0;
			unsigned long v = (unsigned long)(long)dirfd;
			if (dirfd < 0)
				return -1;           /* the kernel says EBADF */
			do d[k++] = (char)('0' + v % 10); while ((v /= 10) && k < 11);
			while (k)
				proc[i++] = d[--k];
			proc[i] = 0;
			n = RAW(SYS_readlinkat, V_AT_FDCWD, proc, out, PSFS_PATH_MAX - 1, 0, 0);
			if (n <= 0)
				return -1;
		}
		if (out[0] != '/')
			return -1;                   /* "(unreachable)/...", "pipe:[..]" */
		if (n > 1)
			out[n++] = '/';
	}
	for (const char *p = path; *p; p++) {
		if (n >= PSFS_PATH_MAX - 1)
			return -1;
		out[n++] = *p;
	}
	out[n] = 0;
	return (int)n;
}

/*
 * psfs_resolve for membership: an entry marked PSFS_E_UNCERTAIN (a large
 * directory whose st_size the builder could not know: stat asks the
 * kernel, psfs_resolve says PASS) is still certainly in the domain.  Such
 * an entry is found again by its spelling made lexical (psfs_lookup), so
 * `pip install` into a big site-packages is refused like any other domain
 * directory.  A symlink on the way to such a directory leaves it PASS.
 */
static int resolve_dom(const struct psfs_view *v, char *p, unsigned flags, char *scratch,
		       const struct psfs_entry **e)
{
	const struct psfs_entry *x;
	uint32_t n = 0;
	int r = psfs_resolve(v, p, flags, scratch, e);
	if (r != PSFS_PASS)
		return r;
	/* Lexical spelling into scratch: "//" and "/./" collapse; ".." pops
	 * a component only when the blob says it is a directory (not a
	 * symlink), as the kernel's walk would. */
	for (const char *c = p; *c;) {
		const char *q = c;
		while (*c && *c != '/')
			c++;
		uint32_t len = (uint32_t)(c - q);
		if (*c)
			c++;
		if (len == 0 || (len == 1 && q[0] == '.'))
			continue;
		if (len == 2 && q[0] == '.' && q[1] == '.') {
			x = n ? psfs_lookup(v, (const uint8_t *)scratch, n) : NULL;
			if (n && (!x || (x->mode & V_S_IFMT) != V_S_IFDIR))
				return r;
			while (n && scratch[n - 1] != '/')
				n--;
			if (n)
				n--;
			continue;
		}
		if (n + 1 + len >= PSFS_PATH_MAX)
			return r;
		scratch[n++] = '/';
		for (uint32_t i = 0; i < len; i++)
			scratch[n++] = q[i];
	}
	if (!n)
		return r;                  /* "/": never a domain root */
	x = psfs_lookup(v, (const uint8_t *)scratch, n);
	if (x && (x->flags & (PSFS_E_REACHABLE | PSFS_E_UNCERTAIN)) ==
		     (PSFS_E_REACHABLE | PSFS_E_UNCERTAIN) && (x->mode & V_S_IFMT) == V_S_IFDIR) {
		*e = x;
		return PSFS_HIT;
	}
	return r;
}

/* p[0..last-1) names the parent of the component at p+last: is it a
 * directory of the domain (following symlinks, as the kernel's walk)? */
static int parent_in_domain(const struct psfs_view *v, char *p, int last, char *scratch)
{
	const struct psfs_entry *e;
	int cut = last > 1 ? last - 1 : 1;     /* "/a/b" -> "/a", "/b" -> "/" */
	char save = p[cut];
	p[cut] = 0;
	int r = resolve_dom(v, p, PSFS_FOLLOW, scratch, &e);
	p[cut] = save;
	return r == PSFS_HIT && (e->mode & V_S_IFMT) == V_S_IFDIR;
}

/* psfs_resolve for a dirfd-relative path; *mode is the entry's on a hit. */
static __attribute__((noinline)) int dom_resolve(const struct vrift_state *s, int dirfd,
						 const char *path, int follow, uint32_t *mode)
{
	char p[PSFS_PATH_MAX], scratch[PSFS_PATH_MAX];
	const struct psfs_entry *e;
	int r;
	if (!active(s) || absolutize(dirfd, path, p) < 0)
		return PSFS_PASS;
	r = resolve_dom(&s->view, p, follow ? PSFS_FOLLOW : 0, scratch, &e);
	if (r == PSFS_HIT)
		*mode = e->mode ? e->mode : V_S_IFMT;   /* never 0 for a hit */
	return r;
}

/* The mode of the domain entry `path` names (following a final symlink or
 * not), or 0 when the blob does not vouch for one. */
static uint32_t dom_mode(const struct vrift_state *s, int dirfd, const char *path, int follow)
{
	uint32_t m = 0;
	return dom_resolve(s, dirfd, path, follow, &m) == PSFS_HIT ? m : 0;
}

enum { K_CREATE, K_MKDIR, K_REMOVE };

/*
 * Calls that add or remove a name in a directory.
 *  K_CREATE/K_MKDIR (mkdir, mknod, symlink, link's new name): an existing
 *   name is R_EXISTS (the kernel says EEXIST, even on a read-only mount);
 *   a missing one in a domain directory is R_EROFS.
 *  K_REMOVE (unlink, rmdir, rename's both names): a domain parent is
 *   R_EROFS whether or not the name exists (a read-only mount checks
 *   before the lookup), and so is a domain entry itself (a root).
 * A last component "." or ".." passes (EINVAL/EBUSY/ENOTEMPTY/EISDIR).
 */
static __attribute__((noinline)) int name_gate(const struct vrift_state *s, int dirfd,
					       const char *path, int kind)
{
	char p[PSFS_PATH_MAX], scratch[PSFS_PATH_MAX];
	const struct psfs_entry *e;
	int n, slash = 0, last;
	if (!active(s) || (n = absolutize(dirfd, path, p)) < 0)
		return R_PASS;
	if (kind != K_REMOVE) {
		int r = resolve_dom(&s->view, p, 0, scratch, &e);
		if (r == PSFS_HIT)
			return R_EXISTS;
		if (r != PSFS_ENOENT)
			return R_PASS;
	}
	while (n > 1 && p[n - 1] == '/')
		n--, slash = 1;
	p[n] = 0;
	for (last = n; last > 0 && p[last - 1] != '/'; last--)
		;
	if (last == n || (p[last] == '.' && (last + 1 == n || (p[last + 1] == '.' && last + 2 == n))))
		return R_PASS;
	if (kind == K_CREATE && slash)
		return R_PASS;   /* the kernel: ENOENT for a non-directory "name/" */
	if (kind == K_REMOVE && resolve_dom(&s->view, p, 0, scratch, &e) == PSFS_HIT)
		return R_EROFS;
	return parent_in_domain(&s->view, p, last, scratch) ? R_EROFS : R_PASS;
}

/* Read-only probes (open without write flags, access F_OK) of an absolute
 * path: a path the blob proves missing ends here, as stat's hot path
 * (issue 7 item 6).  `present` is what a hit answers. */
static __attribute__((noinline)) int probe_gate(const struct vrift_state *s, const char *path,
						int follow, int present)
{
	char scratch[PSFS_PATH_MAX];
	const struct psfs_entry *e;
	if (!active(s) || !psfs_ptr_ok(path) || path[0] != '/')
		return R_PASS;
	switch (psfs_resolve(&s->view, path, follow ? PSFS_FOLLOW : 0, scratch, &e)) {
	case PSFS_HIT: return present;
	case PSFS_ENOENT: return R_ENOENT;
	case PSFS_ENOTDIR: return R_ENOTDIR;
	default: return R_PASS;
	}
}

/*
 * open/openat/creat/fopen.  Read-only: a missing domain path is ENOENT or
 * ENOTDIR from the blob, anything else is the kernel's.  With write flags,
 * as a read-only mount: a domain regular file opened for writing or with
 * O_TRUNC, a missing name created in a domain directory, an O_TMPFILE in a
 * domain directory -> EROFS.  O_CREAT|O_EXCL of an existing name (EEXIST),
 * a directory (EISDIR), O_NOFOLLOW on a symlink (ELOOP), O_RDONLY|O_CREAT
 * of an existing file (opens), devices and FIFOs (writing them does not
 * change the tree), O_PATH (never writes) pass through.
 */
static __attribute__((noinline)) int open_gate(const struct vrift_state *s, int dirfd,
					       const char *path, int flags)
{
	char p[PSFS_PATH_MAX], scratch[PSFS_PATH_MAX];
	const struct psfs_entry *e;
	int n;
	if (!active(s) || (flags & V_O_PATH))
		return R_PASS;
	if (!(flags & OPEN_WRITES))
		return probe_gate(s, path, !(flags & V_O_NOFOLLOW), R_PASS);
	if ((n = absolutize(dirfd, path, p)) < 0)
		return R_PASS;
	if ((flags & V___O_TMPFILE) == V___O_TMPFILE)
		return (flags & V_O_ACCMODE) &&
		       resolve_dom(&s->view, p, PSFS_FOLLOW, scratch, &e) == PSFS_HIT &&
		       (e->mode & V_S_IFMT) == V_S_IFDIR ? R_EROFS : R_PASS;
	int excl = (flags & (V_O_CREAT | V_O_EXCL)) == (V_O_CREAT | V_O_EXCL);
	switch (resolve_dom(&s->view, p, excl || (flags & V_O_NOFOLLOW) ? 0 : PSFS_FOLLOW, scratch, &e)) {
	case PSFS_HIT:
		if (excl || (e->mode & V_S_IFMT) != V_S_IFREG)
			return R_PASS;
		/* access mode 3 opens for ioctls only: no write access, the
		 * kernel allows it on a read-only mount */
		return ((flags & V_O_ACCMODE) == 1 || (flags & V_O_ACCMODE) == 2 ||
			(flags & V_O_TRUNC)) ? R_EROFS : R_PASS;
	case PSFS_ENOENT:
		if (!(flags & V_O_CREAT) || p[n - 1] == '/')
			return R_PASS;   /* ENOENT, or EISDIR for "name/" */
		break;
	default:
		return R_PASS;
	}
	int last = n;
	while (last > 0 && p[last - 1] != '/')
		last--;
	return parent_in_domain(&s->view, p, last, scratch) ? R_EROFS : R_PASS;
}

/* The real function, or before init (g_real not yet filled) dlsym. */
#define REAL(field, name) (s ? g_real.field : dlsym(RTLD_NEXT, name))
#define NOSYM() (errno = ENOSYS, -1)

/* open's mode is read only when the flags need one (O_CREAT, O_TMPFILE),
 * as libc does; it is forwarded unchanged. */
#define NEEDS_MODE(f) (((f) & V_O_CREAT) || ((f) & V___O_TMPFILE) == V___O_TMPFILE)
typedef int (*open_t)(const char *, int, ...);
typedef int (*openat_t)(int, const char *, int, ...);

/* The body every open-family wrapper shares: the gate, then the real
 * function (cast to `type`, called with the trailing arguments) or, before init, the raw
 * openat with the same dirfd, flags and mode. */
#define OPEN_BODY(field, type, dirfd, flags, mode, ...)                        \
	const struct vrift_state *s = state();                                 \
	if (deny(open_gate(s, dirfd, path, flags)))                            \
		return -1;                                                     \
	if (s && g_real.field)                                                 \
		return ((type)g_real.field)(__VA_ARGS__);                      \
	return (int)sys_ret(RAW(SYS_openat, dirfd, path, flags, mode, 0, 0))

/* Read open's variadic mode, only when the flags need one. */
#define OPEN_MODE(mode, flags)                                                 \
	unsigned mode = 0;                                                     \
	if (NEEDS_MODE(flags)) {                                               \
		va_list ap;                                                    \
		va_start(ap, flags);                                           \
		mode = va_arg(ap, unsigned);                                   \
		va_end(ap);                                                    \
	}

#define OPEN_WRAPPER(name, field)                                              \
	EXPORT int name(const char *path, int flags, ...)                      \
	{                                                                      \
		OPEN_MODE(mode, flags)                                         \
		OPEN_BODY(field, open_t, V_AT_FDCWD, flags, mode, path, flags, mode); \
	}
OPEN_WRAPPER(open, open)
OPEN_WRAPPER(open64, open64)

#define OPENAT_WRAPPER(name, field)                                            \
	EXPORT int name(int dirfd, const char *path, int flags, ...)           \
	{                                                                      \
		OPEN_MODE(mode, flags)                                         \
		OPEN_BODY(field, openat_t, dirfd, flags, mode, dirfd, path, flags, mode); \
	}
OPENAT_WRAPPER(openat, openat)
OPENAT_WRAPPER(openat64, openat64)

/* _FORTIFY_SOURCE's open without a mode (it aborts on O_CREAT itself). */
typedef int (*open2_t)(const char *, int);
typedef int (*openat2_t)(int, const char *, int);
#define OPEN2_WRAPPER(name, field)                                             \
	EXPORT int name(const char *path, int flags)                           \
	{                                                                      \
		OPEN_BODY(field, open2_t, V_AT_FDCWD, flags, 0, path, flags);  \
	}
OPEN2_WRAPPER(__open_2, open_2)
OPEN2_WRAPPER(__open64_2, open64_2)
#define OPENAT2_WRAPPER(name, field)                                           \
	EXPORT int name(int dirfd, const char *path, int flags)                \
	{                                                                      \
		OPEN_BODY(field, openat2_t, dirfd, flags, 0, dirfd, path, flags); \
	}
OPENAT2_WRAPPER(__openat_2, openat_2)
OPENAT2_WRAPPER(__openat64_2, openat64_2)

typedef int (*creat_t)(const char *, unsigned);
#define CREAT_WRAPPER(name, field)                                             \
	EXPORT int name(const char *path, unsigned mode)                       \
	{                                                                      \
		int f = V_O_CREAT | 1 /* O_WRONLY */ | V_O_TRUNC;              \
		OPEN_BODY(field, creat_t, V_AT_FDCWD, f, mode, path, mode);    \
	}
CREAT_WRAPPER(creat, creat)
CREAT_WRAPPER(creat64, creat64)

/* fopen opens with libc's internal open, which no preload reaches. */
static int fopen_flags(const char *m)
{
	int f = 0;
	if (!m)
		return 0;
	switch (m[0]) {
	case 'w': f = 1 | V_O_CREAT | V_O_TRUNC; break;
	case 'a': f = 1 | V_O_CREAT | V_O_APPEND; break;
	case 'r': break;
	default: return 0;        /* EINVAL: libc's */
	}
	for (const char *c = m + 1; *c && *c != ','; c++) {
		if (*c == '+')
			f = (f & ~V_O_ACCMODE) | 2;
		else if (*c == 'x')
			f |= V_O_EXCL;
	}
	return f;
}
#define FOPEN_WRAPPER(name, field)                                             \
	EXPORT void *name(const char *path, const char *mode)                  \
	{                                                                      \
		const struct vrift_state *s = state();                         \
		void *f = REAL(field, #name);                                  \
		if (deny(open_gate(s, V_AT_FDCWD, path, fopen_flags(mode))))   \
			return NULL;                                           \
		if (!f) {                                                      \
			errno = ENOSYS;                                        \
			return NULL;                                           \
		}                                                              \
		return ((void *(*)(const char *, const char *))f)(path, mode); \
	}
FOPEN_WRAPPER(fopen, fopen)
FOPEN_WRAPPER(fopen64, fopen64)

/* truncate: a domain regular file (a directory is EISDIR, a negative
 * length EINVAL, before any write). */
#define TRUNCATE_WRAPPER(name, field)                                          \
	EXPORT int name(const char *path, long len)                            \
	{                                                                      \
		const struct vrift_state *s = state();                         \
		if (len >= 0 && active(s) &&                                   \
		    (dom_mode(s, V_AT_FDCWD, path, 1) & V_S_IFMT) == V_S_IFREG) { \
			errno = EROFS;                                         \
			return -1;                                             \
		}                                                              \
		if (s && g_real.field)                                         \
			return ((int (*)(const char *, long))g_real.field)(path, len); \
		return (int)sys_ret(RAW(SYS_truncate, path, len, 0, 0, 0, 0)); \
	}
TRUNCATE_WRAPPER(truncate, truncate)
TRUNCATE_WRAPPER(truncate64, truncate64)

#define REFUSE_IF(cond)                                                        \
	do {                                                                   \
		if (cond) {                                                    \
			errno = EROFS;                                         \
			return -1;                                             \
		}                                                              \
	} while (0)

EXPORT int unlink(const char *path)
{
	const struct vrift_state *s = state();
	REFUSE_IF(name_gate(s, V_AT_FDCWD, path, K_REMOVE) == R_EROFS);
	if (s && g_real.unlink)
		return ((int (*)(const char *))g_real.unlink)(path);
	return (int)sys_ret(RAW(SYS_unlinkat, V_AT_FDCWD, path, 0, 0, 0, 0));
}

EXPORT int unlinkat(int dirfd, const char *path, int flags)
{
	const struct vrift_state *s = state();
	REFUSE_IF(!(flags & ~V_AT_REMOVEDIR) && name_gate(s, dirfd, path, K_REMOVE) == R_EROFS);
	if (s && g_real.unlinkat)
		return ((int (*)(int, const char *, int))g_real.unlinkat)(dirfd, path, flags);
	return (int)sys_ret(RAW(SYS_unlinkat, dirfd, path, flags, 0, 0, 0));
}

EXPORT int rmdir(const char *path)
{
	const struct vrift_state *s = state();
	REFUSE_IF(name_gate(s, V_AT_FDCWD, path, K_REMOVE) == R_EROFS);
	if (s && g_real.rmdir)
		return ((int (*)(const char *))g_real.rmdir)(path);
	return (int)sys_ret(RAW(SYS_unlinkat, V_AT_FDCWD, path, V_AT_REMOVEDIR, 0, 0, 0));
}

/* remove() unlinks (or rmdirs) with libc's internal calls. */
EXPORT int remove(const char *path)
{
	const struct vrift_state *s = state();
	void *f = REAL(remove, "remove");
	REFUSE_IF(name_gate(s, V_AT_FDCWD, path, K_REMOVE) == R_EROFS);
	return f ? ((int (*)(const char *))f)(path) : NOSYM();
}

/* rename: either name in a domain directory.  (A read-only mount says
 * EXDEV for a rename across mounts; the domain is no mount: EROFS.) */
#define RENAME_FLAGS_OK(f) (!((f) & ~7u) && ((f) & 3u) != 3u)
static int rename_gate(const struct vrift_state *s, int od, const char *o, int nd,
		       const char *n, unsigned flags)
{
	return RENAME_FLAGS_OK(flags) && (name_gate(s, od, o, K_REMOVE) == R_EROFS ||
					  name_gate(s, nd, n, K_REMOVE) == R_EROFS);
}

EXPORT int rename(const char *o, const char *n)
{
	const struct vrift_state *s = state();
	REFUSE_IF(rename_gate(s, V_AT_FDCWD, o, V_AT_FDCWD, n, 0));
	if (s && g_real.rename)
		return ((int (*)(const char *, const char *))g_real.rename)(o, n);
	return (int)sys_ret(RAW(SYS_renameat2, V_AT_FDCWD, o, V_AT_FDCWD, n, 0, 0));
}

EXPORT int renameat(int od, const char *o, int nd, const char *n)
{
	const struct vrift_state *s = state();
	REFUSE_IF(rename_gate(s, od, o, nd, n, 0));
	if (s && g_real.renameat)
		return ((int (*)(int, const char *, int, const char *))g_real.renameat)(od, o, nd, n);
	return (int)sys_ret(RAW(SYS_renameat2, od, o, nd, n, 0, 0));
}

EXPORT int renameat2(int od, const char *o, int nd, const char *n, unsigned flags)
{
	const struct vrift_state *s = state();
	REFUSE_IF(rename_gate(s, od, o, nd, n, flags));
	if (s && g_real.renameat2)
		return ((int (*)(int, const char *, int, const char *, unsigned))g_real.renameat2)(od, o, nd, n, flags);
	return (int)sys_ret(RAW(SYS_renameat2, od, o, nd, n, flags, 0));
}

EXPORT int mkdir(const char *path, unsigned mode)
{
	const struct vrift_state *s = state();
	REFUSE_IF(name_gate(s, V_AT_FDCWD, path, K_MKDIR) == R_EROFS);
	if (s && g_real.mkdir)
		return ((int (*)(const char *, unsigned))g_real.mkdir)(path, mode);
	return (int)sys_ret(RAW(SYS_mkdirat, V_AT_FDCWD, path, mode, 0, 0, 0));
}

EXPORT int mkdirat(int dirfd, const char *path, unsigned mode)
{
	const struct vrift_state *s = state();
	REFUSE_IF(name_gate(s, dirfd, path, K_MKDIR) == R_EROFS);
	if (s && g_real.mkdirat)
		return ((int (*)(int, const char *, unsigned))g_real.mkdirat)(dirfd, path, mode);
	return (int)sys_ret(RAW(SYS_mkdirat, dirfd, path, mode, 0, 0, 0));
}

/* chmod, chown, utimes, xattrs: a read-only mount refuses before looking
 * at the arguments, so any domain entry is EROFS. */
static inline int obj_gate(const struct vrift_state *s, int dirfd, const char *path, int follow)
{
	return active(s) && dom_mode(s, dirfd, path, follow) != 0;
}

EXPORT int chmod(const char *path, unsigned mode)
{
	const struct vrift_state *s = state();
	REFUSE_IF(obj_gate(s, V_AT_FDCWD, path, 1));
	if (s && g_real.chmod)
		return ((int (*)(const char *, unsigned))g_real.chmod)(path, mode);
	return (int)sys_ret(RAW(SYS_fchmodat, V_AT_FDCWD, path, mode, 0, 0, 0));
}

/* fchmodat(AT_SYMLINK_NOFOLLOW) on a symlink is EOPNOTSUPP in libc (no
 * write): passes. */
EXPORT int fchmodat(int dirfd, const char *path, unsigned mode, int flags)
{
	const struct vrift_state *s = state();
	if (active(s) && !(flags & ~V_AT_SYMLINK_NOFOLLOW)) {
		uint32_t m = dom_mode(s, dirfd, path, !(flags & V_AT_SYMLINK_NOFOLLOW));
		REFUSE_IF(m && (m & V_S_IFMT) != V_S_IFLNK);
	}
	if (s && g_real.fchmodat)
		return ((int (*)(int, const char *, unsigned, int))g_real.fchmodat)(dirfd, path, mode, flags);
	/* before init: the fchmodat syscall has no flags argument (Linux 6.6+
	 * has fchmodat2; older kernels say ENOSYS, never a wrong chmod) */
	if (flags)
		return (int)sys_ret(RAW(V_SYS_fchmodat2, dirfd, path, mode, flags, 0, 0));
	return (int)sys_ret(RAW(SYS_fchmodat, dirfd, path, mode, 0, 0, 0));
}

EXPORT int chown(const char *path, unsigned uid, unsigned gid)
{
	const struct vrift_state *s = state();
	REFUSE_IF(obj_gate(s, V_AT_FDCWD, path, 1));
	if (s && g_real.chown)
		return ((int (*)(const char *, unsigned, unsigned))g_real.chown)(path, uid, gid);
	return (int)sys_ret(RAW(SYS_fchownat, V_AT_FDCWD, path, uid, gid, 0, 0));
}

EXPORT int lchown(const char *path, unsigned uid, unsigned gid)
{
	const struct vrift_state *s = state();
	REFUSE_IF(obj_gate(s, V_AT_FDCWD, path, 0));
	if (s && g_real.lchown)
		return ((int (*)(const char *, unsigned, unsigned))g_real.lchown)(path, uid, gid);
	return (int)sys_ret(RAW(SYS_fchownat, V_AT_FDCWD, path, uid, gid, V_AT_SYMLINK_NOFOLLOW, 0));
}

EXPORT int fchownat(int dirfd, const char *path, unsigned uid, unsigned gid, int flags)
{
	const struct vrift_state *s = state();
	REFUSE_IF(!(flags & ~(V_AT_SYMLINK_NOFOLLOW | V_AT_EMPTY_PATH)) &&
		  obj_gate(s, dirfd, path, !(flags & V_AT_SYMLINK_NOFOLLOW)));
	if (s && g_real.fchownat)
		return ((int (*)(int, const char *, unsigned, unsigned, int))g_real.fchownat)(dirfd, path, uid, gid, flags);
	return (int)sys_ret(RAW(SYS_fchownat, dirfd, path, uid, gid, flags, 0));
}

/* Time arguments the kernel rejects (EINVAL) or ignores (both UTIME_OMIT:
 * success without a write) pass through. */
struct v_timespec { long sec, nsec; };
struct v_timeval { long sec, usec; };
static int ts_writes(const struct v_timespec *t)
{
	if (!t)
		return 1;
	for (int i = 0; i < 2; i++)
		if (t[i].nsec != V_UTIME_NOW && t[i].nsec != V_UTIME_OMIT &&
		    (t[i].nsec < 0 || t[i].nsec > 999999999L))
			return 0;
	return !(t[0].nsec == V_UTIME_OMIT && t[1].nsec == V_UTIME_OMIT);
}
static int tv_ok(const struct v_timeval *t)
{
	return !t || (t[0].usec >= 0 && t[0].usec < 1000000L && t[1].usec >= 0 && t[1].usec < 1000000L);
}

EXPORT int utimensat(int dirfd, const char *path, const void *times, int flags)
{
	const struct vrift_state *s = state();
	/* path NULL is futimens(dirfd): a descriptor, not a path. */
	REFUSE_IF(path && !(flags & ~(V_AT_SYMLINK_NOFOLLOW | V_AT_EMPTY_PATH)) && ts_writes(times) &&
		  obj_gate(s, dirfd, path, !(flags & V_AT_SYMLINK_NOFOLLOW)));
	if (s && g_real.utimensat)
		return ((int (*)(int, const char *, const void *, int))g_real.utimensat)(dirfd, path, times, flags);
	return (int)sys_ret(RAW(SYS_utimensat, dirfd, path, times, flags, 0, 0));
}

EXPORT int utime(const char *path, const void *times)
{
	const struct vrift_state *s = state();
	void *f = REAL(utime, "utime");
	REFUSE_IF(obj_gate(s, V_AT_FDCWD, path, 1));
	return f ? ((int (*)(const char *, const void *))f)(path, times) : NOSYM();
}

EXPORT int utimes(const char *path, const void *tv)
{
	const struct vrift_state *s = state();
	void *f = REAL(utimes, "utimes");
	REFUSE_IF(tv_ok(tv) && obj_gate(s, V_AT_FDCWD, path, 1));
	return f ? ((int (*)(const char *, const void *))f)(path, tv) : NOSYM();
}

EXPORT int lutimes(const char *path, const void *tv)
{
	const struct vrift_state *s = state();
	void *f = REAL(lutimes, "lutimes");
	REFUSE_IF(tv_ok(tv) && obj_gate(s, V_AT_FDCWD, path, 0));
	return f ? ((int (*)(const char *, const void *))f)(path, tv) : NOSYM();
}

EXPORT int futimesat(int dirfd, const char *path, const void *tv)
{
	const struct vrift_state *s = state();
	void *f = REAL(futimesat, "futimesat");
	REFUSE_IF(path && tv_ok(tv) && obj_gate(s, dirfd, path, 1));
	return f ? ((int (*)(int, const char *, const void *))f)(dirfd, path, tv) : NOSYM();
}

/* link: a new name in a domain directory; or a new name elsewhere for a
 * domain inode (its st_nlink and st_ctime would change).  The kernel looks
 * the old name up first (a missing one is ENOENT), then the new one (an
 * existing one is EEXIST): both pass. */
static int link_gate(const struct vrift_state *s, int od, const char *o, int nd, const char *n,
		     int flags)
{
	uint32_t m = 0;
	int g, old;
	if (!active(s) || (flags & ~(V_AT_SYMLINK_FOLLOW | V_AT_EMPTY_PATH)) || !o || !o[0])
		return 0;
	old = dom_resolve(s, od, o, flags & V_AT_SYMLINK_FOLLOW, &m);
	if (old == PSFS_ENOENT || old == PSFS_ENOTDIR)
		return 0;
	g = name_gate(s, nd, n, K_CREATE);
	return g == R_EROFS || (g != R_EXISTS && old == PSFS_HIT);
}

EXPORT int link(const char *o, const char *n)
{
	const struct vrift_state *s = state();
	REFUSE_IF(link_gate(s, V_AT_FDCWD, o, V_AT_FDCWD, n, 0));
	if (s && g_real.link)
		return ((int (*)(const char *, const char *))g_real.link)(o, n);
	return (int)sys_ret(RAW(SYS_linkat, V_AT_FDCWD, o, V_AT_FDCWD, n, 0, 0));
}

EXPORT int linkat(int od, const char *o, int nd, const char *n, int flags)
{
	const struct vrift_state *s = state();
	REFUSE_IF(link_gate(s, od, o, nd, n, flags));
	if (s && g_real.linkat)
		return ((int (*)(int, const char *, int, const char *, int))g_real.linkat)(od, o, nd, n, flags);
	return (int)sys_ret(RAW(SYS_linkat, od, o, nd, n, flags, 0));
}

EXPORT int symlink(const char *target, const char *path)
{
	const struct vrift_state *s = state();
	REFUSE_IF(target && name_gate(s, V_AT_FDCWD, path, K_CREATE) == R_EROFS);
	if (s && g_real.symlink)
		return ((int (*)(const char *, const char *))g_real.symlink)(target, path);
	return (int)sys_ret(RAW(SYS_symlinkat, target, V_AT_FDCWD, path, 0, 0, 0));
}

EXPORT int symlinkat(const char *target, int dirfd, const char *path)
{
	const struct vrift_state *s = state();
	REFUSE_IF(target && name_gate(s, dirfd, path, K_CREATE) == R_EROFS);
	if (s && g_real.symlinkat)
		return ((int (*)(const char *, int, const char *))g_real.symlinkat)(target, dirfd, path);
	return (int)sys_ret(RAW(SYS_symlinkat, target, dirfd, path, 0, 0, 0));
}

/* mknod: the kernel checks the file type first (EINVAL, EPERM for S_IFDIR). */
static int mknod_gate(const struct vrift_state *s, int dirfd, const char *path, unsigned mode)
{
	unsigned t = mode & V_S_IFMT;
	if (t != 0 && t != V_S_IFREG && t != V_S_IFCHR && t != V_S_IFBLK && t != V_S_IFIFO &&
	    t != V_S_IFSOCK)
		return 0;
	return name_gate(s, dirfd, path, K_CREATE) == R_EROFS;
}

EXPORT int mknod(const char *path, unsigned mode, unsigned long dev)
{
	const struct vrift_state *s = state();
	REFUSE_IF(mknod_gate(s, V_AT_FDCWD, path, mode));
	if (s && g_real.mknod)
		return ((int (*)(const char *, unsigned, unsigned long))g_real.mknod)(path, mode, dev);
	return (int)sys_ret(RAW(SYS_mknodat, V_AT_FDCWD, path, mode, dev, 0, 0));
}

EXPORT int mknodat(int dirfd, const char *path, unsigned mode, unsigned long dev)
{
	const struct vrift_state *s = state();
	REFUSE_IF(mknod_gate(s, dirfd, path, mode));
	if (s && g_real.mknodat)
		return ((int (*)(int, const char *, unsigned, unsigned long))g_real.mknodat)(dirfd, path, mode, dev);
	return (int)sys_ret(RAW(SYS_mknodat, dirfd, path, mode, dev, 0, 0));
}

/* Pre-2.33 glibc ABI of mknod (binaries built against older glibc). */
EXPORT int __xmknod(int ver, const char *path, unsigned mode, unsigned long *dev)
{
	const struct vrift_state *s = state();
	REFUSE_IF(mknod_gate(s, V_AT_FDCWD, path, mode));
	if (s && g_real.xmknod)
		return ((int (*)(int, const char *, unsigned, unsigned long *))g_real.xmknod)(ver, path, mode, dev);
	return NOSYM();
}

EXPORT int __xmknodat(int ver, int dirfd, const char *path, unsigned mode, unsigned long *dev)
{
	const struct vrift_state *s = state();
	REFUSE_IF(mknod_gate(s, dirfd, path, mode));
	if (s && g_real.xmknodat)
		return ((int (*)(int, int, const char *, unsigned, unsigned long *))g_real.xmknodat)(ver, dirfd, path, mode, dev);
	return NOSYM();
}

/* mkfifo creates with libc's internal mknodat. */
EXPORT int mkfifo(const char *path, unsigned mode)
{
	const struct vrift_state *s = state();
	REFUSE_IF(name_gate(s, V_AT_FDCWD, path, K_CREATE) == R_EROFS);
	if (s && g_real.mkfifo)
		return ((int (*)(const char *, unsigned))g_real.mkfifo)(path, mode);
	return (int)sys_ret(RAW(SYS_mknodat, V_AT_FDCWD, path, V_S_IFIFO | mode, 0, 0, 0));
}

EXPORT int mkfifoat(int dirfd, const char *path, unsigned mode)
{
	const struct vrift_state *s = state();
	REFUSE_IF(name_gate(s, dirfd, path, K_CREATE) == R_EROFS);
	if (s && g_real.mkfifoat)
		return ((int (*)(int, const char *, unsigned))g_real.mkfifoat)(dirfd, path, mode);
	return (int)sys_ret(RAW(SYS_mknodat, dirfd, path, V_S_IFIFO | mode, 0, 0, 0));
}

/* xattrs: flags other than XATTR_CREATE/REPLACE are EINVAL first. */
EXPORT int setxattr(const char *path, const char *name, const void *v, unsigned long size, int flags)
{
	const struct vrift_state *s = state();
	REFUSE_IF(name && !(flags & ~3) && obj_gate(s, V_AT_FDCWD, path, 1));
	if (s && g_real.setxattr)
		return ((int (*)(const char *, const char *, const void *, unsigned long, int))g_real.setxattr)(path, name, v, size, flags);
	return (int)sys_ret(RAW(SYS_setxattr, path, name, v, size, flags, 0));
}

EXPORT int lsetxattr(const char *path, const char *name, const void *v, unsigned long size, int flags)
{
	const struct vrift_state *s = state();
	REFUSE_IF(name && !(flags & ~3) && obj_gate(s, V_AT_FDCWD, path, 0));
	if (s && g_real.lsetxattr)
		return ((int (*)(const char *, const char *, const void *, unsigned long, int))g_real.lsetxattr)(path, name, v, size, flags);
	return (int)sys_ret(RAW(SYS_lsetxattr, path, name, v, size, flags, 0));
}

EXPORT int removexattr(const char *path, const char *name)
{
	const struct vrift_state *s = state();
	REFUSE_IF(name && obj_gate(s, V_AT_FDCWD, path, 1));
	if (s && g_real.removexattr)
		return ((int (*)(const char *, const char *))g_real.removexattr)(path, name);
	return (int)sys_ret(RAW(SYS_removexattr, path, name, 0, 0, 0, 0));
}

EXPORT int lremovexattr(const char *path, const char *name)
{
	const struct vrift_state *s = state();
	REFUSE_IF(name && obj_gate(s, V_AT_FDCWD, path, 0));
	if (s && g_real.lremovexattr)
		return ((int (*)(const char *, const char *))g_real.lremovexattr)(path, name);
	return (int)sys_ret(RAW(SYS_lremovexattr, path, name, 0, 0, 0, 0));
}

/* mkstemp & co create with libc's internal open.  A template the libc
 * rejects (EINVAL: no XXXXXX before the suffix) passes. */
static int tmpl_gate(const struct vrift_state *s, const char *t, int suffix)
{
	int n = 0;
	if (!active(s) || !t || suffix < 0)
		return 0;
	while (t[n])
		n++;
	if (n < 6 + suffix)
		return 0;
	for (int i = n - suffix - 6; i < n - suffix; i++)
		if (t[i] != 'X')
			return 0;
	return name_gate(s, V_AT_FDCWD, t, K_CREATE) == R_EROFS;
}
#define MKSTEMP_WRAPPER(name, field, args, call, suffix)                       \
	EXPORT int name args                                                   \
	{                                                                      \
		const struct vrift_state *s = state();                         \
		void *f = REAL(field, #name);                                  \
		REFUSE_IF(tmpl_gate(s, t, suffix));                            \
		return f ? ((int (*)args)f)call : NOSYM();                     \
	}
MKSTEMP_WRAPPER(mkstemp, mkstemp, (char *t), (t), 0)
MKSTEMP_WRAPPER(mkstemp64, mkstemp64, (char *t), (t), 0)
MKSTEMP_WRAPPER(mkostemp, mkostemp, (char *t, int fl), (t, fl), 0)
MKSTEMP_WRAPPER(mkostemp64, mkostemp64, (char *t, int fl), (t, fl), 0)
MKSTEMP_WRAPPER(mkstemps, mkstemps, (char *t, int sl), (t, sl), sl)
MKSTEMP_WRAPPER(mkstemps64, mkstemps64, (char *t, int sl), (t, sl), sl)
MKSTEMP_WRAPPER(mkostemps, mkostemps, (char *t, int sl, int fl), (t, sl, fl), sl)
MKSTEMP_WRAPPER(mkostemps64, mkostemps64, (char *t, int sl, int fl), (t, sl, fl), sl)

EXPORT char *mkdtemp(char *t)
{
	const struct vrift_state *s = state();
	void *f = REAL(mkdtemp, "mkdtemp");
	if (tmpl_gate(s, t, 0)) {
		errno = EROFS;
		return NULL;
	}
	if (!f) {
		errno = ENOSYS;
		return NULL;
	}
	return ((char *(*)(char *))f)(t);
}

/*
 * chroot: the blob describes the domain under the old root.  On success
 * the shim switches itself off for this process: one release store of
 * g_off (active 0), so every later call passes through; a thread inside a
 * hot call keeps reading the old state, which stays mapped.
 */
static long chroot_done(long rc)
{
	if (rc == 0)
		atomic_store_explicit(&g_pub, &g_off, memory_order_release);
	return rc;
}

EXPORT int chroot(const char *path)
{
	const struct vrift_state *s = state();
	if (s && g_real.chroot)
		return (int)chroot_done(((int (*)(const char *))g_real.chroot)(path));
	return (int)chroot_done(sys_ret(RAW(SYS_chroot, path, 0, 0, 0, 0, 0)));
}

/*
 * access/faccessat/euidaccess/eaccess (issue 7 item 6).  F_OK of an
 * absolute path is answered from the blob: present 0, missing
 * ENOENT/ENOTDIR (gcc's include search and Python's import probes).
 * R_OK/X_OK need the caller's credentials: the kernel answers.  W_OK: the
 * kernel answers first (EACCES stays its own), then a domain regular file,
 * directory or symlink is EROFS, as access(2) reports for a read-only
 * mount, so programs that test before writing see the truth.
 */
static int access_pre(const struct vrift_state *s, const char *path, int mode, int flags)
{
	if (mode != 0 || (flags & ~(V_AT_EACCESS | V_AT_SYMLINK_NOFOLLOW)))
		return R_PASS;
	return probe_gate(s, path, !(flags & V_AT_SYMLINK_NOFOLLOW), R_ZERO);
}
static int access_post(const struct vrift_state *s, int rc, int dirfd, const char *path, int mode,
		       int flags)
{
	if (rc == 0 && (mode & V_W_OK) && active(s) &&
	    !(flags & ~(V_AT_EACCESS | V_AT_SYMLINK_NOFOLLOW))) {
		uint32_t t = dom_mode(s, dirfd, path, !(flags & V_AT_SYMLINK_NOFOLLOW)) & V_S_IFMT;
		if (t == V_S_IFREG || t == V_S_IFDIR || t == V_S_IFLNK) {
			errno = EROFS;
			return -1;
		}
	}
	return rc;
}

EXPORT int access(const char *path, int mode)
{
	const struct vrift_state *s = state();
	int g = access_pre(s, path, mode, 0);
	if (g == R_ZERO)
		return 0;
	if (deny(g))
		return -1;
	int rc = s && g_real.access ? ((int (*)(const char *, int))g_real.access)(path, mode)
				    : (int)sys_ret(RAW(SYS_faccessat, V_AT_FDCWD, path, mode, 0, 0, 0));
	return access_post(s, rc, V_AT_FDCWD, path, mode, 0);
}

EXPORT int faccessat(int dirfd, const char *path, int mode, int flags)
{
	const struct vrift_state *s = state();
	int g = access_pre(s, path, mode, flags);
	if (g == R_ZERO)
		return 0;
	if (deny(g))
		return -1;
	int rc = s && g_real.faccessat
			 ? ((int (*)(int, const char *, int, int))g_real.faccessat)(dirfd, path, mode, flags)
			 : (int)sys_ret(RAW(V_SYS_faccessat2, dirfd, path, mode, flags, 0, 0));
	return access_post(s, rc, dirfd, path, mode, flags);
}

#define EUIDACCESS_WRAPPER(name, field)                                        \
	EXPORT int name(const char *path, int mode)                            \
	{                                                                      \
		const struct vrift_state *s = state();                         \
		void *f = REAL(field, #name);                                  \
		int g = access_pre(s, path, mode, V_AT_EACCESS);               \
		if (g == R_ZERO)                                               \
			return 0;                                              \
		if (deny(g))                                                   \
			return -1;                                             \
		int rc = f ? ((int (*)(const char *, int))f)(path, mode) : NOSYM(); \
		return access_post(s, rc, V_AT_FDCWD, path, mode, V_AT_EACCESS); \
	}
EUIDACCESS_WRAPPER(euidaccess, euidaccess)
EUIDACCESS_WRAPPER(eaccess, eaccess)

/*
 * syscall() numbers of the calls above: the same gates, then the kernel.
 * Returns 1 with *rc set when the call ends in the shim (refused, answered
 * from the blob, or run and post-processed), else 0: forward unchanged.
 */
struct v_open_how { uint64_t flags, mode, resolve; };
static __attribute__((noinline)) int sys_gate(const struct vrift_state *s, long n, const long *a, long *rc)
{
	int g = R_PASS;
	switch (n) {
#ifdef SYS_open
	case SYS_open: g = open_gate(s, V_AT_FDCWD, (const char *)a[0], (int)a[1]); break;
	case SYS_creat: g = open_gate(s, V_AT_FDCWD, (const char *)a[0], V_O_CREAT | 1 | V_O_TRUNC); break;
	case SYS_unlink: g = name_gate(s, V_AT_FDCWD, (const char *)a[0], K_REMOVE); break;
	case SYS_rmdir: g = name_gate(s, V_AT_FDCWD, (const char *)a[0], K_REMOVE); break;
	case SYS_rename: g = rename_gate(s, V_AT_FDCWD, (const char *)a[0], V_AT_FDCWD, (const char *)a[1], 0) ? R_EROFS : R_PASS; break;
	case SYS_mkdir: g = name_gate(s, V_AT_FDCWD, (const char *)a[0], K_MKDIR); break;
	case SYS_chmod: g = obj_gate(s, V_AT_FDCWD, (const char *)a[0], 1) ? R_EROFS : R_PASS; break;
	case SYS_chown: g = obj_gate(s, V_AT_FDCWD, (const char *)a[0], 1) ? R_EROFS : R_PASS; break;
	case SYS_lchown: g = obj_gate(s, V_AT_FDCWD, (const char *)a[0], 0) ? R_EROFS : R_PASS; break;
	case SYS_utime: g = obj_gate(s, V_AT_FDCWD, (const char *)a[0], 1) ? R_EROFS : R_PASS; break;
	case SYS_utimes: g = tv_ok((const void *)a[1]) && obj_gate(s, V_AT_FDCWD, (const char *)a[0], 1) ? R_EROFS : R_PASS; break;
	case SYS_futimesat: g = a[1] && tv_ok((const void *)a[2]) && obj_gate(s, (int)a[0], (const char *)a[1], 1) ? R_EROFS : R_PASS; break;
	case SYS_link: g = link_gate(s, V_AT_FDCWD, (const char *)a[0], V_AT_FDCWD, (const char *)a[1], 0) ? R_EROFS : R_PASS; break;
	case SYS_symlink: g = a[0] && name_gate(s, V_AT_FDCWD, (const char *)a[1], K_CREATE) == R_EROFS ? R_EROFS : R_PASS; break;
	case SYS_mknod: g = mknod_gate(s, V_AT_FDCWD, (const char *)a[0], (unsigned)a[1]) ? R_EROFS : R_PASS; break;
	case SYS_access:
		g = access_pre(s, (const char *)a[0], (int)a[1], 0);
		if (g == R_PASS) {
			*rc = access_post(s, (int)sys_ret(raw6(n, a[0], a[1], 0, 0, 0, 0)), V_AT_FDCWD, (const char *)a[0], (int)a[1], 0);
			return 1;
		}
		break;
#endif
	case SYS_openat: g = open_gate(s, (int)a[0], (const char *)a[1], (int)a[2]); break;
	case V_SYS_openat2: {
		const struct v_open_how *h = (const void *)a[2];
		/* only the write gate: RESOLVE_* flags change the walk */
		if (h && (unsigned long)a[3] >= sizeof *h && (h->flags & OPEN_WRITES))
			g = open_gate(s, (int)a[0], (const char *)a[1], (int)h->flags) == R_EROFS ? R_EROFS : R_PASS;
		break;
	}
	case SYS_truncate:
		g = a[1] >= 0 && (dom_mode(s, V_AT_FDCWD, (const char *)a[0], 1) & V_S_IFMT) == V_S_IFREG ? R_EROFS : R_PASS;
		break;
	case SYS_unlinkat: g = !(a[2] & ~V_AT_REMOVEDIR) ? name_gate(s, (int)a[0], (const char *)a[1], K_REMOVE) : R_PASS; break;
#ifdef SYS_renameat
	case SYS_renameat: g = rename_gate(s, (int)a[0], (const char *)a[1], (int)a[2], (const char *)a[3], 0) ? R_EROFS : R_PASS; break;
#endif
	case SYS_renameat2: g = rename_gate(s, (int)a[0], (const char *)a[1], (int)a[2], (const char *)a[3], (unsigned)a[4]) ? R_EROFS : R_PASS; break;
	case SYS_mkdirat: g = name_gate(s, (int)a[0], (const char *)a[1], K_MKDIR); break;
	case SYS_fchmodat:   /* the syscall has no flags: it follows */
		g = obj_gate(s, (int)a[0], (const char *)a[1], 1) ? R_EROFS : R_PASS;
		break;
	case V_SYS_fchmodat2:
		if (!(a[3] & ~(long)V_AT_SYMLINK_NOFOLLOW)) {
			uint32_t m = dom_mode(s, (int)a[0], (const char *)a[1], !(a[3] & V_AT_SYMLINK_NOFOLLOW));
			g = m && (m & V_S_IFMT) != V_S_IFLNK ? R_EROFS : R_PASS;
		}
		break;
	case SYS_fchownat:
		g = !(a[4] & ~(long)(V_AT_SYMLINK_NOFOLLOW | V_AT_EMPTY_PATH)) &&
		    obj_gate(s, (int)a[0], (const char *)a[1], !(a[4] & V_AT_SYMLINK_NOFOLLOW)) ? R_EROFS : R_PASS;
		break;
	case SYS_utimensat:
		g = a[1] && !(a[3] & ~(long)(V_AT_SYMLINK_NOFOLLOW | V_AT_EMPTY_PATH)) && ts_writes((const void *)a[2]) &&
		    obj_gate(s, (int)a[0], (const char *)a[1], !(a[3] & V_AT_SYMLINK_NOFOLLOW)) ? R_EROFS : R_PASS;
		break;
	case SYS_linkat: g = link_gate(s, (int)a[0], (const char *)a[1], (int)a[2], (const char *)a[3], (int)a[4]) ? R_EROFS : R_PASS; break;
	case SYS_symlinkat: g = a[0] && name_gate(s, (int)a[1], (const char *)a[2], K_CREATE) == R_EROFS ? R_EROFS : R_PASS; break;
	case SYS_mknodat: g = mknod_gate(s, (int)a[0], (const char *)a[1], (unsigned)a[2]) ? R_EROFS : R_PASS; break;
	case SYS_setxattr: case SYS_lsetxattr:
		g = a[1] && !(a[4] & ~3L) && obj_gate(s, V_AT_FDCWD, (const char *)a[0], n == SYS_setxattr) ? R_EROFS : R_PASS;
		break;
	case SYS_removexattr: case SYS_lremovexattr:
		g = a[1] && obj_gate(s, V_AT_FDCWD, (const char *)a[0], n == SYS_removexattr) ? R_EROFS : R_PASS;
		break;
	case SYS_chroot:
		*rc = chroot_done(sys_ret(raw6(n, a[0], 0, 0, 0, 0, 0)));
		return 1;
	case SYS_faccessat:   /* no flags argument */
	case V_SYS_faccessat2: {
		int fl = n == SYS_faccessat ? 0 : (int)a[3];
		g = access_pre(s, (const char *)a[1], (int)a[2], fl);
		if (g == R_PASS) {
			*rc = access_post(s, (int)sys_ret(raw6(n, a[0], a[1], a[2], a[3], 0, 0)), (int)a[0], (const char *)a[1], (int)a[2], fl);
			return 1;
		}
		break;
	}
	default:
		return 0;
	}
	if (g == R_ZERO) {
		*rc = 0;
		return 1;
	}
	if (deny(g)) {
		*rc = -1;
		return 1;
	}
	return 0;
}

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
	const struct psfs_entry *k = NULL;
	const char *p;
	switch (n) {
	case SYS_statx:
		p = (const char *)a[1];
		if (statx_ok((int)a[2], (unsigned)a[3]) &&
		    hot(s, p, (int)a[2] & V_AT_SYMLINK_NOFOLLOW, (void *)a[4], 1, &rc, &k))
			return rc;
		break;
	case SYS_fstat:
		break;
	case SYS_newfstatat:
		p = (const char *)a[1];
		if (at_flags_ok((int)a[3], FSTATAT_FLAGS) &&
		    hot(s, p, (int)a[3] & V_AT_SYMLINK_NOFOLLOW, (void *)a[2], 0, &rc, &k))
			return rc;
		break;
#ifdef SYS_stat
	case SYS_stat:
	case SYS_lstat:
		if (hot(s, (const char *)a[0], n == SYS_lstat, (void *)a[1], 0, &rc, &k))
			return rc;
		break;
#endif
	default: {
		/* the mutating numbers and access probes (cold); the rest
		 * is forwarded unchanged */
		long r;
		if (sys_gate(s, n, a, &r))
			return r;
		return sys_ret(raw6(n, a[0], a[1], a[2], a[3], a[4], a[5]));
	}
	}
	/* A stat number the blob did not answer: the kernel does, and a
	 * domain inode gets its blob identity. */
	long r = sys_ret(raw6(n, a[0], a[1], a[2], a[3], a[4], a[5]));
	if (n == SYS_statx)
		return tag_statx(s, (int)r, (void *)a[4], k);
	if (n == SYS_newfstatat)
		return tag_stat(s, (int)r, (void *)a[2], k);
	return tag_stat(s, (int)r, (void *)a[1], k);   /* fstat, stat, lstat */
}

/* ---- constructor (cold, once per process) -------------------------------- */

static void *sym(const char *name)
{
	return dlsym(RTLD_NEXT, name);
}

/* The __xstat family exists only as compat symbols; ask for the version
 * that defines the name first (newer glibc hides it from plain dlsym in
 * some builds).  x86_64 glibc added the *at names in GLIBC_2.4, after its
 * base.  The exact version matters for start-up cost: a failed lookup
 * formats a malloc'd dlerror message, and the first one also sets up
 * malloc (measured 8.5 us of the constructor's 21 us of lookups when
 * __fxstatat was asked for GLIBC_2.2.5); with it no lookup fails on glibc
 * 2.33+, and the constructor allocates nothing there. */
#if defined(__x86_64__)
#define GLIBC_AT "GLIBC_2.4"
#else
#define GLIBC_AT GLIBC_BASE
#endif
static void *xsym(const char *name, const char *version)
{
	void *p = NULL;
#ifdef __GLIBC__
	p = dlvsym(RTLD_NEXT, name, version);
#else
	(void)version;
#endif
	return p ? p : dlsym(RTLD_NEXT, name);
}

static void resolve_real(void)
{
	g_real.stat = (path_fn)sym("stat");
	g_real.stat64 = (path_fn)sym("stat64");
	g_real.lstat = (path_fn)sym("lstat");
	g_real.lstat64 = (path_fn)sym("lstat64");
	g_real.fstat = (fd_fn)sym("fstat");
	g_real.fstat64 = (fd_fn)sym("fstat64");
	g_real.fstatat = (at_fn)sym("fstatat");
	g_real.fstatat64 = (at_fn)sym("fstatat64");
	g_real.statx = (statx_fn)sym("statx");
	g_real.xstat = (xpath_fn)xsym("__xstat", GLIBC_BASE);
	g_real.xstat64 = (xpath_fn)xsym("__xstat64", GLIBC_BASE);
	g_real.lxstat = (xpath_fn)xsym("__lxstat", GLIBC_BASE);
	g_real.lxstat64 = (xpath_fn)xsym("__lxstat64", GLIBC_BASE);
	g_real.fxstat = (xfd_fn)xsym("__fxstat", GLIBC_BASE);
	g_real.fxstat64 = (xfd_fn)xsym("__fxstat64", GLIBC_BASE);
	g_real.fxstatat = (xat_fn)xsym("__fxstatat", GLIBC_AT);
	g_real.fxstatat64 = (xat_fn)xsym("__fxstatat64", GLIBC_AT);
#define R(field, name) g_real.field = sym(name)
	R(open, "open"); R(open64, "open64"); R(openat, "openat"); R(openat64, "openat64");
	R(open_2, "__open_2"); R(open64_2, "__open64_2"); R(openat_2, "__openat_2");
	R(openat64_2, "__openat64_2"); R(creat, "creat"); R(creat64, "creat64");
	R(fopen, "fopen"); R(fopen64, "fopen64"); R(truncate, "truncate"); R(truncate64, "truncate64");
	R(unlink, "unlink"); R(unlinkat, "unlinkat"); R(remove, "remove"); R(rename, "rename");
	R(renameat, "renameat"); R(renameat2, "renameat2"); R(mkdir, "mkdir"); R(mkdirat, "mkdirat");
	R(rmdir, "rmdir"); R(chmod, "chmod"); R(fchmodat, "fchmodat"); R(chown, "chown");
	R(lchown, "lchown"); R(fchownat, "fchownat"); R(utime, "utime"); R(utimes, "utimes");
	R(utimensat, "utimensat"); R(futimesat, "futimesat"); R(lutimes, "lutimes");
	R(link, "link"); R(linkat, "linkat"); R(symlink, "symlink"); R(symlinkat, "symlinkat");
	R(mknod, "mknod"); R(mknodat, "mknodat"); R(mkfifo, "mkfifo"); R(mkfifoat, "mkfifoat");
	R(setxattr, "setxattr"); R(lsetxattr, "lsetxattr"); R(removexattr, "removexattr");
	R(lremovexattr, "lremovexattr");
	R(mkstemp, "mkstemp"); R(mkstemp64, "mkstemp64"); R(mkostemp, "mkostemp");
	R(mkostemp64, "mkostemp64"); R(mkstemps, "mkstemps"); R(mkstemps64, "mkstemps64");
	R(mkostemps, "mkostemps"); R(mkostemps64, "mkostemps64"); R(mkdtemp, "mkdtemp");
	R(chroot, "chroot"); R(access, "access"); R(faccessat, "faccessat");
	R(euidaccess, "euidaccess"); R(eaccess, "eaccess");
#undef R
	g_real.xmknod = xsym("__xmknod", GLIBC_BASE);
	g_real.xmknodat = xsym("__xmknodat", GLIBC_AT);
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

/* 1 when mount point m[0..n) is a root of v or lies below one. */
static int mount_in_domain(const struct psfs_view *v, const char *m, uint32_t n)
{
	for (uint32_t r = 0; r < v->root_count; r++) {
		const uint8_t *p = v->strings + v->roots[r].path_off;
		uint32_t len = v->roots[r].path_len, i;
		if (n < len || (n > len && m[len] != '/' && len != 1))
			continue;
		for (i = 0; i < len && (uint8_t)m[i] == p[i]; i++)
			;
		if (i == len)
			return 1;
	}
	return 0;
}

/*
 * Mounts over part of the domain (--tmpfs /vrift/x, -v dir:/vrift/x, a
 * volume): the blob would answer for paths the mount replaced.  Cold, once
 * per process: /proc/self/mountstats streamed through a 4 KiB stack buffer
 * with raw read(2) (no malloc, no stdio).  Each mount's line is
 * "device <dev> mounted on <dir> with fstype <type>..." (NFS adds indented
 * statistics lines, skipped); <dir> is relative to the process's root, as
 * in mountinfo, with octal escapes such as \040 decoded, and is compared
 * with every root.  mountstats rather than mountinfo or mounts: the same
 * mount points without each superblock's options (overlayfs lists every
 * layer there), measured 19-23 us per read against 34-50 (mounts) and
 * 33-57 (mountinfo) on the 2-core test VM.  1 when a mount point lies on or
 * below a root: the blob is rejected.  A mount point longer than
 * PSFS_PATH_MAX is compared by its prefix.  No /proc (a bare chroot): 0,
 * the other checks stand alone.  Mounts made after the process started are
 * not seen (docs/shim-safety.md section 6).
 */
static int domain_has_mount(const struct psfs_view *v)
{
	static const char head[] = "device ";
	/* 4 KiB: a container's ~20 mounts in one read (each read(2) of a
	 * seq_file walks the mount list again) */
	char buf[4096], mp[PSFS_PATH_MAX];
	uint32_t n = 0, col = 0;      /* mount point length, column in the line */
	int field = 0, esc = 0, val = 0, found = 0;
	long fd = RAW(SYS_openat, V_AT_FDCWD, "/proc/self/mountstats", V_O_RDONLY | V_O_CLOEXEC, 0, 0, 0);
	long r;
	if (fd < 0)
		return 0;
	while (!found && (r = RAW(SYS_read, fd, buf, sizeof buf, 0, 0, 0)) > 0) {
		for (long i = 0; i < r && !found; i++) {
			char c = buf[i];
			if (c == '\n') {
				field = 0, n = 0, esc = 0, col = 0;
				continue;
			}
			if (col < sizeof head - 1 && c != head[col++])
				field = 99;          /* not a "device ..." line */
			if (field > 4)
				continue;
			if (c == ' ') {
				if (field == 4)
					found = mount_in_domain(v, mp, n);
				field++;
				continue;
			}
			if (field != 4)
				continue;
			if (esc) {                   /* "\ooo": three octal digits */
				val = val * 8 + (c - '0');
				if (++esc < 4)
					continue;
				c = (char)val;
				esc = 0;
			} else if (c == '\\') {
				esc = 1, val = 0;
				continue;
			}
			if (n < PSFS_PATH_MAX - 1)
				mp[n++] = c;
		}
	}
	RAW(SYS_close, fd, 0, 0, 0, 0, 0);
	return found;
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
	    ancestors_searchable(&s->view) != 0 || domain_has_mount(&s->view)) {
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
 * AT_SECURE from the auxiliary vector.  Cold: once, in the constructor.
 * getauxval is looked up, not linked: its GLIBC_2.16 version is newer than
 * the x86_64 base (binary compatibility above).  One lookup costs ~0.4 us
 * where opening and reading /proc/self/auxv cost ~12 us in a fresh
 * process.  Without getauxval (glibc < 2.16), or if it has no AT_SECURE
 * entry, the vector is read from /proc/self/auxv with raw syscalls; when
 * that cannot be read (no /proc in a chroot) the answer is "secure":
 * VRIFT_BLOB is then ignored and the default blob path is used, never a
 * path from the environment.
 */
static int is_secure(void)
{
	unsigned long (*ga)(unsigned long) =
		(unsigned long (*)(unsigned long))dlsym(RTLD_NEXT, "getauxval");
	if (ga) {
		int e = errno, absent;
		errno = 0;
		unsigned long v = ga(V_AT_SECURE);
		absent = v == 0 && errno == ENOENT;   /* glibc 2.19+, musl */
		errno = e;
		if (!absent)
			return v != 0;
	}
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
	resolve_real();
	/* VRIFT_BLOB is ignored for set-uid/set-gid/capability programs. */
	const char *file = is_secure() ? NULL : getenv("VRIFT_BLOB");
	if (!file || !file[0])
		file = VRIFT_DEFAULT_BLOB;
	s->active = load_blob(s, file) == 0;
	atomic_store_explicit(&g_pub, s, memory_order_release);
}
