/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fuzz_check.h - invariants the fuzz targets and blobcheck assert about
 * psfs_core.c (issue 4).  Test-only code: it allocates, prints and aborts.
 *
 *  - a validated view points only inside [base, base + size);
 *  - psfs_resolve never returns an entry outside the entry array, never a
 *    misaligned one, never one without PSFS_E_REACHABLE, never a symlink
 *    when following;
 *  - a path that is not under a root (raw byte prefix, as the shim
 *    compares) is always PSFS_PASS: the shim never answers outside the
 *    domain;
 *  - scratch is an exact PSFS_PATH_MAX global, so ASan sees any write or
 *    read past it.
 */
#ifndef FUZZ_CHECK_H
#define FUZZ_CHECK_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "../psfs_core.h"

#define CHECK(c)                                                                   \
	do {                                                                       \
		if (!(c)) {                                                        \
			fprintf(stderr, "CHECK failed %s:%d: %s\n", __FILE__, __LINE__, #c); \
			abort();                                                   \
		}                                                                  \
	} while (0)

static inline int fc_in_map(const struct psfs_view *v, const void *p, uint64_t n)
{
	uintptr_t b = (uintptr_t)v->base, q = (uintptr_t)p;
	return q >= b && q - b <= v->size && n <= v->size - (q - b);
}

/* Every pointer and length of a view accepted by psfs_view_init. */
static inline void fc_check_view(const struct psfs_view *v, const void *base, uint64_t size)
{
	CHECK(v->base == base && v->size == size);
	CHECK(v->root_count >= 1 && v->root_count <= PSFS_MAX_ROOTS);
	CHECK(((v->bucket_mask + 1ull) & v->bucket_mask) == 0);
	CHECK(v->max_probe >= 1 && v->max_probe <= v->bucket_mask + 1ull);
	CHECK(fc_in_map(v, v->roots, (uint64_t)v->root_count * PSFS_ROOT_SIZE));
	CHECK(fc_in_map(v, v->buckets, (v->bucket_mask + 1ull) * PSFS_BUCKET_SIZE));
	CHECK(fc_in_map(v, v->entries, (uint64_t)v->entry_count * PSFS_ENTRY_SIZE));
	CHECK(fc_in_map(v, v->strings, v->strings_size));
	if (v->inodes)
		CHECK(fc_in_map(v, v->inodes, (uint64_t)v->inode_count * 4u));
	else
		CHECK(v->inode_count == 0);
	for (uint32_t i = 0; i < v->root_count; i++) {
		const uint8_t *r = v->strings + v->roots[i].path_off;
		CHECK(fc_in_map(v, r, v->roots[i].path_len));
		CHECK(v->roots[i].path_len >= 2 && r[0] == '/');
	}
}

static inline void fc_check_entry(const struct psfs_view *v, const struct psfs_entry *e)
{
	CHECK(e != NULL);
	CHECK((uintptr_t)e >= (uintptr_t)v->entries);
	uintptr_t d = (uintptr_t)e - (uintptr_t)v->entries;
	CHECK(d % PSFS_ENTRY_SIZE == 0);
	CHECK(d / PSFS_ENTRY_SIZE < v->entry_count);
	CHECK(fc_in_map(v, e, PSFS_ENTRY_SIZE));
}

/* Root index whose bytes prefix p followed by '/' or the end, else -1 (an
 * independent spelling of what "in the domain" means). */
static inline int fc_root_of(const struct psfs_view *v, const char *p)
{
	if (!p)
		return -1;
	size_t n = strlen(p);
	for (uint32_t i = 0; i < v->root_count; i++) {
		size_t rl = v->roots[i].path_len;
		if (rl <= n && memcmp(p, v->strings + v->roots[i].path_off, rl) == 0 &&
		    (p[rl] == 0 || p[rl] == '/'))
			return (int)i;
	}
	return -1;
}

static inline int fc_is_lnk(const struct psfs_entry *e)
{
	return (e->mode & 0170000u) == 0120000u;
}

/* The caller's scratch buffer: a global of exactly PSFS_PATH_MAX bytes,
 * so ASan's global redzones catch any access past it (no malloc per call,
 * which would cost most of the fuzzing speed). */
static char fc_scratch[PSFS_PATH_MAX];

/* psfs_resolve with the invariants above asserted. */
static inline enum psfs_outcome fc_resolve(const struct psfs_view *v, const char *p, unsigned flags,
					   const struct psfs_entry **out)
{
	const struct psfs_entry *e = NULL;
	enum psfs_outcome o = psfs_resolve(v, p, flags, fc_scratch, &e);
	CHECK(o == PSFS_PASS || o == PSFS_HIT || o == PSFS_ENOENT || o == PSFS_ENOTDIR);
	if (fc_root_of(v, p) < 0)
		CHECK(o == PSFS_PASS);
	if (o == PSFS_HIT) {
		fc_check_entry(v, e);
		CHECK(e->flags & PSFS_E_REACHABLE);
		if (flags & PSFS_FOLLOW)
			CHECK(!fc_is_lnk(e));
	}
	if (out)
		*out = o == PSFS_HIT ? e : NULL;
	return o;
}

/* lstat and stat of the same path agree whenever lstat's answer is not a
 * symlink (a final symlink is the only thing they treat differently). */
static inline void fc_resolve_both(const struct psfs_view *v, const char *p)
{
	const struct psfs_entry *el, *ef;
	enum psfs_outcome ol = fc_resolve(v, p, 0, &el);
	enum psfs_outcome of = fc_resolve(v, p, PSFS_FOLLOW, &ef);
	if (ol == PSFS_HIT && !fc_is_lnk(el))
		CHECK(of == PSFS_HIT && ef == el);
	if (ol == PSFS_ENOENT || ol == PSFS_ENOTDIR)
		CHECK(of == ol);
}

/* psfs_tagged (identity tags, cold side) for every tag 0..inode_count+1
 * (at most 64) with each candidate entry's own fields: any result is an
 * in-bounds entry carrying the asked fields. */
static inline void fc_check_tagged(const struct psfs_view *v)
{
	for (uint32_t n = 0; n <= v->inode_count + 1u && n < 64; n++) {
		const struct psfs_entry *c = v->inodes && n >= 1 && n <= v->inode_count &&
		    v->inodes[n - 1] >= 1 && v->inodes[n - 1] <= v->entry_count ?
		    &v->entries[v->inodes[n - 1] - 1] : NULL;
		const struct psfs_entry *e = c ?
		    psfs_tagged(v, c->mode, c->uid, c->gid, c->nlink, c->size, c->mtime_sec, n) :
		    psfs_tagged(v, 0100644, 0, 0, 1, 0, 0, n);
		if (e) {
			fc_check_entry(v, e);
			CHECK(e->mtime_nsec == n);
		}
	}
}

/* A copy of n bytes in an exact-size heap block (ASan bounds). */
static inline uint8_t *fc_dup(const uint8_t *p, size_t n)
{
	uint8_t *q = malloc(n ? n : 1);
	if (n)
		memcpy(q, p, n);
	return q;
}

#endif /* FUZZ_CHECK_H */
