/* SPDX-License-Identifier: Apache-2.0 */
/*
 * mkblob.c - vrift-mkblob: lay out a /vrift tree inside an image build and
 * write its PSFS blob, without Node.js.  Built static with musl-gcc, so the
 * devcontainer feature can run it in any x86_64 Linux image whatever its
 * libc; being static it is also never answered by the LD_PRELOAD shim
 * (scans and --verify always see the kernel).
 *
 *   vrift-mkblob [--root /vrift] [--blob /usr/lib/vrift/psfs.blob]
 *                [--identity host|synthetic] [--dev-runtime] [--check-root-mtime]
 *                [--truncate-mtime-ns] [--copy SRC:DEST]...
 *   vrift-mkblob --verify [--root DIR] [--blob FILE] [--identity host|synthetic]
 *
 * The blob is byte-identical to src/blob/writer.ts encodeBlob for the same
 * entries: the walk records what src/blob/hostTree.ts scanHostTree records
 * (lstat after readdir/readlink, raw-byte names, paths >= PATH_MAX left
 * out), --identity synthetic is imageModeTree (src/cli/commands/layer.ts):
 * st_ino = 0x5652000000000000 + n per inode in path-byte order (hardlinks
 * share it), st_dev 0, atime = ctime = mtime.  Layout: shim/psfs_format.h.
 *
 * Exit status: 0 ok, 1 error (one line on stderr), 2 usage, 3 --verify
 * found a mismatch (one line per difference on stdout).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "psfs_core.h"

#define SYNTHETIC_INO_BASE 0x5652000000000000ull
#define EXIT_FAIL 1
#define EXIT_USAGE 2
#define EXIT_MISMATCH 3

/* ---- errors and checked allocation -------------------------------------- */

static const char *prog = "vrift-mkblob";

static void die(int code, const char *fmt, ...) __attribute__((noreturn, format(printf, 2, 3)));
static void die(int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "%s: ", prog);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(code);
}

static void *xrealloc(void *p, size_t n, size_t size)
{
	if (size && n > SIZE_MAX / size)
		die(EXIT_FAIL, "allocating memory: %zu x %zu bytes overflows", n, size);
	void *q = realloc(p, (n && size) ? n * size : 1);
	if (!q)
		die(EXIT_FAIL, "allocating memory: out of memory (%zu bytes)", n * size);
	return q;
}

static char *xmemdup(const void *p, size_t n)
{
	char *q = xrealloc(NULL, n + 1, 1);
	memcpy(q, p, n);
	q[n] = 0;
	return q;
}

/* Path for messages: bytes as they are (a terminal shows what ls shows). */
static const char *errname(int e)
{
	switch (e) {
	case ENOENT: return "ENOENT (no such file or directory)";
	case EACCES: return "EACCES (permission denied)";
	case EPERM: return "EPERM (operation not permitted)";
	case ENOTDIR: return "ENOTDIR (not a directory)";
	case EEXIST: return "EEXIST (file exists)";
	case ELOOP: return "ELOOP (too many levels of symbolic links)";
	case ENAMETOOLONG: return "ENAMETOOLONG (file name too long)";
	case ENOSPC: return "ENOSPC (no space left on device)";
	case EROFS: return "EROFS (read-only file system)";
	case EXDEV: return "EXDEV (cross-device link)";
	default: return strerror(e);
	}
}

/* ---- entries ------------------------------------------------------------ */

struct ent {
	char *path;           /* NUL-terminated for syscalls; len excludes it */
	uint32_t len;
	char *target;         /* symlink target bytes, or NULL */
	uint32_t target_len;
	struct stat st;
	uint64_t ino_out, dev_out;
	int64_t atime_sec, ctime_sec;
	uint32_t atime_nsec, ctime_nsec;
	int reachable;
	int uncertain;        /* PSFS_E_UNCERTAIN: st_size/st_blocks may change */
};

struct ents {
	struct ent *v;
	size_t n, cap;
	unsigned long skipped_too_long;
};

static struct ent *push(struct ents *e)
{
	if (e->n == e->cap) {
		e->cap = e->cap ? e->cap * 2 : 1024;
		e->v = xrealloc(e->v, e->cap, sizeof *e->v);
	}
	memset(&e->v[e->n], 0, sizeof e->v[0]);
	return &e->v[e->n++];
}

/* Buffer.compare order: bytes unsigned, then shorter first. */
static int bytes_cmp(const char *a, size_t an, const char *b, size_t bn)
{
	int c = memcmp(a, b, an < bn ? an : bn);
	if (c)
		return c;
	return an < bn ? -1 : an > bn;
}

static int ent_cmp(const void *x, const void *y)
{
	const struct ent *a = x, *b = y;
	return bytes_cmp(a->path, a->len, b->path, b->len);
}

struct name {
	char *s;
	size_t n;
};

static int name_cmp(const void *x, const void *y)
{
	const struct name *a = x, *b = y;
	return bytes_cmp(a->s, a->n, b->s, b->n);
}

/* Names of directory `d` (no "." / ".."), sorted by bytes.  *count set. */
static struct name *read_names(const char *d, size_t *count)
{
	DIR *dir = opendir(d);
	if (!dir) {
		int e = errno;
		die(EXIT_FAIL, "reading directory \"%s\": %s; %s", d, errname(e),
		    e == EACCES || e == EPERM ? "run as a user who can read it (root during the image build)"
					      : "the tree changed while it was scanned; scan an immutable tree");
	}
	struct name *v = NULL;
	size_t n = 0, cap = 0;
	struct dirent *de;
	errno = 0;
	while ((de = readdir(dir))) {
		const char *s = de->d_name;
		if (s[0] == '.' && (!s[1] || (s[1] == '.' && !s[2])))
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			v = xrealloc(v, cap, sizeof *v);
		}
		v[n].n = strlen(s);
		v[n].s = xmemdup(s, v[n].n);
		n++;
		errno = 0;
	}
	if (errno)
		die(EXIT_FAIL, "reading directory \"%s\": %s; check the directory and retry", d, errname(errno));
	closedir(dir);
	if (n)
		qsort(v, n, sizeof *v, name_cmp);
	*count = n;
	return v;
}

static void lstat_or_die(const char *p, struct stat *st, mode_t type)
{
	if (lstat(p, st) != 0)
		die(EXIT_FAIL, "reading \"%s\": %s; the tree changed while it was scanned or is not readable, scan an immutable tree as its owner",
		    p, errname(errno));
	if (type && (st->st_mode & S_IFMT) != type)
		die(EXIT_FAIL, "reading \"%s\": file type changed; the tree changed while it was scanned, scan an immutable tree", p);
}

/*
 * scan - every path under `root` (an absolute, normalized path; root
 * included), as scanHostTree records it: a directory is lstat'ed after
 * readdir and a symlink after readlink, so the atime the scan itself causes
 * (relatime) is what gets recorded.  Iterative (explicit stack).
 */
static void scan(const char *root, struct ents *out)
{
	struct ent *r = push(out);
	r->len = (uint32_t)strlen(root);
	r->path = xmemdup(root, r->len);
	lstat_or_die(root, &r->st, 0);
	if (!S_ISDIR(r->st.st_mode))
		die(EXIT_FAIL, "scanning \"%s\": not a directory; pass the directory that is the domain root", root);

	size_t *stack = NULL, sn = 0, scap = 0;
	stack = xrealloc(stack, scap = 64, sizeof *stack);
	stack[sn++] = out->n - 1;
	while (sn) {
		size_t di = stack[--sn];
		size_t count;
		struct name *names = read_names(out->v[di].path, &count);
		lstat_or_die(out->v[di].path, &out->v[di].st, S_IFDIR);
		size_t first_child = out->n;
		for (size_t i = 0; i < count; i++) {
			/* out->v may move in push(): copy the parent path first */
			size_t plen = out->v[di].len;
			size_t len = plen + 1 + names[i].n;
			if (len >= PSFS_PATH_MAX) {
				out->skipped_too_long++;
				free(names[i].s);
				continue;
			}
			char *p = xrealloc(NULL, len + 1, 1);
			memcpy(p, out->v[di].path, plen);
			p[plen] = '/';
			memcpy(p + plen + 1, names[i].s, names[i].n);
			p[len] = 0;
			free(names[i].s);
			struct ent *e = push(out);
			e->path = p;
			e->len = (uint32_t)len;
			lstat_or_die(p, &e->st, 0);
			if (S_ISLNK(e->st.st_mode)) {
				size_t cap = 256;
				for (;;) {
					e->target = xrealloc(e->target, cap, 1);
					ssize_t k = readlink(p, e->target, cap);
					if (k < 0)
						die(EXIT_FAIL, "reading symlink \"%s\": %s; the tree changed while it was scanned", p, errname(errno));
					if ((size_t)k < cap) {
						e->target_len = (uint32_t)k;
						break;
					}
					cap *= 2;
				}
				lstat_or_die(p, &e->st, S_IFLNK);
			}
		}
		free(names);
		/* Push subdirectories in reverse so they are visited in name order. */
		for (size_t i = out->n; i-- > first_child;) {
			if (!S_ISDIR(out->v[i].st.st_mode))
				continue;
			if (sn == scap)
				stack = xrealloc(stack, scap *= 2, sizeof *stack);
			stack[sn++] = i;
		}
	}
	free(stack);
	qsort(out->v, out->n, sizeof *out->v, ent_cmp);
}

/* ---- identity ----------------------------------------------------------- */

struct inokey {
	dev_t dev;
	ino_t ino;
	size_t idx;
};

static int inokey_cmp(const void *x, const void *y)
{
	const struct inokey *a = x, *b = y;
	if (a->dev != b->dev)
		return a->dev < b->dev ? -1 : 1;
	if (a->ino != b->ino)
		return a->ino < b->ino ? -1 : 1;
	return a->idx < b->idx ? -1 : a->idx > b->idx;
}

/* Bytes of one directory block; src/cli/commands/layer.ts imageModeTree. */
#define DIR_ONE_BLOCK 4096

/* Fill the recorded identity fields: the kernel's (host) or the image
 * policy (synthetic, which also marks directories past one block
 * PSFS_E_UNCERTAIN).  Entries must be sorted by path. */
static void set_identity(struct ents *es, int synthetic)
{
	size_t n = es->n;
	if (!synthetic) {
		for (size_t i = 0; i < n; i++) {
			struct ent *e = &es->v[i];
			e->ino_out = e->st.st_ino;
			e->dev_out = e->st.st_dev;
			e->atime_sec = e->st.st_atim.tv_sec;
			e->atime_nsec = (uint32_t)e->st.st_atim.tv_nsec;
			e->ctime_sec = e->st.st_ctim.tv_sec;
			e->ctime_nsec = (uint32_t)e->st.st_ctim.tv_nsec;
		}
		return;
	}
	/* leader[i]: the first path (byte order) with the same (dev, ino). */
	struct inokey *k = xrealloc(NULL, n, sizeof *k);
	size_t *leader = xrealloc(NULL, n, sizeof *leader);
	for (size_t i = 0; i < n; i++)
		k[i] = (struct inokey){ es->v[i].st.st_dev, es->v[i].st.st_ino, i };
	qsort(k, n, sizeof *k, inokey_cmp);
	for (size_t i = 0; i < n; i++)
		leader[k[i].idx] = (i && k[i - 1].dev == k[i].dev && k[i - 1].ino == k[i].ino)
					   ? leader[k[i - 1].idx] : k[i].idx;
	uint64_t next = 0;
	for (size_t i = 0; i < n; i++) {
		struct ent *e = &es->v[i];
		e->ino_out = leader[i] == i ? SYNTHETIC_INO_BASE + ++next : es->v[leader[i]].ino_out;
		e->dev_out = 0;
		e->atime_sec = e->ctime_sec = e->st.st_mtim.tv_sec;
		e->atime_nsec = e->ctime_nsec = (uint32_t)e->st.st_mtim.tv_nsec;
		/* A tree recorded for an image travels through a layer commit
		 * that recreates every directory.  Past one block, how many
		 * blocks a directory takes depends on the filesystem (ext4
		 * htree splits, index blocks: 496 -> 504 st_blocks measured for
		 * 4000 entries): record it, but let the shim ask the kernel. */
		e->uncertain = S_ISDIR(e->st.st_mode) &&
			       (e->st.st_size > DIR_ONE_BLOCK || e->st.st_blocks > DIR_ONE_BLOCK / 512);
	}
	free(k);
	free(leader);
}

/* ---- encoding (src/blob/writer.ts encodeBlob) ---------------------------- */

static struct ent *find(struct ents *es, const char *p, size_t n)
{
	size_t lo = 0, hi = es->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = bytes_cmp(es->v[mid].path, es->v[mid].len, p, n);
		if (!c)
			return &es->v[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

static uint64_t align8(uint64_t n)
{
	return (n + PSFS_ALIGN - 1) & ~(uint64_t)(PSFS_ALIGN - 1);
}

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* Encode the blob for one root (entries sorted, root first).  *size set. */
static uint8_t *encode(struct ents *es, uint32_t flags, uint64_t *size)
{
	size_t n = es->n;
	const struct ent *root = &es->v[0];
	if (n > PSFS_MAX_ENTRIES || n > UINT32_MAX / 2)
		die(EXIT_FAIL, "encoding PSFS blob: too many entries (%zu)", n);
	/* Reachability, parent first (a parent sorts before its children). */
	for (size_t i = 0; i < n; i++) {
		struct ent *e = &es->v[i];
		if (e->st.st_atim.tv_nsec < 0 || e->st.st_atim.tv_nsec > 999999999 ||
		    e->st.st_mtim.tv_nsec < 0 || e->st.st_mtim.tv_nsec > 999999999 ||
		    e->st.st_ctim.tv_nsec < 0 || e->st.st_ctim.tv_nsec > 999999999)
			die(EXIT_FAIL, "encoding PSFS blob: \"%s\": nanoseconds outside 0..999999999", e->path);
		if (i == 0) {
			e->reachable = 1;
			continue;
		}
		const char *slash = memrchr(e->path, '/', e->len);
		struct ent *p = slash ? find(es, e->path, (size_t)(slash - e->path)) : NULL;
		if (!p || !S_ISDIR(p->st.st_mode))
			die(EXIT_FAIL, "encoding PSFS blob: \"%s\": parent is missing or not a directory (the domain must be complete)", e->path);
		e->reachable = p->reachable && (p->st.st_mode & 0111) == 0111;
	}

	/* String table: every path, then every target. */
	uint64_t strings_size = 0;
	for (size_t i = 0; i < n; i++)
		strings_size += es->v[i].len + (uint64_t)es->v[i].target_len;
	if (strings_size > UINT32_MAX)
		die(EXIT_FAIL, "encoding PSFS blob: string table exceeds 4 GiB");

	uint32_t bucket_count = 1;
	while ((uint64_t)bucket_count < (uint64_t)n * 2)
		bucket_count *= 2;
	uint32_t mask = bucket_count - 1;

	/* Seed search exactly as encodeBlob: seeds 0..7, keep the first with
	 * max probe <= 8, else the shortest (first on ties). */
	uint32_t *table = xrealloc(NULL, (size_t)bucket_count * 2, sizeof *table);
	uint32_t *best = xrealloc(NULL, (size_t)bucket_count * 2, sizeof *best);
	uint32_t best_seed = 0, best_probe = 0;
	for (uint32_t seed = 0; seed < 8; seed++) {
		memset(table, 0, (size_t)bucket_count * 2 * sizeof *table);
		uint32_t max_probe = 1;
		for (size_t i = 0; i < n; i++) {
			uint32_t h = psfs_hash(seed, (const uint8_t *)es->v[i].path, es->v[i].len);
			uint32_t slot = h & mask, probe = 1;
			while (table[slot * 2 + 1]) {
				slot = (slot + 1) & mask;
				probe++;
			}
			table[slot * 2] = h;
			table[slot * 2 + 1] = (uint32_t)i + 1;
			if (probe > max_probe)
				max_probe = probe;
		}
		if (seed == 0 || max_probe < best_probe) {
			uint32_t *t = best;
			best = table;
			table = t;
			best_seed = seed;
			best_probe = max_probe;
		}
		if (max_probe <= 8)
			break;
	}
	free(table);

	uint64_t roots_off = PSFS_HEADER_SIZE;
	uint64_t buckets_off = align8(roots_off + PSFS_ROOT_SIZE);
	uint64_t entries_off = align8(buckets_off + (uint64_t)bucket_count * PSFS_BUCKET_SIZE);
	uint64_t strings_off = align8(entries_off + (uint64_t)n * PSFS_ENTRY_SIZE);
	uint64_t file_size = align8(strings_off + strings_size);
	if (file_size > SIZE_MAX)
		die(EXIT_FAIL, "encoding PSFS blob: %" PRIu64 " bytes do not fit in memory", file_size);
	uint8_t *out = calloc(1, (size_t)file_size);
	if (!out)
		die(EXIT_FAIL, "encoding PSFS blob: out of memory (%" PRIu64 " bytes)", file_size);

	uint64_t soff = 0;
	uint32_t *path_off = xrealloc(NULL, n, sizeof *path_off);
	for (size_t i = 0; i < n; i++) {
		path_off[i] = (uint32_t)soff;
		memcpy(out + strings_off + soff, es->v[i].path, es->v[i].len);
		soff += es->v[i].len;
	}
	put32(out + roots_off + offsetof(struct psfs_root, path_off), path_off[0]);
	put32(out + roots_off + offsetof(struct psfs_root, path_len), root->len);
	for (uint32_t b = 0; b < bucket_count; b++) {
		put32(out + buckets_off + (uint64_t)b * PSFS_BUCKET_SIZE + offsetof(struct psfs_bucket, hash), best[b * 2]);
		put32(out + buckets_off + (uint64_t)b * PSFS_BUCKET_SIZE + offsetof(struct psfs_bucket, entry), best[b * 2 + 1]);
	}
	free(best);
	for (size_t i = 0; i < n; i++) {
		const struct ent *e = &es->v[i];
		uint8_t *o = out + entries_off + (uint64_t)i * PSFS_ENTRY_SIZE;
		uint32_t toff = 0;
		if (e->target) {
			toff = (uint32_t)soff;
			memcpy(out + strings_off + soff, e->target, e->target_len);
			soff += e->target_len;
		}
#define F32(f, v) put32(o + offsetof(struct psfs_entry, f), (uint32_t)(v))
#define F64(f, v) put64(o + offsetof(struct psfs_entry, f), (uint64_t)(v))
		F32(path_off, path_off[i]);
		F32(path_len, e->len);
		F32(target_off, toff);
		F32(target_len, e->target_len);
		F32(mode, e->st.st_mode);
		F32(uid, e->st.st_uid);
		F32(gid, e->st.st_gid);
		uint64_t nlink = e->st.st_nlink;   /* nlink_t is 64-bit on x86_64, 32 on arm64 */
		if (nlink > UINT32_MAX)
			die(EXIT_FAIL, "encoding PSFS blob: \"%s\": st_nlink %" PRIu64 " is outside 0..2^32-1", e->path, (uint64_t)nlink);
		F32(nlink, e->st.st_nlink);
		F64(size, e->st.st_size);
		F64(blocks, e->st.st_blocks);
		F64(ino, e->ino_out);
		F64(dev, e->dev_out);
		F64(rdev, e->st.st_rdev);
		F64(atime_sec, e->atime_sec);
		F64(mtime_sec, e->st.st_mtim.tv_sec);
		F64(ctime_sec, e->ctime_sec);
		F32(atime_nsec, e->atime_nsec);
		F32(mtime_nsec, e->st.st_mtim.tv_nsec);
		F32(ctime_nsec, e->ctime_nsec);
		F32(blksize, e->st.st_blksize);
		F32(flags, (e->reachable ? PSFS_E_REACHABLE : 0) | (e->uncertain ? PSFS_E_UNCERTAIN : 0));
#undef F32
#undef F64
	}
	free(path_off);

	uint8_t *h = out;
	memcpy(h, PSFS_MAGIC, PSFS_MAGIC_LEN);
#define H32(f, v) put32(h + offsetof(struct psfs_header, f), (uint32_t)(v))
#define H64(f, v) put64(h + offsetof(struct psfs_header, f), (uint64_t)(v))
	H32(version, PSFS_VERSION);
	H32(header_size, PSFS_HEADER_SIZE);
	H32(flags, flags);
	H64(file_size, file_size);
	H32(entry_count, n);
	H32(entry_size, PSFS_ENTRY_SIZE);
	H64(entries_off, entries_off);
	H32(bucket_count, bucket_count);
	H32(max_probe, best_probe);
	H64(buckets_off, buckets_off);
	H64(strings_off, strings_off);
	H64(strings_size, strings_size);
	H32(hash_seed, best_seed);
	H32(root_count, 1);
	H64(roots_off, roots_off);
	H32(body_crc32, psfs_crc32(out + PSFS_HEADER_SIZE, file_size - PSFS_HEADER_SIZE));
	H32(content_version, PSFS_CONTENT_VERSION_MAX);
	H32(header_crc32, psfs_crc32(out, PSFS_HEADER_SIZE));
#undef H32
#undef H64
	*size = file_size;
	return out;
}

/* Write atomically: temp file in the same directory, fsync, rename, 0644. */
static void write_file(const char *file, const uint8_t *p, uint64_t n)
{
	const char *slash = strrchr(file, '/');
	size_t dlen = slash ? (size_t)(slash - file) : 0;
	char tmp[PATH_MAX];
	int k = snprintf(tmp, sizeof tmp, "%.*s%s.%s.tmp-%ld", (int)dlen, file, slash ? "/" : "",
			 slash ? slash + 1 : file, (long)getpid());
	if (k < 0 || (size_t)k >= sizeof tmp)
		die(EXIT_FAIL, "writing PSFS blob %s: path too long", file);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0)
		die(EXIT_FAIL, "writing PSFS blob %s: creating %s: %s; check that the directory exists and is writable",
		    file, tmp, errname(errno));
	uint64_t done = 0;
	while (done < n) {
		ssize_t w = write(fd, p + done, n - done > (1u << 30) ? (1u << 30) : (size_t)(n - done));
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			int e = w < 0 ? errno : EIO;
			close(fd);
			unlink(tmp);
			die(EXIT_FAIL, "writing PSFS blob %s: %s", file, errname(e));
		}
		done += (uint64_t)w;
	}
	/* World-readable whatever the umask: every process must map it. */
	if (fchmod(fd, 0644) != 0 || fsync(fd) != 0 || close(fd) != 0 || rename(tmp, file) != 0) {
		int e = errno;
		unlink(tmp);
		die(EXIT_FAIL, "writing PSFS blob %s: %s", file, errname(e));
	}
}

/* ---- --truncate-mtime-ns ------------------------------------------------- */

/* Set every path's mtime and atime to its mtime's whole seconds, so the
 * values survive a layer commit that stores seconds only (moby's classic
 * builder).  Directories' mtimes do not change when a child's times do. */
static void truncate_times(struct ents *es)
{
	for (size_t i = 0; i < es->n; i++) {
		struct ent *e = &es->v[i];
		/* Already whole seconds: left alone, so a rerun in a running
		 * container (apt hook) touches only new paths and never copies
		 * up a lower-layer file just to set its times. */
		if (e->st.st_mtim.tv_nsec == 0)
			continue;
		struct timespec ts[2] = { { e->st.st_mtim.tv_sec, 0 }, { e->st.st_mtim.tv_sec, 0 } };
		if (utimensat(AT_FDCWD, e->path, ts, AT_SYMLINK_NOFOLLOW) != 0)
			die(EXIT_FAIL, "truncating mtime of \"%s\": %s", e->path, errname(errno));
	}
}

/* ---- --copy SRC:DEST ----------------------------------------------------- */

/*
 * Copy a tree preserving type, mode, owner, mtime/atime, symlink targets and
 * hard links (within the copy).  Each directory's entries are created in
 * byte order of their names: that is the order in which a layer tar of the
 * result (moby walks in lexical order) recreates them, so ext4 builds the
 * same directory blocks in the build container and in the committed layer,
 * and directory st_size/st_blocks stay what the blob records.
 */
struct link_seen {
	dev_t dev;
	ino_t ino;
	char *dest;
};

static void copy_data(const char *src, const char *dst, const struct stat *st)
{
	int in = open(src, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (in < 0)
		die(EXIT_FAIL, "copying \"%s\": %s", src, errname(errno));
	int out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (out < 0)
		die(EXIT_FAIL, "copying to \"%s\": %s", dst, errname(errno));
	static char buf[1 << 16];
	for (;;) {
		ssize_t r = read(in, buf, sizeof buf);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			die(EXIT_FAIL, "copying \"%s\": reading: %s", src, errname(errno));
		if (r == 0)
			break;
		for (ssize_t w = 0; w < r;) {
			ssize_t k = write(out, buf + w, (size_t)(r - w));
			if (k < 0 && errno == EINTR)
				continue;
			if (k <= 0)
				die(EXIT_FAIL, "copying to \"%s\": %s", dst, errname(k < 0 ? errno : EIO));
			w += k;
		}
	}
	if (fchown(out, st->st_uid, st->st_gid) != 0 || fchmod(out, st->st_mode & 07777) != 0)
		die(EXIT_FAIL, "copying to \"%s\": setting owner/mode: %s", dst, errname(errno));
	close(in);
	if (close(out) != 0)
		die(EXIT_FAIL, "copying to \"%s\": %s", dst, errname(errno));
}

static void set_times(const char *p, const struct stat *st)
{
	struct timespec ts[2] = { st->st_atim, st->st_mtim };
	if (utimensat(AT_FDCWD, p, ts, AT_SYMLINK_NOFOLLOW) != 0)
		die(EXIT_FAIL, "copying to \"%s\": setting times: %s", p, errname(errno));
}

static void copy_tree(const char *src_arg, const char *dst)
{
	char src[PATH_MAX];
	if (!realpath(src_arg, src))
		die(EXIT_FAIL, "copying \"%s\": %s; pass an existing directory", src_arg, errname(errno));
	struct stat dst_st;
	if (lstat(dst, &dst_st) == 0)
		die(EXIT_FAIL, "copying \"%s\" to \"%s\": the destination exists; pick a new path under the root", src, dst);
	struct ents es = { 0 };
	scan(src, &es);              /* sorted: parents first, names in byte order */
	size_t slen = strlen(src), dlen = strlen(dst);
	struct link_seen *links = NULL;
	size_t nlinks = 0;
	char **dpaths = xrealloc(NULL, es.n, sizeof *dpaths);
	for (size_t i = 0; i < es.n; i++) {
		const struct ent *e = &es.v[i];
		size_t rest = e->len - slen;
		if (dlen + rest >= PSFS_PATH_MAX)
			die(EXIT_FAIL, "copying \"%s\": destination path is %zu bytes, the limit is %u", e->path, dlen + rest, PSFS_PATH_MAX - 1);
		char *d = xrealloc(NULL, dlen + rest + 1, 1);
		memcpy(d, dst, dlen);
		memcpy(d + dlen, e->path + slen, rest + 1);
		dpaths[i] = d;
		const struct stat *st = &e->st;
		int rc = 0;
		if (S_ISDIR(st->st_mode)) {
			rc = mkdir(d, 0700);
		} else if (S_ISLNK(st->st_mode)) {
			rc = symlink(e->target, d);
			if (!rc)
				rc = lchown(d, st->st_uid, st->st_gid);
		} else {
			size_t j = 0;
			if (st->st_nlink > 1)
				for (; j < nlinks; j++)
					if (links[j].dev == st->st_dev && links[j].ino == st->st_ino)
						break;
			if (st->st_nlink > 1 && j < nlinks) {
				rc = link(links[j].dest, d);
				if (!rc)
					continue;     /* shares the first link's inode: nothing to set */
			} else if (S_ISREG(st->st_mode)) {
				copy_data(e->path, d, st);
			} else {
				rc = mknod(d, st->st_mode, st->st_rdev);
				if (!rc)
					rc = chown(d, st->st_uid, st->st_gid) || chmod(d, st->st_mode & 07777);
			}
			if (!rc && st->st_nlink > 1) {
				links = xrealloc(links, nlinks + 1, sizeof *links);
				links[nlinks++] = (struct link_seen){ st->st_dev, st->st_ino, d };
			}
		}
		if (rc)
			die(EXIT_FAIL, "copying \"%s\" to \"%s\": %s", e->path, d, errname(errno));
		if (!S_ISDIR(st->st_mode))
			set_times(d, st);
	}
	/* Directories last, children before parents: owner, mode, times. */
	for (size_t i = es.n; i-- > 0;) {
		const struct stat *st = &es.v[i].st;
		if (!S_ISDIR(st->st_mode))
			continue;
		if (chown(dpaths[i], st->st_uid, st->st_gid) != 0 || chmod(dpaths[i], st->st_mode & 07777) != 0)
			die(EXIT_FAIL, "copying to \"%s\": setting owner/mode: %s", dpaths[i], errname(errno));
		set_times(dpaths[i], st);
	}
	fprintf(stderr, "%s: copied %s -> %s (%zu paths)\n", prog, src, dst, es.n);
}

/* ---- --verify ------------------------------------------------------------ */

static unsigned long mismatches;

static void report(const char *path, const char *field, uint64_t blob, uint64_t disk)
{
	mismatches++;
	printf("mismatch %s: %s %" PRIu64 " in blob, %" PRIu64 " on disk\n", path, field, blob, disk);
}

/* Compare the blob with the kernel's lstat of every path under each root
 * (and of every path on disk with the blob's list).  st_dev is skipped with
 * PSFS_H_DEV_RUNTIME; st_ino, st_dev, st_atim and st_ctim with synthetic
 * identity (synthetic < 0: detected from roots[0]'s st_ino). */
static int verify(const char *blob_file, int synthetic)
{
	int fd = open(blob_file, O_RDONLY | O_CLOEXEC);
	struct stat bst;
	if (fd < 0 || fstat(fd, &bst) != 0)
		die(EXIT_FAIL, "verifying: reading %s: %s; pass the blob with --blob", blob_file, errname(errno));
	if (!S_ISREG(bst.st_mode) || bst.st_size < PSFS_HEADER_SIZE)
		die(EXIT_FAIL, "verifying: %s is not a PSFS blob (not a regular file of >= 128 bytes)", blob_file);
	uint64_t size = (uint64_t)bst.st_size;
	uint64_t *mem = xrealloc(NULL, (size_t)(size / 8 + 1), 8);  /* 8-aligned */
	uint8_t *base = (uint8_t *)mem;
	for (uint64_t done = 0; done < size;) {
		ssize_t r = read(fd, base + done, (size_t)(size - done));
		if (r <= 0)
			die(EXIT_FAIL, "verifying: reading %s: %s", blob_file, r < 0 ? errname(errno) : "short read");
		done += (uint64_t)r;
	}
	close(fd);
	struct psfs_view v;
	int rc = psfs_view_init(&v, base, size);
	if (rc)
		die(EXIT_FAIL, "verifying: %s: header does not validate (%s); regenerate the blob with vrift-mkblob",
		    blob_file, rc == -PSFS_ENOTSUP ? "ENOTSUP: written by a newer vrift" : "EINVAL: corrupt or not a PSFS blob");
	if (psfs_crc32(base + PSFS_HEADER_SIZE, size - PSFS_HEADER_SIZE) != v.h->body_crc32)
		die(EXIT_FAIL, "verifying: %s: body CRC-32 mismatch (corrupt); regenerate the blob with vrift-mkblob", blob_file);

	if (synthetic < 0) {  /* default: synthetic when roots[0]'s st_ino is in that range */
		const struct psfs_entry *re = psfs_lookup(&v, v.strings + v.roots[0].path_off, v.roots[0].path_len);
		synthetic = re && re->ino >= SYNTHETIC_INO_BASE;
	}
	unsigned long checked = 0;
	for (uint32_t r = 0; r < v.root_count; r++) {
		char *root = xmemdup(v.strings + v.roots[r].path_off, v.roots[r].path_len);
		struct ents es = { 0 };
		scan(root, &es);
		/* blob entries of this root, in order (entries are sorted by key) */
		size_t di = 0;
		for (uint32_t i = 0; i <= v.entry_count; i++) {
			const struct psfs_entry *b = i < v.entry_count ? &v.entries[i] : NULL;
			if (b && (b->path_off > v.strings_size || b->path_len > v.strings_size - b->path_off))
				die(EXIT_FAIL, "verifying: %s: entry %u key outside the string table (corrupt)", blob_file, i);
			const char *bp = b ? (const char *)v.strings + b->path_off : NULL;
			size_t bn = b ? b->path_len : 0;
			if (b && !(bn >= v.roots[r].path_len && !memcmp(bp, root, v.roots[r].path_len) &&
				   (bn == v.roots[r].path_len || bp[v.roots[r].path_len] == '/')))
				continue;             /* another root's entry */
			/* disk paths that sort before this blob key are not in the blob */
			while (di < es.n && (!b || bytes_cmp(es.v[di].path, es.v[di].len, bp, bn) < 0)) {
				mismatches++;
				printf("extra %s: on disk, not in the blob (the tree changed after the blob was written)\n", es.v[di].path);
				di++;
			}
			if (!b)
				break;
			checked++;
			if (di >= es.n || bytes_cmp(es.v[di].path, es.v[di].len, bp, bn) != 0) {
				mismatches++;
				printf("missing %.*s: in the blob, not on disk\n", (int)bn, bp);
				continue;
			}
			const struct ent *e = &es.v[di++];
			const struct stat *st = &e->st;
			const char *p = e->path;
			if (b->mode != st->st_mode) report(p, "st_mode", b->mode, st->st_mode);
			if (b->uid != st->st_uid) report(p, "st_uid", b->uid, st->st_uid);
			if (b->gid != st->st_gid) report(p, "st_gid", b->gid, st->st_gid);
			if (b->nlink != st->st_nlink) report(p, "st_nlink", b->nlink, st->st_nlink);
			/* PSFS_E_UNCERTAIN: the shim asks the kernel for this path. */
			int sized = !(b->flags & PSFS_E_UNCERTAIN);
			if (sized && b->size != (uint64_t)st->st_size) report(p, "st_size", b->size, (uint64_t)st->st_size);
			if (sized && b->blocks != (uint64_t)st->st_blocks) report(p, "st_blocks", b->blocks, (uint64_t)st->st_blocks);
			if (b->blksize != (uint64_t)st->st_blksize) report(p, "st_blksize", b->blksize, (uint64_t)st->st_blksize);
			if (b->rdev != (uint64_t)st->st_rdev) report(p, "st_rdev", b->rdev, (uint64_t)st->st_rdev);
			if (b->mtime_sec != st->st_mtim.tv_sec) report(p, "st_mtim.tv_sec", (uint64_t)b->mtime_sec, (uint64_t)st->st_mtim.tv_sec);
			if (b->mtime_nsec != st->st_mtim.tv_nsec) report(p, "st_mtim.tv_nsec", b->mtime_nsec, (uint64_t)st->st_mtim.tv_nsec);
			if (!(v.flags & PSFS_H_DEV_RUNTIME) && !synthetic && b->dev != (uint64_t)st->st_dev)
				report(p, "st_dev", b->dev, (uint64_t)st->st_dev);
			if (!synthetic) {
				if (b->ino != (uint64_t)st->st_ino) report(p, "st_ino", b->ino, (uint64_t)st->st_ino);
				if (b->atime_sec != st->st_atim.tv_sec || b->atime_nsec != st->st_atim.tv_nsec)
					report(p, "st_atim.tv_sec", (uint64_t)b->atime_sec, (uint64_t)st->st_atim.tv_sec);
				if (b->ctime_sec != st->st_ctim.tv_sec || b->ctime_nsec != st->st_ctim.tv_nsec)
					report(p, "st_ctim.tv_sec", (uint64_t)b->ctime_sec, (uint64_t)st->st_ctim.tv_sec);
			}
			int blink = (b->mode & S_IFMT) == S_IFLNK;
			if (blink && S_ISLNK(st->st_mode) &&
			    (b->target_off > v.strings_size || b->target_len > v.strings_size - b->target_off ||
			     b->target_len != e->target_len || memcmp(v.strings + b->target_off, e->target, e->target_len))) {
				mismatches++;
				printf("mismatch %s: symlink target differs\n", p);
			}
		}
		free(root);
	}
	fprintf(stderr, "%s: verify %s: %lu entries checked, %lu mismatches (%s identity)\n", prog, blob_file,
		checked, mismatches, synthetic ? "synthetic" : "host");
	return mismatches ? EXIT_MISMATCH : 0;
}

/* ---- main ----------------------------------------------------------------- */

static void usage(const char *why)
{
	die(EXIT_USAGE, "%s; usage: vrift-mkblob [--root DIR] [--blob FILE] [--identity host|synthetic] "
	    "[--dev-runtime] [--check-root-mtime] [--truncate-mtime-ns] [--copy SRC:DEST]... | --verify [--root DIR] [--blob FILE]", why);
}

int main(int argc, char **argv)
{
	const char *root_arg = "/vrift", *blob = "/usr/lib/vrift/psfs.blob";
	int identity = -1, dev_runtime = 0, check_mtime = 0, trunc = 0, do_verify = 0;
	char **copies = xrealloc(NULL, (size_t)argc, sizeof *copies);
	size_t ncopies = 0;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *val = NULL;
		if (!strcmp(a, "--root") || !strcmp(a, "--blob") || !strcmp(a, "--identity") || !strcmp(a, "--copy")) {
			if (i + 1 >= argc)
				usage("missing value after an option");
			val = argv[++i];
		}
		if (!strcmp(a, "--root")) root_arg = val;
		else if (!strcmp(a, "--blob")) blob = val;
		else if (!strcmp(a, "--identity")) {
			if (!strcmp(val, "host")) identity = 0;
			else if (!strcmp(val, "synthetic")) identity = 1;
			else usage("--identity takes host or synthetic");
		} else if (!strcmp(a, "--copy")) copies[ncopies++] = (char *)val;
		else if (!strcmp(a, "--dev-runtime")) dev_runtime = 1;
		else if (!strcmp(a, "--check-root-mtime")) check_mtime = 1;
		else if (!strcmp(a, "--truncate-mtime-ns")) trunc = 1;
		else if (!strcmp(a, "--verify")) do_verify = 1;
		else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			printf("usage: vrift-mkblob [--root /vrift] [--blob /usr/lib/vrift/psfs.blob] [--identity host|synthetic]\n"
			       "                    [--dev-runtime] [--check-root-mtime] [--truncate-mtime-ns] [--copy SRC:DEST]...\n"
			       "       vrift-mkblob --verify [--blob FILE] [--identity host|synthetic]   (exit 3 on mismatch)\n");
			return 0;
		} else {
			char why[128];
			snprintf(why, sizeof why, "unknown argument '%.80s'", a);
			usage(why);
		}
	}

	if (do_verify) {
		if (ncopies || trunc || dev_runtime || check_mtime)
			usage("--verify takes only --blob, --root and --identity");
		return verify(blob, identity);
	}

	for (size_t i = 0; i < ncopies; i++) {
		char *c = strchr(copies[i], ':');
		if (!c || c == copies[i] || !c[1])
			usage("--copy takes SRC:DEST");
		*c = 0;
		const char *dst = c + 1;
		size_t rl = strlen(root_arg);
		if (dst[0] != '/' || strncmp(dst, root_arg, rl) || dst[rl] != '/')
			die(EXIT_USAGE, "copying %s: destination %s is not under the root %s; pass --copy SRC:%s/<name>", copies[i], dst, root_arg, root_arg);
		struct stat rst;
		if (lstat(root_arg, &rst) != 0 && mkdir(root_arg, 0755) != 0)
			die(EXIT_FAIL, "creating root %s: %s", root_arg, errname(errno));
		/* DEST's missing parents: 0755 directories (as vrift build creates) */
		for (char *s = (char *)dst + rl + 1; (s = strchr(s, '/')); s++) {
			*s = 0;
			if (mkdir(dst, 0755) != 0 && errno != EEXIST)
				die(EXIT_FAIL, "creating %s: %s", dst, errname(errno));
			*s = '/';
		}
		copy_tree(copies[i], dst);
	}
	free(copies);

	char root[PATH_MAX];
	if (!realpath(root_arg, root))
		die(EXIT_FAIL, "scanning \"%s\": %s; pass an existing directory (or --copy a tree into it)", root_arg, errname(errno));
	if (!strcmp(root, "/"))
		die(EXIT_FAIL, "scanning \"/\": the domain root cannot be \"/\"; pass a subdirectory");
	if (strlen(root) >= PSFS_PATH_MAX)
		die(EXIT_FAIL, "scanning \"%s\": its real path is too long", root_arg);

	/* The blob must not be inside the tree it describes. */
	size_t rl = strlen(root);
	char bdir[PATH_MAX];
	const char *bs = strrchr(blob, '/');
	if (!bs)
		snprintf(bdir, sizeof bdir, ".");
	else
		snprintf(bdir, sizeof bdir, "%.*s", (int)(bs == blob ? 1 : bs - blob), blob);
	char rb[PATH_MAX];
	if (!realpath(bdir, rb))
		die(EXIT_FAIL, "writing PSFS blob %s: directory %s: %s; create it first", blob, bdir, errname(errno));
	if (!strncmp(rb, root, rl) && (rb[rl] == '/' || !rb[rl]))
		die(EXIT_FAIL, "writing PSFS blob %s: it is inside the tree it describes (%s); write it outside the root", blob, root);

	struct ents es = { 0 };
	if (trunc) {
		scan(root, &es);
		truncate_times(&es);
		for (size_t i = 0; i < es.n; i++) {
			free(es.v[i].path);
			free(es.v[i].target);
		}
		es.n = 0;
		es.skipped_too_long = 0;
	}
	scan(root, &es);
	if (es.skipped_too_long)
		fprintf(stderr, "%s: %lu paths of PATH_MAX bytes or more left out (the kernel answers ENAMETOOLONG for them)\n",
			prog, es.skipped_too_long);
	set_identity(&es, identity == 1);
	uint32_t flags = (dev_runtime ? PSFS_H_DEV_RUNTIME : 0) | (check_mtime ? PSFS_H_CHECK_ROOT_MTIME : 0);
	uint64_t size;
	uint8_t *out = encode(&es, flags, &size);
	write_file(blob, out, size);
	fprintf(stderr, "%s: wrote %s: %zu entries, %" PRIu64 " bytes, root %s, %s identity%s%s\n", prog, blob, es.n, size, root,
		identity == 1 ? "synthetic" : "host", dev_runtime ? ", DEV_RUNTIME" : "", check_mtime ? ", CHECK_ROOT_MTIME" : "");
	free(out);
	return 0;
}
