/* SPDX-License-Identifier: Apache-2.0 */
/*
 * psfs_core.c - freestanding PSFS blob reader (see psfs_core.h).
 *
 * Compiles both into libvrift.so and to wasm32 (-ffreestanding -nostdlib):
 * no allocation, no syscalls, no global state, and no libc but strnlen
 * outside wasm (path_len below).  Everything it reads from the blob body is
 * bounds-checked, because only the header is validated (O(1)) when the
 * blob is mapped.
 *
 * Byte loops are written by hand (no memcmp/memcpy) so the wasm build needs
 * no libc; 8-byte loads are __builtin_memcpy of a constant size, which
 * compilers turn into one load.  Each copy loop also scans for '/' so
 * compilers do not turn it back into a memcpy call.
 */
#include <stddef.h>
#include <stdint.h>
#include "psfs_core.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "PSFS blobs are little-endian; this reader reads fields natively"
#endif

#define T_FMT 0170000u
#define T_DIR 0040000u
#define T_LNK 0120000u
#define SEARCH_ALL 0111u   /* x for user, group and other */
/* Linux MAXSYMLINKS is 40: a 41st hop is ELOOP.  The 40th is answered
 * only by the kernel: at exactly 40 its own answer varies (stat of a
 * 40-link chain gave ELOOP 90 times in 200,000 calls on Linux 6.18,
 * 39 links never), so the shim is not sure of it and passes through. */
#define MAX_HOPS 39u

/* ---- tiny libc replacements -------------------------------------------- */

/* a[0..n) == b[0..n).  Stops at the first difference, so it never reads
 * past the NUL of a NUL-terminated `a` when `b` holds no NUL. */
static inline int bytes_eq(const uint8_t *a, const uint8_t *b, uint64_t n)
{
	for (uint64_t i = 0; i < n; i++)
		if (a[i] != b[i])
			return 0;
	return 1;
}

/* 16 bytes as one vector: SSE2 on x86-64, NEON on arm64, plain code on
 * wasm32 (GCC/clang vector extensions). */
typedef uint8_t psfs_v16 __attribute__((vector_size(16)));
static inline psfs_v16 load16(const uint8_t *p)
{
	psfs_v16 x;
	__builtin_memcpy(&x, p, 16);   /* an unaligned load, no call */
	return x;
}

/* Whether any byte of m (each 0 or 0xff, a vector compare's result) is
 * set.  On x86-64 one pmovmskb; elsewhere the two halves as words. */
static inline int any16(psfs_v16 m)
{
#if defined(__SSE2__)
	return __builtin_ia32_pmovmskb128((__attribute__((vector_size(16))) char)m) != 0;
#else
	uint64_t lo, hi;
	__builtin_memcpy(&lo, &m, 8);
	__builtin_memcpy(&hi, (const uint8_t *)&m + 8, 8);
	return (lo | hi) != 0;
#endif
}

/* Same result as bytes_eq for buffers known to hold n bytes each (blob
 * key vs. a path whose length is already known).  From 16 bytes on: the
 * XOR of each 16-byte step ORed into one vector, tested once at the end
 * (the last 16 as an overlapping step): a hash match makes a mismatch
 * rare, so an early exit would only add a branch per step.  8..15 bytes
 * as two overlapping words, 4..7 as two overlapping half-words. */
static inline int keys_eq(const uint8_t *a, const uint8_t *b, uint32_t n)
{
	uint64_t x, y;
	if (n < 8) {
		uint32_t s, t, u, w;
		if (n < 4)
			return bytes_eq(a, b, n);
		__builtin_memcpy(&s, a, 4);
		__builtin_memcpy(&t, b, 4);
		__builtin_memcpy(&u, a + n - 4, 4);
		__builtin_memcpy(&w, b + n - 4, 4);
		return ((s ^ t) | (u ^ w)) == 0;
	}
	if (n < 16) {
		__builtin_memcpy(&x, a, 8);
		__builtin_memcpy(&y, b, 8);
		uint64_t d = x ^ y;
		__builtin_memcpy(&x, a + n - 8, 8);
		__builtin_memcpy(&y, b + n - 8, 8);
		return (d | (x ^ y)) == 0;
	}
	psfs_v16 d = load16(a + n - 16) ^ load16(b + n - 16);
	for (uint32_t i = 0; i + 16 < n; i += 16)
		d |= load16(a + i) ^ load16(b + i);
	return !any16((psfs_v16)(d != 0));
}

/* psfs_hash (psfs_format.h) as a running state (struct psfs_hstate), fed
 * byte by byte: the roots' states at init (the hot path's starting point)
 * and missing(), which finalizes the hash of every prefix it passes.  Byte
 * i of the key goes into the partial word (shift/or: no multiply); the word
 * is mixed once it holds 8 bytes. */
static inline struct psfs_hstate h_init(uint32_t seed)
{
	return (struct psfs_hstate){seed ^ 0x243f6a8885a308d3ull, 0};  /* as psfs_hash */
}
static inline void h_byte(struct psfs_hstate *s, uint32_t i, uint8_t c)
{
	s->w |= (uint64_t)c << (8u * (i & 7u));
	if ((i & 7u) == 7u) {
		psfs_hash_word(&s->h, s->w);
		s->w = 0;
	}
}
/* psfs_hash of the n bytes fed so far. */
static inline uint32_t h_final(struct psfs_hstate s, uint32_t n)
{
	return psfs_hash_final(s.h, s.w, n);
}

static inline int is_dir(const struct psfs_entry *e)
{
	return (e->mode & T_FMT) == T_DIR;
}

static inline int is_lnk(const struct psfs_entry *e)
{
	return (e->mode & T_FMT) == T_LNK;
}

/* ---- CRC-32 (IEEE, reflected, as zlib) ----------------------------------
 * Bitwise: only used on the 128 header bytes at init, a table is not worth
 * 1 KiB of rodata in every process. */
static uint32_t crc32_update(uint32_t c, const uint8_t *p, uint64_t n)
{
	for (uint64_t i = 0; i < n; i++) {
		c ^= p[i];
		for (int k = 0; k < 8; k++)
			c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1u)));
	}
	return c;
}

uint32_t psfs_crc32(const uint8_t *p, uint64_t n)
{
	return ~crc32_update(0xffffffffu, p, n);
}

/* ---- header validation -------------------------------------------------- */

/* [off, off+len) lies after the header, inside the file, 8-aligned. */
static int section_ok(uint64_t off, uint64_t len, uint64_t size)
{
	return off >= PSFS_HEADER_SIZE && off % PSFS_ALIGN == 0 && off <= size &&
	       len <= size - off;
}

static int disjoint(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
	return alen == 0 || blen == 0 || a + alen <= b || b + blen <= a;
}

/* A root must be a normalized absolute path other than "/": what the shim
 * compares raw path prefixes against, so it must not need normalizing. */
static int root_normalized(const uint8_t *p, uint32_t n)
{
	if (n < 2 || n >= PSFS_PATH_MAX || p[0] != '/' || p[n - 1] == '/')
		return 0;
	uint32_t start = 1;
	for (uint32_t i = 1; i <= n; i++) {
		if (i < n && p[i] == 0)
			return 0;
		if (i < n && p[i] != '/')
			continue;
		uint32_t len = i - start;
		if (len == 0 || len > PSFS_NAME_MAX)
			return 0;
		if (p[start] == '.' && (len == 1 || (len == 2 && p[start + 1] == '.')))
			return 0;
		start = i + 1;
	}
	return 1;
}

int psfs_view_init(struct psfs_view *v, const void *base, uint64_t size)
{
	const uint8_t *b = base;
	/* Fields are read through struct pointers: the mapping must be aligned
	 * (mmap gives page alignment; wasm callers must align to 8). */
	if (!v || !b || ((uintptr_t)b & (PSFS_ALIGN - 1)) || size < PSFS_HEADER_SIZE)
		return -PSFS_EINVAL;
	const struct psfs_header *h = base;
	if (!bytes_eq(h->magic, (const uint8_t *)PSFS_MAGIC, PSFS_MAGIC_LEN))
		return -PSFS_EINVAL;
	if (h->version != PSFS_VERSION)
		return -PSFS_ENOTSUP;
	if (h->header_size != PSFS_HEADER_SIZE || h->entry_size != PSFS_ENTRY_SIZE)
		return -PSFS_EINVAL;

	/* header_crc32 covers the 128 bytes with the crc field read as 0. */
	static const uint8_t zero4[4];
	uint32_t c = crc32_update(0xffffffffu, b, 16);
	c = crc32_update(c, zero4, 4);
	c = ~crc32_update(c, b + 20, PSFS_HEADER_SIZE - 20);
	if (c != h->header_crc32)
		return -PSFS_EINVAL;

	if (h->flags & ~(uint32_t)PSFS_H_KNOWN_FLAGS)
		return -PSFS_ENOTSUP;
	if (h->content_version == 0)
		return -PSFS_EINVAL;
	if (h->content_version > PSFS_CONTENT_VERSION_MAX)
		return -PSFS_ENOTSUP;
	if (h->file_size != size)
		return -PSFS_EINVAL;

	/* Counts.  bucket_count >= entry_count and a power of two keeps the
	 * table from being full (a probe always meets an empty slot or the
	 * max_probe bound) and lets the slot be h & mask. */
	uint32_t nb = h->bucket_count;
	if (h->entry_count > PSFS_MAX_ENTRIES || nb == 0 || (nb & (nb - 1)) ||
	    nb < h->entry_count || h->max_probe < 1 || h->max_probe > nb ||
	    h->root_count < 1 || h->root_count > PSFS_MAX_ROOTS)
		return -PSFS_EINVAL;

	/* The inode table exists only with identity tags, and then is either
	 * empty (offset 0) or a real section. */
	int tagged = (h->flags & PSFS_H_IDENTITY_TAG) != 0;
	if ((!tagged && (h->inodes_off || h->inode_count)) ||
	    h->inode_count > PSFS_TAG_MAX || (!h->inode_count && h->inodes_off))
		return -PSFS_EINVAL;

	/* Sections: u32 counts times small sizes cannot overflow a u64. */
	uint64_t roots_len = (uint64_t)h->root_count * PSFS_ROOT_SIZE;
	uint64_t buckets_len = (uint64_t)nb * PSFS_BUCKET_SIZE;
	uint64_t entries_len = (uint64_t)h->entry_count * PSFS_ENTRY_SIZE;
	uint64_t inodes_len = (uint64_t)h->inode_count * 4u;
	if (!section_ok(h->roots_off, roots_len, size) ||
	    !section_ok(h->buckets_off, buckets_len, size) ||
	    !section_ok(h->entries_off, entries_len, size) ||
	    !section_ok(h->strings_off, h->strings_size, size) ||
	    (inodes_len && !section_ok(h->inodes_off, inodes_len, size)))
		return -PSFS_EINVAL;
	const uint64_t off[5] = {h->roots_off, h->buckets_off, h->entries_off, h->strings_off, h->inodes_off};
	const uint64_t len[5] = {roots_len, buckets_len, entries_len, h->strings_size, inodes_len};
	for (int i = 0; i < 5; i++)
		for (int j = i + 1; j < 5; j++)
			if (!disjoint(off[i], len[i], off[j], len[j]))
				return -PSFS_EINVAL;

	const struct psfs_root *roots = (const void *)(b + h->roots_off);
	const uint8_t *strings = b + h->strings_off;
	for (uint32_t i = 0; i < h->root_count; i++) {
		uint64_t o = roots[i].path_off, n = roots[i].path_len;
		if (o > h->strings_size || n > h->strings_size - o ||
		    !root_normalized(strings + o, (uint32_t)n))
			return -PSFS_EINVAL;
	}

	v->base = b;
	v->size = size;
	v->h = h;
	v->roots = roots;
	v->buckets = (const void *)(b + h->buckets_off);
	v->entries = (const void *)(b + h->entries_off);
	v->strings = strings;
	v->strings_size = h->strings_size;
	v->entry_count = h->entry_count;
	v->bucket_mask = nb - 1;
	v->max_probe = h->max_probe;
	v->seed = h->hash_seed;
	v->root_count = h->root_count;
	v->flags = h->flags;
	v->inodes = inodes_len ? (const void *)(b + h->inodes_off) : NULL;
	v->inode_count = h->inode_count;
	v->root_entry = NULL;
	for (int i = 0; i < 4; i++)
		v->root_b1[i] = 0;
	for (uint32_t i = 0; i < h->root_count; i++) {
		uint8_t c = strings[roots[i].path_off + 1];   /* n >= 2: in bounds */
		v->root_b1[c >> 6] |= 1ull << (c & 63u);
		struct psfs_hstate st = h_init(h->hash_seed);
		for (uint32_t j = 0; j < roots[i].path_len; j++)
			h_byte(&st, j, strings[roots[i].path_off + j]);
		v->root_h[i] = st;
	}
	/* Bounded (max_probe), bounds-checked: a corrupt blob gives NULL. */
	if (tagged)
		v->root_entry = psfs_lookup(v, strings + roots[0].path_off, roots[0].path_len);
	return 0;
}

/* ---- lookup ------------------------------------------------------------- */

/* Probe for key[0..len) whose psfs_hash is h.  Inlined: it is most of
 * the hot path after the scan. */
static inline __attribute__((always_inline)) const struct psfs_entry *lookup_h(const struct psfs_view *v,
					 const uint8_t *key, uint32_t len, uint32_t h)
{
	uint32_t slot = h & v->bucket_mask;
	for (uint32_t i = 0; i < v->max_probe; i++, slot = (slot + 1) & v->bucket_mask) {
		const struct psfs_bucket *b = &v->buckets[slot];
		if (b->entry == 0)
			return NULL;                    /* empty slot ends the chain */
		if (b->hash != h || b->entry > v->entry_count)
			continue;                       /* other key, or corrupt index */
		const struct psfs_entry *e = &v->entries[b->entry - 1];
		/* A hit needs the key bytes, in bounds; never the hash alone. */
		if (e->path_len == len &&
		    (uint64_t)e->path_off + len <= v->strings_size &&
		    keys_eq(v->strings + e->path_off, key, len))
			return e;
	}
	return NULL;
}

const struct psfs_entry *psfs_lookup(const struct psfs_view *v,
				     const uint8_t *path, uint32_t len)
{
	return lookup_h(v, path, len, psfs_hash(v->seed, path, len));
}

/* ---- identity tags -------------------------------------------------------
 * Cold side only: called after a real stat succeeded, to give a domain
 * inode the blob's identity whichever entry point the caller used. */
const struct psfs_entry *psfs_tagged(const struct psfs_view *v, uint32_t mode,
				     uint32_t uid, uint32_t gid, uint64_t nlink,
				     uint64_t size, int64_t mtime_sec,
				     uint32_t mtime_nsec)
{
	const struct psfs_entry *e;
	if (!(v->flags & PSFS_H_IDENTITY_TAG) || mtime_nsec == 0)
		return NULL;
	if (mtime_nsec <= v->inode_count) {
		uint32_t idx = v->inodes[mtime_nsec - 1];
		if (idx == 0 || idx > v->entry_count)
			return NULL;
		e = &v->entries[idx - 1];
	} else if (!(e = v->root_entry)) {
		return NULL;                   /* above the tags: only roots[0]'s digest */
	}
	if (e->mtime_nsec != mtime_nsec || e->mtime_sec != mtime_sec ||
	    e->mode != mode || e->uid != uid || e->gid != gid)
		return NULL;
	/* Directory size and link count depend on the layers that merge it
	 * (overlayfs): not part of the match. */
	if (!is_dir(e) && (e->size != size || e->nlink != nlink))
		return NULL;
	return e;
}

/* ---- resolve -------------------------------------------------------------
 *
 * The path is rebuilt in scratch as "<root>/<c1>/<c2>...".  The root is
 * taken verbatim from the blob (it is normalized), so the rebuilt path can
 * never leave the domain: a ".." at the root returns PASS instead.
 */
struct walk {
	const struct psfs_view *v;
	uint8_t *buf;       /* caller's scratch: the normalized path so far */
	uint32_t len;       /* bytes in buf */
	uint32_t root;      /* length of the root prefix in buf */
	int must_dir;       /* trailing "/", "/." or "/..": result must be a dir */
	int dot_last;       /* last component "." : the kernel looks "." up IN
			     * the result, which needs search permission on it */
};

#define WALK_PASS (-1)

/* Index of the root matching s[0..n) as a path prefix (followed by '/'
 * or the end), or -1.  Cheap rejection of non-domain paths is what keeps
 * the cold path within noise of the kernel call. */
static inline __attribute__((always_inline)) int match_root(const struct psfs_view *v, const uint8_t *s, uint32_t n)
{
	for (uint32_t i = 0; i < v->root_count; i++) {
		uint32_t rl = v->roots[i].path_len;
		if (rl > n || !keys_eq(s, v->strings + v->roots[i].path_off, rl))
			continue;
		if (rl == n || s[rl] == '/')
			return (int)i;
	}
	return -1;
}

static void walk_set_root(struct walk *w, uint32_t r)
{
	const uint8_t *s = w->v->strings + w->v->roots[r].path_off;
	uint32_t n = w->v->roots[r].path_len;
	for (uint32_t i = 0; i < n; i++)
		w->buf[i] = s[i];
	w->len = w->root = n;
}

/* "..": allowed only when the last component is a directory in the blob
 * that any caller may search, because then the kernel's walk through it
 * succeeds and lands on our parent.  Anything else (symlink, missing,
 * no permission, the root itself) is PASS. */
static int walk_pop(struct walk *w)
{
	if (w->len <= w->root)
		return WALK_PASS;
	const struct psfs_entry *e = psfs_lookup(w->v, w->buf, w->len);
	if (!e || !(e->flags & PSFS_E_REACHABLE) || !is_dir(e) ||
	    (e->mode & SEARCH_ALL) != SEARCH_ALL)
		return WALK_PASS;
	while (w->buf[--w->len] != '/')
		;
	return 0;
}

/* Append the components of s[i..n) (stopping early at a NUL) to buf.
 * Returns the index where it stopped, or WALK_PASS. */
static int64_t walk_append(struct walk *w, const uint8_t *s, uint64_t i, uint64_t n)
{
	int last_is_name = 1;   /* only a trailing ".", ".." or "/" sets must_dir */
	int last_is_dot = 0;
	int trailing_slash = 0;
	while (i < n && s[i]) {
		if (s[i] == '/') {
			trailing_slash = 1;
			i++;
			continue;
		}
		trailing_slash = 0;
		uint64_t start = i;
		uint32_t at = w->len;
		if (at + 1 >= PSFS_PATH_MAX)
			return WALK_PASS;
		w->buf[at++] = '/';
		/* copy the component while scanning for its end */
		while (i < n && s[i] && s[i] != '/') {
			if (at >= PSFS_PATH_MAX - 1)
				return WALK_PASS;  /* result would reach PATH_MAX */
			w->buf[at++] = s[i++];
		}
		uint64_t clen = i - start;
		if (clen > PSFS_NAME_MAX)
			return WALK_PASS;          /* kernel: ENAMETOOLONG */
		if (s[start] == '.' && clen <= 2 && (clen == 1 || s[start + 1] == '.')) {
			last_is_name = 0;
			last_is_dot = clen == 1;
			if (clen == 2 && walk_pop(w) == WALK_PASS)
				return WALK_PASS;
			continue;                  /* "." : nothing appended */
		}
		last_is_name = 1;
		last_is_dot = 0;
		w->len = at;
	}
	if (trailing_slash || !last_is_name)
		w->must_dir = 1;
	if (last_is_dot)
		w->dot_last = 1;
	return (int64_t)i;
}

/* Parent of buf (drop the last component); PASS if that leaves the root. */
static int walk_to_parent(struct walk *w)
{
	if (w->len <= w->root)
		return WALK_PASS;
	while (w->buf[--w->len] != '/')
		;
	return 0;
}

/* Replace buf (a symlink's path) with its target, normalized. */
static int walk_follow(struct walk *w, const struct psfs_entry *link)
{
	const struct psfs_view *v = w->v;
	uint64_t tl = link->target_len, to = link->target_off;
	if (tl == 0 || to > v->strings_size || tl > v->strings_size - to)
		return WALK_PASS;              /* empty or corrupt target */
	const uint8_t *t = v->strings + to;
	uint64_t i = 0;
	if (t[0] == '/') {
		/* Absolute: must name a path under a root, verbatim prefix. */
		int r = match_root(v, t, (uint32_t)tl);
		if (r < 0)
			return WALK_PASS;
		walk_set_root(w, (uint32_t)r);
		i = w->root;
	} else if (walk_to_parent(w) == WALK_PASS) {
		return WALK_PASS;              /* relative to the link's directory */
	}
	int64_t end = walk_append(w, t, i, tl);
	if (end == WALK_PASS || (uint64_t)end != tl)
		return WALK_PASS;              /* NUL inside a target: corrupt */
	return 0;
}

/* What a present ancestor `a` of a missing path says about it. */
static enum psfs_outcome ancestor_says(const struct psfs_entry *a)
{
	if (!(a->flags & PSFS_E_REACHABLE))
		return PSFS_PASS;              /* the caller may get EACCES */
	if (is_dir(a))
		return (a->mode & SEARCH_ALL) == SEARCH_ALL ? PSFS_ENOENT : PSFS_PASS;
	if (is_lnk(a))
		return PSFS_PASS;              /* the kernel would follow it */
	return PSFS_ENOTDIR;                   /* a file used as a directory */
}

/* The answer for a path not in the blob: look at its nearest present
 * ancestor.  The domain is complete, so absence is a fact, not a miss.
 * Walk DOWN from the root with one running hash, as the kernel walks: the
 * first absent prefix ends the walk, so a path with thousands of missing
 * components costs one pass, not one rehash per ancestor. */
static enum psfs_outcome missing(struct walk *w)
{
	const struct psfs_entry *a = NULL, *e;
	struct psfs_hstate s = h_init(w->v->seed);
	for (uint32_t i = 0; i < w->len; h_byte(&s, i, w->buf[i]), i++) {
		if (i < w->root || w->buf[i] != '/')
			continue;
		if (!(e = lookup_h(w->v, w->buf, i, h_final(s, i))))
			break;                 /* buf[0..i) absent: a is its parent */
		a = e;
		if (!is_dir(a))
			break;                 /* nothing lives below a non-directory */
	}
	/* No present prefix: even the root is absent (corrupt blob). */
	return a ? ancestor_says(a) : PSFS_PASS;
}

/* Little-endian word p[0..8) (one unaligned load). */
static inline uint64_t load8(const uint8_t *p)
{
	uint64_t w;
	__builtin_memcpy(&w, p, 8);
	return w;
}

/* Word p[i..i+8) of the n-byte path p, i <= n: the last 0..7 bytes
 * zero-padded (read as the tail of the path's last full word when the
 * path is that long, so no byte loop and no read past p[n - 1]). */
static inline uint64_t word_at(const uint8_t *p, uint32_t n, uint32_t i)
{
	uint32_t k = n - i;
	return k >= 8 ? load8(p + i)
	     : k == 0 ? 0
	     : n >= 8 ? load8(p + n - 8) >> (64u - 8u * k)
	     : psfs_hash_load(p + i, k);
}

/* psfs_hash of p[0..n), a path that starts with root r (match_root): the
 * root's whole words were hashed at init, the word holding its last bytes
 * is reloaded from p.  A loop of its own keeps the lane in a register. */
static inline uint32_t hash_path(const struct psfs_view *v, int r,
				 const uint8_t *p, uint32_t n)
{
	uint64_t h = v->root_h[r].h;
	uint32_t i = v->roots[r].path_len & ~7u;
	for (; n - i >= 8; i += 8)
		psfs_hash_word(&h, load8(p + i));
	return psfs_hash_final(h, word_at(p, n, i), n);
}

/* The slash at p[j] (p is n bytes) is followed by "/" or "." : still a
 * normal component (".bin", "..x") or not ("//", "/.", "/..")? */
static inline int dot_ok(const uint8_t *p, uint32_t n, uint32_t j)
{
	if (p[j + 1] == '/')
		return 0;                              /* "//" */
	if (j + 2 == n || p[j + 2] == '/')
		return 0;                              /* "." */
	return !(p[j + 2] == '.' && (j + 3 == n || p[j + 3] == '/'));   /* ".." */
}

/* Byte pairs (p[j - 1], p[j]) for j in [i, i + 16): is any a '/' followed
 * by '/' or '.'?  16 pairs per step as two unaligned 16-byte vector loads
 * (SSE2 on x86-64, NEON on arm64; scalar code on wasm32), the second one
 * byte behind the first: no shifting, no carry between steps. */
static inline int slash_dot16(const uint8_t *p, uint32_t i)
{
	psfs_v16 x = load16(p + i), prev = load16(p + i - 1);
	return any16((psfs_v16)((prev == '/') & ((x == '/') | (x == '.'))));
}

/* Every component of p[from..n) (split at '/') is at most NAME_MAX bytes.
 * Only called for tails longer than NAME_MAX + 1 (rare). */
static int names_fit(const uint8_t *p, uint32_t from, uint32_t n)
{
	uint32_t last = from;
	for (uint32_t i = from; i < n; i++) {
		if (p[i] == '/')
			last = i;
		else if (i - last > PSFS_NAME_MAX)
			return 0;
	}
	return 1;
}

/* Pairs (p[j - 1], p[j]) for j in [from, to), from >= 1: every '/'
 * followed by '/' or '.' starts a normal name (".bin", ".pnpm")? */
static int dots_ok(const uint8_t *p, uint32_t n, uint32_t from, uint32_t to)
{
	for (uint32_t j = from; j < to; j++)
		if (p[j - 1] == '/' && (p[j] == '/' || p[j] == '.') && !dot_ok(p, n, j - 1))
			return 0;
	return 1;
}

/* Is p[0..n) (starting with root r, match_root) already normalized - no
 * "//", no "." or ".." component, no trailing "/", components <= NAME_MAX?
 * Then it is its own key and the hot path looks it up where it is;
 * otherwise the slow path rebuilds it.  The root is normalized, so only
 * pairs from p[rl - 1] on are looked at; a 16-byte window may reach back
 * into the root (harmless: no pair there fails). */
static int path_clean(const struct psfs_view *v, int r, const uint8_t *p, uint32_t n)
{
	uint32_t rl = v->roots[r].path_len, i = rl;   /* rl >= 2: p[i - 1] exists */
	if (n > rl && p[n - 1] == '/')
		return 0;                                /* trailing "/" */
	if (n - rl > PSFS_NAME_MAX + 1 && !names_fit(p, rl, n))
		return 0;                                /* kernel: ENAMETOOLONG */
	for (; n - i >= 16; i += 16)
		if (slash_dot16(p, i) && !dots_ok(p, n, i, i + 16))
			return 0;
	if (i == n)
		return 1;
	if (n >= 17) {                                   /* last window: p[n - 17..n) */
		i = n - 16;
		return !slash_dot16(p, i) || dots_ok(p, n, i, n);
	}
	return dots_ok(p, n, i, n);
}

/* Length of the NUL-terminated path, or PSFS_PATH_MAX when it has no NUL in
 * its first PSFS_PATH_MAX bytes (the kernel says ENAMETOOLONG).  Outside
 * wasm this is libc's strnlen: the one libc call of the core, because a
 * C loop must read byte by byte (never past the NUL) while libc's
 * vectorized version is several times faster on the hot path; strnlen is
 * async-signal-safe (POSIX.1-2008 TC2), takes no lock, touches no TLS. */
#if defined(__wasm__)
static inline uint32_t path_len(const uint8_t *p)
{
	uint32_t n = 0;
	while (n < PSFS_PATH_MAX && p[n])
		n++;
	return n;
}
#else
extern __SIZE_TYPE__ strnlen(const char *s, __SIZE_TYPE__ maxlen);
static inline uint32_t path_len(const uint8_t *p)
{
	return (uint32_t)strnlen((const char *)p, PSFS_PATH_MAX);
}
#endif

enum psfs_outcome psfs_resolve(const struct psfs_view *v, const char *path,
			       unsigned flags, char scratch[PSFS_PATH_MAX],
			       const struct psfs_entry **out)
{
	/* Relative, NULL and "" are the kernel's business (cwd, EFAULT, ENOENT). */
	if (!psfs_may_be_ours(v, path))
		return PSFS_PASS;              /* relative, NULL, "" or not ours */
	return psfs_resolve_ours(v, path, flags, scratch, out);
}

enum psfs_outcome psfs_resolve_ours(const struct psfs_view *v, const char *path,
				    unsigned flags, char scratch[PSFS_PATH_MAX],
				    const struct psfs_entry **out)
{
	const uint8_t *p = (const uint8_t *)path;
	uint32_t n = path_len(p);
	if (n >= PSFS_PATH_MAX)
		return PSFS_PASS;              /* kernel: ENAMETOOLONG */
	int r = match_root(v, p, n);
	if (r < 0)
		return PSFS_PASS;              /* the common cold case: not ours */

	struct walk w = {.v = v, .buf = (uint8_t *)scratch};
	const struct psfs_entry *e;
	/* Hash first and start loading the bucket: over a working set larger
	 * than L2 that load is the hot path's longest stall, and path_clean
	 * runs while it is in flight (10k paths: 43.8 -> 37.2 ns per stat).
	 * A prefetch reads nothing and cannot fault; slot is in the table. */
	uint32_t h = hash_path(v, r, p, n);
	__builtin_prefetch(&v->buckets[h & v->bucket_mask]);
	if (path_clean(v, r, p, n)) {
		/* Hot path: the usual spelling, looked up where it is. */
		e = lookup_h(v, p, n, h);
		if (e && (e->flags & (PSFS_E_REACHABLE | PSFS_E_UNCERTAIN)) ==
			      PSFS_E_REACHABLE && !is_lnk(e)) {
			*out = e;
			return PSFS_HIT;
		}
		if (!e) {
			/* Usual ENOENT: the parent is present. */
			uint32_t parent = n;
			while (parent > v->roots[r].path_len && p[--parent] != '/')
				;
			const struct psfs_entry *a = lookup_h(v, p, parent, hash_path(v, r, p, parent));
			if (a)
				return ancestor_says(a);
		}
		/* Symlink, unreachable or deeper miss: rebuild in scratch. */
		for (uint32_t i = 0; i < n; i++)
			w.buf[i] = p[i];
		w.len = n;
		w.root = v->roots[r].path_len;
	} else {
		walk_set_root(&w, (uint32_t)r);
		if (walk_append(&w, p, w.root, n) == WALK_PASS)
			return PSFS_PASS;
		e = psfs_lookup(v, w.buf, w.len);
	}

	for (unsigned hops = 0;; hops++) {
		if (!e)
			return missing(&w);
		if (!(e->flags & PSFS_E_REACHABLE))
			return PSFS_PASS;      /* never widen access */
		/* A trailing slash follows a final symlink even for lstat. */
		if (is_lnk(e) && ((flags & PSFS_FOLLOW) || w.must_dir)) {
			if (hops >= MAX_HOPS || walk_follow(&w, e) == WALK_PASS)
				return PSFS_PASS;  /* the kernel's limit, or target not ours */
			e = psfs_lookup(v, w.buf, w.len);
			continue;
		}
		if (w.must_dir && !is_dir(e))
			return PSFS_ENOTDIR;
		if (w.dot_last && (e->mode & SEARCH_ALL) != SEARCH_ALL)
			return PSFS_PASS;      /* "dir/." : EACCES for some callers */
		/* An uncertain size is the kernel's to give (PASS), but the
		 * caller learns whose answer it is (psfs_resolve). */
		*out = e;
		return (e->flags & PSFS_E_UNCERTAIN) ? PSFS_PASS : PSFS_HIT;
	}
}
