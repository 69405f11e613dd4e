/* SPDX-License-Identifier: Apache-2.0 */
/*
 * mutate.c - every mutating entry point the shim refuses on domain paths
 * (docs/shim-safety.md section 6), called by symbol, each on its own case
 * directory so cases do not see each other's effects.
 *
 *   mutate <root> <outside>   run every case; <root>/c<N> is case N's tree:
 *                             f (file), d/ (with d/g), e/ (empty dir),
 *                             lnk -> f, dangling -> nothere, fifo,
 *                             out -> <outside>/o<N> (a directory outside)
 *   mutate --count            print the number of cases
 *
 * Output, one line per case: "<name> ok" or "<name> err=<ENAME>".  Run
 * under the shim on a domain, plainly on a read-only bind mount of an
 * identical tree (the kernel as oracle), and plainly on a writable copy.
 * Cases named "x:..." cross from the domain to <outside> (a read-only
 * mount says EXDEV there; the domain is no mount and says EROFS).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/xattr.h>
#include <unistd.h>
#include <utime.h>

#ifndef SYS_openat2
#define SYS_openat2 437
#endif
#ifndef SYS_faccessat2
#define SYS_faccessat2 439
#endif
#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE 1
#endif

extern int __open_2(const char *, int);
extern int __open64_2(const char *, int);
extern int __openat_2(int, const char *, int);
extern int __openat64_2(int, const char *, int);

static const char *root, *outside;
static int idx, count_only;
static char pbuf[8][4096];
static int pslot;

/* "<root>/c<idx>/<rel>" (rel "" is the case directory itself) */
static const char *P(const char *rel)
{
	char *b = pbuf[pslot++ % 8];
	snprintf(b, 4096, "%s/c%d%s%s", root, idx, rel[0] ? "/" : "", rel);
	return b;
}
static const char *O(const char *rel)
{
	char *b = pbuf[pslot++ % 8];
	snprintf(b, 4096, "%s/o%d%s%s", outside, idx, rel[0] ? "/" : "", rel);
	return b;
}
/* a directory fd on the case directory (closed after the case) */
static int D(void)
{
	return open(P(""), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
}

static const char *ename(int e)
{
	switch (e) {
#define E(x) case x: return #x;
	E(ENOENT) E(ENOTDIR) E(EROFS) E(EEXIST) E(EISDIR) E(ELOOP) E(EINVAL) E(ENOTEMPTY)
	E(EBUSY) E(EXDEV) E(EPERM) E(EACCES) E(ENODATA) E(EOPNOTSUPP) E(ENXIO) E(EBADF)
	E(ENOSYS) E(EFAULT) E(ENAMETOOLONG)
#undef E
	}
	static char buf[32];
	snprintf(buf, sizeof buf, "E%d", e);
	return buf;
}

/* rc: an int (0 / fd / -1) */
static void report(const char *name, long rc, int err, int isfd)
{
	if (rc >= 0) {
		printf("%s ok\n", name);
		if (isfd && rc > 2)
			close((int)rc);
	} else {
		printf("%s err=%s\n", name, ename(err));
	}
}

#define CASE(name, expr) CASE_(name, expr, 0)
#define FD(name, expr) CASE_(name, expr, 1)
#define CASE_(name, expr, isfd)                                   \
	do {                                                      \
		idx++;                                            \
		if (!count_only) {                                \
			int dfd = D();                            \
			(void)dfd;                                \
			errno = 0;                                \
			long rc = (long)(expr);                   \
			report(name, rc, errno, isfd);            \
			if (dfd >= 0)                             \
				close(dfd);                       \
		}                                                 \
	} while (0)
/* for calls returning a pointer (NULL on failure) */
#define PTR(name, expr)                                           \
	do {                                                      \
		idx++;                                            \
		if (!count_only) {                                \
			errno = 0;                                \
			void *p = (void *)(expr);                 \
			report(name, p ? 0 : -1, errno, 0);       \
			if (p && (name)[0] == 'f')                \
				fclose(p);                        \
		}                                                 \
	} while (0)

/* relative to the case directory as the cwd */
static long in_case(long (*fn)(void))
{
	char old[4096];
	if (!getcwd(old, sizeof old) || chdir(P("")) != 0)
		return -1;
	long rc = fn();
	int e = errno;
	if (chdir(old) != 0)
		abort();
	errno = e;
	return rc;
}
static long rel_open(void) { return open("f", O_WRONLY); }
static long rel_creat(void) { return open("new", O_WRONLY | O_CREAT, 0644); }
static long rel_mkdir(void) { return mkdir("d/new", 0755); }
static long rel_unlink_up(void) { return unlink("d/../f"); }

int main(int argc, char **argv)
{
	if (argc == 2 && strcmp(argv[1], "--count") == 0)
		count_only = 1;
	else if (argc == 3)
		root = argv[1], outside = argv[2];
	else {
		fprintf(stderr, "usage: mutate <root> <outside> | --count\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	struct timespec omit[2] = { { 0, UTIME_OMIT }, { 0, UTIME_OMIT } };
	struct timespec badns[2] = { { 0, 2000000000L }, { 0, 0 } };
	struct timeval tv[2] = { { 1, 0 }, { 2, 0 } };
	struct { unsigned long long flags, mode, resolve; } how = { O_WRONLY, 0, 0 };
	int (*xmknod)(int, const char *, mode_t, dev_t *) =
		(int (*)(int, const char *, mode_t, dev_t *))dlvsym(RTLD_DEFAULT, "__xmknod", "GLIBC_2.2.5");
	dev_t dev0 = 0;
	char t1[4096], t2[4096], t3[4096], t4[4096];

	/* ---- open family: writes ---- */
	FD("open:WRONLY:f", open(P("f"), O_WRONLY));
	FD("open:RDWR:f", open(P("f"), O_RDWR));
	FD("open:RDONLY|TRUNC:f", open(P("f"), O_RDONLY | O_TRUNC));
	FD("open:WRONLY|APPEND:f", open(P("f"), O_WRONLY | O_APPEND));
	FD("open:ACCMODE3:f", open(P("f"), 3));
	FD("open:WRONLY|CREAT:new", open(P("new"), O_WRONLY | O_CREAT, 0644));
	FD("open:RDONLY|CREAT:new", open(P("new"), O_RDONLY | O_CREAT, 0644));
	FD("open:RDONLY|CREAT:f", open(P("f"), O_RDONLY | O_CREAT, 0644));
	FD("open:CREAT|EXCL:f", open(P("f"), O_WRONLY | O_CREAT | O_EXCL, 0644));
	FD("open:CREAT|EXCL:lnk", open(P("lnk"), O_WRONLY | O_CREAT | O_EXCL, 0644));
	FD("open:CREAT|EXCL:new", open(P("new"), O_WRONLY | O_CREAT | O_EXCL, 0644));
	FD("open:WRONLY:d", open(P("d"), O_WRONLY));
	FD("open:RDONLY|TRUNC:d", open(P("d"), O_RDONLY | O_TRUNC));
	FD("open:CREAT:d", open(P("d"), O_RDONLY | O_CREAT, 0644));
	FD("open:WRONLY:lnk", open(P("lnk"), O_WRONLY));
	FD("open:WRONLY|NOFOLLOW:lnk", open(P("lnk"), O_WRONLY | O_NOFOLLOW));
	FD("open:CREAT:dangling", open(P("dangling"), O_WRONLY | O_CREAT, 0644));
	FD("open:CREAT:missing/x", open(P("missing/x"), O_WRONLY | O_CREAT, 0644));
	FD("open:CREAT:f/x", open(P("f/x"), O_WRONLY | O_CREAT, 0644));
	FD("open:CREAT:new/", open(P("new/"), O_WRONLY | O_CREAT, 0644));
	FD("open:CREAT:d/new", open(P("d/new"), O_WRONLY | O_CREAT, 0644));
	FD("open:CREAT:d/../new", open(P("d/../new"), O_WRONLY | O_CREAT, 0644));
	FD("open:TMPFILE:d", open(P("d"), O_WRONLY | O_TMPFILE, 0600));
	FD("open:TMPFILE:f", open(P("f"), O_WRONLY | O_TMPFILE, 0600));
	FD("open:WRONLY|NONBLOCK:fifo", open(P("fifo"), O_WRONLY | O_NONBLOCK));
	FD("open:PATH|CREAT:new", open(P("new"), O_PATH | O_CREAT, 0644));
	FD("open:CREAT:out/new", open(P("out/new"), O_WRONLY | O_CREAT, 0644));
	FD("open64:WRONLY:f", open64(P("f"), O_WRONLY));
	FD("open64:CREAT:new", open64(P("new"), O_WRONLY | O_CREAT, 0644));
	FD("openat:dirfd:WRONLY:f", openat(dfd, "f", O_WRONLY));
	FD("openat:dirfd:CREAT:new", openat(dfd, "new", O_WRONLY | O_CREAT, 0644));
	FD("openat:abs:WRONLY:f", openat(-1, P("f"), O_WRONLY));
	FD("openat:cwd-relative:WRONLY:f", in_case(rel_open));
	FD("openat:cwd-relative:CREAT:new", in_case(rel_creat));
	FD("openat64:dirfd:TRUNC:f", openat64(dfd, "f", O_RDONLY | O_TRUNC));
	FD("__open_2:WRONLY:f", __open_2(P("f"), O_WRONLY));
	FD("__open64_2:RDWR:f", __open64_2(P("f"), O_RDWR));
	FD("__openat_2:WRONLY:f", __openat_2(dfd, "f", O_WRONLY));
	FD("__openat64_2:WRONLY:f", __openat64_2(dfd, "f", O_WRONLY));
	FD("creat:new", creat(P("new"), 0644));
	FD("creat:f", creat(P("f"), 0644));
	FD("creat64:new", creat64(P("new"), 0644));
	PTR("fopen:w:f", fopen(P("f"), "w"));
	PTR("fopen:a:new", fopen(P("new"), "a"));
	PTR("fopen:r+:f", fopen(P("f"), "r+"));
	PTR("fopen:wx:f", fopen(P("f"), "wx"));
	PTR("fopen64:w:new", fopen64(P("new"), "w"));
	/* ---- reads still work ---- */
	FD("read:open:RDONLY:f", open(P("f"), O_RDONLY));
	FD("read:open:RDONLY:d", open(P("d"), O_RDONLY | O_DIRECTORY));
	FD("read:open:RDONLY:missing", open(P("missing"), O_RDONLY));
	FD("read:openat:RDONLY:f", openat(dfd, "f", O_RDONLY));
	PTR("fopen:r:f", fopen(P("f"), "r"));
	CASE("read:access:R_OK:f", access(P("f"), R_OK));
	CASE("read:stat:f", ({ struct stat st; stat(P("f"), &st); }));
	/* ---- truncate ---- */
	CASE("truncate:f", truncate(P("f"), 0));
	CASE("truncate:lnk", truncate(P("lnk"), 3));
	CASE("truncate64:f", truncate64(P("f"), 1));
	CASE("truncate:d", truncate(P("d"), 0));
	CASE("truncate:negative:f", truncate(P("f"), -1));
	CASE("truncate:missing", truncate(P("missing"), 0));
	/* ---- names removed ---- */
	CASE("unlink:f", unlink(P("f")));
	CASE("unlink:lnk", unlink(P("lnk")));
	CASE("unlink:missing", unlink(P("missing")));
	CASE("unlink:d", unlink(P("d")));
	CASE("unlink:missing/x", unlink(P("missing/x")));
	CASE("unlink:d/..", unlink(P("d/..")));
	CASE("unlink:cwd-relative:d/../f", in_case(rel_unlink_up));
	CASE("unlinkat:dirfd:f", unlinkat(dfd, "f", 0));
	CASE("unlinkat:REMOVEDIR:e", unlinkat(dfd, "e", AT_REMOVEDIR));
	CASE("unlinkat:badflag:f", unlinkat(dfd, "f", 0x40000000));
	CASE("remove:f", remove(P("f")));
	CASE("remove:e", remove(P("e")));
	CASE("rmdir:e", rmdir(P("e")));
	CASE("rmdir:d", rmdir(P("d")));
	CASE("rmdir:e/.", rmdir(P("e/.")));
	CASE("rmdir:case-dir", rmdir(P("")));
	CASE("rename:f:f2", rename(P("f"), P("f2")));
	CASE("rename:missing:f2", rename(P("missing"), P("f2")));
	CASE("rename:e:d", rename(P("e"), P("d")));
	CASE("renameat:dirfd:f:d/f", renameat(dfd, "f", dfd, "d/f"));
	CASE("renameat2:NOREPLACE:f:f3", renameat2(dfd, "f", dfd, "f3", RENAME_NOREPLACE));
	CASE("renameat2:badflags:f:f3", renameat2(dfd, "f", dfd, "f3", 3));
	CASE("x:rename:f:outside", rename(P("f"), O("moved")));
	CASE("x:rename:outside:new", rename(O("file"), P("new")));
	/* ---- names created ---- */
	CASE("mkdir:new", mkdir(P("new"), 0755));
	CASE("mkdir:new/", mkdir(P("new/"), 0755));
	CASE("mkdir:d", mkdir(P("d"), 0755));
	CASE("mkdir:lnk", mkdir(P("lnk"), 0755));
	CASE("mkdir:missing/x", mkdir(P("missing/x"), 0755));
	CASE("mkdir:out/new", mkdir(P("out/new"), 0755));
	CASE("mkdir:cwd-relative:d/new", in_case(rel_mkdir));
	CASE("mkdirat:dirfd:new", mkdirat(dfd, "new", 0755));
	CASE("link:f:new", link(P("f"), P("new")));
	CASE("link:f:lnk", link(P("f"), P("lnk")));
	CASE("link:missing:new", link(P("missing"), P("new")));
	CASE("linkat:dirfd:f:d/new", linkat(dfd, "f", dfd, "d/new", 0));
	CASE("linkat:FOLLOW:lnk:new", linkat(dfd, "lnk", dfd, "new", AT_SYMLINK_FOLLOW));
	CASE("x:link:f:outside", link(P("f"), O("hard")));
	CASE("symlink:new", symlink("target", P("new")));
	CASE("symlink:f", symlink("target", P("f")));
	CASE("symlink:new/", symlink("target", P("new/")));
	CASE("symlinkat:dirfd:new", symlinkat("target", dfd, "new"));
	CASE("mknod:FIFO:new", mknod(P("new"), S_IFIFO | 0644, 0));
	CASE("mknod:REG:new", mknod(P("new"), S_IFREG | 0644, 0));
	CASE("mknod:DIR:new", mknod(P("new"), S_IFDIR | 0755, 0));
	CASE("mknod:FIFO:f", mknod(P("f"), S_IFIFO | 0644, 0));
	CASE("mknodat:dirfd:FIFO:new", mknodat(dfd, "new", S_IFIFO | 0644, 0));
	CASE("__xmknod:FIFO:new", xmknod ? xmknod(1, P("new"), S_IFIFO | 0644, &dev0) : (errno = ENOSYS, -1));
	CASE("mkfifo:new", mkfifo(P("new"), 0644));
	CASE("mkfifoat:dirfd:new", mkfifoat(dfd, "new", 0644));
	CASE("mkstemp:tXXXXXX", mkstemp(strcpy(t1, P("tXXXXXX"))));
	CASE("mkostemp:tXXXXXX", mkostemp(strcpy(t2, P("tXXXXXX")), O_CLOEXEC));
	CASE("mkstemps:tXXXXXX.c", mkstemps(strcpy(t3, P("tXXXXXX.c")), 2));
	CASE("mkstemp:bad-template", mkstemp(strcpy(t4, P("bad"))));
	PTR("mkdtemp:dXXXXXX", mkdtemp(strcpy(t1, P("dXXXXXX"))));
	/* ---- metadata of an existing entry ---- */
	CASE("chmod:f", chmod(P("f"), 0600));
	CASE("chmod:lnk", chmod(P("lnk"), 0600));
	CASE("chmod:d", chmod(P("d"), 0700));
	CASE("chmod:missing", chmod(P("missing"), 0600));
	CASE("chmod:out", chmod(P("out"), 0755));
	CASE("fchmodat:f", fchmodat(dfd, "f", 0600, 0));
	CASE("fchmodat:NOFOLLOW:f", fchmodat(dfd, "f", 0600, AT_SYMLINK_NOFOLLOW));
	CASE("fchmodat:NOFOLLOW:lnk", fchmodat(dfd, "lnk", 0600, AT_SYMLINK_NOFOLLOW));
	CASE("chown:f", chown(P("f"), 0, 0));
	CASE("chown:f:-1:-1", chown(P("f"), (uid_t)-1, (gid_t)-1));
	CASE("lchown:lnk", lchown(P("lnk"), 0, 0));
	CASE("fchownat:dirfd:f", fchownat(dfd, "f", 0, 0, 0));
	CASE("fchownat:NOFOLLOW:lnk", fchownat(dfd, "lnk", 0, 0, AT_SYMLINK_NOFOLLOW));
	CASE("utime:f", utime(P("f"), NULL));
	CASE("utimes:f", utimes(P("f"), tv));
	CASE("utimensat:f", utimensat(AT_FDCWD, P("f"), NULL, 0));
	CASE("utimensat:NOFOLLOW:lnk", utimensat(dfd, "lnk", NULL, AT_SYMLINK_NOFOLLOW));
	CASE("utimensat:OMIT:f", utimensat(AT_FDCWD, P("f"), omit, 0));
	CASE("utimensat:bad-nsec:f", utimensat(AT_FDCWD, P("f"), badns, 0));
	CASE("utimensat:missing", utimensat(AT_FDCWD, P("missing"), NULL, 0));
	CASE("futimesat:dirfd:f", futimesat(dfd, "f", tv));
	CASE("lutimes:lnk", lutimes(P("lnk"), tv));
	CASE("setxattr:f", setxattr(P("f"), "user.vrift", "1", 1, 0));
	CASE("setxattr:badflags:f", setxattr(P("f"), "user.vrift", "1", 1, 8));
	CASE("lsetxattr:d", lsetxattr(P("d"), "user.vrift", "1", 1, 0));
	CASE("removexattr:f", removexattr(P("f"), "user.none"));
	CASE("lremovexattr:d", lremovexattr(P("d"), "user.none"));
	/* ---- access: W_OK on a domain entry ---- */
	CASE("access:W_OK:f", access(P("f"), W_OK));
	CASE("access:W_OK:d", access(P("d"), W_OK));
	CASE("access:W_OK:fifo", access(P("fifo"), W_OK));
	CASE("access:W_OK:missing", access(P("missing"), W_OK));
	CASE("access:F_OK:f", access(P("f"), F_OK));
	CASE("access:F_OK:missing", access(P("missing"), F_OK));
	CASE("faccessat:W_OK:f", faccessat(dfd, "f", W_OK, 0));
	CASE("faccessat:W_OK|EACCESS:f", faccessat(AT_FDCWD, P("f"), W_OK, AT_EACCESS));
	CASE("euidaccess:W_OK:f", euidaccess(P("f"), W_OK));
	CASE("eaccess:RW:f", eaccess(P("f"), R_OK | W_OK));
	/* ---- the same through syscall() ---- */
	FD("syscall(openat):WRONLY:f", syscall(SYS_openat, AT_FDCWD, P("f"), O_WRONLY, 0));
	FD("syscall(openat):CREAT:new", syscall(SYS_openat, dfd, "new", O_WRONLY | O_CREAT, 0644));
	FD("syscall(openat2):WRONLY:f", syscall(SYS_openat2, AT_FDCWD, P("f"), &how, sizeof how));
	CASE("syscall(truncate):f", syscall(SYS_truncate, P("f"), 0L));
	CASE("syscall(unlinkat):f", syscall(SYS_unlinkat, AT_FDCWD, P("f"), 0));
	CASE("syscall(unlinkat):REMOVEDIR:e", syscall(SYS_unlinkat, dfd, "e", AT_REMOVEDIR));
	CASE("syscall(renameat2):f:f2", syscall(SYS_renameat2, dfd, "f", dfd, "f2", 0));
	CASE("syscall(mkdirat):new", syscall(SYS_mkdirat, dfd, "new", 0755));
	CASE("syscall(fchmodat):f", syscall(SYS_fchmodat, dfd, "f", 0600));
	CASE("syscall(fchownat):f", syscall(SYS_fchownat, dfd, "f", 0, 0, 0));
	CASE("syscall(utimensat):f", syscall(SYS_utimensat, dfd, "f", NULL, 0));
	CASE("syscall(linkat):f:new", syscall(SYS_linkat, dfd, "f", dfd, "new", 0));
	CASE("syscall(symlinkat):new", syscall(SYS_symlinkat, "target", dfd, "new"));
	CASE("syscall(mknodat):FIFO:new", syscall(SYS_mknodat, dfd, "new", S_IFIFO | 0644, 0));
	CASE("syscall(setxattr):f", syscall(SYS_setxattr, P("f"), "user.vrift", "1", 1, 0));
	CASE("syscall(lsetxattr):d", syscall(SYS_lsetxattr, P("d"), "user.vrift", "1", 1, 0));
	CASE("syscall(removexattr):f", syscall(SYS_removexattr, P("f"), "user.none"));
	CASE("syscall(lremovexattr):d", syscall(SYS_lremovexattr, P("d"), "user.none"));
	CASE("syscall(faccessat):W_OK:f", syscall(SYS_faccessat, AT_FDCWD, P("f"), W_OK));
	CASE("syscall(faccessat2):W_OK:f", syscall(SYS_faccessat2, AT_FDCWD, P("f"), W_OK, 0));
#ifdef SYS_open
	FD("syscall(open):WRONLY:f", syscall(SYS_open, P("f"), O_WRONLY, 0));
	FD("syscall(creat):new", syscall(SYS_creat, P("new"), 0644));
	CASE("syscall(unlink):f", syscall(SYS_unlink, P("f")));
	CASE("syscall(rmdir):e", syscall(SYS_rmdir, P("e")));
	CASE("syscall(rename):f:f2", syscall(SYS_rename, P("f"), P("f2")));
	CASE("syscall(renameat):f:f2", syscall(SYS_renameat, dfd, "f", dfd, "f2"));
	CASE("syscall(mkdir):new", syscall(SYS_mkdir, P("new"), 0755));
	CASE("syscall(chmod):f", syscall(SYS_chmod, P("f"), 0600));
	CASE("syscall(chown):f", syscall(SYS_chown, P("f"), 0, 0));
	CASE("syscall(lchown):lnk", syscall(SYS_lchown, P("lnk"), 0, 0));
	CASE("syscall(utime):f", syscall(SYS_utime, P("f"), NULL));
	CASE("syscall(utimes):f", syscall(SYS_utimes, P("f"), tv));
	CASE("syscall(futimesat):f", syscall(SYS_futimesat, dfd, "f", tv));
	CASE("syscall(link):f:new", syscall(SYS_link, P("f"), P("new")));
	CASE("syscall(symlink):new", syscall(SYS_symlink, "target", P("new")));
	CASE("syscall(mknod):FIFO:new", syscall(SYS_mknod, P("new"), S_IFIFO | 0644, 0));
	CASE("syscall(access):W_OK:f", syscall(SYS_access, P("f"), W_OK));
#endif
	if (count_only)
		printf("%d\n", idx);
	return 0;
}
