/* SPDX-License-Identifier: Apache-2.0 */
/*
 * psfs_core.h - freestanding PSFS blob reader: header validation, path
 * normalization and resolution.  No libc (but strnlen, outside wasm: see
 * path_len in psfs_core.c), no allocation, no syscalls, no writes outside
 * the caller's buffers: the same code runs inside the shim (hot path) and
 * as wasm32 inside jest (cross-language conformance test).
 *
 * Error convention: 0 or a negative errno-like code (PSFS_E*), as composefs.
 */
#ifndef PSFS_CORE_H
#define PSFS_CORE_H

#include <stdint.h>
#include "psfs_format.h"

/* Negative codes returned by psfs_view_init (values match Linux errno). */
#define PSFS_EINVAL 22   /* bad magic, bad sizes/offsets, bad checksum */
#define PSFS_ENOTSUP 95  /* version / content version / flags not supported */

/* A validated, read-only view of a mapped blob.  Filled by psfs_view_init;
 * after that only read.  Holds no pointers outside [base, base + size). */
struct psfs_view {
	const uint8_t *base;
	uint64_t size;
	const struct psfs_header *h;
	const struct psfs_root *roots;
	const struct psfs_bucket *buckets;
	const struct psfs_entry *entries;
	const uint8_t *strings;
	uint64_t strings_size;
	uint32_t entry_count, bucket_mask, max_probe, seed, root_count, flags;
	/* Reader-side only, not on disk: psfs_hash's state after roots[i]'s
	 * bytes (the lane and the partial word; the length is roots[i].path_len).
	 * Every domain path starts with a root, so the hot path hashes only
	 * the bytes after it. */
	struct psfs_hstate { uint64_t h, w; } root_h[PSFS_MAX_ROOTS];
	/* Reader-side only: bit c set when some root's byte 1 (its first name
	 * byte) is c (psfs_may_be_ours). */
	uint64_t root_b1[4];
	/* PSFS_H_IDENTITY_TAG inode table (NULL/0 without it). */
	const uint32_t *inodes;
	uint32_t inode_count;
	/* Reader-side: the entry of roots[0] (NULL if absent), whose mtime
	 * nanoseconds may be a tree digest above the tags (psfs_tagged). */
	const struct psfs_entry *root_entry;
};

/*
 * psfs_view_init - validate the header of a blob mapped at [base, base+size)
 * in O(1) (magic, version, sizes, checksum, every section in bounds, aligned,
 * non-overlapping, counts without overflow, roots in bounds and normalized)
 * and fill *v.  Body contents are NOT trusted: lookups bounds-check each
 * entry they touch.
 * Returns 0, -PSFS_EINVAL or -PSFS_ENOTSUP.
 */
int psfs_view_init(struct psfs_view *v, const void *base, uint64_t size);

/*
 * psfs_lookup - the entry whose key equals path[0..len), or NULL.  At most
 * max_probe slots are read; entries with out-of-bounds key offsets never
 * match.  O(1) expected.
 */
const struct psfs_entry *psfs_lookup(const struct psfs_view *v,
				     const uint8_t *path, uint32_t len);

/* Outcome of psfs_resolve. */
enum psfs_outcome {
	PSFS_PASS = 0,     /* not in the domain, or not certain: call the kernel */
	PSFS_HIT = 1,      /* *out is the answer */
	PSFS_ENOENT = 2,   /* answer -1/ENOENT */
	PSFS_ENOTDIR = 3,  /* answer -1/ENOTDIR */
};

/* psfs_resolve flags */
#define PSFS_FOLLOW 1u  /* follow a final symlink (stat); else lstat */

/*
 * psfs_resolve - answer a stat-family call for the NUL-terminated path
 * `path` from the blob alone.
 *
 * Only absolute paths are handled (a relative path or NULL returns
 * PSFS_PASS).  The path is normalized into `scratch` (PSFS_PATH_MAX bytes,
 * caller's stack) with POSIX semantics: "//" and "/./" collapse; ".."
 * pops a component only when that component is a directory entry in the
 * blob (else PASS); a trailing "/" (or "/." "/..") requires a directory
 * and follows a final symlink.  Components longer than PSFS_NAME_MAX and
 * paths of PSFS_PATH_MAX bytes or more return PASS (the kernel answers
 * ENAMETOOLONG).  A path outside every root returns PASS.
 * Cost: a path whose byte 1 differs from every root's (psfs_may_be_ours)
 * is rejected there; otherwise the path is read at most PSFS_PATH_MAX
 * bytes far (strnlen); its bytes after the root are hashed 8 at a time
 * (the bucket is prefetched), and a path already in normalized form (the
 * usual spelling) is checked 16 bytes at a time and looked up in place
 * (no copy).
 *
 * A found entry needs PSFS_E_REACHABLE or the result is PASS (never widen
 * access); a final "." component (".../dir/.") also needs the directory
 * itself searchable by all (mode & 0111 == 0111), as the kernel looks "."
 * up inside it.  The ancestors of the roots are not in the blob: callers
 * check them (libvrift.c rejects a blob when one is not searchable by all).  A missing path walks up to its nearest present ancestor:
 * a searchable (0111), reachable directory gives ENOENT; a reachable
 * non-directory, non-symlink gives ENOTDIR; a symlink or anything else
 * gives PASS.  *out is set on PSFS_HIT, and on PSFS_PASS when the path
 * resolves to an entry flagged PSFS_E_UNCERTAIN (the kernel's answer is
 * then about that entry's inode); otherwise it is left unchanged.
 * With PSFS_FOLLOW a final symlink whose target resolves in
 * the domain is followed (at most 39 hops, then PASS: at the kernel's limit
 * of 40 its own answer varies); a target outside the
 * domain gives PASS.
 */
enum psfs_outcome psfs_resolve(const struct psfs_view *v, const char *path,
			       unsigned flags, char scratch[PSFS_PATH_MAX],
			       const struct psfs_entry **out);

/*
 * psfs_may_be_ours - 0 when psfs_resolve(v, path, ...) would return
 * PSFS_PASS at once: path NULL (or in the first page: psfs_ptr_ok) or not
 * absolute, or its byte 1 (at worst
 * the NUL) differs from byte 1 of every root (a root's first name byte).
 * Most paths outside the domain ("/usr/...", "/tmp/...") stop here, so a
 * caller can skip the call and its stack frame.  1 means "maybe": call
 * psfs_resolve.  Reads path[0..1] and a 256-bit set built at init.
 */
/*
 * psfs_resolve_ours - psfs_resolve for a path psfs_may_be_ours (below)
 * already accepted: the same answer without checking again (the shim's
 * wrappers check inline before they call, to keep other paths cheap).
 */
enum psfs_outcome psfs_resolve_ours(const struct psfs_view *v, const char *path,
				    unsigned flags, char scratch[PSFS_PATH_MAX],
				    const struct psfs_entry **out);

/*
 * psfs_ptr_ok - 0 for a pointer into the first page (NULL plus a small
 * offset: a common bug).  Linux never maps it for ordinary processes
 * (vm.mmap_min_addr >= 4096), so the kernel would say EFAULT: callers pass
 * such a call through instead of reading the pointer and faulting.  Other
 * bad pointers cannot be told from good ones without a syscall.
 */
static inline int psfs_ptr_ok(const void *p)
{
	return (uintptr_t)p >= 4096u;
}

static inline int psfs_may_be_ours(const struct psfs_view *v, const char *path)
{
	if (!psfs_ptr_ok(path) || path[0] != '/')
		return 0;
	uint8_t c = (uint8_t)path[1];
	return (int)((v->root_b1[c >> 6] >> (c & 63u)) & 1u);
}

/*
 * psfs_tagged - the entry of the domain inode a kernel answer describes,
 * or NULL.  Only for PSFS_H_IDENTITY_TAG blobs: the answer's mtime
 * nanoseconds are the inode's tag (1..inode_count: the inode table names
 * its entry) or, above inode_count, roots[0]'s tree digest (its entry);
 * that entry must agree on mtime, mode, uid, gid and (non-directories)
 * size and nlink, so a file that merely shares the nanoseconds is not
 * taken for a domain inode.  The caller checks st_dev.  O(1),
 * bounds-checked.
 */
const struct psfs_entry *psfs_tagged(const struct psfs_view *v, uint32_t mode,
				     uint32_t uid, uint32_t gid, uint64_t nlink,
				     uint64_t size, int64_t mtime_sec,
				     uint32_t mtime_nsec);

/* psfs_crc32 - CRC-32 (IEEE 802.3, as zlib's crc32) of p[0..n). */
uint32_t psfs_crc32(const uint8_t *p, uint64_t n);

#endif /* PSFS_CORE_H */
